//! Service accounts, their app passwords and their bindings to applications.

use std::time::SystemTime;

use secrecy::SecretString;
use uuid::Uuid;

use super::{AdminError, TokenDigest};

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
    /// [`ExternalAccount`](super::ExternalAccount)): when its record expires, i.e. the newest `exp`
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
/// ([`ExternalAccount::id`](super::ExternalAccount::id)); no service account's id starts with it.
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
    /// [`ExternalAccount`](super::ExternalAccount); its id starts with [`JWT_ID_PREFIX`]) rather than
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
    /// logs ([`AdminError::InvalidUsername`]), a display name with a control
    /// character ([`AdminError::InvalidName`]), a username of the automatic form
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
        if self.name.chars().any(char::is_control) {
            return Err(AdminError::InvalidName(self.name.clone()));
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

/// The scopes of a space-separated scope string (RFC 6749 §3.3: a `scope`
/// claim or parameter, or a stored binding's scopes).
pub(crate) fn scope_list(scope: &str) -> Vec<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
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
    fn a_display_name_with_control_characters_is_refused() {
        // An escape sequence and a newline could hide or forge rows of a listing.
        for name in [
            "evil\u{1b}[2K",
            "one\nservice  Fake  yes",
            "tab\there",
            "del\u{7f}",
        ] {
            let account = ServiceAccount::new("bot").with_name(name);
            assert!(
                matches!(account.check(), Err(AdminError::InvalidName(_))),
                "{name:?}"
            );
        }
        let plain = ServiceAccount::new("bot").with_name("Deploy bot (prod) — ü");
        assert!(plain.check().is_ok());
    }
}
