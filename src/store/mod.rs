//! Where service accounts and their app-password tokens live.
//!
//! The issuer's default credential verifier reads a [`CredentialStore`]. Tokens
//! are never stored, only their SHA-256 [`TokenDigest`]: app passwords are
//! random, high-entropy secrets, so a fast hash is enough and a slow password
//! hash would only hand attackers a denial-of-service lever.
//!
//! This module knows nothing of HTTP or OAuth2.

mod digest;
mod expiring;
mod limiter;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod replay;
mod revocation;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use digest::TokenDigest;
pub use limiter::{
    Admission, AttemptKey, AttemptKeyKind, AttemptLimiter, FailureLimit, MemoryAttemptLimiter,
};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use replay::{MemoryReplayCache, ReplayCache};
pub use revocation::{MemoryRevocationList, RevocationList};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use std::future::Future;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use uuid::Uuid;

/// A non-human account that machines authenticate as (authentik's "service
/// account").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceAccount {
    /// Stable internal id; the default `sub` of tokens is a salted hash of it.
    pub id: String,
    /// Stable UUID, for the `uuid` subject mode.
    pub uuid: Uuid,
    /// Unique login name (`username` in token requests).
    pub username: String,
    /// Display name.
    pub name: String,
    /// A disabled account cannot authenticate.
    pub active: bool,
    /// For the automatic account of an input-JWT identity (see
    /// [`ExternalAccount`]): when its record expires, i.e. the newest `exp`
    /// seen; a store may then delete it. `None` for every other account.
    /// Set by the stores: creating or importing an account ignores it.
    pub expires: Option<SystemTime>,
}

impl ServiceAccount {
    /// A new active account with a fresh UUID, which also serves as its id.
    pub fn new(username: impl Into<String>) -> Self {
        let uuid = Uuid::new_v4();
        let username = username.into();
        Self {
            id: uuid.to_string(),
            uuid,
            name: username.clone(),
            username,
            active: true,
            expires: None,
        }
    }

    /// Sets the display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the internal id (for accounts that come from elsewhere).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the UUID.
    pub fn with_uuid(mut self, uuid: Uuid) -> Self {
        self.uuid = uuid;
        self
    }

    /// Enables or disables the account.
    pub fn with_active(mut self, active: bool) -> Self {
        self.active = active;
        self
    }
}

/// One app-password token of a service account, as stored: its digest, never
/// the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppPassword {
    /// SHA-256 of the token.
    pub digest: TokenDigest,
    /// The `id` of the account it belongs to.
    pub account_id: String,
    /// After this instant the token no longer authenticates.
    pub expires: Option<SystemTime>,
}

impl AppPassword {
    /// An app password with this digest for the account `account_id`.
    pub fn new(account_id: impl Into<String>, digest: TokenDigest) -> Self {
        Self {
            digest,
            account_id: account_id.into(),
            expires: None,
        }
    }

    /// Sets an expiry.
    pub fn with_expires(mut self, expires: SystemTime) -> Self {
        self.expires = Some(expires);
        self
    }

    /// Generates a random token (256 bits, URL-safe) and returns it with its
    /// stored form. Show the token to its owner once; keep only the
    /// `AppPassword`.
    pub fn generate(account_id: impl Into<String>) -> (SecretString, Self) {
        let token = TokenDigest::random_token();
        let digest = TokenDigest::of(&token);
        (SecretString::from(token), Self::new(account_id, digest))
    }
}

/// A service account together with one of its app passwords.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AccountCredential {
    /// The account.
    pub account: ServiceAccount,
    /// The app password, which belongs to `account`.
    pub password: AppPassword,
}

impl AccountCredential {
    /// Pairs an account with one of its app passwords.
    pub fn new(account: ServiceAccount, password: AppPassword) -> Self {
        Self { account, password }
    }
}

