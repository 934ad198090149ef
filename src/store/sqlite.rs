//! A credential store, replay cache and revocation list in one SQLite file.

use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::sql::{
    ACQUIRE_TIMEOUT, AccountRow, CredentialRow, MIGRATIONS_TABLE, PurgeTicker, account_from_row,
    from_unix_micros, now_unix, store_error, unix_micros, unix_seconds,
};
use super::{
    AccountAdmin, AccountCredential, AdminError, AppPassword, CredentialStore, ExternalAccount,
    ReplayCache, RevocationList, ServiceAccount, StoreError, TokenDigest,
};

/// Service accounts, app-password digests, the replay cache and the
/// revocation list in an SQLite database: the embedded default (feature
/// `sqlite`, with a bundled libsqlite3).
///
/// [`connect`](Self::connect) creates the file if needed and applies the
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
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    purge: Arc<PurgeTicker>,
}

impl SqliteStore {
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

    /// Uses a pool configured by the caller, and applies pending migrations.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        migrator().run(&pool).await.map_err(store_error)?;
        Ok(Self {
            pool,
            purge: Arc::default(),
        })
    }

    /// The connection pool (to close it, or for the caller's own queries).
    pub fn pool(&self) -> &SqlitePool {
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
}

/// The account `username` with its app password `digest`, in one indexed
/// statement: the digest's primary key, then the owner by its primary key,
/// kept only if its username is the one asked for.
const APP_PASSWORD: &str = "SELECT a.id, a.uuid, a.username, a.name, a.active, a.expires, p.expires \
    FROM m2m_app_passwords AS p \
    JOIN m2m_service_accounts AS a ON a.id = p.account_id \
    WHERE p.digest = ?1 AND a.username = ?2";

/// A new app password for the account `username` (none if there is no such
/// account).
const ADD_APP_PASSWORD: &str = "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
    SELECT ?1, id, ?2, ?3 FROM m2m_service_accounts WHERE username = ?4";

const ACCOUNT_BY_USERNAME: &str = "SELECT id, uuid, username, name, active, expires \
    FROM m2m_service_accounts WHERE username = ?1";

const ACCOUNT_ID_BY_USERNAME: &str = "SELECT id FROM m2m_service_accounts WHERE username = ?1";

const OWNER_OF_APP_PASSWORD: &str = "SELECT account_id FROM m2m_app_passwords WHERE digest = ?1";

const DELETE_APP_PASSWORD: &str = "DELETE FROM m2m_app_passwords WHERE digest = ?1";

const SET_ACTIVE: &str = "UPDATE m2m_service_accounts SET active = ?1 WHERE username = ?2";

const IS_REVOKED: &str =
    "SELECT EXISTS (SELECT 1 FROM m2m_revoked_tokens WHERE jti = ?1 AND expires >= ?2)";

/// The account of an input-JWT identity, by its primary key.
const EXTERNAL_ACCOUNT: &str = "SELECT id, uuid, username, name, active, expires \
    FROM m2m_service_accounts WHERE id = ?1";

/// Moves the expiry of an input-JWT account forward (to never if `?2` is
/// NULL); an account that never expires is left so.
const EXTEND_EXTERNAL_ACCOUNT: &str = "UPDATE m2m_service_accounts SET expires = ?2 \
    WHERE id = ?1 AND expires IS NOT NULL AND (?2 IS NULL OR expires < ?2)";

/// Records an input-JWT account, unless its id, uuid or username is taken.
const INSERT_EXTERNAL_ACCOUNT: &str = "INSERT INTO m2m_service_accounts \
    (id, uuid, username, name, active, external_issuer, external_subject, expires) \
    VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7) ON CONFLICT DO NOTHING";

/// Deletes expired replay-cache and revocation rows, and expired input-JWT
/// accounts that are still active (a disabled one stays disabled).
const PURGE: [&str; 3] = [
    "DELETE FROM m2m_replay_cache WHERE expires < ?1",
    "DELETE FROM m2m_revoked_tokens WHERE expires < ?1",
    "DELETE FROM m2m_service_accounts WHERE expires < ?1 * 1000000 AND active = 1",
];

fn migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "external accounts".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0002_external_accounts.sql").into_sql_str(),
            false,
        ),
    ]);
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

