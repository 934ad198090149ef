//! Where service accounts and their app-password tokens live.
//!
//! The issuer's default credential verifier reads a [`CredentialStore`]. Tokens
//! are never stored, only their SHA-256 [`TokenDigest`]: app passwords are
//! random, high-entropy secrets, so a fast hash is enough and a slow password
//! hash would only hand attackers a denial-of-service lever.
//!
//! This module knows nothing of HTTP or OAuth2.

mod digest;
mod erased;
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
pub use erased::AnyStore;
pub(crate) use erased::ErasedCredentials;
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
    /// For the account of an input-JWT identity: the JWT's `iss`. `None` for
    /// every other account. Set by the stores, like `expires`.
    pub external_issuer: Option<String>,
    /// For the account of an input-JWT identity: the JWT's `sub`. `None` for
    /// every other account. Set by the stores, like `expires`.
    pub external_subject: Option<String>,
}

/// The id prefix of the accounts of input-JWT identities
/// ([`ExternalAccount::id`]); no service account's id starts with it.
pub const JWT_ID_PREFIX: &str = "jwt:";

/// The id prefix of applications' automatic accounts
/// (`client_credentials:<client_id>`, never stored); no service account's id
/// starts with it.
pub const AUTOMATIC_ID_PREFIX: &str = "client_credentials:";

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
            external_issuer: None,
            external_subject: None,
        }
    }

    /// Whether this is the account recorded for an input-JWT identity (see
    /// [`ExternalAccount`]; its id starts with [`JWT_ID_PREFIX`]) rather than
    /// a service account. Such an account never has app passwords or
    /// bindings, and no service account can be created or imported under its
    /// username.
    pub fn is_jwt_identity(&self) -> bool {
        self.id.starts_with(JWT_ID_PREFIX)
    }

    /// Whether `username` has the form of an application's automatic account,
    /// `ak-<application name>-client_credentials` (ASCII case ignored): no
    /// service account and no input-JWT identity may hold such a name.
    pub fn is_automatic_username(username: &str) -> bool {
        const PREFIX: &str = "ak-";
        const SUFFIX: &str = "-client_credentials";
        username.len() >= PREFIX.len() + SUFFIX.len()
            && username
                .get(..PREFIX.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(PREFIX))
            && username
                .get(username.len() - SUFFIX.len()..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(SUFFIX))
    }

    /// Checks that this account may be created or imported as a service
    /// account; every store runs this check first.
    ///
    /// Refused: an empty username, or one that is not printable ASCII
    /// without spaces, since usernames travel in form bodies and show in
    /// logs ([`AdminError::InvalidUsername`]), a username of the automatic form
    /// `ak-…-client_credentials` ([`AdminError::ReservedUsername`]), and an
    /// empty id or one in the namespaces of input-JWT identities (`jwt:`) or
    /// automatic accounts (`client_credentials:`)
    /// ([`AdminError::ReservedId`]). So a service account never shares a
    /// username, id, or any `sub` derived from them, with those identities.
    pub fn check(&self) -> Result<(), AdminError> {
        if self.username.is_empty() || !self.username.chars().all(|c| c.is_ascii_graphic()) {
            return Err(AdminError::InvalidUsername(self.username.clone()));
        }
        if Self::is_automatic_username(&self.username) {
            return Err(AdminError::ReservedUsername(self.username.clone()));
        }
        if self.id.is_empty()
            || self.id.starts_with(JWT_ID_PREFIX)
            || self.id.starts_with(AUTOMATIC_ID_PREFIX)
        {
            return Err(AdminError::ReservedId(self.id.clone()));
        }
        Ok(())
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

/// A service account's permission to get tokens at one application
/// (authentik's binding of a user to an application), with the scopes it may
/// get there.
///
/// A token request by an account that is not bound to the application it
/// names is refused (`invalid_grant`), unless that application explicitly
/// lets every account in. The scopes granted are those requested that both
/// the application and the binding allow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Binding {
    /// The application's `client_id`.
    pub client_id: String,
    /// The scopes the account may get at that application.
    pub scopes: Vec<String>,
}

impl Binding {
    /// A binding to the application `client_id`, allowing `scopes`.
    pub fn new<I, S>(client_id: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            client_id: client_id.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }

