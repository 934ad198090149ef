//! Failed authentication attempts, counted per key, so that guessing
//! credentials is slow.

use std::collections::HashMap;
use std::future::Future;
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

    /// The window, opened by the first failure.
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// Counts failed attempts per key, so that guessing credentials is slow.
/// Share one between instances so that failures through any of them count.
///
/// Each key (the token endpoint uses one per `client_id` and one per client
/// address) has a *fixed window anchored at its first failure*: the first
/// failure opens a window of [`FailureLimit::window`]; once
/// [`FailureLimit::max_failures`] failures fall in it, the key is locked out
/// until the window ends, and the next failure after that opens a new one.
/// This needs one counter and one expiry per key (a single `INCR` in Redis),
/// tells exactly when to retry, and bounds guessing to `max_failures` per
/// window on average (at worst twice that around a window's end), the same
/// long-run rate a sliding window gives at a fraction of its memory.
///
/// Implementations keep a key no longer than its window, so memory is
/// bounded by the number of keys that failed within one window.
pub trait AttemptLimiter: Send + Sync + 'static {
    /// `None` if `key` may try now; `Some(wait)` if it has reached
    /// `limit.max_failures()` in its current window, which ends in `wait`.
    fn check(
        &self,
        key: &str,
        limit: FailureLimit,
    ) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;

    /// Counts one failure of `key`; the first one opens a window of
    /// `limit.window()`.
    fn record_failure(
        &self,
        key: &str,
        limit: FailureLimit,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the failures of `key` (an operator unlocking a client).
    fn reset(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<T: AttemptLimiter> AttemptLimiter for Arc<T> {
    fn check(
        &self,
        key: &str,
        limit: FailureLimit,
    ) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send {
        (**self).check(key, limit)
    }

    fn record_failure(
        &self,
        key: &str,
        limit: FailureLimit,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).record_failure(key, limit)
    }

    fn reset(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).reset(key)
    }
}

/// An in-memory [`AttemptLimiter`] for one instance. Clones share counters.
///
/// Memory is bounded: expired windows are purged as new ones open, and at
/// most [`capacity`](Self::with_capacity) keys are held (100 000 by
/// default, a few MiB). When that many keys have failed within one window
/// (many source addresses at once), the windows that end soonest are
/// dropped first, those of keys not yet locked out before those that are.
#[derive(Debug, Clone)]
pub struct MemoryAttemptLimiter {
    inner: Arc<Mutex<Windows>>,
    capacity: usize,
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
    /// The `max_failures` of the limit it was counted under: locked-out
    /// windows are kept longest when memory is full.
    max_failures: u32,
    ends: Instant,
}

impl Window {
    fn locked(&self) -> bool {
        self.failures >= self.max_failures
    }
}

impl Default for MemoryAttemptLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryAttemptLimiter {
    /// The default capacity: keys held at most.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty limiter holding at most [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) keys.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty limiter holding at most `capacity` keys (at least 8).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            capacity: capacity.max(8),
        }
    }

    /// How many keys are held (expired windows included until purged).
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_now(&self, key: &str, limit: FailureLimit, now: Instant) -> Option<Duration> {
        let windows = self.lock();
        let window = windows.keys.get(key)?;
        (window.ends > now && window.failures >= limit.max_failures).then(|| window.ends - now)
    }

    fn record_now(&self, key: &str, limit: FailureLimit, now: Instant) {
        let mut windows = self.lock();
        if let Some(window) = windows.keys.get_mut(key)
            && window.ends > now
        {
            window.failures = window.failures.saturating_add(1);
            window.max_failures = limit.max_failures;
            return;
        }
        if !windows.keys.contains_key(key) && windows.keys.len() >= windows.purge_at {
            windows.keys.retain(|_, window| window.ends > now);
            if windows.keys.len() >= self.capacity {
                windows.evict(self.capacity / 8);
            }
            windows.purge_at =
                (windows.keys.len() * 2).clamp(1024.min(self.capacity), self.capacity);
        }
        let ends = now
            .checked_add(limit.window)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        windows.keys.insert(
            key.to_owned(),
            Window {
                failures: 1,
                max_failures: limit.max_failures,
                ends,
            },
        );
    }
}

impl Windows {
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
            "attempt limiter full: dropping the windows that end soonest"
        );
        for key in victims {
            self.keys.remove(&key);
        }
    }
}

impl AttemptLimiter for MemoryAttemptLimiter {
    async fn check(&self, key: &str, limit: FailureLimit) -> Result<Option<Duration>, StoreError> {
        Ok(self.check_now(key, limit, Instant::now()))
    }

    async fn record_failure(&self, key: &str, limit: FailureLimit) -> Result<(), StoreError> {
        self.record_now(key, limit, Instant::now());
        Ok(())
    }

    async fn reset(&self, key: &str) -> Result<(), StoreError> {
        self.lock().keys.remove(key);
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

    #[test]
    fn key_is_locked_out_after_max_failures_until_the_window_ends() {
        let limiter = MemoryAttemptLimiter::new();
        let start = Instant::now();
        for _ in 0..2 {
            limiter.record_now("k", LIMIT, start);
        }
        assert_eq!(limiter.check_now("k", LIMIT, start), None);
        limiter.record_now("k", LIMIT, start);
        let later = start + Duration::from_secs(20);
        assert_eq!(
            limiter.check_now("k", LIMIT, later),
            Some(Duration::from_secs(40))
        );
        assert_eq!(limiter.check_now("other", LIMIT, later), None);
        assert_eq!(limiter.check_now("k", LIMIT, start + LIMIT.window), None);
    }

    #[test]
    fn a_failure_after_the_window_opens_a_new_one() {
        let limiter = MemoryAttemptLimiter::new();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.record_now("k", LIMIT, start);
        }
        let next = start + LIMIT.window + Duration::from_secs(1);
        limiter.record_now("k", LIMIT, next);
        assert_eq!(limiter.check_now("k", LIMIT, next), None);
    }

    #[test]
    fn memory_is_bounded_and_locked_out_keys_are_kept_longest() {
        let limiter = MemoryAttemptLimiter::with_capacity(64);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.record_now("locked", LIMIT, start);
        }
        for i in 0..10_000 {
            limiter.record_now(&format!("spray-{i}"), LIMIT, start);
            assert!(limiter.len() <= 64);
        }
        assert!(limiter.check_now("locked", LIMIT, start).is_some());
    }

    #[test]
    fn expired_windows_are_purged() {
        let limiter = MemoryAttemptLimiter::with_capacity(4096);
        let start = Instant::now();
        let short = FailureLimit::new(1, Duration::from_secs(1));
        for i in 0..2000 {
            limiter.record_now(&format!("old-{i}"), short, start);
        }
        let later = start + Duration::from_secs(2);
        for i in 0..2000 {
            limiter.record_now(&format!("new-{i}"), short, later);
        }
        assert!(limiter.len() < 4000, "{}", limiter.len());
    }
}
