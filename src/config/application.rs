//! `[[applications]]`: the applications, and the input JWTs they trust.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::trust::{self, Remotes, TrustedIssuerConfig};
use super::{BuildError, parse_digest};
use crate::issuer::{Application, SubjectMode, TokenExchange};
use crate::keys::RemoteJwks;

/// One `[[applications]]` entry. See `examples/server.toml` for each key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApplicationConfig {
    /// Its `client_id`.
    pub client_id: String,
    /// Its URL slug.
    pub slug: String,
    /// Display name (default: the slug).
    pub name: Option<String>,
    /// Its own client secret (for demos; prefer `client_secret_sha256`).
    pub client_secret: Option<String>,
    /// The SHA-256 of its client secret, 64 hex digits.
    pub client_secret_sha256: Option<String>,
    /// The scopes its tokens may carry.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime of its tokens, in seconds (default 3600).
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_secs: u64,
    /// How `sub` is derived.
    #[serde(default)]
    pub subject_mode: SubjectModeName,
    /// The issuers whose input JWTs it trusts, each with its key sources.
    #[serde(default)]
    pub trusted_issuers: Vec<TrustedIssuerConfig>,
    /// Former unscoped key sources: an error that says what to write.
    pub verification_certificates: Option<Vec<String>>,
    /// Former unscoped key sources: an error that says what to write.
    pub jwks_files: Option<Vec<String>>,
    /// Former unscoped key sources: an error that says what to write.
    pub jwks_urls: Option<Vec<String>>,
    /// CEL expressions that every input JWT must satisfy (feature `cel`).
    #[serde(default)]
    pub policies: Vec<String>,
    /// More accepted `aud` values of input JWTs, besides the token
    /// endpoint's URL and the application's issuer (RFC 7523 §3).
    #[serde(default)]
    pub assertion_audiences: Vec<String>,
    /// Accept input JWTs whatever their `aud` (or none): a JWT addressed to
    /// another relying party then logs in here too.
    #[serde(default)]
    pub danger_accept_any_assertion_audience: bool,
    /// Accept each input JWT once (by `jti`).
    #[serde(default)]
    pub single_use_assertions: bool,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds (at most 300).
    #[serde(default)]
    pub assertion_leeway_secs: u64,
    /// `client_id`s of applications whose access tokens this one accepts.
    #[serde(default)]
    pub federated_applications: Vec<String>,
    /// Every service account may get tokens here (authentik without bindings).
    #[serde(default)]
    pub allow_any_account: bool,
    /// Token requests must carry a DPoP proof (RFC 9449): every token is
    /// key-bound.
    #[serde(default)]
    pub require_dpop: bool,
    /// The longest an input JWT may be valid for, in seconds (default 3600).
    pub max_assertion_lifetime_secs: Option<u64>,
    /// Accept every token a remote JWKS signs, with nothing pinned.
    #[serde(default)]
    pub danger_accept_unpinned_jwks: bool,
    /// The resources (RFC 8707) and audiences (RFC 8693) its tokens may be
    /// minted for, chosen by `resource` / `audience` (default: none).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Token exchange (RFC 8693); absent: the application accepts none.
    pub token_exchange: Option<TokenExchangeConfig>,
}

/// `[applications.token_exchange]`: which subject (and actor) tokens the
/// application accepts in token exchange (see [`TokenExchange`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenExchangeConfig {
    /// `client_id`s whose access tokens (minted by this server) it accepts.
    #[serde(default)]
    pub accept_tokens_of: Vec<String>,
    /// Also accept the input JWTs its `trusted_issuers` sign (checked as
    /// client assertions are).
    #[serde(default)]
    pub accept_trusted_jwts: bool,
    /// Actors (`iss`, `sub` of their actor tokens) that may act for any
    /// accepted subject whose token has no `may_act`.
    #[serde(default)]
    pub actors: Vec<ActorConfig>,
}

/// One `actors` entry of `[applications.token_exchange]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ActorConfig {
    /// The actor token's `iss`.
    pub iss: String,
    /// The actor token's `sub`.
    pub sub: String,
}

impl TokenExchangeConfig {
    /// The library's rules.
    fn rules(&self) -> TokenExchange {
        let mut rules = TokenExchange::new();
        for client_id in &self.accept_tokens_of {
            rules = rules.accept_tokens_of(client_id);
        }
        if self.accept_trusted_jwts {
            rules = rules.accept_trusted_jwts();
        }
        for actor in &self.actors {
            rules = rules.allow_actor(&actor.iss, &actor.sub);
        }
        rules
    }
}

fn default_token_lifetime() -> u64 {
    3600
}

/// The `subject_mode` values (see [`SubjectMode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SubjectModeName {
    /// [`SubjectMode::HashedId`].
    #[default]
    HashedId,
    /// [`SubjectMode::Username`].
    Username,
    /// [`SubjectMode::Uuid`].
    Uuid,
    /// [`SubjectMode::Id`].
    Id,
}

impl From<SubjectModeName> for SubjectMode {
    fn from(mode: SubjectModeName) -> Self {
        match mode {
            SubjectModeName::HashedId => SubjectMode::HashedId,
            SubjectModeName::Username => SubjectMode::Username,
            SubjectModeName::Uuid => SubjectMode::Uuid,
            SubjectModeName::Id => SubjectMode::Id,
        }
    }
}

