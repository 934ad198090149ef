//! Group commit: the store's writes on the request path (replay-cache first
//! uses, revocations, input-JWT accounts) go to one writer per store, which
//! takes everything queued (at most [`MAX_BATCH`]), runs it as one
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
//! Two writers run this (the batch is prepared and answered here, once):
//!
//! - An SQLite file: a dedicated thread (`thread.rs`) with its own rusqlite
//!   connection to the file. On sqlx every statement is a hop to sqlx's
//!   worker thread and back (rows streamed one message each), and the
//!   writer a tokio task woken for each: measured, ≈ 20 µs of server CPU
//!   per single-use input JWT on top of SQLite's own ≈ 23 µs per write (at
//!   ≈ 7.7 writes per commit, `synchronous = FULL`). The thread runs the
//!   statements itself, and needs no tokio runtime.
//! - PostgreSQL, and an SQLite database in memory (no file a second
//!   connection could open): a tokio task on the pool (`task.rs`).
//!
//! The queue is bounded ([`QUEUE`]): when it is full, writers wait for room.
//! The writer ends when the last clone of its store is dropped (the queue's
//! sender goes with it). Expired rows are purged every `PURGE_EVERY`th
//! write: the expired revocations and input-JWT accounts, and the expired
//! rows of the replay cache (on SQLite, of its next chunk of keys,
//! [`ReplayPurge`]: there its expiry has no index, which each first use
//! would update). On SQLite the writer purges before that write's batch, so
//! a purge never contends with a write of this store; on PostgreSQL a purge
//! runs beside the writer (`task::Purges::Aside`), which does not wait for it.

mod task;
#[cfg(feature = "sqlite")]
mod thread;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use super::statements::{PURGE_REPLAY_CHUNK, PURGE_REPLAY_REST, REPLAY_CHUNK_END, Sql};
use super::values::{OwnedParam, Param, PurgeTicker};
use super::{SqlDialect, SqlStore};
use crate::store::StoreError;

#[cfg(feature = "postgres")]
pub(crate) use task::postgres;
#[cfg(feature = "sqlite")]
pub(crate) use thread::sqlite;

/// Most writes one transaction holds.
const MAX_BATCH: usize = 256;

/// Most writes waiting for the writer; more wait for room.
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

/// The writer stopped before it answered (its runtime shut down).
#[derive(Debug, thiserror::Error)]
#[error("the store's writer stopped before this write was committed")]
struct WriterStopped;

/// A write the writer runs.
pub(super) enum Write {
    /// Records the job's key in the replay cache until this time (Unix
    /// seconds), unless it is there and live: 1 row changed, or 0.
    FirstUse(i64),
    /// Runs this statement, which locks the row of the job's key.
    Statement(SqlWrite),
}

/// One of the store's statements with its parameters, owned, so that it
/// can wait in the queue and be bound by either writer.
pub(super) struct SqlWrite {
    sql: &'static Sql,
    params: Vec<OwnedParam>,
}

impl SqlWrite {
    /// `sql`, without parameters yet.
    pub(super) fn new(sql: &'static Sql) -> Self {
        Self {
            sql,
            params: Vec::new(),
        }
    }

    /// Binds the next parameter (`$1`, `$2`, … in order).
    pub(super) fn bind<'a>(mut self, param: impl Into<Param<'a>>) -> Self {
        self.params.push(param.into().into());
        self
    }

    /// The parameters, in order.
    fn params(&self) -> impl Iterator<Item = Param<'_>> {
        self.params.iter().map(OwnedParam::as_param)
    }
}

impl From<SqlWrite> for Write {
    fn from(write: SqlWrite) -> Self {
        Self::Statement(write)
    }
}

/// Where the replay cache's purge goes on: on SQLite each purge deletes the
/// expired rows of one chunk of keys (`REPLAY_CHUNK_END`), the next purge
/// the next chunk, round after round. So a purge costs about the same at
/// any size of the cache, and an expired row is gone within one round:
/// about an eighth of the cache's size in writes later (1,024 keys per
/// `PURGE_EVERY` writes). Until then a new first use of its key takes it
/// over. (On PostgreSQL the chunk is always the whole cache.)
#[derive(Debug, Default)]
struct ReplayPurge {
    /// The first key of the next chunk; empty at the start of a round.
    from: String,
}

