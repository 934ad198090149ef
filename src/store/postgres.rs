//! A credential store, replay cache and revocation list in PostgreSQL,
//! shared by several instances.

use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::sql::{
    ACQUIRE_TIMEOUT, AccountRow, CredentialRow, MIGRATIONS_TABLE, PurgeTicker, account_from_row,
    credential_from_row, is_jwt_id, join_scopes, now_unix, refused_account, split_scopes,
    store_error, unix_micros, unix_seconds,
};
use super::{
    AccountAdmin, AccountCredential, AdminError, AppPassword, Binding, CredentialStore,
    ExternalAccount, ReplayCache, RevocationList, ServiceAccount, StoreError, TokenDigest,
};

/// Service accounts, app-password digests, the replay cache and the
/// revocation list in PostgreSQL (feature `postgres`): the store for several
/// instances of the issuer.
///
/// [`connect`](Self::connect) applies the crate's migrations
/// (`migrations/postgres/`, embedded; recorded in the table
/// `_tower_m2m_auth_migrations`, under an advisory lock so instances may
/// start together). Tables are prefixed `m2m_`; to keep them apart from the
/// application's, give the role its own schema (`search_path`).
///
/// Every instance sees an account change, a revoked app password, a used
/// `jti` or a revoked token as soon as it is committed. If the server goes
/// away, calls fail with [`StoreError`] within about 3 s (the token endpoint
/// answers 503 `temporarily_unavailable`), and the pool reconnects once it
/// is back. Tokens are stored only as SHA-256 digests; every lookup is by
/// index. Clones share one connection pool.
///
/// sqlx is built without TLS: connect over loopback or a private network
/// (`sslmode=require` in the URL fails).
///
/// ```no_run
/// use tower_m2m_auth::store::{PgStore, StoreError};
///
/// # async fn run() -> Result<(), StoreError> {
/// let store = PgStore::connect("postgres://issuer:secret@127.0.0.1/auth").await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    purge: Arc<PurgeTicker>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and
    /// applies pending migrations. Requests wait at most 3 s for a connection
    /// before failing with [`StoreError`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(store_error)?;
        Self::from_pool(pool).await
    }

    /// Uses a pool configured by the caller (size, timeouts, connection
    /// options), and applies pending migrations. Give it a short
    /// `acquire_timeout` so that requests fail fast while the database is
    /// down.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        migrator().run(&pool).await.map_err(store_error)?;
        Ok(Self {
            pool,
            purge: Arc::default(),
        })
    }

    /// The connection pool (to close it, or for the caller's own queries).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn purge_expired(&self, now: i64) {
        for sql in PURGE {
            if let Err(error) = sqlx::query(sql).bind(now).execute(&self.pool).await {
                tracing::warn!(%error, "could not purge expired rows");
            }
        }
    }

    /// The stored account with this id.
    async fn external_by_id(&self, id: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let row: Option<AccountRow> = sqlx::query_as(EXTERNAL_ACCOUNT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(account_from_row).transpose()
    }

    /// The id of the account `username`, if there is one.
    async fn account_id(&self, username: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(ACCOUNT_ID_BY_USERNAME)
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)
    }

    /// The id of the service account `username`: not an input-JWT identity.
    async fn service_account_id(&self, username: &str) -> Result<String, AdminError> {
        match self.account_id(username).await? {
            None => Err(AdminError::NoSuchAccount(username.to_owned())),
            Some(id) if is_jwt_id(&id) => Err(AdminError::NameOfJwtIdentity(username.to_owned())),
            Some(id) => Ok(id),
        }
    }
}

/// The account `username` with its app password `digest`, in one indexed
/// statement: the digest's primary key, then the owner by its primary key,
/// kept only if its username is the one asked for.
const APP_PASSWORD: &str = "SELECT a.id, a.uuid::text, a.username, a.name, a.active, \
    (extract(epoch FROM a.expires) * 1000000)::int8, a.external_issuer, a.external_subject, \
    (extract(epoch FROM p.expires) * 1000000)::int8 \
    FROM m2m_app_passwords AS p \
    JOIN m2m_service_accounts AS a ON a.id = p.account_id \
    WHERE p.digest = $1 AND a.username = $2";

/// A new app password for the service account `username` (none if there is
/// no such account, or it is an input-JWT identity).
const ADD_APP_PASSWORD: &str = "INSERT INTO m2m_app_passwords (digest, account_id, expires) \
    SELECT $1, id, timestamptz 'epoch' + $2 * interval '1 microsecond' \
    FROM m2m_service_accounts WHERE username = $3 AND substr(id, 1, 4) <> 'jwt:'";

