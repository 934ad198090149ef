//! Failed authentication attempts, counted per key, so that guessing
//! credentials is slow.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// An in-memory [`AttemptLimiter`] for one instance. Clones share counters.
///
/// Memory is bounded: expired windows are purged as new ones open, and at
/// most [`capacity`](Self::with_capacity) address keys are held (100 000
/// by default, a few MiB). When that many addresses have been tried within
/// one window, the address windows that end soonest are dropped first,
/// those not locked out before those that are. `client_id` keys are never
/// dropped before their window ends (the token endpoint only counts
/// `client_id`s that name an application, so they are few); at most
/// `capacity` of them are held too, and past that a new one is refused
/// with an error (the endpoint answers 503) rather than dropping another.
#[derive(Debug, Clone)]
pub struct MemoryAttemptLimiter {
    inner: Arc<Mutex<Maps>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Maps {
    clients: Windows,
    addresses: Windows,
}

#[derive(Debug, Default)]
struct Windows {
    keys: HashMap<String, Window>,
    /// Purge expired windows when the map reaches this size (doubles with
    /// the live set, capped by the capacity, so purging stays amortised O(1)).
    purge_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    /// Attempts admitted and not yet ended.
    pending: u32,
    /// The `max_failures` of the limit it was counted under: locked-out
    /// windows are kept longest when memory is full.
    max_failures: u32,
    ends: Instant,
}

impl Window {
    fn open(limit: FailureLimit, now: Instant) -> Self {
        Self {
            failures: 0,
            pending: 0,
            max_failures: limit.max_failures,
            ends: now
                .checked_add(limit.window)
                .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600)),
        }
    }

    fn locked(&self) -> bool {
        self.failures >= self.max_failures
    }
}

/// A new client key found the map full of live windows.
#[derive(Debug, thiserror::Error)]
#[error("the attempt limiter holds its maximum of {0} client_id counters")]
struct ClientsFull(usize);

impl Default for MemoryAttemptLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryAttemptLimiter {
    /// The default capacity: address keys held at most (and as many
    /// `client_id` keys).
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty limiter holding at most [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY)
    /// keys of each kind.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty limiter holding at most `capacity` (at least 8) address
    /// keys, and as many `client_id` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            capacity: capacity.max(8),
        }
    }

    /// How many keys are held (expired windows included until purged).
    pub fn len(&self) -> usize {
        let maps = self.lock();
        maps.clients.keys.len() + maps.addresses.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin_now(
        &self,
        key: &AttemptKey,
        limit: FailureLimit,
        now: Instant,
    ) -> Result<Admission, StoreError> {
        let mut maps = self.lock();
        let windows = maps.of(key.kind);
        let window = windows.live(key, limit, now, self.capacity)?;
        window.max_failures = limit.max_failures;
        Ok(if window.failures >= limit.max_failures {
            Admission::LockedOut(window.ends - now)
        } else if window.failures.saturating_add(window.pending) >= limit.max_failures {
            Admission::Busy
        } else {
            window.pending += 1;
            Admission::Admitted
        })
    }

    fn end_now(
        &self,
        key: &AttemptKey,
        limit: FailureLimit,
        failed: bool,
        now: Instant,
    ) -> Result<(), StoreError> {
        let mut maps = self.lock();
        let windows = maps.of(key.kind);
        match windows.keys.get_mut(key.as_str()) {
            Some(window) if window.ends > now => {
                window.pending = window.pending.saturating_sub(1);
                if failed {
                    window.failures = window.failures.saturating_add(1);
                } else if window.failures == 0 && window.pending == 0 {
                    windows.keys.remove(key.as_str());
                }
            }
            // Its window ended while it ran: a failure opens the next one.
            _ if failed => windows.live(key, limit, now, self.capacity)?.failures = 1,
            _ => {}
        }
        Ok(())
    }
}

impl Maps {
    fn of(&mut self, kind: AttemptKeyKind) -> &mut Windows {
        match kind {
            AttemptKeyKind::Client => &mut self.clients,
            AttemptKeyKind::Address => &mut self.addresses,
        }
    }
}

impl Windows {
    /// The open window of `key`, or a fresh one, making room if the map is
    /// full: expired windows go first; then, for address keys only, the
    /// ones that end soonest; a map full of live client windows is an error.
    fn live(
        &mut self,
        key: &AttemptKey,
        limit: FailureLimit,
        now: Instant,
        capacity: usize,
    ) -> Result<&mut Window, StoreError> {
        let name = key.as_str();
        match self.keys.get(name) {
            Some(window) if window.ends > now => {}
            Some(_) => {
                self.keys.insert(name.to_owned(), Window::open(limit, now));
            }
            None => {
                if self.keys.len() >= self.purge_at {
                    self.make_room(key.kind, now, capacity)?;
                }
                self.keys.insert(name.to_owned(), Window::open(limit, now));
            }
        }
        self.keys
            .get_mut(name)
            .ok_or_else(|| StoreError("attempt window vanished".into()))
    }