/// Every application, and the remote sources they share (one cache per
/// distinct URL or issuer, all fetched by one HTTP client).
pub(super) fn build_all(
    configs: &[ApplicationConfig],
    base_dir: &Path,
) -> Result<(Vec<Application>, Vec<RemoteJwks>), BuildError> {
    let mut remotes = Remotes::default();
    let mut applications = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        let at = format!("[[applications]] #{} ({:?})", index + 1, config.client_id);
        let application = config
            .build(base_dir, &mut remotes)
            .map_err(|reason| BuildError::invalid(at, reason))?;
        applications.push(application);
    }
    Ok((applications, remotes.into_sources()))
}

impl ApplicationConfig {
    /// The application; the library checks its settings when the endpoint
    /// takes it.
    fn build(&self, base_dir: &Path, remotes: &mut Remotes) -> Result<Application, String> {
        self.refuse_unscoped_keys()?;
        let mut application = Application::new(&self.client_id, &self.slug)
            .with_allowed_scopes(&self.scopes)
            .with_token_lifetime(Duration::from_secs(self.token_lifetime_secs))
            .with_subject_mode(self.subject_mode.into())
            .with_assertion_audiences(&self.assertion_audiences)
            .with_assertion_leeway(Duration::from_secs(self.assertion_leeway_secs))
            .with_single_use_assertions(self.single_use_assertions)
            .with_resources(&self.resources);
        if let Some(exchange) = &self.token_exchange {
            application = application.with_token_exchange(exchange.rules());
        }
        if let Some(name) = &self.name {
            application = application.with_name(name);
        }
        if self.allow_any_account {
            application = application.danger_allow_any_account();
        }
        if self.require_dpop {
            application = application.require_dpop();
        }
        if self.danger_accept_unpinned_jwks {
            application = application.danger_accept_unpinned_jwks();
        }
        if self.danger_accept_any_assertion_audience {
            application = application.danger_accept_any_assertion_audience();
        }
        if let Some(secs) = self.max_assertion_lifetime_secs {
            application = application.with_max_assertion_lifetime(Duration::from_secs(secs));
        }
        for client_id in &self.federated_applications {
            application = application.with_federated_application(client_id);
        }
        application = match (&self.client_secret, &self.client_secret_sha256) {
            (Some(_), Some(_)) => {
                return Err("give client_secret or client_secret_sha256, not both".into());
            }
            (Some(secret), None) if secret.is_empty() => {
                return Err("client_secret is empty".into());
            }
            (Some(secret), None) => application.with_client_secret(secret),
            (None, Some(hex)) => {
                application.with_client_secret_digest(parse_digest("client_secret_sha256", hex)?)
            }
            (None, None) => application,
        };
        if !self.trusted_issuers.is_empty() {
            let keys = trust::verification_keys(&self.trusted_issuers, base_dir, remotes)?;
            application = application.with_verification_keys(keys);
            tracing::info!(
                client_id = self.client_id,
                issuers = ?self.trusted_issuers.iter().map(|i| &i.issuer).collect::<Vec<_>>(),
                policies = self.policies.len(),
                audiences = ?self.assertion_audiences,
                "application trusts input JWTs"
            );
        }
        with_policies(application, &self.policies)
    }

    /// The former flat key sources trusted their keys for any `iss`: refuse
    /// them, showing the table that replaces them.
    fn refuse_unscoped_keys(&self) -> Result<(), String> {
        let quoted = |values: &[String]| {
            let values: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
            values.join(", ")
        };
        let old = [
            (
                "verification_certificates",
                &self.verification_certificates,
                "certificates",
            ),
            ("jwks_files", &self.jwks_files, "jwks_files"),
        ];
        for (key, values, new_key) in old {
            if let Some(values) = values {
                return Err(format!(
                    "`{key}` is no longer supported: each key source now names the issuer it \
                     speaks for, and verifies only JWTs whose `iss` is that issuer. Write\n\n\
                     [[applications.trusted_issuers]]\n\
                     issuer = \"<the exact iss of the JWTs these keys sign>\"\n\
                     {new_key} = [{}]\n",
                    quoted(values)
                ));
            }
        }
        if let Some(urls) = &self.jwks_urls {
            let url = urls.first().map_or("https://...".into(), |url| {
                crate::keys::fetch::without_credentials(url)
            });
            return Err(format!(
                "`jwks_urls` is no longer supported: each key source now names the issuer it \
                 speaks for, and verifies only JWTs whose `iss` is that issuer. Write, for \
                 each URL,\n\n\
                 [[applications.trusted_issuers]]\n\
                 issuer = \"<the exact iss of the JWTs this JWKS signs>\"\n\
                 jwks_url = {url:?}\n\n\
                 or, for an issuer that publishes OpenID discovery metadata,\n\n\
                 [[applications.trusted_issuers]]\n\
                 issuer = \"<its issuer URL>\"\n\
                 discovery = true\n"
            ));
        }
        Ok(())
    }
}

/// Adds the CEL `policies`, each compiled (so checked) now.
#[cfg(feature = "cel")]
fn with_policies(mut application: Application, policies: &[String]) -> Result<Application, String> {
    for (index, expression) in policies.iter().enumerate() {
        let policy = crate::policy::CelPolicy::new(expression)
            .map_err(|error| format!("policies[{index}] {expression:?}: {error}"))?;
        application = application.with_policy(policy);
    }
    Ok(application)
}

/// Without CEL, a configured policy cannot be enforced: refuse rather than
/// trust input JWTs the policy would deny.
#[cfg(not(feature = "cel"))]
fn with_policies(application: Application, policies: &[String]) -> Result<Application, String> {
    if policies.is_empty() {
        return Ok(application);
    }
    Err(
        "`policies` are CEL expressions, and this build has no CEL support: build with \
         `--features cel`, e.g. `cargo run --features cel --example server -- --config FILE`"
            .into(),
    )
}
