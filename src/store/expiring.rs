//! A set of keys, each remembered until its expiry: the in-memory core of
//! the replay cache and the revocation list.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub(crate) struct ExpiringSet {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Key -> expiry (Unix seconds).
    keys: HashMap<String, u64>,
    /// Purge expired keys when the map reaches this size (doubles with the
    /// live set, so purging stays amortised O(1)).
    purge_at: usize,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ExpiringSet {
    /// Inserts `key` until `expires_at`; `false` if it is present and unexpired.
    pub(crate) fn insert(&self, key: &str, expires_at: u64) -> bool {
        let now = now();
        let mut entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if entries.keys.len() >= entries.purge_at {
            entries.keys.retain(|_, expires| *expires >= now);
            entries.purge_at = (entries.keys.len() * 2).max(1024);
        }
        match entries.keys.get(key) {
            Some(expires) if *expires >= now => false,
            _ => {
                entries.keys.insert(key.to_owned(), expires_at);
                true
            }
        }
    }

    /// Removes `key`, expired or not.
    pub(crate) fn remove(&self, key: &str) {
        let mut entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        entries.keys.remove(key);
    }

    /// Whether `key` is present and unexpired.
    pub(crate) fn contains(&self, key: &str) -> bool {
        let entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .keys
            .get(key)
            .is_some_and(|expires| *expires >= now())
    }

    /// How many keys are held (expired ones included until purged).
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .len()
    }
}
