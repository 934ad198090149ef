//! The endpoint's own view of the accounts: who is bound to which
//! application, and whether the account behind a token still exists and is
//! active. It reads the same [`CredentialStore`] as the default verifier, but
//! is asked by the endpoint itself, so a custom verifier cannot skip it.

use crate::BoxFuture;
use crate::store::{Binding, CredentialStore, ServiceAccount, StoreError};

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
