//! One SQL store for SQLite and PostgreSQL: [`SqlStore`], generic over the
//! sqlx database, whose [`SqlDialect`] gives the SQL text of each statement
//! and the migrations. The control flow is written once (`credentials.rs`,
//! `admin.rs`); the texts of both dialects stand side by side in
//! `statements.rs`; `driver.rs` states once what the store needs of sqlx.
//! Whatever the store learns next (a cache in front of the lookups, group
//! commit of the replay-cache writes) goes into [`SqlStore`] or `Statement`,
//! once for both dialects. Writes on the request path are group-committed
//! by one writer task per store (`batch.rs`).

mod admin;
mod batch;
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

use std::sync::Arc;

use sqlx::migrate::{Migrate, Migration, MigrationType, Migrator};
use sqlx::{Database, IntoArguments, Pool, SqlSafeStr};

use self::driver::{Columns, Params, RowsAffected, Run, Statement};
use self::statements::{ACCOUNT_ID_BY_USERNAME, Sql};
use self::values::{MIGRATIONS_TABLE, is_jwt_id};
use super::{AdminError, ServiceAccount, StoreError};

/// Makes the sqlx database `$db` a [`SqlDialect`] that runs the `$dialect`
/// text of each statement, applies the migrations in
/// `migrations/$dialect/` (embedded) and reads the rows its `$result`s
/// changed.
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
            ];
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
/// input-JWT accounts) are group-committed: clones share one writer task,
/// which commits the writes arriving together in one transaction and
/// answers each only once it is committed; if the commit fails, every write
/// of the batch fails with [`StoreError`].
#[derive(Debug)]
pub struct SqlStore<D: SqlDialect> {
    pool: Pool<D>,
    writer: Arc<batch::Writer<D>>,
}

impl<D: SqlDialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            writer: Arc::clone(&self.writer),
        }
    }
}

impl<D: SqlDialect> SqlStore<D> {
    /// Uses a pool configured by the caller (size, timeouts, connection
    /// options), and applies pending migrations (PostgreSQL: under an
    /// advisory lock, so instances may start together). Give it a short
    /// `acquire_timeout` so that requests fail fast while the database is
    /// down.
    pub async fn from_pool(pool: Pool<D>) -> Result<Self, StoreError> {
        migrator::<D>()
            .run(&pool)
            .await
            .map_err(values::store_error)?;
        Ok(Self {
            writer: Arc::new(batch::Writer::new(pool.clone())),
            pool,
        })
    }

    /// The connection pool (to close it, or for the caller's own queries).
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
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
            ]
        );
        #[cfg(feature = "postgres")]
        assert_eq!(
            checksums::<sqlx::Postgres>(),
            [
                (1, "5224e2cde2a2a1bacdd65c9156b62a8b91a77f1f67632eb0f402e67baaee492b385873ed2efb43c665c332373f8746a8".to_owned()),
                (2, "d251f3bdbf4f02ad0cf153e98818221e18378907795b3a1c70646d6f063599b9ae84223f0f848c65347c0dc94701dbcb".to_owned()),
                (3, "47cb04797ef628777bf9e460bda7c85264f3f7efa008d47035a79e85708512386aceb4c0f4796fa07ee959ffb6bf9787".to_owned()),
            ]
        );
    }
}
