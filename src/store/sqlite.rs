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
    credential_from_row, is_jwt_id, join_scopes, now_unix, refused_account, split_scopes,
    store_error, unix_micros, unix_seconds,
};
use super::{
    AccountAdmin, AccountCredential, AdminError, AppPassword, Binding, CredentialStore,
    ExternalAccount, ReplayCache, RevocationList, ServiceAccount, StoreError, TokenDigest,
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
const APP_PASSWORD: &str = "SELECT a.id, a.uuid, a.username, a.name, a.active, a.expires, \
    a.external_issuer, a.external_subject, p.expires \
    FROM m2m_app_passwords AS p \
    JOIN m2m_service_accounts AS a ON a.id = p.account_id \
    WHERE p.digest = ?1 AND a.username = ?2";

/// A new app password for the service account `username` (none if there is
/// no such account, or it is an input-JWT identity).
const ADD_APP_PASSWORD: &str = "INSERT INTO m2m_app_passwords (digest, account_id, expires, created) \
    SELECT ?1, id, ?2, ?3 FROM m2m_service_accounts \
    WHERE username = ?4 AND substr(id, 1, 4) <> 'jwt:'";

const ACCOUNT_BY_USERNAME: &str = "SELECT id, uuid, username, name, active, expires, \
    external_issuer, external_subject FROM m2m_service_accounts WHERE username = ?1";

/// A service account, unless any of its unique columns is taken.
const INSERT_ACCOUNT: &str = "INSERT INTO m2m_service_accounts (id, uuid, username, name, active) \
    VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";

/// The scopes of one binding, by its primary key.
const BINDING: &str = "SELECT scopes FROM m2m_bindings WHERE account_id = ?1 AND client_id = ?2";

/// Binds, or replaces the scopes of an existing binding.
const BIND: &str = "INSERT INTO m2m_bindings (account_id, client_id, scopes) VALUES (?1, ?2, ?3) \
    ON CONFLICT (account_id, client_id) DO UPDATE SET scopes = excluded.scopes";

const UNBIND: &str = "DELETE FROM m2m_bindings WHERE account_id = ?1 AND client_id = ?2";

/// An account's bindings, through the primary key's prefix (byte order).
const LIST_BINDINGS: &str =
    "SELECT client_id, scopes FROM m2m_bindings WHERE account_id = ?1 ORDER BY client_id";

const ACCOUNT_ID_BY_USERNAME: &str = "SELECT id FROM m2m_service_accounts WHERE username = ?1";

const OWNER_OF_APP_PASSWORD: &str = "SELECT account_id FROM m2m_app_passwords WHERE digest = ?1";

const DELETE_APP_PASSWORD: &str = "DELETE FROM m2m_app_passwords WHERE digest = ?1";

const SET_ACTIVE: &str = "UPDATE m2m_service_accounts SET active = ?1 WHERE username = ?2";

const IS_REVOKED: &str =
    "SELECT EXISTS (SELECT 1 FROM m2m_revoked_tokens WHERE jti = ?1 AND expires >= ?2)";

/// The account of an input-JWT identity, by its primary key.
const EXTERNAL_ACCOUNT: &str = "SELECT id, uuid, username, name, active, expires, \
    external_issuer, external_subject FROM m2m_service_accounts WHERE id = ?1";

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
        Migration::new(
            3,
            "bindings".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0003_bindings.sql").into_sql_str(),
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

impl AccountAdmin for SqliteStore {
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
        let account = ServiceAccount {
            expires: None,
            external_issuer: None,
            external_subject: None,
            ..account
        };
        Ok((account, token))
    }

    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>, StoreError> {
        let rows: Vec<AccountRow> = sqlx::query_as(
            "SELECT id, uuid, username, name, active, expires, external_issuer, \
             external_subject FROM m2m_service_accounts ORDER BY username",
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
            BINDING,
            // (BIND, an INSERT of VALUES, has no plan: its conflict check is
            // the primary key.)
            UNBIND,
            LIST_BINDINGS,
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