/// The automatic service account of a client that authenticated with an
/// input JWT from an external issuer, as the verifier asks a
/// [`CredentialStore`] to record it (see
/// [`CredentialStore::external_account`]).
///
/// Its identity is the JWT's (`iss`, `sub`): `id` and `uuid` are derived from
/// that pair, never from a username, so a JWT that claims the username of an
/// existing human or service account can never become that account.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExternalAccount {
    /// The input JWT's `iss`.
    pub issuer: String,
    /// The input JWT's `sub`.
    pub subject: String,
    /// The account id, derived from (`iss`, `sub`): `jwt:` and the hex
    /// SHA-256 of `iss`, a NUL and `sub`. Records are keyed by it.
    pub id: String,
    /// The account UUID (version 5 of the same pair).
    pub uuid: uuid::Uuid,
    /// The username the JWT asks for: its `preferred_username` or
    /// `nickname`, else `<application name>-<sub>`. Taken only if no other
    /// account has it; see [`disambiguated_username`](Self::disambiguated_username).
    pub username: String,
    /// Display name.
    pub name: String,
    /// The input JWT's `exp`: the record expires with it (later uses extend
    /// it to the newest `exp`). `None`: it does not expire.
    pub expires: Option<SystemTime>,
}

impl ExternalAccount {
    /// Stored expiries are only moved forward when the new one is later by
    /// more than this, so that most uses cost one indexed read and no write.
    pub const EXPIRY_SLACK: Duration = Duration::from_secs(60);

    /// The account for the JWT identity (`issuer`, `subject`) with the id
    /// and UUID derived from it, asking for `username`; named `username`,
    /// without expiry.
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        username: impl Into<String>,
    ) -> Self {
        let issuer = issuer.into();
        let subject = subject.into();
        let identity = format!("{issuer}\u{0}{subject}");
        let username = username.into();
        Self {
            id: format!("jwt:{}", TokenDigest::of(&identity).to_hex()),
            uuid: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, identity.as_bytes()),
            name: username.clone(),
            username,
            issuer,
            subject,
            expires: None,
        }
    }

    /// Sets the display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the expiry.
    pub fn with_expires(mut self, expires: Option<SystemTime>) -> Self {
        self.expires = expires;
        self
    }

    /// The username stored when [`username`](Self::username) belongs to
    /// another account already: `<username>@<first 12 hex digits of
    /// SHA-256(id)>`, stable for this identity. The existing account is never
    /// taken over.
    pub fn disambiguated_username(&self) -> String {
        let hash = TokenDigest::of(&self.id).to_hex();
        format!("{}@{}", self.username, &hash[..12])
    }

    /// The account as first recorded: active.
    pub fn to_service_account(&self, username: &str) -> ServiceAccount {
        ServiceAccount {
            id: self.id.clone(),
            uuid: self.uuid,
            username: username.to_owned(),
            name: self.name.clone(),
            active: true,
            expires: self.expires,
        }
    }

    /// Whether a stored expiry `stored` must be rewritten for this use:
    /// never when the record does not expire, always when this use does not,
    /// else when this `exp` is later by more than [`Self::EXPIRY_SLACK`].
    pub fn extends(&self, stored: Option<SystemTime>) -> bool {
        match (stored, self.expires) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(stored), Some(new)) => new > stored + Self::EXPIRY_SLACK,
        }
    }
}

/// The store could not answer (e.g. its database is unreachable).
#[derive(Debug, thiserror::Error)]
#[error("credential store unavailable: {0}")]
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
    /// passes verification and policies is allowed.
    fn external_account(
        &self,
        account: &ExternalAccount,
    ) -> impl Future<Output = Result<Option<ServiceAccount>, StoreError>> + Send {
        let _ = account;
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
}

/// Why an administrative change could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// An account with this username exists already.
    #[error("a service account named {0:?} exists already")]
    AccountExists(String),
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
    /// inserted and returned. Fails with [`AdminError::Store`] if another
    /// account has the same `id` or `uuid` in an SQL store.
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
    /// [`AdminError::PasswordOfAnotherAccount`] if the digest is stored for
    /// another account, which keeps it: a token never moves between accounts.
    fn import_app_password(
        &self,
        username: &str,
        password: AppPassword,
    ) -> impl Future<Output = Result<bool, AdminError>> + Send;
}
