//! One SQL store for SQLite and PostgreSQL: [`SqlStore`], generic over the
//! sqlx database, whose [`SqlDialect`] gives the SQL text of each statement
//! and the migrations. The control flow is written once (`credentials.rs`,
//! `admin.rs`); the texts of both dialects stand side by side in
//! `statements.rs`; `driver.rs` states once what the store needs of sqlx.
//! The read cache in front of the credential lookups (`cache.rs`) and how
//! it learns of changes (`changes.rs`) are written once too, as is the
//! group commit of the writes on the request path: one writer per store
//! (`batch/`; a thread for an SQLite file, a task otherwise).

mod admin;
mod batch;
mod cache;
mod changes;
mod credentials;
mod driver;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod statements;
mod values;

#[cfg(feature = "postgres")]
pub use postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use std::future::Future;
use std::sync::Arc;

use sqlx::migrate::{Migrate, Migration, MigrationType, Migrator};
use sqlx::{Database, IntoArguments, Pool, SqlSafeStr};

use self::cache::Reads;
use self::changes::Changes;
use self::driver::{Columns, Params, RowsAffected, Run, Statement};
use self::statements::{ACCOUNT_ID_BY_USERNAME, CHANGE_COUNTER, Sql};
use self::values::{MIGRATIONS_TABLE, is_jwt_id};
use super::{AdminError, ServiceAccount, StoreError};

/// Makes the sqlx database `$db` a [`SqlDialect`] that runs the `$dialect`
/// text of each statement, applies the migrations in
/// `migrations/$dialect/` (embedded), reads the rows its `$result`s
/// changed and learns of credential changes with `changes::$dialect`.
macro_rules! dialect {
    ($db:ty, $dialect:ident, $result:ty) => {
        impl $crate::store::sql::sealed::Sealed for $db {}

        impl $crate::store::sql::SqlDialect for $db {
            fn text(sql: &$crate::store::sql::statements::Sql) -> &'static str {
                sql.$dialect
            }

            const MIGRATIONS: &'static [(i64, &'static str, &'static str)] = &[
                (
                    1,
                    "init",
                    include_str!(concat!(
                        "../../../migrations/",
                        stringify!($dialect),
                        "/0001_init.sql"
                    )),
                ),
                (
                    2,
                    "external accounts",
                    include_str!(concat!(
                        "../../../migrations/",
                        stringify!($dialect),
                        "/0002_external_accounts.sql"
                    )),
                ),
                (
                    3,
                    "bindings",
                    include_str!(concat!(
                        "../../../migrations/",
                        stringify!($dialect),
                        "/0003_bindings.sql"
                    )),
                ),
                (
                    4,
                    "changes",
                    include_str!(concat!(
                        "../../../migrations/",
                        stringify!($dialect),
                        "/0004_changes.sql"
                    )),
                ),
                (
                    5,
                    "replay cache purge",
                    include_str!(concat!(
                        "../../../migrations/",
                        stringify!($dialect),
                        "/0005_replay_cache_purge.sql"
                    )),
                ),
                (
                    6,
                    "listeners",
                    include_str!(concat!(
                        "../../../migrations/",
                        stringify!($dialect),
                        "/0006_listeners.sql"
                    )),
                ),
            ];

            async fn changes(pool: &sqlx::Pool<Self>) -> $crate::store::sql::changes::Changes {
                $crate::store::sql::changes::$dialect(pool).await
            }

            async fn writer(pool: &sqlx::Pool<Self>) -> $crate::store::sql::batch::Writer<Self> {
                $crate::store::sql::batch::$dialect(pool).await
            }
        }

        impl $crate::store::sql::driver::RowsAffected for $result {
            fn rows_affected(&self) -> u64 {
                self.rows_affected()
            }
        }
    };
}
use dialect;

mod sealed {
    /// Only this crate's dialects.
    pub trait Sealed {}
}

/// A database [`SqlStore`] runs on: `sqlx::Sqlite` (feature `sqlite`) or
/// `sqlx::Postgres` (feature `postgres`). Sealed: the SQL text of each
/// statement is written for these two.
pub trait SqlDialect:
    Database<
        Arguments: Params + IntoArguments<Self>,
        Row: Columns,
        QueryResult: RowsAffected,
        Connection: Run<Self> + Migrate,
    > + sealed::Sealed
{
    /// This dialect's text of `sql`.
    #[doc(hidden)]
    fn text(sql: &Sql) -> &'static str;

    /// The crate's migrations for this dialect: `(version, description, SQL)`.
    #[doc(hidden)]
    const MIGRATIONS: &'static [(i64, &'static str, &'static str)];

    /// How a store on `pool` learns that credentials changed.
    #[doc(hidden)]
    fn changes(pool: &Pool<Self>) -> impl Future<Output = Changes> + Send;

    /// The group-commit writer of a store on `pool`.
    #[doc(hidden)]
    fn writer(pool: &Pool<Self>) -> impl Future<Output = batch::Writer<Self>> + Send;
}

