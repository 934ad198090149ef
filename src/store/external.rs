//! The automatic accounts of input-JWT identities.

use std::time::{Duration, SystemTime};

use super::{JWT_ID_PREFIX, ServiceAccount, TokenDigest};

/// The automatic service account of a client that authenticated with an
/// input JWT from an external issuer, as the verifier asks a
/// [`CredentialStore`](super::CredentialStore) to record it (see
/// [`CredentialStore::external_account`](super::CredentialStore::external_account)).
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
    /// when `username` is empty, has control characters, has the form of
    /// an application's automatic account (`ak-…-client_credentials`, see
    /// [`ServiceAccount::is_automatic_username`]) or of a disambiguated
    /// username (another identity's fallback): no input JWT ever holds such
    /// a name, even for an application added later.
    pub fn candidate_usernames(&self) -> Vec<String> {
        let usable = !self.username.is_empty()
            && !self.username.chars().any(char::is_control)
            && !ServiceAccount::is_automatic_username(&self.username)
            && !is_disambiguated(&self.username);
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

/// Whether `username` has the form of a [disambiguated
/// username](ExternalAccount::disambiguated_username) (`…@` and 12 lower-case
/// hex digits): another identity's fallback, which anyone can compute from
/// its `iss` and `sub`, so no identity may ask for it.
fn is_disambiguated(username: &str) -> bool {
    username.rsplit_once('@').is_some_and(|(_, hash)| {
        hash.len() == 12 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AdminError;

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
    fn a_jwt_identity_never_asks_for_another_identitys_disambiguated_name() {
        // The victim's fallback name is computable from its (iss, sub):
        // asked for first, it would leave the victim no name at all.
        let victim = ExternalAccount::new("https://k8s-prod.example", "deployer", "deployer");
        let taken = victim.disambiguated_username();
        let attacker = ExternalAccount::new("https://k8s-staging.example", "deployer", &taken);
        assert_eq!(
            attacker.candidate_usernames(),
            [attacker.disambiguated_username()]
        );
        assert_ne!(attacker.disambiguated_username(), taken);
        // A name that only looks a little like one is asked for.
        for asked in ["deployer@prod", "deployer@0123456789AB", "x@0123456789abc"] {
            let account = ExternalAccount::new("https://ci.example", "job", asked);
            assert_eq!(account.candidate_usernames()[0], asked, "{asked}");
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