const ACCOUNT_BY_USERNAME: &str = "SELECT id, uuid::text, username, name, active, \
    (extract(epoch FROM expires) * 1000000)::int8, external_issuer, external_subject \
    FROM m2m_service_accounts WHERE username = $1";

/// A service account, unless any of its unique columns is taken.
const INSERT_ACCOUNT: &str = "INSERT INTO m2m_service_accounts (id, uuid, username, name, active) \
    VALUES ($1, $2::uuid, $3, $4, $5) ON CONFLICT DO NOTHING";

/// The scopes of one binding, by its primary key.
const BINDING: &str = "SELECT scopes FROM m2m_bindings WHERE account_id = $1 AND client_id = $2";

/// Binds, or replaces the scopes of an existing binding.
const BIND: &str = "INSERT INTO m2m_bindings (account_id, client_id, scopes) VALUES ($1, $2, $3) \
    ON CONFLICT (account_id, client_id) DO UPDATE SET scopes = excluded.scopes";

const UNBIND: &str = "DELETE FROM m2m_bindings WHERE account_id = $1 AND client_id = $2";

/// An account's bindings, through the primary key's prefix (byte order,
/// whatever the database's collation, as MemoryStore does).
const LIST_BINDINGS: &str = "SELECT client_id, scopes FROM m2m_bindings WHERE account_id = $1 \
    ORDER BY client_id COLLATE \"C\"";

const ACCOUNT_ID_BY_USERNAME: &str = "SELECT id FROM m2m_service_accounts WHERE username = $1";

const OWNER_OF_APP_PASSWORD: &str = "SELECT account_id FROM m2m_app_passwords WHERE digest = $1";

const DELETE_APP_PASSWORD: &str = "DELETE FROM m2m_app_passwords WHERE digest = $1";

const SET_ACTIVE: &str = "UPDATE m2m_service_accounts SET active = $1 WHERE username = $2";

const IS_REVOKED: &str =
    "SELECT EXISTS (SELECT 1 FROM m2m_revoked_tokens WHERE jti = $1 AND expires >= $2)";

/// The account of an input-JWT identity, by its primary key.
const EXTERNAL_ACCOUNT: &str = "SELECT id, uuid::text, username, name, active, \
    (extract(epoch FROM expires) * 1000000)::int8, external_issuer, external_subject \
    FROM m2m_service_accounts WHERE id = $1";

/// Moves the expiry of an input-JWT account forward (to never if `$2` is
/// NULL); an account that never expires is left so.
const EXTEND_EXTERNAL_ACCOUNT: &str = "UPDATE m2m_service_accounts \
    SET expires = timestamptz 'epoch' + $2 * interval '1 microsecond' \
    WHERE id = $1 AND expires IS NOT NULL \
    AND ($2::int8 IS NULL OR expires < timestamptz 'epoch' + $2 * interval '1 microsecond')";

/// Records an input-JWT account, unless its id, uuid or username is taken.
const INSERT_EXTERNAL_ACCOUNT: &str = "INSERT INTO m2m_service_accounts \
    (id, uuid, username, name, active, external_issuer, external_subject, expires) \
    VALUES ($1, $2::uuid, $3, $4, TRUE, $5, $6, timestamptz 'epoch' + $7 * interval '1 microsecond') \
    ON CONFLICT DO NOTHING";

/// Deletes expired replay-cache and revocation rows, and expired input-JWT
/// accounts that are still active (a disabled one stays disabled).
const PURGE: [&str; 3] = [
    "DELETE FROM m2m_replay_cache WHERE expires < $1",
    "DELETE FROM m2m_revoked_tokens WHERE expires < $1",
    "DELETE FROM m2m_service_accounts WHERE expires < to_timestamp($1::float8) AND active",
];

fn migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "external accounts".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0002_external_accounts.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "bindings".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0003_bindings.sql").into_sql_str(),
            false,
        ),
    ]);
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

impl CredentialStore for PgStore {
    async fn app_password(
        &self,
        username: &str,
        digest: &TokenDigest,
    ) -> Result<Option<AccountCredential>, StoreError> {
        let row: Option<CredentialRow> = sqlx::query_as(APP_PASSWORD)
            .bind(digest.as_bytes().as_slice())
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (account, expires) = credential_from_row(row)?;
        let mut password = AppPassword::new(&account.id, *digest);
        password.expires = expires;
        Ok(Some(AccountCredential::new(account, password)))
    }

