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
use tokio::sync::watch;

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

    /// Waits (at most [`ECHO_TIMEOUT`]) until this store has heard of every
    /// change up to the counter value `value`, so that whatever an admin
    /// method just committed is announced to every listening instance
    /// before it returns. Only PostgreSQL announces; returns at once while
    /// the listener is down (the cache is bypassed then).
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub(crate) async fn heard(&self, value: i64) {
        #[cfg(feature = "postgres")]
        if let Self::Announced(feed) = self {
            feed.heard(value).await;
        }
    }

    /// Whether [`heard`](Self::heard) has anything to wait for.
    pub(crate) fn announces(&self) -> bool {
        #[cfg(feature = "postgres")]
        if let Self::Announced(feed) = self {
            return feed.generation().is_some();
        }
        false
    }
}

/// How long an admin method waits for its change to come back announced.
#[cfg(feature = "postgres")]
pub(crate) const ECHO_TIMEOUT: Duration = Duration::from_secs(2);

/// How much longer an admin method waits once its change came back, for
/// the other instances' listeners.
#[cfg(feature = "postgres")]
pub(crate) const ECHO_GRACE: Duration = Duration::from_millis(50);

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
    let feed = Arc::new(Feed::default());
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
#[derive(Debug, Default)]
pub struct Feed {
    /// Odd while listening; bumped by 2 on every announcement, by 1 when
    /// listening starts or stops, so no value is ever used twice.
    state: AtomicU64,
    /// The highest counter value heard, and whether listening.
    echo: watch::Sender<(i64, bool)>,
    /// The listener task, stopped with the last clone of the store.
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

#[cfg(feature = "postgres")]
impl Feed {
    fn generation(&self) -> Option<u64> {
        let state = self.state.load(Ordering::SeqCst);
        (state % 2 == 1).then_some(state)
    }

    /// Listening now, with the counter at `value`.
    fn listening(&self, value: i64) {
        self.state.fetch_add(1, Ordering::SeqCst);
        self.echo
            .send_modify(|echo| *echo = (echo.0.max(value), true));
    }

    /// No longer listening.
    fn deaf(&self) {
        self.state.fetch_add(1, Ordering::SeqCst);
        self.echo.send_modify(|echo| echo.1 = false);
    }

    /// The counter reached `value`.
    fn announced(&self, value: i64) {
        self.state.fetch_add(2, Ordering::SeqCst);
        self.echo.send_modify(|echo| echo.0 = echo.0.max(value));
    }

    async fn heard(&self, value: i64) {
        let mut echo = self.echo.subscribe();
        let waited = echo.wait_for(|&(heard, listening)| !listening || heard >= value);
        let listening = tokio::time::timeout(ECHO_TIMEOUT, waited)
            .await
            .map(|echo| echo.is_ok_and(|echo| echo.1));
        match listening {
            // Every listening backend got the announcement at the commit;
            // the other instances' listeners read it within the same short
            // skew as this one's: a grace for them (and for this process's
            // other tasks, on a one-thread runtime).
            Ok(true) => tokio::time::sleep(ECHO_GRACE).await,
            Ok(false) => {}
            Err(_) => tracing::warn!("a credential change was not announced back within 2 s"),
        }
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

/// How often a store sends a heartbeat on [`CHANNEL`] through its pool; a
/// listener that heard nothing for twice as long counts as not listening
/// (a connection that died silently, a network partition).
#[cfg(feature = "postgres")]
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);

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
            Ok((mut listener, schema, value)) => {
                backoff = FIRST_BACKOFF;
                let beats = Beats(tokio::spawn(beat(pool.clone(), schema.clone())));
                let Some(shared) = feed.upgrade() else { return };
                shared.listening(value);
                drop(shared);
                first.take().map(|first| first.send(()));
                let lost = loop {
                    // (On a timeout the listener is dropped, never reused.)
                    match tokio::time::timeout(HEARTBEAT * 2, listener.try_recv()).await {
                        Ok(Ok(Some(notification))) => {
                            let Some(shared) = feed.upgrade() else { return };
                            if let Some(value) = announced_value(notification.payload(), &schema) {
                                shared.announced(value);
                            }
                        }
                        Ok(Ok(None)) => break "connection lost".to_owned(),
                        Ok(Err(error)) => break error.to_string(),
                        Err(_) => break "no heartbeat heard".to_owned(),
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
/// value once listening.
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
    Ok((listener, schema.unwrap_or_default(), value))
}

/// The counter value an announcement carries (`schema value`), if it is of
/// this store's `schema`.
#[cfg(feature = "postgres")]
fn announced_value(payload: &str, schema: &str) -> Option<i64> {
    let (of, value) = payload.rsplit_once(' ')?;
    (of == schema).then(|| value.parse().ok()).flatten()
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn announcements_of_other_schemas_are_ignored() {
        assert_eq!(announced_value("m2m_a 7", "m2m_a"), Some(7));
        assert_eq!(announced_value("my schema 7", "my schema"), Some(7));
        assert_eq!(announced_value("m2m_b 7", "m2m_a"), None);
        assert_eq!(announced_value("garbage", "m2m_a"), None);
    }

    #[test]
    fn every_transition_is_a_new_generation() {
        let feed = Feed::default();
        assert_eq!(feed.generation(), None);
        feed.listening(0);
        let first = feed.generation().unwrap();
        feed.announced(1);
        let second = feed.generation().unwrap();
        assert_ne!(first, second);
        feed.deaf();
        assert_eq!(feed.generation(), None);
        feed.listening(1);
        assert!(feed.generation().unwrap() > second);
    }
}
