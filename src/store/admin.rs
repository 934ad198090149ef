//! Changing accounts, app passwords and bindings at run time.

use std::future::Future;
use std::time::SystemTime;

use secrecy::SecretString;

use super::{AppPassword, Binding, ServiceAccount, StoreError, TokenDigest};

/// Why an administrative change could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// An account with this username exists already.
    #[error("a service account named {0:?} exists already")]
    AccountExists(String),
    /// This username belongs to an identity recorded from input JWTs (see
    /// [`ServiceAccount::is_jwt_identity`]): it never becomes a service
    /// account, and never gets app passwords or bindings. Choose another
    /// username.
    #[error(
        "{0:?} is the username of an identity recorded from input JWTs, not of a service \
         account: choose another username"
    )]
    NameOfJwtIdentity(String),
    /// The username has the form of an application's automatic account,
    /// `ak-<application name>-client_credentials`, which is reserved.
    #[error(
        "username {0:?} has the reserved form of an application's automatic account \
         (ak-<application name>-client_credentials)"
    )]
    ReservedUsername(String),
    /// The username is empty, or not printable ASCII without spaces.
    #[error("username {0:?} must be printable ASCII without spaces")]
    InvalidUsername(String),
    /// The display name contains a control character (a newline, an escape
    /// sequence), which could hide or forge rows wherever it is shown.
    #[error("display name {0:?} contains control characters")]
    InvalidName(String),
    /// The account id is empty, or starts with a prefix reserved for
    /// input-JWT identities (`jwt:`) or automatic accounts
    /// (`client_credentials:`).
    #[error("account id {0:?} is empty or in a reserved namespace (jwt:, client_credentials:)")]
    ReservedId(String),
    /// Another account (by another username) has this account's `id` or
    /// `uuid`.
    #[error("another account has the id or UUID given for {0:?}")]
    IdTaken(String),
    /// The binding cannot be stored (see [`Binding::check`]).
    #[error("invalid binding: {0}")]
    InvalidBinding(String),
    /// No account has this username.
    #[error("no service account named {0:?}")]
    NoSuchAccount(String),
    /// The app password being imported is stored already, for another
    /// account: it stays with that account.
    #[error("this app password belongs to another service account")]
    PasswordOfAnotherAccount,
    /// The store could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Managing service accounts and app passwords at run time (authentik's
/// "Create service account" and token management).
///
/// Changes take effect on the next token request, on every instance that
/// shares the store.
pub trait AccountAdmin: Send + Sync + 'static {
    /// Creates `account` and a first app password (expiring at `expires`) in
    /// one step, and returns the token: the only time it is ever seen.
    ///
    /// Fails if [`ServiceAccount::check`] does; with
    /// [`AdminError::AccountExists`] if the username is taken,
    /// [`AdminError::NameOfJwtIdentity`] if an input-JWT identity holds it,
    /// and [`AdminError::IdTaken`] if another account has its id or UUID.
    fn create_service_account(
        &self,
        account: ServiceAccount,
        expires: Option<SystemTime>,
    ) -> impl Future<Output = Result<(ServiceAccount, SecretString), AdminError>> + Send;

    /// Every service account, by username.
    fn list_service_accounts(
        &self,
    ) -> impl Future<Output = Result<Vec<ServiceAccount>, StoreError>> + Send;

    /// Adds another app password to the account `username` (several may be
    /// valid at once, so clients rotate without downtime); returns the token.
    /// [`AdminError::NoSuchAccount`] if there is no account `username`,
    /// [`AdminError::NameOfJwtIdentity`] if it is an input-JWT identity.
    fn add_app_password(
        &self,
        username: &str,
        expires: Option<SystemTime>,
    ) -> impl Future<Output = Result<SecretString, AdminError>> + Send;

    /// Revokes the app password with this digest; whether it existed.
    fn revoke_app_password(
        &self,
        digest: &TokenDigest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Enables or disables the account `username`; whether it exists.
    fn set_account_active(
        &self,
        username: &str,
        active: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Brings in an account that comes from elsewhere (a configuration file,
    /// another system), keeping its `id` and `uuid` so that its subjects do
    /// not change. If an account with this username exists already, it is
    /// left unchanged (name, `active` and ids included) and returned: the
    /// store is authoritative once an account is in it, so importing is
    /// idempotent, e.g. on every start of a server. Otherwise `account` is
    /// inserted and returned.
    ///
    /// Never merges with an input-JWT identity: if one holds the username,
    /// [`AdminError::NameOfJwtIdentity`] (the identity keeps its name; import
    /// the account under another). Fails if [`ServiceAccount::check`] does,
    /// and with [`AdminError::IdTaken`] if another account has the same `id`
    /// or `uuid`.
    fn import_service_account(
        &self,
        account: ServiceAccount,
    ) -> impl Future<Output = Result<ServiceAccount, AdminError>> + Send;

    /// Brings in an app password whose token is known only by its digest,
    /// for the account `username` (`password.account_id` is ignored: the
    /// stored account's id is used).
    ///
    /// `Ok(true)`: it was inserted. `Ok(false)`: this digest is stored
    /// already for this account, and left unchanged (its expiry included).
    /// [`AdminError::NoSuchAccount`] if there is no account `username`;
    /// [`AdminError::NameOfJwtIdentity`] if it is an input-JWT identity;
    /// [`AdminError::PasswordOfAnotherAccount`] if the digest is stored for
    /// another account, which keeps it: a token never moves between accounts.
    fn import_app_password(
        &self,
        username: &str,
        password: AppPassword,
    ) -> impl Future<Output = Result<bool, AdminError>> + Send;

    /// Binds the account `username` to the application `binding.client_id`
    /// with `binding.scopes`, replacing an earlier binding there.
    /// [`AdminError::NoSuchAccount`] if there is no account `username`,
    /// [`AdminError::NameOfJwtIdentity`] if it is an input-JWT identity
    /// (those are never bound), [`AdminError::InvalidBinding`] if
    /// [`Binding::check`] fails.
    fn bind_account(
        &self,
        username: &str,
        binding: Binding,
    ) -> impl Future<Output = Result<(), AdminError>> + Send;

    /// Removes the binding of the account `username` to the application
    /// `client_id`; whether there was one. Its next token request there is
    /// refused.
    fn unbind_account(
        &self,
        username: &str,
        client_id: &str,
    ) -> impl Future<Output = Result<bool, AdminError>> + Send;

    /// The bindings of the account `username`, by `client_id` (byte order).
    fn list_bindings(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Vec<Binding>, AdminError>> + Send;
}
