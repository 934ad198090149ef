//! The SQL store's values: the parameters it binds, error mapping, time
//! conversions, the purge cadence of the replay cache and revocation list.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{AdminError, JWT_ID_PREFIX, StoreError};

/// How long a request waits for a pooled connection before the store reports
/// itself unavailable (and the endpoint answers 503).
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Expired replay-cache and revocation rows are deleted on every this many
/// inserts through one store (and on the first).
const PURGE_EVERY: u32 = 128;

/// The name of the table that records applied migrations: not sqlx's default
/// `_sqlx_migrations`, so an application's own sqlx migrations in the same
/// database do not collide with ours.
pub(crate) const MIGRATIONS_TABLE: &str = "_tower_m2m_auth_migrations";

/// Latest instant either database can hold comfortably (9999-12-31T23:59:59Z).
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

pub(crate) fn store_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError(Box::new(error))
}

/// Now, in Unix seconds (the unit of the replay cache and revocation list).
pub(crate) fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        i64::try_from(d.as_secs()).unwrap_or(MAX_UNIX_SECONDS)
    })
}

/// Unix seconds from the traits' `u64`, clamped to what the databases hold.
pub(crate) fn unix_seconds(seconds: u64) -> i64 {
    i64::try_from(seconds).map_or(MAX_UNIX_SECONDS, |s| s.min(MAX_UNIX_SECONDS))
}

/// `time` as Unix microseconds (negative before 1970), clamped to year 9999.
pub(crate) fn unix_micros(time: SystemTime) -> i64 {
    const MAX: i64 = MAX_UNIX_SECONDS * 1_000_000;
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).map_or(MAX, |us| us.min(MAX)),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(-MAX, |us| -us),
    }
}

/// The instant `micros` Unix microseconds denote.
pub(crate) fn from_unix_micros(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// Counts inserts and says when to purge expired rows.
#[derive(Debug, Default)]
pub(crate) struct PurgeTicker(AtomicU32);

impl PurgeTicker {
    /// Whether this insert should also purge (the first, then every
    /// `PURGE_EVERY`th).
    pub(crate) fn due(&self) -> bool {
        self.0
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PURGE_EVERY)
    }
}

/// A parameter of one of the store's statements.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// Text (ids, names, keys).
    Text(&'a str),
    /// Bytes (token digests).
    Bytes(&'a [u8]),
    /// An integer (Unix seconds or microseconds), or NULL.
    Int(Option<i64>),
    /// A flag.
    Flag(bool),
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(value: &'a str) -> Self {
        Self::Text(value)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(value: &'a String) -> Self {
        Self::Text(value)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(value: &'a [u8]) -> Self {
        Self::Bytes(value)
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(value: Option<i64>) -> Self {
        Self::Int(value)
    }
}

impl From<i64> for Param<'_> {
    fn from(value: i64) -> Self {
        Self::Int(Some(value))
    }
}

impl From<bool> for Param<'_> {
    fn from(value: bool) -> Self {
        Self::Flag(value)
    }
}

/// A [`Param`] that owns its value, for a write waiting in the writer's
/// queue (bound by sqlx or rusqlite once its batch runs).
#[derive(Debug, Clone)]
pub(crate) enum OwnedParam {
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// An integer, or NULL.
    Int(Option<i64>),
    /// A flag.
    Flag(bool),
}

impl OwnedParam {
    /// The parameter, borrowed.
    pub(crate) fn as_param(&self) -> Param<'_> {
        match self {
            Self::Text(value) => Param::Text(value),
            Self::Bytes(value) => Param::Bytes(value),
            Self::Int(value) => Param::Int(*value),
            Self::Flag(value) => Param::Flag(*value),
        }
    }
}

impl From<Param<'_>> for OwnedParam {
    fn from(param: Param<'_>) -> Self {
        match param {
            Param::Text(value) => Self::Text(value.to_owned()),
            Param::Bytes(value) => Self::Bytes(value.to_owned()),
            Param::Int(value) => Self::Int(value),
            Param::Flag(value) => Self::Flag(value),
        }
    }
}

/// Space-separated scopes, as the bindings table stores them (scopes never
/// contain spaces: [`Binding::check`](crate::store::Binding::check)).
pub(crate) fn join_scopes(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Why an account could not be inserted, given the id of the account that
/// holds its username (`None`: none does, so its id or UUID is taken).
pub(crate) fn refused_account(username: String, holder: Option<&str>) -> AdminError {
    match holder {
        Some(id) if is_jwt_id(id) => AdminError::NameOfJwtIdentity(username),
        Some(_) => AdminError::AccountExists(username),
        None => AdminError::IdTaken(username),
    }
}

/// Whether a stored account id is that of an input-JWT identity.
pub(crate) fn is_jwt_id(id: &str) -> bool {
    id.starts_with(JWT_ID_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_both_sides_of_the_epoch() {
        for time in [
            UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456),
            UNIX_EPOCH - Duration::from_micros(86_400_000_001),
            UNIX_EPOCH,
        ] {
            assert_eq!(from_unix_micros(unix_micros(time)), time);
        }
    }

    #[test]
    fn far_future_is_clamped_to_year_9999() {
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(unix_micros(far), MAX_UNIX_SECONDS * 1_000_000);
        assert_eq!(unix_seconds(u64::MAX), MAX_UNIX_SECONDS);
    }

    #[test]
    fn purge_is_due_on_the_first_insert_then_periodically() {
        let ticker = PurgeTicker::default();
        assert!(ticker.due());
        assert_eq!((1..PURGE_EVERY).filter(|_| ticker.due()).count(), 0);
        assert!(ticker.due());
    }
}
