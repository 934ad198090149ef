//! An OAuth2 application (authentik's "provider"): the client that token
//! requests name with `client_id`.

use std::fmt;
use std::time::Duration;

use super::exchange_rules::{TokenExchange, is_resource_name};
use crate::keys::VerificationKeys;
use crate::policy::Policies;
use crate::store::{TokenDigest, is_scope_token};

/// How the `sub` claim of minted tokens is derived from the service account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectMode {
    /// Hex SHA-256 of `"<account id>-<salt>"` (authentik's default
    /// `hashed_user_id`): stable, and reveals nothing about the account.
    #[default]
    HashedId,
    /// The account's username.
    Username,
    /// The account's UUID.
    Uuid,
    /// The account's internal id.
    Id,
}

/// An application that clients request tokens for.
///
/// ```
/// use std::time::Duration;
/// use tower_m2m_auth::issuer::Application;
///
/// let app = Application::new("my-client-id", "my-app")
///     .with_allowed_scopes(["read", "write"])
///     .with_token_lifetime(Duration::from_secs(600));
/// assert_eq!(app.slug(), "my-app");
/// ```
#[derive(Clone)]
pub struct Application {
    pub(crate) client_id: String,
    pub(crate) slug: String,
    pub(crate) name: String,
    pub(crate) secret: Option<TokenDigest>,
    pub(crate) allowed_scopes: Vec<String>,
    pub(crate) token_lifetime: Duration,
    pub(crate) subject_mode: SubjectMode,
    /// Its issuer URL, set when the application is added to an endpoint.
    pub(crate) issuer: String,
    pub(crate) assertions: AssertionRules,
    pub(crate) allow_any_account: bool,
    /// Resources (RFC 8707) and audiences (RFC 8693) its tokens may be
    /// minted for; `resource` and `audience` choose among them.
    pub(crate) resources: Vec<String>,
    /// Its token exchange rules (RFC 8693); none: no exchange.
    pub(crate) exchange: Option<TokenExchange>,
    /// Token requests need a DPoP proof (see `issuer::dpop`).
    pub(crate) require_dpop: bool,
}

/// Why an application's own settings are refused when it is added to an
/// endpoint (inside [`ConfigError::Application`](super::ConfigError::Application)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplicationError {
    /// The `client_id` is empty or contains control characters.
    #[error("client_id {0:?} is empty or contains control characters")]
    ClientId(String),
    /// The name is empty or contains control characters.
    #[error("name {0:?} is empty or contains control characters")]
    Name(String),
    /// The slug is not a safe URL path segment.
    #[error("slug {0:?} must be letters, digits, '-', '_' or '.' (and not start with '.')")]
    Slug(String),
    /// An allowed scope is not an RFC 6749 §3.3 `scope-token`.
    #[error("scope {0:?} must be printable ASCII without spaces, quotes or backslashes")]
    Scope(String),
    /// The token lifetime is zero.
    #[error("the token lifetime must be at least one second")]
    TokenLifetime,
    /// The maximum input-JWT lifetime is zero.
    #[error("the maximum assertion lifetime must be at least one second")]
    MaxAssertionLifetime,
    /// The assertion leeway is over [`Application::MAX_ASSERTION_LEEWAY`].
    #[error(
        "an assertion leeway of {0:?} is more than 300 s: leeway is for clock skew, and \
         lengthens the life of every input JWT"
    )]
    Leeway(Duration),
    /// An assertion audience is the empty string.
    #[error("an assertion audience is empty")]
    EmptyAudience,
    /// A rule for input JWTs is set, but the application trusts no issuer
    /// and federates with no application, so the rule would go unused.
    #[error(
        "{0} is set, but the application trusts no input JWT: add a trusted issuer \
         (verification keys) or a federated application"
    )]
    RulesWithoutKeys(&'static str),
    /// A resource is empty or contains spaces, control characters or a
    /// fragment.
    #[error("resource {0:?} is empty or contains spaces, control characters or a '#'")]
    Resource(String),
}

