//! Revoked access tokens: their ids, remembered until they expire.

use std::future::Future;
use std::sync::Arc;

use super::StoreError;
use super::expiring::ExpiringSet;

/// The ids (`jti`) of revoked tokens, each kept until its token expires
/// (RFC 7009). Share one between instances so that a revocation through one
/// is seen by all.
pub trait RevocationList: Send + Sync + 'static {
    /// Revokes the token `jti`, which expires at `expires_at` (Unix seconds).
    fn revoke(
        &self,
        jti: &str,
        expires_at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the token `jti` was revoked.
    fn is_revoked(&self, jti: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// An in-memory [`RevocationList`] for one instance. Clones share entries.
#[derive(Debug, Clone, Default)]
pub struct MemoryRevocationList {
    revoked: Arc<ExpiringSet>,
}

impl MemoryRevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RevocationList for MemoryRevocationList {
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        self.revoked.insert(jti, expires_at);
        Ok(())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self.revoked.contains(jti))
    }
}
