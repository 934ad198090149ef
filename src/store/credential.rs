//! The store the token endpoint reads, and its error.

use std::future::Future;

use super::{AccountCredential, Binding, ExternalAccount, ServiceAccount, TokenDigest};

/// A store (of credentials, replay-cache entries, revocations or failed
/// attempts) could not answer, e.g. its database is unreachable.
#[derive(Debug, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Where service accounts and app passwords are looked up.
///
/// Implementations must look up by index (the username, the digest), never by
/// scanning, and must return a password only together with the account that
/// owns it.
pub trait CredentialStore: Send + Sync + 'static {
    /// The account named `username` with its app password whose digest is
    /// `digest`, or `None` when there is no such account or that account has
    /// no such password. Disabled accounts and expired passwords are returned
    /// too: the verifier decides.
    fn app_password(
        &self,
        username: &str,
        digest: &TokenDigest,
    ) -> impl Future<Output = Result<Option<AccountCredential>, StoreError>> + Send;

    /// Records the automatic service account of a client that authenticated
    /// with an input JWT from an external issuer, on its first use, and
    /// returns the stored record; the verifier refuses the JWT
    /// (`invalid_grant`) if that record is disabled, and names the client by
    /// the stored username.
    ///
    /// Records are keyed by [`ExternalAccount::id`], derived from the JWT's
    /// (`iss`, `sub`), never by username. The first use stores the account
    /// (active) under [`ExternalAccount::username`] or, if another account
    /// has that username, under
    /// [`ExternalAccount::disambiguated_username`]: an existing account is
    /// never taken over. Later uses keep the stored username, name and
    /// `active` flag, and move the stored expiry forward to the newest `exp`
    /// (written only when it grows by more than
    /// [`ExternalAccount::EXPIRY_SLACK`]). Stores may delete records that
    /// are expired and still active (a disabled record stays, so that a
    /// disabled identity stays disabled).
    ///
    /// The default records nothing and returns `Ok(None)`: every JWT that
    /// passes verification and policies is allowed, named by its
    /// [disambiguated username](ExternalAccount::disambiguated_username)
    /// (nothing keeps another name from being another account's).
    fn external_account(
        &self,
        account: &ExternalAccount,
    ) -> impl Future<Output = Result<Option<ServiceAccount>, StoreError>> + Send {
        let _ = account;
        std::future::ready(Ok(None))
    }

    /// The account named `username` (active or not, JWT identities
    /// included), or `None`. The token endpoint asks before it trades a
    /// token of a federated application, so that a disabled or removed
    /// account cannot renew its tokens, and before introspection reports a
    /// token active.
    ///
    /// The default knows no account: such trades are refused, and
    /// introspection reports the tokens of every account but the
    /// applications' automatic ones inactive.
    fn account(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<ServiceAccount>, StoreError>> + Send {
        let _ = username;
        std::future::ready(Ok(None))
    }

    /// The binding of the account with id `account_id` to the application
    /// `client_id`, or `None` if it is not bound there.
    ///
    /// The default binds no account anywhere: only applications that let
    /// every account in issue tokens to stored accounts.
    fn binding(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Binding>, StoreError>> + Send {
        let _ = (account_id, client_id);
        std::future::ready(Ok(None))
    }
}

impl<T: CredentialStore> CredentialStore for std::sync::Arc<T> {
    fn app_password(
        &self,
        username: &str,
        digest: &TokenDigest,
    ) -> impl Future<Output = Result<Option<AccountCredential>, StoreError>> + Send {
        (**self).app_password(username, digest)
    }

    fn external_account(
        &self,
        account: &ExternalAccount,
    ) -> impl Future<Output = Result<Option<ServiceAccount>, StoreError>> + Send {
        (**self).external_account(account)
    }

    fn account(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<ServiceAccount>, StoreError>> + Send {
        (**self).account(username)
    }

    fn binding(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Binding>, StoreError>> + Send {
        (**self).binding(account_id, client_id)
    }
}
