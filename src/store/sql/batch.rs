//! Group commit: the store's writes on the request path (replay-cache first
//! uses, revocations, input-JWT accounts) go to one writer task per store,
//! which takes everything queued (at most [`MAX_BATCH`]), runs it as one
//! transaction, commits once, and only then answers each write. A write is
//! acknowledged only after the commit that holds it; if that commit (or any
//! statement of its batch) fails, every write of the batch fails with
//! [`StoreError`], none is acknowledged.
//!
//! The first uses of a batch are one statement (`FIRST_USES`, the keys as a
//! JSON array) that returns the keys it recorded; a batch of first uses only
//! is that one statement, committed on its own (one round trip to the
//! database, one sync to disk). Of two first uses of one key in a batch the
//! earlier is recorded (if it may be) and the later is refused, as if they
//! had run one after the other. Other writes run after it, each its own
//! statement, in the same transaction. Everything runs in the order of its
//! keys, so that batches of instances sharing a PostgreSQL database take
//! row locks in one order and cannot deadlock.
//!
//! The queue is bounded ([`QUEUE`]): when it is full, writers wait for room.
//! The task starts with the first write (in that write's tokio runtime, and
//! again if that runtime has gone), and ends when the last clone of its
//! store is dropped. Expired rows are purged by the same task, before the
//! batch of every `PURGE_EVERY`th write, so a purge never contends with a
//! write of this store.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use sqlx::Pool;
use tokio::sync::{mpsc, oneshot};

use super::driver::{Columns, Statement};
use super::statements::{FIRST_USES, PURGE};
use super::values::{PurgeTicker, now_unix, store_error};
use super::{SqlDialect, SqlStore};
use crate::store::StoreError;

/// Most writes one transaction holds.
const MAX_BATCH: usize = 256;

/// Most writes waiting for the writer task; more wait for room.
const QUEUE: usize = 1024;

/// The writes of the batch that held this one were not committed: this
/// write may not have happened.
#[derive(Debug, thiserror::Error)]
#[error("the transaction holding this write was not committed")]
struct NotCommitted(#[source] Arc<StoreError>);

/// A key the store cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("a key with a NUL character cannot be stored")]
struct NulInKey;

/// The writer task stopped before it answered (its runtime shut down).
#[derive(Debug, thiserror::Error)]
#[error("the store's writer stopped before this write was committed")]
struct WriterStopped;

/// A write the writer task runs.
pub(super) enum Write<D: SqlDialect> {
    /// Records the job's key in the replay cache until this time (Unix
    /// seconds), unless it is there and live: 1 row changed, or 0.
    FirstUse(i64),
    /// Runs this statement, which locks the row of the job's key.
    Statement(Statement<D>),
}

/// One queued write: its key (batches run in key order), what to run, and
/// where its rows-changed count goes once committed.
struct Job<D: SqlDialect> {
    key: String,
    write: Write<D>,
    answer: oneshot::Sender<Result<u64, StoreError>>,
}

/// What the writer task counts.
#[derive(Debug, Default)]
struct Counts {
    /// Transactions committed.
    commits: AtomicU64,
    /// When to purge expired rows.
    purge: PurgeTicker,
}

/// The queue to a store's writer task, shared by the store's clones.
pub(super) struct Writer<D: SqlDialect> {
    pool: Pool<D>,
    queue: Mutex<Option<mpsc::Sender<Job<D>>>>,
    counts: Arc<Counts>,
}

impl<D: SqlDialect> fmt::Debug for Writer<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("commits", &self.counts.commits)
            .finish_non_exhaustive()
    }
}

impl<D: SqlDialect> Writer<D> {
    /// A writer on `pool`; its task starts with the first write.
    pub(super) fn new(pool: Pool<D>) -> Self {
        Self {
            pool,
            queue: Mutex::new(None),
            counts: Arc::default(),
        }
    }

    /// Runs `write` of `key` in the next batch; the number of rows it
    /// changed, once that batch is committed. A key with a NUL character
    /// (which PostgreSQL text cannot hold) is refused here, so that it
    /// cannot fail the batch of others' writes.
    pub(super) async fn execute(&self, key: &str, write: Write<D>) -> Result<u64, StoreError> {
        if key.contains('\0') {
            return Err(StoreError(Box::new(NulInKey)));
        }
        let (answer, answered) = oneshot::channel();
        let mut job = Job {
            key: key.to_owned(),
            write,
            answer,
        };
        // A second try, if the task's runtime had gone: then a new task.
        for _ in 0..2 {
            match self.sender().send(job).await {
                Ok(()) => {
                    return answered
                        .await
                        .unwrap_or_else(|_| Err(StoreError(Box::new(WriterStopped))));
                }
                Err(mpsc::error::SendError(returned)) => job = returned,
            }
        }
        Err(StoreError(Box::new(WriterStopped)))
    }

