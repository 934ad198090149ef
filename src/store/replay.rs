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

    /// Forgets `key`, so that its next [`first_use`](Self::first_use) is a
    /// first use again. The token endpoint calls it when a request whose
    /// single-use JWT it recorded could not be answered (a store or
    /// verifier that could not decide: 503), so that the client may send
    /// the same JWT again; no token was issued for it. The default keeps
    /// the key until it expires (the JWT stays used up).
    fn forget(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = key;
        async { Ok(()) }
    }
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

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        self.seen.remove(key);
        Ok(())
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

    fn forget(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).forget(key)
    }
}

#[cfg(test)]
mod tests {
    use super::{MemoryReplayCache, ReplayCache};

    #[tokio::test]
    async fn a_forgotten_key_is_a_first_use_again() {
        let cache = MemoryReplayCache::new();
        let live = u64::MAX / 2;
        assert!(cache.first_use("k", live).await.unwrap());
        assert!(!cache.first_use("k", live).await.unwrap());
        cache.forget("k").await.unwrap();
        assert!(cache.first_use("k", live).await.unwrap());
        assert!(!cache.first_use("k", live).await.unwrap());
        cache.forget("never-used").await.unwrap();
        assert_eq!(cache.len(), 1);
    }
}
