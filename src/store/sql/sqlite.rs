//! The SQLite dialect: [`SqliteStore`], one file on one machine.

use std::str::FromStr;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

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
/// may share the file; for instances on several machines use `PgStore`
/// (feature `postgres`). Clones share one connection pool and one writer.
///
/// # Durability
///
/// Every connection is opened with these settings, set explicitly rather
/// than left to the defaults of the SQLite build:
///
/// - `journal_mode = WAL` (a file path): readers never wait for the writer
///   and the writer never waits for readers; other processes (the admin
///   commands) share the file. The mode is stored in the file.
/// - `synchronous = FULL`: each commit is synced to disk (the WAL file)
///   before it returns, so a write the store acknowledged, such as a used
///   `jti`, survives a crash of the process and a power loss. `NORMAL` is
///   not used: in WAL mode it syncs only at checkpoints, so a power loss
///   may undo the last commits, and a single-use assertion could then be
///   replayed. Writes on the request path are group-committed, one sync per
///   batch, which makes FULL's cost small.
/// - `busy_timeout` 3 s: a write that finds another process writing waits
///   for it, up to 3 s, and then fails with [`StoreError`] (503); within
///   one process, request-path writes go through one writer thread (its
///   own connection, with these settings) and do not contend.
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
    /// `sqlite::memory:` for tests). Both get `synchronous = FULL` and a
    /// 3 s busy timeout (see [Durability](SqliteStore#durability)). Requests
    /// wait at most 3 s for a connection before failing with [`StoreError`].
    pub async fn connect(path_or_url: &str) -> Result<Self, StoreError> {
        let options = if path_or_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(path_or_url).map_err(store_error)?
        } else {
            SqliteConnectOptions::new()
                .filename(path_or_url)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        };
        let options = options
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(ACQUIRE_TIMEOUT);
        // (No ping before handing out a pooled connection: a connection to a
        // local file does not go stale, and the ping is one more round trip to
        // sqlx's worker thread on every statement.)
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(store_error)?;
        Self::from_pool(pool).await
    }
}

/// A rusqlite connection of the store's own to the file `pool` has open
/// (on the libsqlite3 sqlx links), with the pool's per-connection settings:
/// `synchronous`, busy timeout, foreign keys (`journal_mode` is the
/// file's). `None` for a database in memory, which has no file to open,
/// and (logged, after `fallback`) if it cannot be opened.
pub(super) async fn second_connection(
    pool: &sqlx::SqlitePool,
    fallback: &str,
) -> Option<rusqlite::Connection> {
    use rusqlite::OpenFlags;

    let settings = async {
        let mut connection = pool.acquire().await?;
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(&mut *connection)
                .await?;
        let mut values = [0_i64; 3];
        for (value, pragma) in values.iter_mut().zip(PRAGMAS) {
            *value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
                .fetch_one(&mut *connection)
                .await?;
        }
        Ok::<_, sqlx::Error>((file, values))
    };
    let (file, values) = match settings.await {
        Ok((file, _)) if file.is_empty() => return None,
        Ok(settings) => settings,
        Err(error) => {
            tracing::warn!(%error, "{fallback}: could not name the SQLite file");
            return None;
        }
    };
    // Never creates a file: it is the one the pool has open.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let opened = rusqlite::Connection::open_with_flags(&file, flags).and_then(|connection| {
        for (value, pragma) in values.iter().zip(PRAGMAS) {
            connection.pragma_update(None, pragma, value)?;
        }
        Ok(connection)
    });
    opened
        .inspect_err(|error| tracing::warn!(%error, "{fallback}: could not open the SQLite file"))
        .ok()
}

/// The per-connection settings a second connection copies from the pool's.
const PRAGMAS: [&str; 3] = ["synchronous", "busy_timeout", "foreign_keys"];

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

    /// The durability settings the type's docs promise, on every connection.
    #[tokio::test]
    async fn durability_settings_are_explicit() {
        let path = std::env::temp_dir().join(format!("durability-{}.db", uuid::Uuid::new_v4()));
        let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
        let mut connection = store.pool().acquire().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        for (pragma, expected) in [("synchronous", 2 /* FULL */), ("busy_timeout", 3000)] {
            let value: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
                .fetch_one(&mut *connection)
                .await
                .unwrap();
            assert_eq!(value, expected, "{pragma}");
        }
        drop(connection);
        store.pool().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
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
