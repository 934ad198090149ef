//! The stores as the endpoint sees them, behind pointers: the accounts (who
//! is bound to which application, and whether the account behind a token
//! still exists and is active), the revocation list and the replay cache.
//!
//! The directory reads the same [`CredentialStore`] as the default
//! verifier, but is asked by the endpoint itself, so a custom verifier cannot
//! skip it.

use crate::BoxFuture;
use crate::store::{
    Binding, CredentialStore, ReplayCache, RevocationList, ServiceAccount, StoreError,
};

/// A [`CredentialStore`]'s account and binding lookups behind a pointer.
pub(crate) trait Directory: Send + Sync + 'static {
    fn account<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, StoreError>>;
    fn binding<'a>(
        &'a self,
        account_id: &'a str,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Binding>, StoreError>>;
}

impl<T: CredentialStore> Directory for T {
    fn account<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, StoreError>> {
        Box::pin(CredentialStore::account(self, username))
    }

    fn binding<'a>(
        &'a self,
        account_id: &'a str,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Binding>, StoreError>> {
        Box::pin(CredentialStore::binding(self, account_id, client_id))
    }
}

/// A [`RevocationList`] behind a pointer (its futures boxed).
pub(crate) trait Revocations: Send + Sync + 'static {
    fn revoke<'a>(&'a self, jti: &'a str, expires_at: u64)
    -> BoxFuture<'a, Result<(), StoreError>>;
    fn is_revoked<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
}

impl std::fmt::Debug for dyn Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Revocations")
    }
}

impl<T: RevocationList> Revocations for T {
    fn revoke<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(RevocationList::revoke(self, jti, expires_at))
    }

    fn is_revoked<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(RevocationList::is_revoked(self, jti))
    }
}

/// A [`ReplayCache`] behind a pointer (its future boxed).
pub(crate) trait Replays: Send + Sync + 'static {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

impl<T: ReplayCache> Replays for T {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(ReplayCache::first_use(self, key, expires_at))
    }
}
