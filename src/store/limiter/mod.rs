//! Failed authentication attempts, counted per key, so that guessing
//! credentials is slow.

mod memory;
mod windows;

pub use memory::MemoryAttemptLimiter;

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use super::StoreError;

/// How many failures a key may have within a window before it is locked out
/// until the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailureLimit {
    max_failures: u32,
    window: Duration,
}

impl FailureLimit {
    /// `max_failures` failures (at least 1) within `window` (at least 1 ms).
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window: window.max(Duration::from_millis(1)),
        }
    }

    /// Failures after which the key is locked out.
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// The window, opened by a key's first attempt.
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// What a failure counter is kept for: a `client_id` or a client address.
///
/// The kind decides how a bounded limiter may make room: address counters
/// are many (anyone can bring new addresses) and may be dropped when memory
/// is full; `client_id` counters are few (one per configured application)
/// and are never dropped before their window ends, so that nobody can wipe
/// a victim's count by flooding the limiter with other keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptKey {
    kind: AttemptKeyKind,
    name: String,
}

/// The kind of an [`AttemptKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttemptKeyKind {
    /// A `client_id` (key `client:<client_id>`).
    Client,
    /// A client address (key `address:<ip>`, IPv6 by its /64).
    Address,
}

impl AttemptKey {
    /// The counter of a `client_id`: `client:<client_id>`.
    pub fn client(client_id: &str) -> Self {
        Self {
            kind: AttemptKeyKind::Client,
            name: format!("client:{client_id}"),
        }
    }

    /// The counter of a client address: `address:<ip>`; an IPv6 address
    /// counts by its /64 (the block one host usually holds), an IPv4-mapped
    /// one as IPv4.
    pub fn address(address: IpAddr) -> Self {
        let name = match address.to_canonical() {
            IpAddr::V4(v4) => format!("address:{v4}"),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("address:{}/64", Ipv6Addr::from(prefix))
            }
        };
        Self {
            kind: AttemptKeyKind::Address,
            name,
        }
    }

    /// What the counter is kept for.
    pub fn kind(&self) -> AttemptKeyKind {
        self.kind
    }

    /// The key as a string (`client:…`, `address:…`), as stores name it.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for AttemptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The answer of [`AttemptLimiter::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// The attempt holds one of the key's failure slots until
    /// [`end`](AttemptLimiter::end): go ahead.
    Admitted,
    /// Every free slot is held by an attempt still in flight: try again
    /// when one ends (a success gives its slot back).
    Busy,
    /// The key has `max_failures` failures in its window, which ends in
    /// the given time.
    LockedOut(Duration),
}

/// Counts failed attempts per key, so that guessing credentials is slow.
/// Share one between instances so that failures through any of them count.
///
/// **Count, then decide.** An attempt first takes a failure slot
/// ([`begin`](Self::begin)), in the same atomic step that decides whether
/// the key may try at all, and only then are its credentials checked; it
/// [`end`](Self::end)s as a failure (the slot stays taken) or not (the slot
/// is given back). A key therefore never has more attempts under way or
/// failed than `max_failures` per window, however many arrive at once, and
/// an attempt that never ends (its request dropped midway) keeps its slot
/// until the window ends: it counts as a failure.
///
/// Each key has a *fixed window anchored at its first attempt*: it opens a
/// window of [`FailureLimit::window`]; once [`FailureLimit::max_failures`]
/// failures fall in it, the key is locked out until the window ends; a key
/// whose attempts all ended without failing is forgotten. This needs one
/// small record and one expiry per key, tells exactly when to retry, and
/// bounds guessing to `max_failures` per window on average (at worst twice
/// that around a window's end), the long-run rate of a sliding window at a
/// fraction of its memory.
///
/// Implementations keep a key no longer than its window, so memory is
/// bounded by the number of keys tried within one window.
pub trait AttemptLimiter: Send + Sync + 'static {
    /// In one atomic step: if `key` has `limit.max_failures()` failures in
    /// its window, [`Admission::LockedOut`]; else if failures and attempts
    /// in flight fill them, [`Admission::Busy`]; else takes a slot
    /// (opening a window of `limit.window()` if none is open) and answers
    /// [`Admission::Admitted`].
    fn begin(
        &self,
        key: &AttemptKey,
        limit: FailureLimit,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send;

    /// Ends an attempt that [`begin`](Self::begin) admitted: `failed`
    /// counts it as a failure (opening a window if its own has ended),
    /// otherwise its slot is given back.
    fn end(
        &self,
        key: &AttemptKey,
        limit: FailureLimit,
        failed: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the failures of `key` (an operator unlocking a client).
    fn reset(&self, key: &AttemptKey) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<T: AttemptLimiter> AttemptLimiter for Arc<T> {
    fn begin(
        &self,
        key: &AttemptKey,
        limit: FailureLimit,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send {
        (**self).begin(key, limit)
    }

    fn end(
        &self,
        key: &AttemptKey,
        limit: FailureLimit,
        failed: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).end(key, limit, failed)
    }

    fn reset(&self, key: &AttemptKey) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).reset(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(AttemptKey::address(a), AttemptKey::address(b));
        assert_eq!(AttemptKey::address(a).as_str(), "address:2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(AttemptKey::address(mapped).as_str(), "address:192.0.2.7");
    }
}