/// Service accounts, app-password digests, bindings, the replay cache and
/// the revocation list in an SQL database: [`SqliteStore`] (feature
/// `sqlite`) or [`PgStore`] (feature `postgres`), one store written once for
/// both.
///
/// Tokens are stored only as SHA-256 digests, and every lookup is by index.
/// Migrations are embedded and recorded in the table
/// `_tower_m2m_auth_migrations`. Clones share one connection pool.
///
/// Writes on the request path (replay-cache first uses, revocations,
/// input-JWT accounts) are group-committed: clones share one writer (for
/// an SQLite file a thread with its own connection, otherwise a task),
/// which commits the writes arriving together in one transaction and
/// answers each only once it is committed; if the commit fails, every write
/// of the batch fails with [`StoreError`].
///
/// # Read cache
///
/// The credential lookups (`app_password`, `binding`, `account`, and the
/// account of an input JWT) are answered from memory while the store's
/// credentials are unchanged, found and not found alike (keyed by the
/// digest, never the token; at most 10,000 entries per kind). Every change
/// to an account, app password or binding, by any instance, process or
/// hand-written SQL, bumps a counter (triggers of migration 0004); an
/// answer is served only under the counter value it was read under:
///
/// - SQLite reads the counter on every lookup (a few µs, on a connection of
///   its own; once per request at the token endpoint, whose lookups for one
///   request see the credentials as of the first), so the very next lookup
///   after any committed change reads the database. An in-memory database
///   is not cached.
/// - PostgreSQL announces each change (`LISTEN`/`NOTIFY` on `m2m_changes`);
///   each store listens on a connection of its own. While it is not
///   listening (startup, connection lost, reconnecting) every lookup reads
///   the database. A change is seen by an instance as soon as its
///   announcement arrives, right after the commit. A listener that goes
///   silent without its connection closing (a network partition) counts as
///   not listening once it heard none of the heartbeats each store sends
///   every second for 3 s. This store's admin methods return only once
///   every listening instance has acted on their change: each listener
///   keeps a row in `m2m_listeners` (migration 0006) with what it heard,
///   and a silent one is waited for until its row is 5 s unrenewed, by
///   when it no longer serves from its cache.
#[derive(Debug)]
pub struct SqlStore<D: SqlDialect> {
    pool: Pool<D>,
    writer: Arc<batch::Writer<D>>,
    reads: Arc<Reads>,
}

impl<D: SqlDialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            writer: Arc::clone(&self.writer),
            reads: Arc::clone(&self.reads),
        }
    }
}

impl<D: SqlDialect> SqlStore<D> {
    /// Uses a pool configured by the caller (size, timeouts, connection
    /// options), and applies pending migrations (PostgreSQL: under an
    /// advisory lock, so instances may start together). Give it a short
    /// `acquire_timeout` so that requests fail fast while the database is
    /// down. Then opens what the read cache needs (see [`SqlStore`]): for
    /// SQLite a connection of its own to the same file; for PostgreSQL a
    /// listener task on a connection of its own (outside the pool), whose
    /// first attempt to listen it waits for (at most 3 s).
    pub async fn from_pool(pool: Pool<D>) -> Result<Self, StoreError> {
        migrator::<D>()
            .run(&pool)
            .await
            .map_err(values::store_error)?;
        let reads = Arc::new(Reads::new(D::changes(&pool).await));
        Ok(Self {
            writer: Arc::new(D::writer(&pool).await),
            pool,
            reads,
        })
    }

    /// Whether credential lookups are served from the read cache now: false
    /// for an SQLite database in memory, and for PostgreSQL while the store
    /// is not listening for changes (every lookup reads the database then).
    pub fn read_cache_active(&self) -> bool {
        matches!(self.reads.changes.generation(), Ok(Some(_)))
    }

    /// The connection pool (to close it, or for the caller's own queries).
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    /// After a write that changed `rows`: returns once every listening
    /// instance has acted on the change (PostgreSQL; at once for SQLite,
    /// whose instances read the counter themselves, and when nothing
    /// changed).
    async fn settled(&self, rows: u64) {
        if rows == 0 || !self.reads.changes.announces() {
            return;
        }
        let value = Statement::<D>::new(&CHANGE_COUNTER)
            .fetch_optional(&self.pool)
            .await
            .and_then(|row| row.map(|row| row.optional_int(0)).transpose());
        match value {
            Ok(Some(Some(value))) => self.reads.changes.heard(value).await,
            Ok(_) => tracing::warn!("the change counter has no row"),
            Err(error) => tracing::warn!(%error, "could not read the change counter"),
        }
    }

