//! The stores as the endpoint sees them, behind pointers: the accounts (who
//! is bound to which application, and whether the account behind a token
//! still exists and is active), the revocation list and the replay cache.
//!
//! The directory reads the same [`CredentialStore`](crate::store::CredentialStore) as the default
//! verifier, but is asked by the endpoint itself, so a custom verifier cannot
//! skip it.

/// A `CredentialStore`'s account and binding lookups behind a pointer: the
/// store's one object-safe mirror, which `AnyStore` uses too.
pub(crate) use crate::store::ErasedCredentials as Directory;
/// A `ReplayCache` behind a pointer (its future boxed).
pub(crate) use crate::store::ErasedReplay as Replays;
/// A `RevocationList` behind a pointer (its futures boxed).
pub(crate) use crate::store::ErasedRevocations as Revocations;
