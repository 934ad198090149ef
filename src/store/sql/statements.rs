//! Every statement of the SQL store, its SQLite and PostgreSQL texts side by
//! side. Parameters are `$1`, `$2`, … in both (SQLite reads `$N` as the
//! N-th argument), bound in the same order, so one code path runs either.
//!
//! Time encoding is the only real difference: SQLite holds account and app
//! password times as Unix microseconds (INTEGER), PostgreSQL as
//! `timestamptz`, converted here from and to the microseconds the store
//! binds and reads. Replay-cache and revocation times are Unix seconds
//! (BIGINT) in both. Every time comes from the instance's clock.

/// One statement's text in each dialect.
#[derive(Debug)]
#[cfg_attr(
    not(all(feature = "sqlite", feature = "postgres")),
    allow(dead_code, reason = "one dialect's text is unused without its feature")
)]
pub struct Sql {
    pub(super) sqlite: &'static str,
    pub(super) postgres: &'static str,
}

impl Sql {
    /// A statement both dialects run as written.
    pub(super) const fn both(text: &'static str) -> Self {
        Self {
            sqlite: text,
            postgres: text,
        }
    }
}

/// The account `username` with its app password `digest`, in one indexed
/// statement: the digest's primary key, then the owner by its primary key,
/// kept only if its username is the one asked for. The account's columns,
/// then the password's expiry.
pub(super) const APP_PASSWORD: Sql = Sql {
    sqlite: "SELECT a.id, a.uuid, a.username, a.name, a.active, a.expires, \
        a.external_issuer, a.external_subject, p.expires \
        FROM m2m_app_passwords AS p JOIN m2m_service_accounts AS a ON a.id = p.account_id \
        WHERE p.digest = $1 AND a.username = $2",
    postgres: "SELECT a.id, a.uuid::text, a.username, a.name, a.active, \
        (extract(epoch FROM a.expires) * 1000000)::int8, a.external_issuer, a.external_subject, \
        (extract(epoch FROM p.expires) * 1000000)::int8 \
        FROM m2m_app_passwords AS p JOIN m2m_service_accounts AS a ON a.id = p.account_id \
        WHERE p.digest = $1 AND a.username = $2",
};

/// A new app password (digest, expiry, created) for the service account
/// `$4` (none if there is no such account, or it is an input-JWT identity).
pub(super) const ADD_APP_PASSWORD: Sql = Sql {
    sqlite: "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
        SELECT $1, id, $2, $3 FROM m2m_service_accounts \
        WHERE username = $4 AND substr(id, 1, 4) <> 'jwt:'",
    postgres: "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
        SELECT $1, id, timestamptz 'epoch' + $2 * interval '1 microsecond', \
        timestamptz 'epoch' + $3 * interval '1 microsecond' FROM m2m_service_accounts \
        WHERE username = $4 AND substr(id, 1, 4) <> 'jwt:'",
};

/// An app password (digest, account id, expiry, created) for an account
/// just inserted.
pub(super) const INSERT_APP_PASSWORD: Sql = Sql {
    sqlite: "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
        VALUES ($1, $2, $3, $4)",
    postgres: "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
        VALUES ($1, $2, timestamptz 'epoch' + $3 * interval '1 microsecond', \
        timestamptz 'epoch' + $4 * interval '1 microsecond')",
};

/// The same, unless the digest is stored already (imports).
pub(super) const IMPORT_APP_PASSWORD: Sql = Sql {
    sqlite: "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
        VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
    postgres: "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
        VALUES ($1, $2, timestamptz 'epoch' + $3 * interval '1 microsecond', \
        timestamptz 'epoch' + $4 * interval '1 microsecond') ON CONFLICT (digest) DO NOTHING",
};

/// `SELECT` an account's columns (as `Columns::account` reads them)
/// `FROM m2m_service_accounts`, then `$sqlite` or `$postgres` (or
/// `$both`).
macro_rules! select_accounts {
    ($both:literal) => {
        select_accounts!($both, $both)
    };
    ($sqlite:literal, $postgres:literal) => {
        Sql {
            sqlite: concat!(
                "SELECT id, uuid, username, name, active, expires, external_issuer, \
                 external_subject FROM m2m_service_accounts ",
                $sqlite
            ),
            postgres: concat!(
                "SELECT id, uuid::text, username, name, active, \
                 (extract(epoch FROM expires) * 1000000)::int8, external_issuer, \
                 external_subject FROM m2m_service_accounts ",
                $postgres
            ),
        }
    };
}

