//! The writer as a tokio task on the pool: PostgreSQL, and an SQLite
//! database in memory. It starts with the first write (in that write's
//! tokio runtime, and again if that runtime has gone).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use sqlx::Pool;
use tokio::sync::mpsc;

use super::{Batch, Counts, Job, MAX_BATCH, QUEUE, Queue, ReplayPurge, SqlWrite, Writer};
use crate::store::StoreError;
use crate::store::sql::SqlDialect;
use crate::store::sql::driver::{Columns, Statement};
use crate::store::sql::statements::{FIRST_USES, PURGE};
use crate::store::sql::values::{now_unix, store_error};

/// The writer of a PostgreSQL store: a task on its pool, whose purges run
/// beside it (see [`Purges::Aside`]).
#[cfg(feature = "postgres")]
pub(crate) async fn postgres(pool: &sqlx::PgPool) -> Writer<sqlx::Postgres> {
    Writer::task(pool, Purges::Aside)
}

/// Where the writer task purges expired rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purges {
    /// Before its batch, as the writer thread does: an SQLite database in
    /// memory, whose one writer at a time would otherwise make the purge
    /// and a batch wait for each other.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Inline,
    /// Beside the writer, in a task of its own on another pooled
    /// connection, at most one at a time (a purge still running when the
    /// next is due skips it): PostgreSQL. A purge deletes only expired
    /// rows, which no batch writes (an expired JWT or proof is refused
    /// before it is written), and the writer no longer waits for it.
    /// Measured at the replay cache's steady state (`replay_steady.py
    /// --postgres`): p99 10.9–12.3 ms against 15.9–26.9 ms inline.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Aside,
}

impl<D: SqlDialect> Writer<D> {
    /// A writer task on `pool`, started with the first write.
    pub(super) fn task(pool: &Pool<D>, purges: Purges) -> Self {
        Self {
            queue: Queue::Task(Task {
                sender: Mutex::new(None),
                purger: Purger {
                    pool: pool.clone(),
                    purges,
                    replay: Arc::default(),
                },
            }),
            counts: Arc::default(),
        }
    }
}

/// The queue to the running task, if one runs, and what it purges with.
pub(super) struct Task<D: SqlDialect> {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    purger: Purger<D>,
}

impl<D: SqlDialect> Task<D> {
    /// Returns once no purge runs (one may have been started beside the
    /// writer).
    pub(super) async fn purged(&self) {
        drop(self.purger.replay.lock().await);
    }

    /// Queues `job`, starting a task if none runs (a second try if the
    /// task's runtime had gone); false if it could not be queued.
    pub(super) async fn send(&self, mut job: Job, counts: &Arc<Counts>) -> bool {
        for _ in 0..2 {
            match self.sender(counts).send(job).await {
                Ok(()) => return true,
                Err(mpsc::error::SendError(returned)) => job = returned,
            }
        }
        false
    }

    /// The queue to a running writer task, started here if there is none.
    fn sender(&self, counts: &Arc<Counts>) -> mpsc::Sender<Job> {
        let mut queue = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        match &*queue {
            Some(sender) if !sender.is_closed() => sender.clone(),
            _ => {
                let (sender, receiver) = mpsc::channel(QUEUE);
                tokio::spawn(run(self.purger.clone(), receiver, Arc::clone(counts)));
                *queue = Some(sender.clone());
                sender
            }
        }
    }
}

/// The writer task's pool, and where it purges expired rows.
struct Purger<D: SqlDialect> {
    pool: Pool<D>,
    purges: Purges,
    /// Where the replay cache's purge goes on; held by the purge running.
    replay: Arc<tokio::sync::Mutex<ReplayPurge>>,
}

impl<D: SqlDialect> Clone for Purger<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            purges: self.purges,
            replay: Arc::clone(&self.replay),
        }
    }
}

impl<D: SqlDialect> Purger<D> {
    /// Purges now (inline), or starts a purge beside the writer unless
    /// one still runs.
    async fn purge(&self) {
        match self.purges {
            Purges::Inline => purge(&self.pool, &mut *self.replay.lock().await).await,
            Purges::Aside => {
                if let Ok(mut replay) = Arc::clone(&self.replay).try_lock_owned() {
                    let pool = self.pool.clone();
                    tokio::spawn(async move { purge(&pool, &mut replay).await });
                }
            }
        }
    }
}

/// The writer task: batch after batch until every sender is gone.
async fn run<D: SqlDialect>(
    purger: Purger<D>,
    mut queue: mpsc::Receiver<Job>,
    counts: Arc<Counts>,
) {
    let pool = &purger.pool;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = Batch::new(&mut jobs, &counts);
        if batch.purge {
            purger.purge().await;
        }
        let started = Instant::now();
        let committed = commit(pool, &batch).await;
        batch.answer(committed, started, &counts);
    }
}

/// Runs `batch` and commits it: the first uses as one statement, then the
/// other statements; one transaction, or none if the first uses are all
/// there is. The keys recorded and each statement's rows changed.
async fn commit<D: SqlDialect>(
    pool: &Pool<D>,
    batch: &Batch,
) -> Result<(Vec<String>, Vec<u64>), StoreError> {
    let record = batch.first_uses.as_ref().map(|array| {
        Statement::<D>::new(&FIRST_USES)
            .bind(array)
            .bind(now_unix())
    });
    let mut rows = Vec::with_capacity(batch.statements.len());
    let recorded = if batch.statements.is_empty() {
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
        for write in &batch.statements {
            rows.push(statement::<D>(write).execute(&mut transaction).await?);
        }
        transaction.commit().await.map_err(store_error)?;
        recorded
    };
    let recorded = recorded
        .iter()
        .map(|row| row.text(0))
        .collect::<Result<_, _>>()?;
    Ok((recorded, rows))
}

/// Deletes expired rows (the replay cache's of its next chunk). A failed
/// purge is logged, not returned.
async fn purge<D: SqlDialect>(pool: &Pool<D>, replay: &mut ReplayPurge) {
    let now = now_unix();
    let replay_chunk = async {
        let end = match statement::<D>(&replay.chunk_end())
            .fetch_optional(pool)
            .await?
        {
            Some(row) => Some(row.text(0)?),
            None => None,
        };
        statement::<D>(&replay.delete(end, now)).execute(pool).await
    };
    let mut purged = vec![replay_chunk.await];
    for sql in &PURGE {
        purged.push(Statement::<D>::new(sql).bind(now).execute(pool).await);
    }
    for error in purged.into_iter().filter_map(Result::err) {
        tracing::warn!(%error, "could not purge expired rows");
    }
}

/// `write` as a statement in dialect `D`.
fn statement<D: SqlDialect>(write: &SqlWrite) -> Statement<D> {
    write
        .params()
        .fold(Statement::<D>::new(write.sql), Statement::bind)
}