    /// The queue to a running writer task, started here if there is none.
    fn sender(&self) -> mpsc::Sender<Job<D>> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        match &*queue {
            Some(sender) if !sender.is_closed() => sender.clone(),
            _ => {
                let (sender, receiver) = mpsc::channel(QUEUE);
                tokio::spawn(run(self.pool.clone(), receiver, Arc::clone(&self.counts)));
                *queue = Some(sender.clone());
                sender
            }
        }
    }
}

/// The writer task: batch after batch until every sender is gone.
async fn run<D: SqlDialect>(pool: Pool<D>, mut queue: mpsc::Receiver<Job<D>>, counts: Arc<Counts>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // (Every write ticks, so none is skipped.)
        let due = batch.iter().filter(|_| counts.purge.due()).count() > 0;
        if due {
            purge(&pool).await;
        }
        // (Stable: of two writes of one key, the earlier stays first.)
        batch.sort_by(|a: &Job<D>, b| a.key.cmp(&b.key));
        let (writes, answers): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|job| ((job.key, job.write), job.answer))
            .unzip();
        let started = Instant::now();
        match commit(&pool, writes).await {
            Ok(rows) => {
                counts.commits.fetch_add(1, Ordering::Relaxed);
                let micros = started.elapsed().as_micros();
                tracing::debug!(writes = rows.len(), micros, "committed a batch of writes");
                for (answer, rows) in answers.into_iter().zip(rows) {
                    // (A caller that went away no longer waits.)
                    let _ = answer.send(Ok(rows));
                }
            }
            Err(error) => {
                tracing::warn!(%error, writes = answers.len(), "a batch of writes failed");
                let error = Arc::new(error);
                for answer in answers {
                    let failed = NotCommitted(Arc::clone(&error));
                    let _ = answer.send(Err(StoreError(Box::new(failed))));
                }
            }
        }
    }
}

/// Runs `writes` (in key order) and commits them: the first uses as one
/// statement, then the other statements; one transaction, or none if the
/// first uses are all there is. Each write's rows changed, once committed.
async fn commit<D: SqlDialect>(
    pool: &Pool<D>,
    writes: Vec<(String, Write<D>)>,
) -> Result<Vec<u64>, StoreError> {
    let mut first_uses: Vec<(String, i64)> = Vec::new();
    let mut statements = Vec::new();
    // The key of each first use, by position.
    let mut keys = Vec::with_capacity(writes.len());
    for (index, (key, write)) in writes.into_iter().enumerate() {
        match write {
            Write::FirstUse(expires) => {
                // (Of two first uses of one key, the earlier is the one tried.)
                if first_uses.last().is_none_or(|(last, _)| *last != key) {
                    first_uses.push((key.clone(), expires));
                }
                keys.push(Some(key));
            }
            Write::Statement(statement) => {
                statements.push((index, statement));
                keys.push(None);
            }
        }
    }
    let record = (!first_uses.is_empty()).then(|| {
        let array = serde_json::to_string(&first_uses).unwrap_or_default();
        Statement::<D>::new(&FIRST_USES)
            .bind(&array)
            .bind(now_unix())
    });
    let mut rows = vec![0; keys.len()];
    let recorded = if statements.is_empty() {
        // One statement: atomic, and committed on its own.
        match record {
            Some(record) => record.fetch_all(pool).await?,
            None => Vec::new(),
        }
    } else {
        let mut transaction = pool.begin().await.map_err(store_error)?;
        let recorded = match record {
            Some(record) => record.fetch_all(&mut transaction).await?,
            None => Vec::new(),
        };
        for (index, statement) in statements {
            rows[index] = statement.execute(&mut transaction).await?;
        }
        transaction.commit().await.map_err(store_error)?;
        recorded
    };
    let mut recorded = recorded
        .iter()
        .map(|row| row.text(0))
        .collect::<Result<HashSet<String>, _>>()?;
    for (rows, key) in rows.iter_mut().zip(&keys) {
        // (`remove`: a later first use of the same key finds it gone.)
        if let Some(key) = key
            && recorded.remove(key)
        {
            *rows = 1;
        }
    }
    Ok(rows)
}

/// Deletes expired rows. A failed purge is logged, not returned.
async fn purge<D: SqlDialect>(pool: &Pool<D>) {
    let now = now_unix();
    for sql in &PURGE {
        if let Err(error) = Statement::<D>::new(sql).bind(now).execute(pool).await {
            tracing::warn!(%error, "could not purge expired rows");
        }
    }
}

impl<D: SqlDialect> SqlStore<D> {
    /// How many transactions this store's writer task committed (each
    /// holds one or more writes): for tests and benchmarks that check the
    /// group commit.
    #[doc(hidden)]
    pub fn write_commits(&self) -> u64 {
        self.writer.counts.commits.load(Ordering::Relaxed)
    }
}
