//! The endpoint's own view of the accounts: who is bound to which
//! application, and whether the account behind a token still exists and is
//! active. It reads the same [`CredentialStore`](crate::store::CredentialStore)
//! as the default verifier, but is asked by the endpoint itself, so a custom
//! verifier cannot skip it.

/// A `CredentialStore`'s lookups behind a pointer: the store's one
/// object-safe mirror, which `AnyStore` uses too.
pub(crate) use crate::store::ErasedCredentials as Directory;