    async fn external_account(
        &self,
        account: &ExternalAccount,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        // Most uses: one read by primary key, and no write.
        if let Some(mut stored) = self.external_by_id(&account.id).await? {
            if account.extends(stored.expires) {
                let extended = sqlx::query(EXTEND_EXTERNAL_ACCOUNT)
                    .bind(&account.id)
                    .bind(account.expires.map(unix_micros))
                    .execute(&self.pool)
                    .await
                    .map_err(store_error)?;
                if extended.rows_affected() == 1 {
                    stored.expires = account.expires;
                }
            }
            return Ok(Some(stored));
        }
        let now = now_unix();
        if self.purge.due() {
            self.purge_expired(now).await;
        }
        // First use: the username asked for, or else the disambiguated one;
        // never an account that exists (any unique column conflicting means
        // no insert). A concurrent first use may win: then its row is read.
        for username in account.candidate_usernames() {
            let inserted = sqlx::query(INSERT_EXTERNAL_ACCOUNT)
                .bind(&account.id)
                .bind(account.uuid.to_string())
                .bind(&username)
                .bind(&account.name)
                .bind(&account.issuer)
                .bind(&account.subject)
                .bind(account.expires.map(unix_micros))
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            if inserted.rows_affected() == 1 {
                return Ok(Some(account.to_service_account(&username)));
            }
            if let Some(stored) = self.external_by_id(&account.id).await? {
                return Ok(Some(stored));
            }
        }
        Err(StoreError(
            format!(
                "no free username for the input-JWT account {:?}",
                account.username
            )
            .into(),
        ))
    }

    async fn account(&self, username: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let row: Option<AccountRow> = sqlx::query_as(ACCOUNT_BY_USERNAME)
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(account_from_row).transpose()
    }

