//! Single use of JWT ids: a replay cache remembers each `jti` until its
//! token expires.

use std::future::Future;
use std::sync::Arc;

use super::StoreError;
use super::expiring::ExpiringSet;

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
    seen: Arc<ExpiringSet>,
}

impl MemoryReplayCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReplayCache for MemoryReplayCache {
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, StoreError> {
        Ok(self.seen.insert(key, expires_at))
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