    /// Checks that this binding can be stored ([`AdminError::InvalidBinding`]
    /// otherwise): a `client_id` that is not empty and has no control
    /// characters, and scopes that are each an RFC 6749 `scope-token`
    /// (printable ASCII without spaces, `"` or `\`). Every store runs this
    /// check before binding.
    pub fn check(&self) -> Result<(), AdminError> {
        if self.client_id.is_empty() || self.client_id.chars().any(char::is_control) {
            return Err(AdminError::InvalidBinding(format!(
                "client_id {:?} is empty or contains control characters",
                self.client_id
            )));
        }
        if let Some(scope) = self.scopes.iter().find(|scope| !is_scope_token(scope)) {
            return Err(AdminError::InvalidBinding(format!(
                "scope {scope:?} is not printable ASCII without spaces, quotes or backslashes"
            )));
        }
        Ok(())
    }
}

/// Whether `scope` is an RFC 6749 §3.3 `scope-token`: printable ASCII
/// without spaces, `"` or `\`.
pub(crate) fn is_scope_token(scope: &str) -> bool {
    let scope_char = |c: char| c.is_ascii_graphic() && c != '"' && c != '\\';
    !scope.is_empty() && scope.chars().all(scope_char)
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
    /// SHA-256 of `iss`, a NUL and `sub`. Records are keyed by it. (The token
    /// endpoint refuses input JWTs with a control character in `iss` or
    /// `sub`, so the join has one reading.)
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
            id: format!("{JWT_ID_PREFIX}{}", TokenDigest::of(&identity).to_hex()),
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
    /// another account already, or may not be held by an input-JWT identity
    /// (see [`candidate_usernames`](Self::candidate_usernames)):
    /// `<username>@<first 12 hex digits of SHA-256(id)>`, control characters
    /// left out, stable for this identity. The existing account is never
    /// taken over.
    pub fn disambiguated_username(&self) -> String {
        let hash = TokenDigest::of(&self.id).to_hex();
        let username: String = self.username.chars().filter(|c| !c.is_control()).collect();
        format!("{username}@{}", &hash[..12])
    }

    /// The usernames a store tries, in order, when it first records this
    /// identity: [`username`](Self::username), then the
    /// [disambiguated](Self::disambiguated_username) one. Only the latter
    /// when `username` is empty, has control characters, or has the form of
    /// an application's automatic account (`ak-…-client_credentials`, see
    /// [`ServiceAccount::is_automatic_username`]): no input JWT ever holds
    /// such a name, even for an application added later.
    pub fn candidate_usernames(&self) -> Vec<String> {
        let usable = !self.username.is_empty()
            && !self.username.chars().any(char::is_control)
            && !ServiceAccount::is_automatic_username(&self.username);
        if usable {
            vec![self.username.clone(), self.disambiguated_username()]
        } else {
            vec![self.disambiguated_username()]
        }
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
            external_issuer: Some(self.issuer.clone()),
            external_subject: Some(self.subject.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_account_names_are_recognised_in_any_ascii_case() {
        for name in [
            "ak-Demo-client_credentials",
            "ak--client_credentials",
            "AK-x-CLIENT_CREDENTIALS",
            "ak-a b-client_credentials",
        ] {
            assert!(ServiceAccount::is_automatic_username(name), "{name}");
        }
        for name in [
            "ak-client_credentials",
            "ak-demo",
            "demo-client_credentials",
            "xak-demo-client_credentials",
            "ak-demo-client_credentials@0123456789ab",
            "ak-ü-client_credential",
        ] {
            assert!(!ServiceAccount::is_automatic_username(name), "{name}");
        }
    }

    #[test]
    fn a_jwt_identity_never_asks_for_a_reserved_or_unprintable_name() {
        let plain = ExternalAccount::new("https://ci.example", "job", "deployer");
        assert_eq!(
            plain.candidate_usernames(),
            ["deployer".to_owned(), plain.disambiguated_username()]
        );
        for asked in ["ak-Demo-client_credentials", "", "evil\nline"] {
            let account = ExternalAccount::new("https://ci.example", "job", asked);
            let candidates = account.candidate_usernames();
            assert_eq!(candidates, [account.disambiguated_username()], "{asked:?}");
            let name = &candidates[0];
            assert!(!ServiceAccount::is_automatic_username(name), "{name}");
            assert!(!name.chars().any(char::is_control), "{name:?}");
        }
    }

    #[test]
    fn the_accounts_of_jwt_identities_are_told_apart() {
        let identity = ExternalAccount::new("https://ci.example", "job", "deployer");
        let recorded = identity.to_service_account("deployer");
        assert!(recorded.is_jwt_identity());
        assert_eq!(
            recorded.external_issuer.as_deref(),
            Some("https://ci.example")
        );
        assert!(matches!(recorded.check(), Err(AdminError::ReservedId(_))));
        assert!(!ServiceAccount::new("deployer").is_jwt_identity());
        assert!(ServiceAccount::new("deployer").check().is_ok());
    }
}