    async fn binding(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> Result<Option<Binding>, StoreError> {
        let scopes: Option<String> = sqlx::query_scalar(BINDING)
            .bind(account_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(scopes.map(|scopes| Binding::new(client_id, split_scopes(&scopes))))
    }
}

impl AccountAdmin for PgStore {
    async fn create_service_account(
        &self,
        account: ServiceAccount,
        expires: Option<SystemTime>,
    ) -> Result<(ServiceAccount, SecretString), AdminError> {
        account.check()?;
        let (token, password) = AppPassword::generate(&account.id);
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let inserted = sqlx::query(INSERT_ACCOUNT)
            .bind(&account.id)
            .bind(account.uuid.to_string())
            .bind(&account.username)
            .bind(&account.name)
            .bind(account.active)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        if inserted.rows_affected() == 0 {
            let holder: Option<String> = sqlx::query_scalar(ACCOUNT_ID_BY_USERNAME)
                .bind(&account.username)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?;
            return Err(refused_account(account.username, holder.as_deref()));
        }
        sqlx::query(
            "INSERT INTO m2m_app_passwords (digest, account_id, expires) \
             VALUES ($1, $2, timestamptz 'epoch' + $3 * interval '1 microsecond')",
        )
        .bind(password.digest.as_bytes().as_slice())
        .bind(&account.id)
        .bind(expires.map(unix_micros))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        let account = ServiceAccount {
            expires: None,
            external_issuer: None,
            external_subject: None,
            ..account
        };
        Ok((account, token))
    }

    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>, StoreError> {
        // Byte order, whatever the database's collation, as MemoryStore does.
        let rows: Vec<AccountRow> = sqlx::query_as(
            "SELECT id, uuid::text, username, name, active, \
             (extract(epoch FROM expires) * 1000000)::int8, external_issuer, external_subject \
             FROM m2m_service_accounts ORDER BY username COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(account_from_row).collect()
    }

    async fn add_app_password(
        &self,
        username: &str,
        expires: Option<SystemTime>,
    ) -> Result<SecretString, AdminError> {
        let (token, password) = AppPassword::generate(String::new());
        let inserted = sqlx::query(ADD_APP_PASSWORD)
            .bind(password.digest.as_bytes().as_slice())
            .bind(expires.map(unix_micros))
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        if inserted.rows_affected() == 0 {
            // No such account, or an input-JWT identity: say which.
            self.service_account_id(username).await?;
            return Err(AdminError::NoSuchAccount(username.to_owned()));
        }
        Ok(token)
    }

    async fn revoke_app_password(&self, digest: &TokenDigest) -> Result<bool, StoreError> {
        let deleted = sqlx::query(DELETE_APP_PASSWORD)
            .bind(digest.as_bytes().as_slice())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn set_account_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        let updated = sqlx::query(SET_ACTIVE)
            .bind(active)
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(updated.rows_affected() > 0)
    }

    async fn import_service_account(
        &self,
        account: ServiceAccount,
    ) -> Result<ServiceAccount, AdminError> {
        account.check()?;
        // Inserted unless a unique column is taken; then whichever account
        // holds the username, if it is a service account.
        sqlx::query(INSERT_ACCOUNT)
            .bind(&account.id)
            .bind(account.uuid.to_string())
            .bind(&account.username)
            .bind(&account.name)
            .bind(account.active)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        match self.account(&account.username).await? {
            Some(stored) if !stored.is_jwt_identity() => Ok(stored),
            stored => Err(refused_account(
                account.username,
                stored.as_ref().map(|stored| stored.id.as_str()),
            )),
        }
    }

    async fn import_app_password(
        &self,
        username: &str,
        password: AppPassword,
    ) -> Result<bool, AdminError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let account_id: Option<String> = sqlx::query_scalar(ACCOUNT_ID_BY_USERNAME)
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let account_id = match account_id {
            None => return Err(AdminError::NoSuchAccount(username.to_owned())),
            Some(id) if is_jwt_id(&id) => {
                return Err(AdminError::NameOfJwtIdentity(username.to_owned()));
            }
            Some(id) => id,
        };
        let inserted = sqlx::query(
            "INSERT INTO m2m_app_passwords (digest, account_id, expires) \
             VALUES ($1, $2, timestamptz 'epoch' + $3 * interval '1 microsecond') \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(password.digest.as_bytes().as_slice())
        .bind(&account_id)
        .bind(password.expires.map(unix_micros))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        if inserted.rows_affected() == 1 {
            tx.commit().await.map_err(store_error)?;
            return Ok(true);
        }
        let owner: Option<String> = sqlx::query_scalar(OWNER_OF_APP_PASSWORD)
            .bind(password.digest.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        match owner {
            // (None: revoked since the insert found it; as if right after.)
            Some(owner) if owner != account_id => Err(AdminError::PasswordOfAnotherAccount),
            _ => Ok(false),
        }
    }

    async fn bind_account(&self, username: &str, binding: Binding) -> Result<(), AdminError> {
        binding.check()?;
        let account_id = self.service_account_id(username).await?;
        sqlx::query(BIND)
            .bind(&account_id)
            .bind(&binding.client_id)
            .bind(join_scopes(&binding.scopes))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn unbind_account(&self, username: &str, client_id: &str) -> Result<bool, AdminError> {
        let Some(account_id) = self.account_id(username).await? else {
            return Err(AdminError::NoSuchAccount(username.to_owned()));
        };
        let deleted = sqlx::query(UNBIND)
            .bind(&account_id)
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn list_bindings(&self, username: &str) -> Result<Vec<Binding>, AdminError> {
        let Some(account_id) = self.account_id(username).await? else {
            return Err(AdminError::NoSuchAccount(username.to_owned()));
        };
        let rows: Vec<(String, String)> = sqlx::query_as(LIST_BINDINGS)
            .bind(&account_id)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(client_id, scopes)| Binding::new(client_id, split_scopes(&scopes)))
            .collect())
    }
}

impl ReplayCache for PgStore {
    /// One statement: inserts the key, or takes over an expired row; a live
    /// row is left alone and the use is refused. Atomic across instances
    /// (concurrent inserts of one key wait for each other; one wins).
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, StoreError> {
        let now = now_unix();
        if self.purge.due() {
            self.purge_expired(now).await;
        }
        let recorded = sqlx::query(
            "INSERT INTO m2m_replay_cache (key, expires) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET expires = excluded.expires \
             WHERE m2m_replay_cache.expires < $3",
        )
        .bind(key)
        .bind(unix_seconds(expires_at))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(recorded.rows_affected() == 1)
    }
}

impl RevocationList for PgStore {
    /// Revoking again keeps the later expiry.
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        let now = now_unix();
        if self.purge.due() {
            self.purge_expired(now).await;
        }
        sqlx::query(
            "INSERT INTO m2m_revoked_tokens (jti, expires) VALUES ($1, $2) \
             ON CONFLICT (jti) DO UPDATE SET expires = excluded.expires \
             WHERE m2m_revoked_tokens.expires < excluded.expires",
        )
        .bind(jti)
        .bind(unix_seconds(expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        sqlx::query_scalar(IS_REVOKED)
            .bind(jti)
            .bind(now_unix())
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::AssertSqlSafe;
    use sqlx::postgres::PgConnectOptions;

    use super::*;

    /// A one-connection pool on a fresh schema of the test server
    /// (`search_path` set, plus `settings`), with the admin pool and the
    /// schema's name, to drop it afterwards.
    async fn fresh_schema(prefix: &str, settings: &[(&str, &str)]) -> (PgPool, PgPool, String) {
        let url = std::env::var("TOWER_M2M_AUTH_PG_URL").expect(
            "set TOWER_M2M_AUTH_PG_URL for the PostgreSQL tests (.ci/run starts a server and sets it)",
        );
        let options: PgConnectOptions = url.parse().unwrap();
        let schema = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect_with(options.clone()).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let mut session = vec![("search_path", schema.as_str())];
        session.extend_from_slice(settings);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.options(session))
            .await
            .unwrap();
        (admin, pool, schema)
    }

    /// A database that ran only 0001 is brought up to date, its accounts
    /// kept, and then records input-JWT accounts.
    #[tokio::test]
    async fn migrations_apply_over_a_database_that_ran_only_the_first() {
        let (admin, pool, schema) = fresh_schema("m2m_upgrade", &[]).await;
        let mut first = Migrator::with_migrations(vec![migrator().iter().next().unwrap().clone()]);
        first.dangerous_set_table_name(MIGRATIONS_TABLE);
        first.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO m2m_service_accounts (id, uuid, username, name, active) \
             VALUES ('old', '00000000-0000-0000-0000-000000000001', 'svc-old', 'Old', TRUE)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let store = PgStore::from_pool(pool.clone()).await.unwrap();
        let account = ExternalAccount::new("https://ci.example", "job", "svc-old");
        let stored = store.external_account(&account).await.unwrap().unwrap();
        assert_eq!(stored.username, account.disambiguated_username());
        let listed: Vec<String> = store
            .list_service_accounts()
            .await
            .unwrap()
            .into_iter()
            .map(|account| account.username)
            .collect();
        assert_eq!(listed, ["svc-old", stored.username.as_str()]);
        pool.close().await;
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
    }

    /// Every lookup, update and delete can be answered through an index
    /// (sequential scans disabled, so an index is used whenever one exists).
    /// The store lives in its own schema, chosen with `search_path`.
    #[tokio::test]
    async fn no_statement_scans_a_table() {
        let (admin, pool, schema) = fresh_schema("m2m_plan", &[("enable_seqscan", "off")]).await;
        let store = PgStore::from_pool(pool.clone()).await.unwrap();

        macro_rules! plan {
            ($sql:expr $(, $bind:expr)*) => {
                sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("EXPLAIN {}", $sql)))
                    $(.bind($bind))*
                    .fetch_all(store.pool())
                    .await
                    .unwrap()
            };
        }
        let digest = [7u8; 32].as_slice();
        for (sql, plan) in [
            (APP_PASSWORD, plan!(APP_PASSWORD, digest, "svc")),
            (
                ADD_APP_PASSWORD,
                plan!(ADD_APP_PASSWORD, digest, None::<i64>, "svc"),
            ),
            (DELETE_APP_PASSWORD, plan!(DELETE_APP_PASSWORD, digest)),
            (ACCOUNT_BY_USERNAME, plan!(ACCOUNT_BY_USERNAME, "svc")),
            (ACCOUNT_ID_BY_USERNAME, plan!(ACCOUNT_ID_BY_USERNAME, "svc")),
            (OWNER_OF_APP_PASSWORD, plan!(OWNER_OF_APP_PASSWORD, digest)),
            (SET_ACTIVE, plan!(SET_ACTIVE, true, "svc")),
            (IS_REVOKED, plan!(IS_REVOKED, "jti", 0i64)),
            (PURGE[0], plan!(PURGE[0], 0i64)),
            (PURGE[1], plan!(PURGE[1], 0i64)),
            (PURGE[2], plan!(PURGE[2], 0i64)),
            (EXTERNAL_ACCOUNT, plan!(EXTERNAL_ACCOUNT, "jwt:x")),
            (
                EXTEND_EXTERNAL_ACCOUNT,
                plan!(EXTEND_EXTERNAL_ACCOUNT, "jwt:x", Some(0i64)),
            ),
            (BINDING, plan!(BINDING, "id", "client")),
            (BIND, plan!(BIND, "id", "client", "read write")),
            (UNBIND, plan!(UNBIND, "id", "client")),
            (LIST_BINDINGS, plan!(LIST_BINDINGS, "id")),
        ] {
            let plan = plan.join("\n");
            assert!(!plan.contains("Seq Scan"), "{sql}:\n{plan}");
        }
        pool.close().await;
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
    }
}
