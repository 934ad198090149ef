//! The SQLite dialect: [`SqliteStore`], one file on one machine.

use std::str::FromStr;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult};

use super::values::{ACQUIRE_TIMEOUT, store_error};
use super::{SqlStore, dialect};
use crate::store::StoreError;

/// Service accounts, app-password digests, bindings, the replay cache and
/// the revocation list in an SQLite database: the embedded default (feature
/// `sqlite`, with a bundled libsqlite3). The [`SqlStore`] of `sqlx::Sqlite`.
///
/// [`connect`](SqlStore::connect) creates the file if needed and applies the
/// crate's migrations (`migrations/sqlite/`, embedded; recorded in the
/// table `_tower_m2m_auth_migrations`). Tokens are stored only as SHA-256
/// digests, and every lookup is by index. Several processes on one machine
/// may share the file (WAL mode); for instances on several machines use
/// `PgStore` (feature `postgres`). Clones share one connection pool.
///
/// ```
/// use tower_m2m_auth::store::{AccountAdmin, ServiceAccount, SqliteStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A file path in production ("/var/lib/my-issuer/auth.db"); here, memory.
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// let (account, token) = store
///     .create_service_account(ServiceAccount::new("ci-deployer"), None)
///     .await?;
/// // Hand `token` to the client once: only its digest was stored.
/// # let _ = (account, token);
/// # Ok(())
/// # }
/// ```
pub type SqliteStore = SqlStore<Sqlite>;

dialect!(Sqlite, sqlite, SqliteQueryResult);

impl SqlStore<Sqlite> {
    /// Opens the store and applies pending migrations.
    ///
    /// `path_or_url` is either a file path, created if missing and switched
    /// to WAL mode, or an sqlx SQLite URL used as given (`sqlite://auth.db?mode=rwc`,
    /// `sqlite::memory:` for tests). Requests wait at most 3 s for a
    /// connection before failing with [`StoreError`].
    pub async fn connect(path_or_url: &str) -> Result<Self, StoreError> {
        let options = if path_or_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(path_or_url).map_err(store_error)?
        } else {
            SqliteConnectOptions::new()
                .filename(path_or_url)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        };
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.busy_timeout(ACQUIRE_TIMEOUT))
            .await
            .map_err(store_error)?;
        Self::from_pool(pool).await
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePool;

    use super::super::statements::INDEXED;
    use super::super::tests::upgrades_a_database_that_ran_only_the_first_migration;
    use super::*;

    #[tokio::test]
    async fn migrations_apply_over_a_database_that_ran_only_the_first() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        upgrades_a_database_that_ran_only_the_first_migration(pool).await;
    }

    /// Every lookup, update and delete is answered through an index.
    #[tokio::test]
    async fn no_statement_scans_a_table() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let pool: &SqlitePool = store.pool();
        for (statement, _) in INDEXED {
            let sql = statement.sqlite;
            // (An INSERT of VALUES has no plan: its conflict check is the
            // primary key.)
            if sql.starts_with("INSERT") && sql.contains("VALUES") {
                continue;
            }
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(pool)
                    .await
                    .unwrap();
            assert!(!plan.is_empty(), "{sql}");
            for (.., detail) in plan {
                // (A SELECT without FROM "scans" its one constant row.)
                let scan = detail.starts_with("SCAN") && detail != "SCAN CONSTANT ROW";
                assert!(!scan, "{sql}: {detail}");
            }
        }
    }
}
