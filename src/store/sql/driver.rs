//! What the SQL store asks of an sqlx database, with sqlx's trait bounds
//! stated once: binding the store's parameters, reading its columns, running
//! a statement on a connection. Each is a blanket impl over every database
//! that can, so [`SqlDialect`](super::SqlDialect) names them as bounds and
//! the store's code stays generic without repeating a `where` clause.
//!
//! [`Statement`] puts them together: the SQL text of the dialect, its
//! parameters, and one call that runs it on a pool or a transaction.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use sqlx::error::BoxDynError;
use sqlx::query::Query;
use sqlx::{
    Arguments, ColumnIndex, Database, Decode, Encode, Executor, Pool, Row, Transaction, Type,
};
use uuid::Uuid;

use super::SqlDialect;
use super::statements::Sql;
use super::values::{Param, from_unix_micros, store_error};
use crate::store::{ServiceAccount, StoreError};

/// A boxed future, as sqlx's executors return.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Arguments that take every [`Param`].
pub trait Params: Arguments {
    /// Appends `param`.
    fn push(&mut self, param: Param<'_>) -> Result<(), BoxDynError>;
}

impl<A> Params for A
where
    A: Arguments,
    for<'t> &'t str: Encode<'t, A::Database> + Type<A::Database>,
    for<'t> &'t [u8]: Encode<'t, A::Database> + Type<A::Database>,
    for<'t> Option<i64>: Encode<'t, A::Database> + Type<A::Database>,
    for<'t> bool: Encode<'t, A::Database> + Type<A::Database>,
{
    fn push(&mut self, param: Param<'_>) -> Result<(), BoxDynError> {
        match param {
            Param::Text(value) => self.add(value),
            Param::Bytes(value) => self.add(value),
            Param::Int(value) => self.add(value),
            Param::Flag(value) => self.add(value),
        }
    }
}

/// Rows whose columns the store reads by position.
pub trait Columns: Row {
    /// A text column.
    fn text(&self, index: usize) -> Result<String, StoreError>;
    /// A text column that may be NULL.
    fn optional_text(&self, index: usize) -> Result<Option<String>, StoreError>;
    /// An integer column that may be NULL.
    fn optional_int(&self, index: usize) -> Result<Option<i64>, StoreError>;
    /// A boolean column.
    fn flag(&self, index: usize) -> Result<bool, StoreError>;

    /// The account in the first eight columns: id, uuid (text), username,
    /// name, active, expires (Unix microseconds), external issuer,
    /// external subject.
    fn account(&self) -> Result<ServiceAccount, StoreError> {
        let uuid = Uuid::parse_str(&self.text(1)?).map_err(store_error)?;
        Ok(ServiceAccount {
            id: self.text(0)?,
            uuid,
            username: self.text(2)?,
            name: self.text(3)?,
            active: self.flag(4)?,
            expires: self.optional_int(5)?.map(from_unix_micros),
            external_issuer: self.optional_text(6)?,
            external_subject: self.optional_text(7)?,
        })
    }

    /// An account followed by the expiry of one of its app passwords: the
    /// account, and that expiry.
    fn credential(&self) -> Result<(ServiceAccount, Option<SystemTime>), StoreError> {
        let expires = self.optional_int(8)?.map(from_unix_micros);
        Ok((self.account()?, expires))
    }
}

impl<R> Columns for R
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, index: usize) -> Result<String, StoreError> {
        self.try_get(index).map_err(store_error)
    }

    fn optional_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        self.try_get(index).map_err(store_error)
    }

    fn optional_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        self.try_get(index).map_err(store_error)
    }

    fn flag(&self, index: usize) -> Result<bool, StoreError> {
        self.try_get(index).map_err(store_error)
    }
}

/// The number of rows a statement changed.
pub trait RowsAffected {
    /// Rows inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

/// Connections that run the store's statements.
pub trait Run<DB: Database> {
    /// The connection as an sqlx executor.
    fn executor(&mut self) -> impl Executor<'_, Database = DB>;
}

impl<DB, C> Run<DB> for C
where
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
{
    fn executor(&mut self) -> impl Executor<'_, Database = DB> {
        self
    }
}

/// Where a statement runs: on a connection from the pool, or on the
/// connection of a transaction.
pub(crate) enum On<'a, D: Database> {
    /// A connection from the pool, for this statement.
    Pool(&'a Pool<D>),
    /// The transaction's connection.
    Connection(&'a mut D::Connection),
}

impl<'a, D: Database> From<&'a Pool<D>> for On<'a, D> {
    fn from(pool: &'a Pool<D>) -> Self {
        Self::Pool(pool)
    }
}

impl<'a, D: Database> From<&'a mut Transaction<'_, D>> for On<'a, D> {
    fn from(transaction: &'a mut Transaction<'_, D>) -> Self {
        Self::Connection(transaction)
    }
}

/// One of the store's statements in dialect `D`, with its parameters, run
/// on a pool (`&Pool<D>`) or in a transaction (`&mut Transaction<D>`).
/// Every failure is a [`StoreError`].
pub(crate) struct Statement<D: SqlDialect> {
    sql: &'static str,
    args: Result<D::Arguments, BoxDynError>,
}

impl<D: SqlDialect> Statement<D> {
    /// `sql` in dialect `D`, without parameters yet.
    pub(crate) fn new(sql: &Sql) -> Self {
        Self {
            sql: D::text(sql),
            args: Ok(D::Arguments::default()),
        }
    }

    /// Binds the next parameter (`$1`, `$2`, … in order).
    pub(crate) fn bind<'a>(mut self, param: impl Into<Param<'a>>) -> Self {
        if let Ok(args) = &mut self.args
            && let Err(error) = args.push(param.into())
        {
            self.args = Err(error);
        }
        self
    }

    /// Runs it for its effect; the number of rows it changed.
    pub(crate) async fn execute<'a>(self, on: impl Into<On<'a, D>>) -> Result<u64, StoreError> {
        let done = self
            .run(on.into(), |c, query| c.executor().execute(query))
            .await?;
        Ok(done.rows_affected())
    }

    /// Runs it for at most one row.
    pub(crate) async fn fetch_optional<'a>(
        self,
        on: impl Into<On<'a, D>>,
    ) -> Result<Option<D::Row>, StoreError> {
        self.run(on.into(), |c, query| c.executor().fetch_optional(query))
            .await
    }

    /// Runs it for all its rows.
    pub(crate) async fn fetch_all<'a>(
        self,
        on: impl Into<On<'a, D>>,
    ) -> Result<Vec<D::Row>, StoreError> {
        self.run(on.into(), |c, query| c.executor().fetch_all(query))
            .await
    }

    /// Runs `op` with this statement as an sqlx query, on a connection from
    /// the pool or on the transaction's.
    async fn run<R>(
        self,
        on: On<'_, D>,
        op: impl for<'c> FnOnce(
            &'c mut D::Connection,
            Query<'static, D, D::Arguments>,
        ) -> BoxFuture<'c, Result<R, sqlx::Error>>,
    ) -> Result<R, StoreError> {
        let query = sqlx::query_with(self.sql, self.args.map_err(StoreError)?);
        match on {
            On::Pool(pool) => {
                let mut connection = pool.acquire().await.map_err(store_error)?;
                op(&mut connection, query).await
            }
            On::Connection(connection) => op(connection, query).await,
        }
        .map_err(store_error)
    }
}