/// How an application trusts input JWTs (client assertions).
#[derive(Clone)]
pub(crate) struct AssertionRules {
    pub(crate) keys: VerificationKeys,
    pub(crate) policies: Policies,
    pub(crate) audiences: Vec<String>,
    /// Whether any `aud` (or none) is accepted.
    pub(crate) any_audience: bool,
    pub(crate) single_use: bool,
    pub(crate) leeway: Duration,
    pub(crate) max_lifetime: Duration,
    /// Whether remote keys without a policy or audience are accepted.
    pub(crate) unpinned: bool,
    /// `client_id`s of applications whose access tokens this one accepts.
    pub(crate) federated_clients: Vec<String>,
    /// `(issuer, client_id)` of those applications, resolved by the endpoint.
    pub(crate) federated: Vec<(String, String)>,
}

impl AssertionRules {
    /// Its settings are sound, and none is set without an issuer or a
    /// federated application to apply to.
    fn check(&self) -> Result<(), ApplicationError> {
        if self.max_lifetime.is_zero() {
            return Err(ApplicationError::MaxAssertionLifetime);
        }
        if self.leeway > Application::MAX_ASSERTION_LEEWAY {
            return Err(ApplicationError::Leeway(self.leeway));
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(ApplicationError::EmptyAudience);
        }
        if self.keys.issuers().next().is_some() || !self.federated_clients.is_empty() {
            return Ok(());
        }
        let rules = [
            ("a policy", !self.policies.is_empty()),
            ("an assertion audience", !self.audiences.is_empty()),
            ("danger_accept_any_assertion_audience", self.any_audience),
            ("single-use assertions", self.single_use),
            ("an assertion leeway", !self.leeway.is_zero()),
            (
                "a maximum assertion lifetime",
                self.max_lifetime != Application::DEFAULT_MAX_ASSERTION_LIFETIME,
            ),
            ("danger_accept_unpinned_jwks", self.unpinned),
        ];
        match rules.iter().find(|(_, set)| *set) {
            Some((rule, _)) => Err(ApplicationError::RulesWithoutKeys(rule)),
            None => Ok(()),
        }
    }
}

impl Default for AssertionRules {
    fn default() -> Self {
        Self {
            keys: VerificationKeys::default(),
            policies: Policies::default(),
            audiences: Vec::new(),
            any_audience: false,
            single_use: false,
            leeway: Duration::ZERO,
            max_lifetime: Application::DEFAULT_MAX_ASSERTION_LIFETIME,
            unpinned: false,
            federated_clients: Vec::new(),
            federated: Vec::new(),
        }
    }
}

impl Application {
    /// The longest an input JWT may be valid for unless
    /// [`with_max_assertion_lifetime`](Self::with_max_assertion_lifetime)
    /// says otherwise: one hour. Platform tokens (CI, Kubernetes, cloud
    /// workload identities) live minutes.
    pub const DEFAULT_MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

    /// The largest [assertion leeway](Self::with_assertion_leeway): five
    /// minutes. Leeway lengthens the life of every input JWT: it is for
    /// clock skew, not for accepting expired tokens.
    pub const MAX_ASSERTION_LEEWAY: Duration = Duration::from_secs(300);

    /// An application with this `client_id` and URL `slug` (its issuer is
    /// `<base>/application/o/<slug>/`). Its name defaults to the slug, tokens
    /// live one hour, no scope is allowed and it has no client secret.
    pub fn new(client_id: impl Into<String>, slug: impl Into<String>) -> Self {
        let slug = slug.into();
        Self {
            client_id: client_id.into(),
            name: slug.clone(),
            slug,
            secret: None,
            allowed_scopes: Vec::new(),
            token_lifetime: Duration::from_secs(3600),
            subject_mode: SubjectMode::default(),
            issuer: String::new(),
            assertions: AssertionRules::default(),
            allow_any_account: false,
            resources: Vec::new(),
            exchange: None,
            require_dpop: false,
        }
    }

    /// Lets every service account that authenticates get tokens here, with
    /// every scope the application allows: authentik's behaviour for an
    /// application without policy bindings. By default only accounts bound
    /// to the application ([`Binding`](crate::store::Binding)), its own
    /// automatic account and the JWT identities its trust rules admit get
    /// tokens.
    pub fn danger_allow_any_account(mut self) -> Self {
        self.allow_any_account = true;
        self
    }

    /// Whether every authenticated account may get tokens here.
    pub fn allows_any_account(&self) -> bool {
        self.allow_any_account
    }