/// The account `$1`, by its unique username.
pub(super) const ACCOUNT_BY_USERNAME: Sql = select_accounts!("WHERE username = $1");

/// The account with id `$1` (an input-JWT identity), by its primary key.
pub(super) const ACCOUNT_BY_ID: Sql = select_accounts!("WHERE id = $1");

/// Every account, by username in byte order (PostgreSQL: whatever the
/// database's collation, as `MemoryStore` does).
pub(super) const LIST_ACCOUNTS: Sql =
    select_accounts!("ORDER BY username", "ORDER BY username COLLATE \"C\"");

/// A service account (id, uuid, username, name, active), unless any of its
/// unique columns is taken.
pub(super) const INSERT_ACCOUNT: Sql = Sql {
    sqlite: "INSERT INTO m2m_service_accounts (id, uuid, username, name, active) \
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    postgres: "INSERT INTO m2m_service_accounts (id, uuid, username, name, active) \
        VALUES ($1, $2::uuid, $3, $4, $5) ON CONFLICT DO NOTHING",
};

/// Records an input-JWT account (id, uuid, username, name, issuer,
/// subject, expiry), unless its id, uuid or username is taken.
pub(super) const INSERT_EXTERNAL_ACCOUNT: Sql = Sql {
    sqlite: "INSERT INTO m2m_service_accounts \
        (id, uuid, username, name, active, external_issuer, external_subject, expires) \
        VALUES ($1, $2, $3, $4, 1, $5, $6, $7) ON CONFLICT DO NOTHING",
    postgres: "INSERT INTO m2m_service_accounts \
        (id, uuid, username, name, active, external_issuer, external_subject, expires) \
        VALUES ($1, $2::uuid, $3, $4, TRUE, $5, $6, \
        timestamptz 'epoch' + $7 * interval '1 microsecond') ON CONFLICT DO NOTHING",
};

/// Moves the expiry of the input-JWT account `$1` forward to `$2` (to never
/// if NULL); an account that never expires is left so.
pub(super) const EXTEND_EXTERNAL_ACCOUNT: Sql = Sql {
    sqlite: "UPDATE m2m_service_accounts SET expires = $2 \
        WHERE id = $1 AND expires IS NOT NULL AND ($2 IS NULL OR expires < $2)",
    postgres: "UPDATE m2m_service_accounts \
        SET expires = timestamptz 'epoch' + $2 * interval '1 microsecond' \
        WHERE id = $1 AND expires IS NOT NULL \
        AND ($2::int8 IS NULL OR expires < timestamptz 'epoch' + $2 * interval '1 microsecond')",
};

/// The id of the account `$1`.
pub(super) const ACCOUNT_ID_BY_USERNAME: Sql =
    Sql::both("SELECT id FROM m2m_service_accounts WHERE username = $1");

/// Enables or disables (`$1`) the account `$2`.
pub(super) const SET_ACTIVE: Sql =
    Sql::both("UPDATE m2m_service_accounts SET active = $1 WHERE username = $2");

/// The account that holds the app password `$1`.
pub(super) const OWNER_OF_APP_PASSWORD: Sql =
    Sql::both("SELECT account_id FROM m2m_app_passwords WHERE digest = $1");

/// Revokes the app password `$1`.
pub(super) const DELETE_APP_PASSWORD: Sql =
    Sql::both("DELETE FROM m2m_app_passwords WHERE digest = $1");

/// The scopes of one binding (account id, client id), by its primary key.
pub(super) const BINDING: Sql =
    Sql::both("SELECT scopes FROM m2m_bindings WHERE account_id = $1 AND client_id = $2");

/// Binds, or replaces the scopes of an existing binding.
pub(super) const BIND: Sql = Sql::both(
    "INSERT INTO m2m_bindings (account_id, client_id, scopes) VALUES ($1, $2, $3) \
     ON CONFLICT (account_id, client_id) DO UPDATE SET scopes = excluded.scopes",
);