impl ReplayPurge {
    /// The query for the key after the next chunk.
    fn chunk_end(&self) -> SqlWrite {
        SqlWrite::new(&REPLAY_CHUNK_END).bind(self.from.as_str())
    }

    /// The delete of the next chunk's expired rows at `now`, given the key
    /// after it (`None`: the chunk runs to the end, and the next round
    /// starts over); moves on to the next chunk.
    fn delete(&mut self, end: Option<String>, now: i64) -> SqlWrite {
        let delete = match &end {
            Some(end) => SqlWrite::new(&PURGE_REPLAY_CHUNK)
                .bind(now)
                .bind(self.from.as_str())
                .bind(end.as_str()),
            None => SqlWrite::new(&PURGE_REPLAY_REST)
                .bind(now)
                .bind(self.from.as_str()),
        };
        self.from = end.unwrap_or_default();
        delete
    }
}

/// One queued write: its key (batches run in key order), what to run, and
/// where its rows-changed count goes once committed.
struct Job {
    key: String,
    write: Write,
    answer: oneshot::Sender<Result<u64, StoreError>>,
}

/// What the writer counts, and the hold a test may put on it.
#[derive(Debug, Default)]
struct Counts {
    /// Transactions committed.
    commits: AtomicU64,
    /// When to purge expired rows.
    purge: PurgeTicker,
    /// Held by [`SqlStore::hold_writer`]: the writer thread waits for it
    /// between taking a batch's first write and taking the rest.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    hold: Mutex<()>,
}

/// The queue to a store's writer, shared by the store's clones.
pub struct Writer<D: SqlDialect> {
    queue: Queue<D>,
    counts: Arc<Counts>,
}

/// Where the writes go.
enum Queue<D: SqlDialect> {
    /// A tokio task on the pool.
    Task(task::Task<D>),
    /// The writer thread of an SQLite file.
    #[cfg(feature = "sqlite")]
    Thread(tokio::sync::mpsc::Sender<Job>),
}

impl<D: SqlDialect> fmt::Debug for Writer<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("commits", &self.counts.commits)
            .finish_non_exhaustive()
    }
}

impl<D: SqlDialect> Writer<D> {
    /// Runs `write` of `key` in the next batch; the number of rows it
    /// changed, once that batch is committed. A key with a NUL character
    /// (which PostgreSQL text cannot hold) is refused here, so that it
    /// cannot fail the batch of others' writes.
    pub(super) async fn execute(
        &self,
        key: &str,
        write: impl Into<Write>,
    ) -> Result<u64, StoreError> {
        if key.contains('\0') {
            return Err(StoreError(Box::new(NulInKey)));
        }
        let (answer, answered) = oneshot::channel();
        let job = Job {
            key: key.to_owned(),
            write: write.into(),
            answer,
        };
        let sent = match &self.queue {
            Queue::Task(task) => task.send(job, &self.counts).await,
            #[cfg(feature = "sqlite")]
            Queue::Thread(sender) => sender.send(job).await.is_ok(),
        };
        if !sent {
            return Err(StoreError(Box::new(WriterStopped)));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(StoreError(Box::new(WriterStopped))))
    }
}

/// Where a job of a batch, in key order, finds its rows changed.
enum Slot {
    /// A first use of this key: 1 if the key was recorded.
    FirstUse(String),
    /// The next of the batch's statements.
    Statement,
}

/// The jobs a writer took, in key order, as the statements to run: what
/// both writers run, and how their results answer each job.
struct Batch {
    /// The first uses, as the JSON array `FIRST_USES` takes (`[key,
    /// expires]` each); `None` if there are none.
    first_uses: Option<String>,
    /// The other writes, in order.
    statements: Vec<SqlWrite>,
    /// Whether expired rows are to be purged before this batch.
    purge: bool,
    slots: Vec<Slot>,
    answers: Vec<oneshot::Sender<Result<u64, StoreError>>>,
}