    /// Sets the display name, which also names the automatic service account
    /// (`ak-<name>-client_credentials`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the application's own client secret (only its digest is kept).
    /// A request whose `client_secret` is this secret authenticates as the
    /// application's automatic service account.
    pub fn with_client_secret(self, secret: &str) -> Self {
        self.with_client_secret_digest(TokenDigest::of(secret))
    }

    /// Sets the digest of the application's client secret.
    pub fn with_client_secret_digest(mut self, digest: TokenDigest) -> Self {
        self.secret = Some(digest);
        self
    }

    /// The scopes a token may carry; requested scopes outside this set are
    /// dropped, never granted.
    pub fn with_allowed_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// How long minted tokens are valid (default one hour).
    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// How `sub` is derived (default [`SubjectMode::HashedId`]).
    pub fn with_subject_mode(mut self, mode: SubjectMode) -> Self {
        self.subject_mode = mode;
        self
    }

    /// The `client_id`.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The URL slug.
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The username of the automatic service account that the application's
    /// own client secret authenticates as.
    pub fn automatic_account_username(&self) -> String {
        format!("ak-{}-client_credentials", self.name)
    }

    /// Whether `secret` is the application's client secret (constant time).
    pub fn client_secret_matches(&self, secret: &str) -> bool {
        self.secret.is_some_and(|digest| digest.matches(secret))
    }

    /// Its issuer URL (`iss` of its tokens), once added to an endpoint.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The allowed scopes.
    pub fn allowed_scopes(&self) -> &[String] {
        &self.allowed_scopes
    }

    /// Token lifetime.
    pub fn token_lifetime(&self) -> Duration {
        self.token_lifetime
    }

    /// Checks the application's own settings (every rule of
    /// [`ApplicationError`]); the endpoint runs this when it is added.
    pub(crate) fn check(&self) -> Result<(), ApplicationError> {
        if self.client_id.is_empty() || self.client_id.chars().any(char::is_control) {
            return Err(ApplicationError::ClientId(self.client_id.clone()));
        }
        let slug_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.slug.is_empty() || self.slug.starts_with('.') || !self.slug.chars().all(slug_char) {
            return Err(ApplicationError::Slug(self.slug.clone()));
        }
        if self.name.is_empty() || self.name.chars().any(char::is_control) {
            return Err(ApplicationError::Name(self.name.clone()));
        }
        if let Some(scope) = self.allowed_scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(ApplicationError::Scope(scope.clone()));
        }
        if self.token_lifetime.is_zero() {
            return Err(ApplicationError::TokenLifetime);
        }
        if let Some(resource) = self.resources.iter().find(|r| !is_resource_name(r)) {
            return Err(ApplicationError::Resource(resource.clone()));
        }
        self.assertions.check()?;
        match &self.exchange {
            Some(exchange) => exchange
                .check(self.assertions.keys.issuers().next().is_some())
                .map_err(ApplicationError::RulesWithoutKeys),
            None => Ok(()),
        }
    }

    /// The requested scopes that this application allows, in request order,
    /// without duplicates.
    pub(crate) fn clamp_scopes<'a>(&self, requested: &'a str) -> Vec<&'a str> {
        let mut granted: Vec<&str> = Vec::new();
        for scope in requested.split(' ').filter(|s| !s.is_empty()) {
            if self.allowed_scopes.iter().any(|allowed| allowed == scope)
                && !granted.contains(&scope)
            {
                granted.push(scope);
            }
        }
        granted
    }
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("client_id", &self.client_id)
            .field("slug", &self.slug)
            .field("name", &self.name)
            .field("has_client_secret", &self.secret.is_some())
            .field("allowed_scopes", &self.allowed_scopes)
            .field("token_lifetime", &self.token_lifetime)
            .field("subject_mode", &self.subject_mode)
            .field("verification_keys", &self.assertions.keys)
            .field("policies", &self.assertions.policies)
            .field("federated_clients", &self.assertions.federated_clients)
            .field("max_assertion_lifetime", &self.assertions.max_lifetime)
            .field(
                "accept_any_assertion_audience",
                &self.assertions.any_audience,
            )
            .field("allow_any_account", &self.allow_any_account)
            .field("resources", &self.resources)
            .field("token_exchange", &self.exchange)
            .field("require_dpop", &self.require_dpop)
            .finish()
    }
}
