//! Knowing, cheaply and exactly, whether the store's credentials changed:
//! the generation the read cache (`cache.rs`) tags its entries with.
//!
//! Migration 0004 keeps a change counter (`m2m_changes`) that triggers bump
//! in the same transaction as every insert, update or delete of an account,
//! an app password or a binding, whoever makes it.
//!
//! - SQLite: the counter is read on every lookup through a dedicated
//!   synchronous connection (rusqlite, on the libsqlite3 sqlx links), a few
//!   microseconds instead of sqlx's hop to its worker thread. A change
//!   committed by any connection or process is seen by the next lookup.
//! - PostgreSQL: the trigger also announces the new value (`pg_notify`); a
//!   listener task per store counts the announcements. While it is not
//!   listening (starting, connection lost, reconnecting) there is no
//!   generation and the cache is bypassed; every reconnection starts a new
//!   generation, since announcements may have been missed.
//! - An SQLite database in memory has no second connection to read the
//!   counter with: no generation, the cache is off.

#[cfg(feature = "postgres")]
use std::sync::Arc;
#[cfg(feature = "postgres")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
#[cfg(feature = "postgres")]
use std::time::Duration;

#[cfg(feature = "postgres")]
use tokio::time::{Instant, timeout_at};

#[cfg(feature = "sqlite")]
use super::statements::CHANGE_COUNTER;
#[cfg(feature = "postgres")]
use super::values::ACQUIRE_TIMEOUT;
#[cfg(feature = "sqlite")]
use super::values::store_error;
use crate::store::StoreError;

/// Where the generation comes from.
#[derive(Debug)]
pub enum Changes {
    /// No way to know the generation: every lookup reads the database.
    Off,
    /// SQLite: the counter, read through this connection.
    #[cfg(feature = "sqlite")]
    Counter(Mutex<rusqlite::Connection>),
    /// PostgreSQL: the announcements a listener task heard.
    #[cfg(feature = "postgres")]
    Announced(Arc<Feed>),
}

impl Changes {
    /// The current generation, or `None` if the cache must not be used.
    pub(crate) fn generation(&self) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Off => Ok(None),
            #[cfg(feature = "sqlite")]
            Self::Counter(connection) => {
                let connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
                let value: i64 = connection
                    .prepare_cached(CHANGE_COUNTER.sqlite)
                    .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
                    .map_err(store_error)?;
                Ok(Some(value.cast_unsigned()))
            }
            #[cfg(feature = "postgres")]
            Self::Announced(feed) => Ok(feed.generation()),
        }
    }

    /// Waits until every instance listening on the database has acted on
    /// every change up to the counter value `value`, so that whatever an
    /// admin method just committed is refused by every instance's next
    /// request once it returns (see [`settle`]); also while this store is
    /// not listening itself. Only PostgreSQL announces.
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub(crate) async fn heard(&self, value: i64) {
        #[cfg(feature = "postgres")]
        if let Self::Announced(feed) = self {
            settle(&feed.pool, value).await;
        }
    }

    /// Whether [`heard`](Self::heard) has anything to wait for: whether
    /// changes are announced (PostgreSQL).
    pub(crate) fn announces(&self) -> bool {
        #[cfg(feature = "postgres")]
        if let Self::Announced(_) = self {
            return true;
        }
        false
    }
}

/// A listener renews its row in `m2m_listeners` (migration 0006) whenever
/// it hears anything this long or longer after its last renewal (and
/// whenever it is asked to answer).
#[cfg(feature = "postgres")]
const RENEW: Duration = Duration::from_millis(HEARTBEAT.as_millis() as u64 / 2);

/// How long after its last renewal a listener's row still counts: a
/// listener stops serving from its cache once it heard nothing for
/// [`DEAF_AFTER`], and it heard its last message less than [`RENEW`] after
/// its last renewal (or it would have renewed, or failed to and stopped),
/// so it has stopped by `RENEW + DEAF_AFTER` (3.5 s) after that renewal;
/// 1.5 s more for its timers firing late.
#[cfg(feature = "postgres")]
const LEASE: Duration = Duration::from_secs(5);