impl CredentialStore for SqliteStore {
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
        let Some((id, uuid, username, name, active, account_expires, expires)) = row else {
            return Ok(None);
        };
        let account = account_from_row((id, uuid, username, name, active, account_expires))?;
        let mut password = AppPassword::new(&account.id, *digest);
        password.expires = expires.map(from_unix_micros);
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
        for username in [account.username.clone(), account.disambiguated_username()] {
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
}

impl AccountAdmin for SqliteStore {
    async fn create_service_account(
        &self,
        account: ServiceAccount,
        expires: Option<SystemTime>,
    ) -> Result<(ServiceAccount, SecretString), AdminError> {
        let (token, password) = AppPassword::generate(&account.id);
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let inserted = sqlx::query(
            "INSERT INTO m2m_service_accounts (id, uuid, username, name, active) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&account.id)
        .bind(account.uuid.to_string())
        .bind(&account.username)
        .bind(&account.name)
        .bind(account.active)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        if inserted.rows_affected() == 0 {
            return Err(AdminError::AccountExists(account.username));
        }
        sqlx::query(
            "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(password.digest.as_bytes().as_slice())
        .bind(&account.id)
        .bind(expires.map(unix_micros))
        .bind(unix_micros(SystemTime::now()))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok((account, token))
    }

    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>, StoreError> {
        let rows: Vec<AccountRow> = sqlx::query_as(
            "SELECT id, uuid, username, name, active, expires FROM m2m_service_accounts \
             ORDER BY username",
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
            .bind(unix_micros(SystemTime::now()))
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        if inserted.rows_affected() == 0 {
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
        // Inserted unless the username is taken; then whichever is stored.
        sqlx::query(
            "INSERT INTO m2m_service_accounts (id, uuid, username, name, active) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&account.id)
        .bind(account.uuid.to_string())
        .bind(&account.username)
        .bind(&account.name)
        .bind(account.active)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        let row: AccountRow = sqlx::query_as(ACCOUNT_BY_USERNAME)
            .bind(&account.username)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(account_from_row(row)?)
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
        let Some(account_id) = account_id else {
            return Err(AdminError::NoSuchAccount(username.to_owned()));
        };
        let inserted = sqlx::query(
            "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(password.digest.as_bytes().as_slice())
        .bind(&account_id)
        .bind(password.expires.map(unix_micros))
        .bind(unix_micros(SystemTime::now()))
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
}

impl ReplayCache for SqliteStore {
    /// One statement: inserts the key, or takes over an expired row; a live
    /// row is left alone and the use is refused. Atomic across processes.
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, StoreError> {
        let now = now_unix();
        if self.purge.due() {
            self.purge_expired(now).await;
        }
        let recorded = sqlx::query(
            "INSERT INTO m2m_replay_cache (key, expires) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET expires = excluded.expires \
             WHERE m2m_replay_cache.expires < ?3",
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

impl RevocationList for SqliteStore {
    /// Revoking again keeps the later expiry.
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        let now = now_unix();
        if self.purge.due() {
            self.purge_expired(now).await;
        }
        sqlx::query(
            "INSERT INTO m2m_revoked_tokens (jti, expires) VALUES (?1, ?2) \
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
    use super::*;

    /// A database that ran only 0001 is brought up to date, its accounts
    /// kept, and then records input-JWT accounts.
    #[tokio::test]
    async fn migrations_apply_over_a_database_that_ran_only_the_first() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let mut first = Migrator::with_migrations(vec![migrator().iter().next().unwrap().clone()]);
        first.dangerous_set_table_name(MIGRATIONS_TABLE);
        first.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO m2m_service_accounts (id, uuid, username, name, active) \
             VALUES ('old', '00000000-0000-0000-0000-000000000001', 'svc-old', 'Old', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let store = SqliteStore::from_pool(pool).await.unwrap();
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
    }

    /// Every lookup, update and delete is answered through an index.
    #[tokio::test]
    async fn no_statement_scans_a_table() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        for sql in [
            APP_PASSWORD,
            ADD_APP_PASSWORD,
            DELETE_APP_PASSWORD,
            ACCOUNT_BY_USERNAME,
            ACCOUNT_ID_BY_USERNAME,
            OWNER_OF_APP_PASSWORD,
            SET_ACTIVE,
            IS_REVOKED,
            PURGE[0],
            PURGE[1],
            PURGE[2],
            EXTERNAL_ACCOUNT,
            EXTEND_EXTERNAL_ACCOUNT,
        ] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(store.pool())
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