    /// The stored account that `sql` finds by `key` (its id or username).
    async fn account_by(&self, sql: &Sql, key: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let row = Statement::<D>::new(sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| row.account()).transpose()
    }

    /// The id of the account `username`, if there is one.
    async fn account_id(&self, username: &str) -> Result<Option<String>, StoreError> {
        let row = Statement::<D>::new(&ACCOUNT_ID_BY_USERNAME)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| row.text(0)).transpose()
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

/// The migrator of dialect `D`, recording in the crate's own table.
fn migrator<D: SqlDialect>() -> Migrator {
    let migrations = D::MIGRATIONS
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

#[cfg(test)]
pub(super) mod tests {
    use super::statements::Sql;
    use super::*;
    use crate::store::{AccountAdmin, CredentialStore, ExternalAccount};

    /// A database that ran only 0001 is brought up to date, its accounts
    /// kept, and then records input-JWT accounts. `pool` holds one
    /// connection to an empty database.
    pub(in crate::store::sql) async fn upgrades_a_database_that_ran_only_the_first_migration<
        D: SqlDialect,
    >(
        pool: Pool<D>,
    ) {
        let mut first =
            Migrator::with_migrations(vec![migrator::<D>().iter().next().unwrap().clone()]);
        first.dangerous_set_table_name(MIGRATIONS_TABLE);
        first.run(&pool).await.unwrap();
        let old = Sql::both(
            "INSERT INTO m2m_service_accounts (id, uuid, username, name, active) \
             VALUES ('old', '00000000-0000-0000-0000-000000000001', 'svc-old', 'Old', $1)",
        );
        Statement::<D>::new(&old)
            .bind(true)
            .execute(&pool)
            .await
            .unwrap();
        let store = SqlStore::from_pool(pool).await.unwrap();
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

    /// Each migration's version and SHA-384 checksum (hex) as the store
    /// presents them to sqlx, which refuses a database that recorded others.
    fn checksums<D: SqlDialect>() -> Vec<(i64, String)> {
        migrator::<D>()
            .iter()
            .map(|migration| {
                let hex = migration.checksum.iter().map(|b| format!("{b:02x}"));
                (migration.version, hex.collect())
            })
            .collect()
    }

    /// The databases that earlier versions created open: the migrations
    /// are the same files, with the checksums those versions recorded.
    #[test]
    fn existing_databases_keep_their_migration_checksums() {
        #[cfg(feature = "sqlite")]
        assert_eq!(
            checksums::<sqlx::Sqlite>(),
            [
                (1, "b4da274fe55401f737ed934d73d87c952d0152468202474b147ba8d7d8573d125a45125095d1d3e869c549e786ee5574".to_owned()),
                (2, "fd85c7a1237cb7a8e98c7ede39bcbc55ba025ab0248667e0831ecd8060e4c1741eac048a5ad470a12bfd899701dd10df".to_owned()),
                (3, "654f714f06638885a85a9d036cb31574a9df6e9b03b8a9a0e2d5aa5ad72e89a11dba29ca5aec92e57b1621f3d5de55ad".to_owned()),
                (4, "2a0ecf7650b429ddc1cc3e6fd9101bf77f1fb4da82b9a008d696b6169230df637c135e85473b0765a2953eb08e6e387e".to_owned()),
                (5, "eeb9e91477ebfe12c8c2a431f11c761ef22d19300dd73b9219cee7747923b73714e26f92d2599b82500c3f8b9e808779".to_owned()),
                (6, "ede97ea0a44afb9465829908eaf057a4587a30fd874de1e70246269217e9d2d995fc9fd71bffa2667b5202ff7d00fbab".to_owned()),
            ]
        );
        #[cfg(feature = "postgres")]
        assert_eq!(
            checksums::<sqlx::Postgres>(),
            [
                (1, "5224e2cde2a2a1bacdd65c9156b62a8b91a77f1f67632eb0f402e67baaee492b385873ed2efb43c665c332373f8746a8".to_owned()),
                (2, "d251f3bdbf4f02ad0cf153e98818221e18378907795b3a1c70646d6f063599b9ae84223f0f848c65347c0dc94701dbcb".to_owned()),
                (3, "47cb04797ef628777bf9e460bda7c85264f3f7efa008d47035a79e85708512386aceb4c0f4796fa07ee959ffb6bf9787".to_owned()),
                (4, "9d1a636206ff093e36feab74629b6a3bdd94ef542c51a900536816d5d92ae174a90b576abf2d9d8fac9dbf03b16b528f".to_owned()),
                (5, "c79b210c623a5ba813fb610c202deb178f2370a503480c3955a7cae256af73f2c38bec36c2885f97cff93daebede602c".to_owned()),
                (6, "1283a2a07b579dd6902dc9c024dff7b20b586f3cf92970cbcf59eef037a7fad835ebd7d57f10391dfa558981185c7125".to_owned()),
            ]
        );
    }
}
