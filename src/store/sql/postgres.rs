//! The PostgreSQL dialect: [`PgStore`], shared by several instances.

use sqlx::Postgres;
use sqlx::postgres::{PgPoolOptions, PgQueryResult};

use super::values::{ACQUIRE_TIMEOUT, store_error};
use super::{SqlStore, dialect};
use crate::store::StoreError;

/// Service accounts, app-password digests, bindings, the replay cache and
/// the revocation list in PostgreSQL (feature `postgres`): the store for
/// several instances of the issuer. The [`SqlStore`] of `sqlx::Postgres`.
///
/// [`connect`](SqlStore::connect) applies the crate's migrations
/// (`migrations/postgres/`, embedded; recorded in the table
/// `_tower_m2m_auth_migrations`, under an advisory lock so instances may
/// start together). Tables are prefixed `m2m_`; to keep them apart from the
/// application's, give the role its own schema (`search_path`).
///
/// Every instance sees a used `jti` or a revoked token as soon as it is
/// committed, and an account, app-password or binding change as soon as its
/// announcement arrives, right after the commit (see the read cache of
/// [`SqlStore`]). If the server goes
/// away, calls fail with [`StoreError`] within about 3 s (the token endpoint
/// answers 503 `temporarily_unavailable`), and the pool reconnects once it
/// is back. Tokens are stored only as SHA-256 digests; every lookup is by
/// index. Clones share one connection pool.
///
/// Writes on the request path (used `jti`s, revocations) are
/// group-committed, and each is acknowledged only once its transaction has
/// committed; that commit is as durable as the server's
/// `synchronous_commit` makes it (`on`, PostgreSQL's default: flushed to
/// disk). Leave it on for the store's role: with `off`, a crash of the
/// server could forget a used `jti` and let its assertion be replayed.
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
pub type PgStore = SqlStore<Postgres>;

dialect!(Postgres, postgres, PgQueryResult);

impl SqlStore<Postgres> {
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
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool};
    use sqlx::{AssertSqlSafe, Executor};

    use super::super::driver::Params;
    use super::super::statements::Sql;
    use super::super::statements::{INDEXED, PURGE, PURGE_REPLAY_REST};
    use super::super::tests::upgrades_a_database_that_ran_only_the_first_migration;
    use super::super::values::Param::{self, Int, Text};
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
        admin
            .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
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

    /// Plans `statement` with `params` on `pool` (`EXPLAIN`): no
    /// sequential scan.
    async fn assert_no_sequential_scan(pool: &PgPool, statement: &Sql, params: &[Param<'_>]) {
        let sql = statement.postgres;
        let mut args = PgArguments::default();
        for param in params {
            args.push(*param).unwrap();
        }
        let plan: Vec<String> =
            sqlx::query_scalar_with(AssertSqlSafe(format!("EXPLAIN {sql}")), args)
                .fetch_all(pool)
                .await
                .unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan"), "{sql}:\n{plan}");
    }

    /// Closes `pool` and drops its schema.
    async fn drop_schema(admin: PgPool, pool: PgPool, schema: String) {
        pool.close().await;
        admin
            .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .await
            .unwrap();
    }

    /// The purges, planned with sequential scans allowed, over tables whose
    /// statistics say they are large (50,000 rows each, 1 in 50 expired),
    /// delete through their indexes: a purge runs every `PURGE_EVERY`
    /// writes (beside the writer), on the busiest tables.
    #[tokio::test]
    async fn purges_of_large_tables_use_their_indexes() {
        let (admin, pool, schema) = fresh_schema("m2m_purge_plan", &[]).await;
        let store = SqlStore::<Postgres>::from_pool(pool.clone()).await.unwrap();
        for seed in [
            "INSERT INTO m2m_replay_cache (key, expires) \
             SELECT md5(i::text), 1000 + i / 1000 FROM generate_series(1, 50000) AS i",
            "INSERT INTO m2m_revoked_tokens (jti, expires) \
             SELECT md5(i::text), 1000 + i / 1000 FROM generate_series(1, 50000) AS i",
            // (Without the change triggers: 50,000 announcements otherwise.)
            "ALTER TABLE m2m_service_accounts DISABLE TRIGGER USER",
            "INSERT INTO m2m_service_accounts (id, uuid, username, name, external_issuer, \
                 external_subject, expires) \
             SELECT 'jwt:' || i, gen_random_uuid(), 'u' || i, 'n', 'iss', 's' || i, \
                 to_timestamp(1000 + i / 1000) FROM generate_series(1, 50000) AS i",
            "ALTER TABLE m2m_service_accounts ENABLE TRIGGER USER",
            "ANALYZE m2m_replay_cache, m2m_revoked_tokens, m2m_service_accounts",
        ] {
            store.pool().execute(seed).await.unwrap();
        }
        let purges = [(&PURGE_REPLAY_REST, vec![Int(Some(1001)), Text("")])]
            .into_iter()
            .chain(PURGE.iter().map(|sql| (sql, vec![Int(Some(1001))])));
        for (statement, params) in purges {
            assert_no_sequential_scan(&pool, statement, &params).await;
        }
        drop_schema(admin, pool, schema).await;
    }

    #[tokio::test]
    async fn migrations_apply_over_a_database_that_ran_only_the_first() {
        let (admin, pool, schema) = fresh_schema("m2m_upgrade", &[]).await;
        upgrades_a_database_that_ran_only_the_first_migration(pool.clone()).await;
        drop_schema(admin, pool, schema).await;
    }

    /// Every lookup, update and delete can be answered through an index
    /// (sequential scans disabled, so an index is used whenever one exists).
    /// The store lives in its own schema, chosen with `search_path`.
    #[tokio::test]
    async fn no_statement_scans_a_table() {
        let (admin, pool, schema) = fresh_schema("m2m_plan", &[("enable_seqscan", "off")]).await;
        let store = SqlStore::<Postgres>::from_pool(pool.clone()).await.unwrap();
        for (statement, params) in INDEXED {
            assert_no_sequential_scan(store.pool(), statement, params).await;
        }
        drop_schema(admin, pool, schema).await;
    }
}