/// Removes a binding (account id, client id).
pub(super) const UNBIND: Sql =
    Sql::both("DELETE FROM m2m_bindings WHERE account_id = $1 AND client_id = $2");

/// An account's bindings, through the primary key's prefix, in byte order
/// (PostgreSQL: whatever the database's collation, as `MemoryStore` does).
pub(super) const LIST_BINDINGS: Sql = Sql {
    sqlite: "SELECT client_id, scopes FROM m2m_bindings WHERE account_id = $1 \
        ORDER BY client_id",
    postgres: "SELECT client_id, scopes FROM m2m_bindings WHERE account_id = $1 \
        ORDER BY client_id COLLATE \"C\"",
};

/// The change counter (migration 0004), bumped by every change to an
/// account, app password or binding.
pub(super) const CHANGE_COUNTER: Sql = Sql::both("SELECT value FROM m2m_changes WHERE id = 1");

/// Records each key of the JSON array `$1` (`[[key, expires], …]`, no key
/// twice, in key order) until its expiry, or takes over its row if that
/// expired before `$2` (now); a live row is left alone. Returns the keys
/// recorded. One atomic statement for a whole batch of first uses.
pub(super) const FIRST_USES: Sql = Sql {
    sqlite: "INSERT INTO m2m_replay_cache (key, expires) \
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') \
        FROM json_each($1) WHERE true ORDER BY key \
        ON CONFLICT (key) DO UPDATE SET expires = excluded.expires \
        WHERE m2m_replay_cache.expires < $2 RETURNING key",
    postgres: "INSERT INTO m2m_replay_cache (key, expires) \
        SELECT e.item ->> 0, (e.item ->> 1)::int8 \
        FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e (item, n) ORDER BY e.n \
        ON CONFLICT (key) DO UPDATE SET expires = excluded.expires \
        WHERE m2m_replay_cache.expires < $2 RETURNING key",
};

/// Forgets the replay-cache key `$1`.
pub(super) const FORGET_FIRST_USE: Sql = Sql::both("DELETE FROM m2m_replay_cache WHERE key = $1");

/// Revokes the token `$1` until `$2`; revoking again keeps the later expiry.
pub(super) const REVOKE: Sql = Sql::both(
    "INSERT INTO m2m_revoked_tokens (jti, expires) VALUES ($1, $2) \
     ON CONFLICT (jti) DO UPDATE SET expires = excluded.expires \
     WHERE m2m_revoked_tokens.expires < excluded.expires",
);

/// Whether the token `$1` is revoked at `$2` (now).
pub(super) const IS_REVOKED: Sql =
    Sql::both("SELECT EXISTS (SELECT 1 FROM m2m_revoked_tokens WHERE jti = $1 AND expires >= $2)");

/// On SQLite the replay cache is purged a chunk of keys at a time (it has no
/// index on its expiry, migration 0005): chunks of 1,024 keys, in key
/// order. The key after the chunk that starts at `$1`, or no row if the
/// chunk runs to the end. PostgreSQL keeps the index and purges the whole
/// cache by it each time: its chunk always runs to the end.
pub(super) const REPLAY_CHUNK_END: Sql = Sql {
    sqlite: "SELECT key FROM m2m_replay_cache WHERE key >= $1 ORDER BY key LIMIT 1 OFFSET 1024",
    postgres: "SELECT key FROM m2m_replay_cache WHERE false AND key >= $1",
};

/// Deletes the expired rows (`$1`: now, in Unix seconds) of the replay
/// cache's chunk from `$2` up to `$3` (not included).
pub(super) const PURGE_REPLAY_CHUNK: Sql =
    Sql::both("DELETE FROM m2m_replay_cache WHERE key >= $2 AND key < $3 AND expires < $1");

