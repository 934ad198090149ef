//! The in-memory attempt limiter.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::windows::Maps;
use super::{Admission, AttemptKey, AttemptLimiter, FailureLimit};
use crate::store::StoreError;

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
    use std::net::IpAddr;
    use std::time::Duration;

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
}
