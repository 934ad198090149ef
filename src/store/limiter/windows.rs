//! The bounded map of failure windows behind the in-memory limiter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{AttemptKey, AttemptKeyKind, FailureLimit};
use crate::store::StoreError;

/// The windows of each kind of key.
#[derive(Debug, Default)]
pub(super) struct Maps {
    pub(super) clients: Windows,
    pub(super) addresses: Windows,
}

/// The open windows of one kind of key, by key.
#[derive(Debug, Default)]
pub(super) struct Windows {
    pub(super) keys: HashMap<String, Window>,
    /// Purge expired windows when the map reaches this size (doubles with
    /// the live set, capped by the capacity, so purging stays amortised O(1)).
    purge_at: usize,
}

/// One key's failures and attempts in flight, until its window ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) failures: u32,
    /// Attempts admitted and not yet ended.
    pub(super) pending: u32,
    /// The `max_failures` of the limit it was counted under: locked-out
    /// windows are kept longest when memory is full.
    pub(super) max_failures: u32,
    pub(super) ends: Instant,
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

impl Maps {
    pub(super) fn of(&mut self, kind: AttemptKeyKind) -> &mut Windows {
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
    pub(super) fn live(
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
