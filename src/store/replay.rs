//! Single use of JWT ids: a replay cache remembers each `jti` until its
//! token expires.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::StoreError;

/// Remembers token ids until they expire, so each is accepted once.
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `key` until `expires_at` (Unix seconds). `true` the first time
    /// a key is seen (while unexpired), `false` for a replay.
    fn first_use(
        &self,
        key: &str,
        expires_at: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// An in-memory [`ReplayCache`] for one instance. Expired entries are purged
/// as new ones arrive. Clones share the same entries.
#[derive(Debug, Clone, Default)]
pub struct MemoryReplayCache {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    seen: HashMap<String, u64>,
    /// Purge when the map reaches this size (doubles with the live set).
    purge_at: usize,
}

impl MemoryReplayCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&self, key: &str, expires_at: u64) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if entries.seen.len() >= entries.purge_at {
            entries.seen.retain(|_, expires| *expires >= now);
            entries.purge_at = (entries.seen.len() * 2).max(1024);
        }
        match entries.seen.get(key) {
            Some(expires) if *expires >= now => false,
            _ => {
                entries.seen.insert(key.to_owned(), expires_at);
                true
            }
        }
    }
}

impl ReplayCache for MemoryReplayCache {
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, StoreError> {
        Ok(self.record(key, expires_at))
    }
}

impl<T: ReplayCache> ReplayCache for Arc<T> {
    fn first_use(
        &self,
        key: &str,
        expires_at: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).first_use(key, expires_at)
    }
}