    fn make_room(
        &mut self,
        kind: AttemptKeyKind,
        now: Instant,
        capacity: usize,
    ) -> Result<(), StoreError> {
        self.keys.retain(|_, window| window.ends > now);
        if self.keys.len() >= capacity {
            match kind {
                AttemptKeyKind::Address => self.evict(capacity / 8),
                AttemptKeyKind::Client => {
                    tracing::error!(capacity, "attempt limiter full of client_id counters");
                    return Err(StoreError(Box::new(ClientsFull(capacity))));
                }
            }
        }
        self.purge_at = (self.keys.len() * 2).clamp(1024.min(capacity), capacity);
        Ok(())
    }

    /// Drops `count` windows: those not locked out first, soonest-ending first.
    fn evict(&mut self, count: usize) {
        let mut order: Vec<(bool, Instant, &String)> = self
            .keys
            .iter()
            .map(|(key, window)| (window.locked(), window.ends, key))
            .collect();
        let count = count.clamp(1, order.len());
        order.select_nth_unstable(count - 1);
        let victims: Vec<String> = order[..count]
            .iter()
            .map(|(_, _, key)| (*key).clone())
            .collect();
        tracing::warn!(
            dropped = victims.len(),
            "attempt limiter full: dropping the address windows that end soonest"
        );
        for key in victims {
            self.keys.remove(&key);
        }
    }
}

impl AttemptLimiter for MemoryAttemptLimiter {
    async fn begin(&self, key: &AttemptKey, limit: FailureLimit) -> Result<Admission, StoreError> {
        self.begin_now(key, limit, Instant::now())
    }

    async fn end(
        &self,
        key: &AttemptKey,
        limit: FailureLimit,
        failed: bool,
    ) -> Result<(), StoreError> {
        self.end_now(key, limit, failed, Instant::now())
    }