/// Deletes the expired rows (`$1`: now) of the replay cache's last chunk,
/// from `$2` on; on PostgreSQL, which has no chunks, all of them.
///
/// On PostgreSQL this purge locks the expired rows in expiry order, and a
/// batch of first uses locks the rows it conflicts with in key order. A
/// batch conflicts with an expired row only for a JWT or proof past its
/// expiry, which the endpoint refuses before writing, so the two meet only
/// at the edge of expiry between instances whose clocks differ; were they
/// to deadlock, PostgreSQL aborts one after `deadlock_timeout` (a purge:
/// logged, the next one retries; a batch: 503). Passing over locked rows,
/// as the other purges do, costs a lock on each row before its delete
/// (two WAL records) on the busiest table; single runs at the steady
/// state (`replay_steady.py --postgres`) did not tell it from the noise
/// (8,000–9,700 req/s, p99 18–27 ms either way), so this purge stays a
/// plain delete.
pub(super) const PURGE_REPLAY_REST: Sql = Sql {
    sqlite: "DELETE FROM m2m_replay_cache WHERE key >= $2 AND expires < $1",
    postgres: "DELETE FROM m2m_replay_cache WHERE expires < $1 AND $2::text IS NOT NULL",
};

/// Deletes expired revocation rows, and expired input-JWT accounts that are
/// still active (a disabled one stays disabled); `$1` is now, in Unix
/// seconds.
///
/// On PostgreSQL these purges pass over the rows another transaction holds
/// (`FOR UPDATE SKIP LOCKED`; the next purge takes them): another
/// instance's batch or an admin command. They never wait for its commit,
/// and never lock rows in an order (their expiry's) that could deadlock
/// with a batch (which locks in key order). They delete the rows they
/// locked by `ctid` (a TID scan; locked rows cannot move): with `IN
/// (SELECT …)` the planner chose a sequential scan of the whole table.
pub(super) const PURGE: [Sql; 2] = [
    Sql {
        sqlite: "DELETE FROM m2m_revoked_tokens WHERE expires < $1",
        postgres: "DELETE FROM m2m_revoked_tokens WHERE ctid = ANY (ARRAY (SELECT ctid \
            FROM m2m_revoked_tokens WHERE expires < $1 FOR UPDATE SKIP LOCKED))",
    },
    Sql {
        sqlite: "DELETE FROM m2m_service_accounts WHERE expires < $1 * 1000000 AND active = 1",
        postgres: "DELETE FROM m2m_service_accounts WHERE ctid = ANY (ARRAY (SELECT ctid \
            FROM m2m_service_accounts WHERE expires < to_timestamp($1::float8) AND active \
            FOR UPDATE SKIP LOCKED))",
    },
];

/// Every statement that looks rows up, with sample parameters: each must be
/// answered through an index (the dialects' `no_statement_scans_a_table`).
#[cfg(test)]
pub(super) const INDEXED: [(&Sql, &[super::values::Param<'static>]); 20] = {
    use super::values::Param::{Bytes, Flag, Int, Text};
    const DIGEST: super::values::Param<'static> = Bytes(&[7; 32]);
    [
        (&APP_PASSWORD, &[DIGEST, Text("svc")]),
        (
            &ADD_APP_PASSWORD,
            &[DIGEST, Int(None), Int(Some(0)), Text("svc")],
        ),
        (&DELETE_APP_PASSWORD, &[DIGEST]),
        (&ACCOUNT_BY_USERNAME, &[Text("svc")]),
        (&ACCOUNT_ID_BY_USERNAME, &[Text("svc")]),
        (&OWNER_OF_APP_PASSWORD, &[DIGEST]),
        (&SET_ACTIVE, &[Flag(true), Text("svc")]),
        (&IS_REVOKED, &[Text("jti"), Int(Some(0))]),
        (&FORGET_FIRST_USE, &[Text("key")]),
        (&REPLAY_CHUNK_END, &[Text("key")]),
        (&PURGE_REPLAY_CHUNK, &[Int(Some(0)), Text("a"), Text("b")]),
        (&PURGE_REPLAY_REST, &[Int(Some(0)), Text("a")]),
        (&PURGE[0], &[Int(Some(0))]),
        (&PURGE[1], &[Int(Some(0))]),
        (&ACCOUNT_BY_ID, &[Text("jwt:x")]),
        (&EXTEND_EXTERNAL_ACCOUNT, &[Text("jwt:x"), Int(Some(0))]),
        (&BINDING, &[Text("id"), Text("client")]),
        (&BIND, &[Text("id"), Text("client"), Text("read write")]),
        (&UNBIND, &[Text("id"), Text("client")]),
        (&LIST_BINDINGS, &[Text("id")]),
    ]
};