/// Records that the listener on this connection heard the counter up to
/// `$1`, now.
#[cfg(feature = "postgres")]
const LISTENER_HEARD: &str = "INSERT INTO m2m_listeners (pid, heard, renewed) \
    VALUES (pg_backend_pid(), $1, now()) ON CONFLICT (pid) DO UPDATE \
    SET heard = greatest(m2m_listeners.heard, excluded.heard), renewed = now()";

/// Forgets the rows of listeners whose backend is gone.
#[cfg(feature = "postgres")]
const FORGET_GONE_LISTENERS: &str = "DELETE FROM m2m_listeners \
    WHERE pid NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)";

/// How many listeners, live (`$3`'s backend, renewed within `$2` seconds),
/// have not heard the counter value `$1` yet.
#[cfg(feature = "postgres")]
const LISTENERS_BEHIND: &str = "SELECT count(*) FROM m2m_listeners AS l \
    JOIN pg_stat_activity AS a ON a.pid = l.pid AND a.application_name = $3 \
        AND a.datname = current_database() \
    WHERE l.heard < $1 AND l.renewed > now() - make_interval(secs => $2)";

/// PostgreSQL: asks every listener to answer once it heard the counter
/// value `value` (a `sync` on [`CHANNEL`], which each listener gets after
/// the announcements of every change committed before it), and returns
/// once every live listener has: its row says so, or its backend is gone,
/// or its row went unrenewed for [`LEASE`], by when that listener no longer
/// serves from its cache. So an admin change returns only once no instance
/// serves what it replaced, however slow their listeners are; waiting for
/// a listener that went silent takes up to [`LEASE`]. Errors are logged,
/// not returned (the change is committed either way).
#[cfg(feature = "postgres")]
async fn settle(pool: &sqlx::PgPool, value: i64) {
    let asked =
        sqlx::query("SELECT pg_notify($1, coalesce(current_schema(), '') || ' sync:' || $2::int8)")
            .bind(CHANNEL)
            .bind(value)
            .execute(pool)
            .await;
    if let Err(error) = asked {
        tracing::warn!(%error, "could not ask the listeners whether they heard a change");
        return;
    }
    let deadline = Instant::now() + LEASE + Duration::from_secs(1);
    let mut pause = Duration::from_millis(1);
    loop {
        let behind: Result<i64, _> = sqlx::query_scalar(LISTENERS_BEHIND)
            .bind(value)
            .bind(LEASE.as_secs_f64())
            .bind(LISTENER_NAME)
            .fetch_one(pool)
            .await;
        match behind {
            Ok(0) => return,
            Ok(behind) if Instant::now() >= deadline => {
                tracing::warn!(behind, "listeners did not answer that they heard a change");
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "could not read which listeners heard a change");
                return;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// SQLite: a connection to the file the pool opened, to read the counter;
/// [`Changes::Off`] for a database in memory (or if it cannot be opened).
#[cfg(feature = "sqlite")]
pub(crate) async fn sqlite(pool: &sqlx::SqlitePool) -> Changes {
    const OFF: &str = "read cache off";
    let Some(connection) = super::sqlite::second_connection(pool, OFF).await else {
        return Changes::Off;
    };
    match connection.query_row(CHANGE_COUNTER.sqlite, [], |row| row.get::<_, i64>(0)) {
        Ok(_) => Changes::Counter(Mutex::new(connection)),
        Err(error) => {
            tracing::warn!(%error, "{OFF}: could not read the change counter");
            Changes::Off
        }
    }
}

/// PostgreSQL: starts the listener task on its own connection (the pool's
/// options, outside the pool) and waits for its first attempt to listen.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres(pool: &sqlx::PgPool) -> Changes {
    let feed = Arc::new(Feed::new(pool.clone()));
    let (first, listening) = tokio::sync::oneshot::channel();
    let options = (*pool.connect_options())
        .clone()
        .application_name(LISTENER_NAME);
    let task = tokio::spawn(listen(options, pool.clone(), Arc::downgrade(&feed), first));
    *feed.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
    let _ = tokio::time::timeout(ACQUIRE_TIMEOUT, listening).await;
    Changes::Announced(feed)
}

/// The `application_name` of the listener's connection.
#[cfg(feature = "postgres")]
pub(crate) const LISTENER_NAME: &str = "tower-m2m-auth change listener";

/// The PostgreSQL channel the triggers announce on.
#[cfg(feature = "postgres")]
const CHANNEL: &str = "m2m_changes";

/// What the listener task heard, shared with the store.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub struct Feed {
    /// Odd while listening; bumped by 2 on every announcement, by 1 when
    /// listening starts or stops, so no value is ever used twice.
    state: AtomicU64,
    /// The store's pool, to wait for the listeners' answers through.
    pool: sqlx::PgPool,
    /// The listener task, stopped with the last clone of the store.
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

#[cfg(feature = "postgres")]
impl Feed {
    fn new(pool: sqlx::PgPool) -> Self {
        Self {
            state: AtomicU64::new(0),
            pool,
            task: Mutex::new(None),
        }
    }

    fn generation(&self) -> Option<u64> {
        let state = self.state.load(Ordering::SeqCst);
        (state % 2 == 1).then_some(state)
    }

    /// Listening now.
    fn listening(&self) {
        self.state.fetch_add(1, Ordering::SeqCst);
    }

    /// No longer listening.
    fn deaf(&self) {
        self.state.fetch_add(1, Ordering::SeqCst);
    }

    /// A change was announced.
    fn announced(&self) {
        self.state.fetch_add(2, Ordering::SeqCst);
    }
}

#[cfg(feature = "postgres")]
impl Drop for Feed {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().unwrap_or_else(PoisonError::into_inner) {
            task.abort();
        }
    }
}

/// How often a store sends a heartbeat on [`CHANNEL`] through its pool.
#[cfg(feature = "postgres")]
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// A listener that heard nothing (no change, no heartbeat of any store) for
/// this long counts as not listening: a connection that died silently, a
/// network partition. It bounds how long a partitioned instance serves
/// from its cache.
#[cfg(feature = "postgres")]
const DEAF_AFTER: Duration = Duration::from_secs(3 * HEARTBEAT.as_secs());

/// Listens for announcements until the store is dropped or its pool
/// closed, reconnecting with a backoff (100 ms doubling to 5 s); says on
/// `first` when the first attempt is over.
#[cfg(feature = "postgres")]
async fn listen(
    options: sqlx::postgres::PgConnectOptions,
    pool: sqlx::PgPool,
    feed: std::sync::Weak<Feed>,
    first: tokio::sync::oneshot::Sender<()>,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut first = Some(first);
    let mut backoff = FIRST_BACKOFF;
    while !pool.is_closed() {
        match subscribe(&options).await {
            Ok((mut listener, schema, mut heard)) => {
                backoff = FIRST_BACKOFF;
                let beats = Beats(tokio::spawn(beat(pool.clone(), schema.clone())));
                let Some(shared) = feed.upgrade() else { return };
                shared.listening();
                drop(shared);
                first.take().map(|first| first.send(()));
                let mut renewed = Instant::now();
                let lost = loop {
                    // Hearing nothing for `DEAF_AFTER`, or a write on the
                    // listener's connection still waiting then, is deafness.
                    // (On a timeout the listener is dropped, never reused.)
                    let deaf_at = Instant::now() + DEAF_AFTER;
                    let notification = match timeout_at(deaf_at, listener.try_recv()).await {
                        Ok(Ok(Some(notification))) => notification,
                        Ok(Ok(None)) => break "connection lost".to_owned(),
                        Ok(Err(error)) => break error.to_string(),
                        Err(_) => break "no heartbeat heard".to_owned(),
                    };
                    let asked = match Heard::of(notification.payload(), &schema) {
                        Heard::Change(value) => {
                            let Some(shared) = feed.upgrade() else { return };
                            shared.announced();
                            heard = heard.max(value);
                            false
                        }
                        Heard::Sync(value) => {
                            // Every change up to `value` was announced before.
                            heard = heard.max(value);
                            true
                        }
                        Heard::Other => false,
                    };
                    if asked || renewed.elapsed() >= RENEW {
                        let answer = sqlx::query(LISTENER_HEARD)
                            .bind(heard)
                            .execute(&mut listener);
                        match timeout_at(deaf_at, answer).await {
                            Ok(Ok(_)) => renewed = Instant::now(),
                            Ok(Err(error)) => break error.to_string(),
                            Err(_) => break "no answer to a write".to_owned(),
                        }
                    }
                };
                drop(beats);
                let Some(shared) = feed.upgrade() else { return };
                shared.deaf();
                tracing::warn!(error = %lost, "read cache bypassed: not listening for changes");
            }
            Err(error) => {
                first.take().map(|first| first.send(()));
                tracing::warn!(%error, "read cache bypassed: could not listen for changes");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The heartbeat task of one subscription, stopped with it.
#[cfg(feature = "postgres")]
struct Beats(tokio::task::JoinHandle<()>);

#[cfg(feature = "postgres")]
impl Drop for Beats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends a heartbeat (`<schema> heartbeat`, which carries no counter value)
/// every [`HEARTBEAT`] through `pool`, the way changes travel.
#[cfg(feature = "postgres")]
async fn beat(pool: sqlx::PgPool, schema: String) {
    let payload = format!("{schema} heartbeat");
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&payload)
            .execute(&pool)
            .await;
        if let Err(error) = sent {
            tracing::debug!(%error, "could not send a heartbeat");
        }
    }
}

/// A listener on [`CHANNEL`] with the schema it is in and the counter's
/// value once listening, its row in `m2m_listeners` written (the rows of
/// listeners whose backend is gone deleted).
#[cfg(feature = "postgres")]
async fn subscribe(
    options: &sqlx::postgres::PgConnectOptions,
) -> Result<(sqlx::postgres::PgListener, String, i64), sqlx::Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await?;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    let (schema, value): (Option<String>, i64) =
        sqlx::query_as("SELECT current_schema(), (SELECT value FROM m2m_changes WHERE id = 1)")
            .fetch_one(&mut listener)
            .await?;
    sqlx::query(FORGET_GONE_LISTENERS)
        .execute(&mut listener)
        .await?;
    sqlx::query(LISTENER_HEARD)
        .bind(value)
        .execute(&mut listener)
        .await?;
    Ok((listener, schema.unwrap_or_default(), value))
}

/// What a listener heard on [`CHANNEL`].
#[cfg(feature = "postgres")]
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// A change of this store's schema: the counter's new value
    /// (`<schema> <value>`).
    Change(i64),
    /// A request to answer once every change up to this value was heard
    /// (`<schema> sync:<value>`).
    Sync(i64),
    /// A heartbeat, or anything of another schema.
    Other,
}

#[cfg(feature = "postgres")]
impl Heard {
    fn of(payload: &str, schema: &str) -> Self {
        let Some((of, what)) = payload.rsplit_once(' ') else {
            return Self::Other;
        };
        if of != schema {
            return Self::Other;
        }
        match what.strip_prefix("sync:") {
            Some(value) => value.parse().map_or(Self::Other, Self::Sync),
            None => what.parse().map_or(Self::Other, Self::Change),
        }
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn announcements_of_other_schemas_are_ignored() {
        assert_eq!(Heard::of("m2m_a 7", "m2m_a"), Heard::Change(7));
        assert_eq!(Heard::of("my schema 7", "my schema"), Heard::Change(7));
        assert_eq!(Heard::of("m2m_a sync:9", "m2m_a"), Heard::Sync(9));
        assert_eq!(Heard::of(" sync:9", ""), Heard::Sync(9));
        assert_eq!(Heard::of("m2m_a heartbeat", "m2m_a"), Heard::Other);
        assert_eq!(Heard::of("m2m_b 7", "m2m_a"), Heard::Other);
        assert_eq!(Heard::of("m2m_b sync:7", "m2m_a"), Heard::Other);
        assert_eq!(Heard::of("garbage", "m2m_a"), Heard::Other);
    }

    #[tokio::test]
    async fn every_transition_is_a_new_generation() {
        let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://localhost/unused");
        let feed = Feed::new(pool.unwrap());
        assert_eq!(feed.generation(), None);
        feed.listening();
        let first = feed.generation().unwrap();
        feed.announced();
        let second = feed.generation().unwrap();
        assert_ne!(first, second);
        feed.deaf();
        assert_eq!(feed.generation(), None);
        feed.listening();
        assert!(feed.generation().unwrap() > second);
    }
}