impl Batch {
    /// Takes every job of `jobs`.
    fn new(jobs: &mut Vec<Job>, counts: &Counts) -> Self {
        // (Every write ticks, so none is skipped.)
        let purge = jobs.iter().filter(|_| counts.purge.due()).count() > 0;
        // (Stable: of two writes of one key, the earlier stays first.)
        jobs.sort_by(|a, b| a.key.cmp(&b.key));
        let mut first_uses: Vec<(String, i64)> = Vec::new();
        let mut statements = Vec::new();
        let mut slots = Vec::with_capacity(jobs.len());
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            match job.write {
                Write::FirstUse(expires) => {
                    // (Of two first uses of one key, the earlier is the one tried.)
                    if first_uses.last().is_none_or(|(last, _)| *last != job.key) {
                        first_uses.push((job.key.clone(), expires));
                    }
                    slots.push(Slot::FirstUse(job.key));
                }
                Write::Statement(statement) => {
                    statements.push(statement);
                    slots.push(Slot::Statement);
                }
            }
            answers.push(job.answer);
        }
        let first_uses = (!first_uses.is_empty())
            .then(|| serde_json::to_string(&first_uses).unwrap_or_default());
        Self {
            first_uses,
            statements,
            purge,
            slots,
            answers,
        }
    }

    /// Answers each job with `committed`: the keys `FIRST_USES` recorded and
    /// the rows each statement changed, once committed (the batch having
    /// started at `started`); or why not.
    fn answer(
        self,
        committed: Result<(Vec<String>, Vec<u64>), StoreError>,
        started: Instant,
        counts: &Counts,
    ) {
        match committed {
            Ok((recorded, rows)) => {
                counts.commits.fetch_add(1, Ordering::Relaxed);
                let micros = started.elapsed().as_micros();
                let writes = self.answers.len();
                tracing::debug!(writes, micros, "committed a batch of writes");
                let mut recorded: HashSet<String> = recorded.into_iter().collect();
                let mut rows = rows.into_iter();
                for (slot, answer) in self.slots.into_iter().zip(self.answers) {
                    let changed = match slot {
                        // (`remove`: a later first use of the same key finds it gone.)
                        Slot::FirstUse(key) => u64::from(recorded.remove(&key)),
                        Slot::Statement => rows.next().unwrap_or_default(),
                    };
                    // (A caller that went away no longer waits.)
                    let _ = answer.send(Ok(changed));
                }
            }
            Err(error) => {
                let writes = self.answers.len();
                tracing::warn!(%error, writes, "a batch of writes failed");
                let error = Arc::new(error);
                for answer in self.answers {
                    let failed = NotCommitted(Arc::clone(&error));
                    let _ = answer.send(Err(StoreError(Box::new(failed))));
                }
            }
        }
    }
}

impl<D: SqlDialect> SqlStore<D> {
    /// How many transactions this store's writer committed (each holds one
    /// or more writes): for tests and benchmarks that check the group
    /// commit.
    #[doc(hidden)]
    pub fn write_commits(&self) -> u64 {
        self.writer.counts.commits.load(Ordering::Relaxed)
    }

    /// Returns once no purge of expired rows runs (on PostgreSQL a purge
    /// runs beside the writer): for tests that check what a purge left.
    #[doc(hidden)]
    pub async fn purges_done(&self) {
        // (Without `sqlite` a task is the only kind of writer.)
        #[allow(irrefutable_let_patterns)]
        if let Queue::Task(task) = &self.writer.queue {
            task.purged().await;
        }
    }

    /// Until the returned guard is dropped, the writer thread of an SQLite
    /// file waits after taking a batch's first write, so that the writes
    /// queued meanwhile join that batch: for tests of what happens within
    /// one batch. (The task writer, on a current-thread runtime, already
    /// takes everything queued before it runs; it ignores the hold.)
    #[doc(hidden)]
    pub fn hold_writer(&self) -> impl Sized + '_ {
        self.writer
            .counts
            .hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