    async fn reset(&self, key: &AttemptKey) -> Result<(), StoreError> {
        self.lock().of(key.kind).keys.remove(key.as_str());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: FailureLimit = FailureLimit {
        max_failures: 3,
        window: Duration::from_secs(60),
    };

    fn address(i: u32) -> AttemptKey {
        AttemptKey::address(IpAddr::from(i.to_be_bytes()))
    }

    /// One attempt of `key` at `now` that fails.
    fn fail(limiter: &MemoryAttemptLimiter, key: &AttemptKey, limit: FailureLimit, now: Instant) {
        assert_eq!(
            limiter.begin_now(key, limit, now).unwrap(),
            Admission::Admitted
        );
        limiter.end_now(key, limit, true, now).unwrap();
    }

    #[test]
    fn key_is_locked_out_after_max_failures_until_the_window_ends() {
        let limiter = MemoryAttemptLimiter::new();
        let k = AttemptKey::client("k");
        let start = Instant::now();
        for _ in 0..3 {
            fail(&limiter, &k, LIMIT, start);
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(
            limiter.begin_now(&k, LIMIT, later).unwrap(),
            Admission::LockedOut(Duration::from_secs(40))
        );
        let other = AttemptKey::client("other");
        assert_eq!(
            limiter.begin_now(&other, LIMIT, later).unwrap(),
            Admission::Admitted
        );
        assert_eq!(
            limiter.begin_now(&k, LIMIT, start + LIMIT.window).unwrap(),
            Admission::Admitted
        );
    }

    #[test]
    fn attempts_in_flight_hold_the_remaining_slots() {
        let limiter = MemoryAttemptLimiter::new();
        let k = AttemptKey::client("k");
        let now = Instant::now();
        fail(&limiter, &k, LIMIT, now);
        for _ in 0..2 {
            assert_eq!(
                limiter.begin_now(&k, LIMIT, now).unwrap(),
                Admission::Admitted
            );
        }
        // 1 failure + 2 in flight: a fourth attempt may not start.
        assert_eq!(limiter.begin_now(&k, LIMIT, now).unwrap(), Admission::Busy);
        // One ends without failing: its slot is free again.
        limiter.end_now(&k, LIMIT, false, now).unwrap();
        assert_eq!(
            limiter.begin_now(&k, LIMIT, now).unwrap(),
            Admission::Admitted
        );
        // Both fail: locked out.
        limiter.end_now(&k, LIMIT, true, now).unwrap();
        limiter.end_now(&k, LIMIT, true, now).unwrap();
        assert!(matches!(
            limiter.begin_now(&k, LIMIT, now).unwrap(),
            Admission::LockedOut(_)
        ));
    }

    #[test]
    fn attempts_that_do_not_fail_leave_no_trace() {
        let limiter = MemoryAttemptLimiter::new();
        let k = AttemptKey::client("k");
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(
                limiter.begin_now(&k, LIMIT, now).unwrap(),
                Admission::Admitted
            );
            limiter.end_now(&k, LIMIT, false, now).unwrap();
        }
        assert!(limiter.is_empty());
    }

    #[test]
    fn a_failure_after_the_window_opens_a_new_one() {
        let limiter = MemoryAttemptLimiter::new();
        let k = AttemptKey::client("k");
        let start = Instant::now();
        for _ in 0..3 {
            fail(&limiter, &k, LIMIT, start);
        }
        let next = start + LIMIT.window + Duration::from_secs(1);
        fail(&limiter, &k, LIMIT, next);
        assert_eq!(
            limiter.begin_now(&k, LIMIT, next).unwrap(),
            Admission::Admitted
        );
    }

    #[test]
    fn a_failure_that_outlives_its_window_counts_in_the_next() {
        let limiter = MemoryAttemptLimiter::new();
        let k = AttemptKey::client("k");
        let start = Instant::now();
        let limit = FailureLimit::new(1, LIMIT.window);
        assert_eq!(
            limiter.begin_now(&k, limit, start).unwrap(),
            Admission::Admitted
        );
        let next = start + LIMIT.window + Duration::from_secs(1);
        limiter.end_now(&k, limit, true, next).unwrap();
        assert!(matches!(
            limiter.begin_now(&k, limit, next).unwrap(),
            Admission::LockedOut(_)
        ));
    }

    #[test]
    fn memory_is_bounded_and_locked_out_addresses_are_kept_longest() {
        let limiter = MemoryAttemptLimiter::with_capacity(64);
        let start = Instant::now();
        let locked = AttemptKey::address("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            fail(&limiter, &locked, LIMIT, start);
        }
        for i in 0..10_000 {
            fail(&limiter, &address(i), LIMIT, start);
            assert!(limiter.len() <= 64);
        }
        assert!(matches!(
            limiter.begin_now(&locked, LIMIT, start).unwrap(),
            Admission::LockedOut(_)
        ));
    }

    #[test]
    fn eviction_never_resets_a_partly_filled_client_counter() {
        let limiter = MemoryAttemptLimiter::with_capacity(8);
        let victim = AttemptKey::client("victim");
        let start = Instant::now();
        fail(&limiter, &victim, LIMIT, start);
        fail(&limiter, &victim, LIMIT, start);
        // A flood of other keys, every one newer and ending later.
        for i in 0..10_000 {
            let now = start + Duration::from_millis(u64::from(i));
            fail(&limiter, &address(i), LIMIT, now);
        }
        let now = start + Duration::from_secs(11);
        fail(&limiter, &victim, LIMIT, now);
        assert!(matches!(
            limiter.begin_now(&victim, LIMIT, now).unwrap(),
            Admission::LockedOut(_)
        ));
    }

    #[test]
    fn client_counters_beyond_capacity_are_refused_not_evicted() {
        let limiter = MemoryAttemptLimiter::with_capacity(8);
        let start = Instant::now();
        for i in 0..8 {
            fail(
                &limiter,
                &AttemptKey::client(&format!("c{i}")),
                LIMIT,
                start,
            );
        }
        assert!(
            limiter
                .begin_now(&AttemptKey::client("new"), LIMIT, start)
                .is_err()
        );
        // The counters held are intact, and expired ones make room.
        fail(&limiter, &AttemptKey::client("c0"), LIMIT, start);
        let later = start + LIMIT.window;
        assert_eq!(
            limiter
                .begin_now(&AttemptKey::client("new"), LIMIT, later)
                .unwrap(),
            Admission::Admitted
        );
    }

    #[test]
    fn expired_windows_are_purged() {
        let limiter = MemoryAttemptLimiter::with_capacity(4096);
        let start = Instant::now();
        let short = FailureLimit::new(1, Duration::from_secs(1));
        for i in 0..2000 {
            fail(&limiter, &address(i), short, start);
        }
        let later = start + Duration::from_secs(2);
        for i in 2000..4000 {
            fail(&limiter, &address(i), short, later);
        }
        assert!(limiter.len() < 4000, "{}", limiter.len());
    }

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
