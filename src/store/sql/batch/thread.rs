//! The writer of an SQLite file as a dedicated thread (`m2m-sqlite-writer`)
//! with a rusqlite connection of its own to the file, configured like the
//! pool's (see `second_connection`). It waits for a first write, takes what
//! else is queued without waiting (at most [`MAX_BATCH`]), runs the batch
//! with the statements the task writer runs and commits it, then answers.
//! It holds no clone of the store and needs no tokio runtime: it ends once
//! the last clone of the store (the queue's last sender) is gone.

use std::sync::Arc;
use std::time::Instant;

use rusqlite::types::{ToSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{CachedStatement, Connection, TransactionBehavior};
use tokio::sync::mpsc;

use super::task::Purges;
use super::{Batch, Counts, Job, MAX_BATCH, QUEUE, Queue, ReplayPurge, SqlWrite, Writer};
use crate::store::sql::sqlite::second_connection;
use crate::store::sql::statements::{FIRST_USES, PURGE};
use crate::store::sql::values::{Param, now_unix, store_error};

/// The name of the writer thread.
const NAME: &str = "m2m-sqlite-writer";

/// The writer of an SQLite store: a thread on the pool's file; a task on
/// the pool for a database in memory (or if the file cannot be opened
/// again, or no thread started).
pub(crate) async fn sqlite(pool: &sqlx::SqlitePool) -> Writer<sqlx::Sqlite> {
    const FALLBACK: &str = "group commit on a task";
    let Some(connection) = second_connection(pool, FALLBACK).await else {
        return Writer::task(pool, Purges::Inline);
    };
    let (sender, receiver) = mpsc::channel(QUEUE);
    let counts = Arc::<Counts>::default();
    let thread_counts = Arc::clone(&counts);
    let started = std::thread::Builder::new()
        .name(NAME.to_owned())
        .spawn(move || run(connection, receiver, &thread_counts));
    match started {
        Ok(_) => Writer {
            queue: Queue::Thread(sender),
            counts,
        },
        Err(error) => {
            tracing::warn!(%error, "{FALLBACK}: could not start a writer thread");
            Writer::task(pool, Purges::Inline)
        }
    }
}

/// The writer thread: batch after batch until every sender is gone.
fn run(mut connection: Connection, mut queue: mpsc::Receiver<Job>, counts: &Counts) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut replay = ReplayPurge::default();
    while let Some(job) = queue.blocking_recv() {
        jobs.push(job);
        drop(counts.hold.lock());
        while jobs.len() < MAX_BATCH
            && let Ok(job) = queue.try_recv()
        {
            jobs.push(job);
        }
        let batch = Batch::new(&mut jobs, counts);
        if batch.purge {
            purge(&connection, &mut replay);
        }
        let started = Instant::now();
        let committed = commit(&mut connection, &batch).map_err(store_error);
        batch.answer(committed, started, counts);
    }
}

/// Runs `batch` and commits it, as the task writer does: the first uses as
/// one statement, then the other statements; one transaction, or none if
/// the first uses are all there is. The keys recorded and each statement's
/// rows changed.
fn commit(
    connection: &mut Connection,
    batch: &Batch,
) -> Result<(Vec<String>, Vec<u64>), rusqlite::Error> {
    if batch.statements.is_empty() {
        // One statement: atomic, and committed on its own.
        return Ok((record(connection, batch)?, Vec::new()));
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let recorded = record(&transaction, batch)?;
    let mut rows = Vec::with_capacity(batch.statements.len());
    for write in &batch.statements {
        let mut statement = prepare(&transaction, write.sql.sqlite, write.params())?;
        rows.push(statement.raw_execute()? as u64);
    }
    transaction.commit()?;
    Ok((recorded, rows))
}

/// Runs the batch's first uses (if any): the keys recorded. Every row is
/// read, so that a failure at the statement's end (its commit, outside a
/// transaction) is seen.
fn record(connection: &Connection, batch: &Batch) -> Result<Vec<String>, rusqlite::Error> {
    let Some(array) = &batch.first_uses else {
        return Ok(Vec::new());
    };
    let params = [Param::Text(array), Param::Int(Some(now_unix()))];
    let mut statement = prepare(connection, FIRST_USES.sqlite, params)?;
    let mut rows = statement.raw_query();
    let mut recorded = Vec::new();
    while let Some(row) = rows.next()? {
        recorded.push(row.get(0)?);
    }
    Ok(recorded)
}

/// Deletes expired rows (the replay cache's of its next chunk). A failed
/// purge is logged, not returned.
fn purge(connection: &Connection, replay: &mut ReplayPurge) {
    let now = now_unix();
    let run = |write: &SqlWrite| prepare(connection, write.sql.sqlite, write.params());
    let replay_chunk = run(&replay.chunk_end()).and_then(|mut statement| {
        let end = match statement.raw_query().next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        };
        run(&replay.delete(end, now))?.raw_execute()
    });
    let others = PURGE.iter().map(|sql| {
        prepare(connection, sql.sqlite, [Param::Int(Some(now))])
            .and_then(|mut statement| statement.raw_execute())
    });
    for purged in std::iter::once(replay_chunk).chain(others) {
        if let Err(error) = purged {
            tracing::warn!(%error, "could not purge expired rows");
        }
    }
}

/// `sql` (cached) with `params` bound to `$1`, `$2`, … by name, as sqlx
/// binds them (a statement may use `$2` before `$1`, or one twice).
fn prepare<'c, 'p>(
    connection: &'c Connection,
    sql: &str,
    params: impl IntoIterator<Item = Param<'p>>,
) -> Result<CachedStatement<'c>, rusqlite::Error> {
    let mut statement = connection.prepare_cached(sql)?;
    for (position, param) in params.into_iter().enumerate() {
        if let Some(index) = statement.parameter_index(&format!("${}", position + 1))? {
            statement.raw_bind_parameter(index, param)?;
        }
    }
    Ok(statement)
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Text(value) => ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes())),
            Param::Bytes(value) => ToSqlOutput::Borrowed(ValueRef::Blob(value)),
            Param::Int(Some(value)) => ToSqlOutput::Owned(Value::Integer(value)),
            Param::Int(None) => ToSqlOutput::Owned(Value::Null),
            Param::Flag(value) => ToSqlOutput::Owned(Value::Integer(value.into())),
        })
    }
}
