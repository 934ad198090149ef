//! The configuration schema of a token server, as serde types, and the one
//! step that builds what a host serves from it (feature `config`).
//!
//! The types deserialize from any serde format (TOML, JSON, YAML, your
//! settings framework), refuse unknown keys so that a typo is an error, and
//! never implement `Debug` (they may hold secrets). `examples/server.toml`
//! documents every key. [`Config::build`] checks everything, opens the store,
//! imports the configured service accounts and returns a [`Built`]: the
//! token endpoint layer, the store, and a validator for an API that takes
//! the endpoint's tokens.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_m2m_auth::config::Config;
//!
//! let config: Config = serde_json::from_value(serde_json::json!({
//!     "issuer": "https://auth.example.com",
//!     "store": { "memory": true },
//!     "applications": [{ "client_id": "my-client", "slug": "my-app", "scopes": ["read"] }],
//! }))?;
//! let built = config.build(std::path::Path::new("/etc/auth")).await?;
//! // router.layer(built.validator), then wrap it in built.endpoint
//! # Ok(()) }
//! ```

mod accounts;
mod application;
mod error;
mod keys;
mod store;
mod trust;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use accounts::{BindingConfig, ServiceAccountConfig, TokenConfig};
pub use application::{ActorConfig, ApplicationConfig, SubjectModeName, TokenExchangeConfig};
pub use error::BuildError;
pub use keys::{KeyAlgorithm, KeysConfig};
pub use store::{AttemptLimitsConfig, StoreConfig};
pub use trust::{TrustedIssuerConfig, prefetch};

use crate::issuer::{StoreVerifier, TokenEndpointLayer};
use crate::keys::dpop::DpopNonces;
use crate::keys::{KeyRing, RemoteJwks, SigningKey};
use crate::store::{AnyStore, Binding, MemoryStore, TokenDigest};
use crate::validate::{Issuer, JwtValidateLayer};

/// The token endpoint layer a [`Config`] builds: accounts, replay cache and
/// revocation list all in the configured store.
pub type Endpoint = TokenEndpointLayer<StoreVerifier<AnyStore>>;

/// A token server's configuration. See `examples/server.toml` for each key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Base URL of the issuer, e.g. `https://auth.example.com`.
    pub issuer: String,
    /// `[keys]`: key files, or the settings of a generated key.
    #[serde(default)]
    pub keys: KeysConfig,
    /// `[endpoint]`: options of the token endpoint.
    #[serde(default)]
    pub endpoint: EndpointConfig,
    /// `[[applications]]`: at least one.
    #[serde(default)]
    pub applications: Vec<ApplicationConfig>,
    /// `[[service_accounts]]`, imported into the store by `build`.
    #[serde(default)]
    pub service_accounts: Vec<ServiceAccountConfig>,
    /// `[store]`: where accounts, the replay cache and the revocation list
    /// live (default: memory).
    pub store: Option<StoreConfig>,
    /// `[attempt_limits]`: the limit on failed authentication attempts.
    #[serde(default)]
    pub attempt_limits: AttemptLimitsConfig,
}

/// `[endpoint]`: options of the token endpoint, each defaulting to the
/// layer's default.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Whether responses carry an `id_token`.
    pub id_token: Option<bool>,
    /// Whether access tokens carry `typ: at+jwt`.
    pub at_jwt_typ: Option<bool>,
    /// The largest token request body, in bytes (at least 1).
    pub body_limit: Option<usize>,
    /// The salt of hashed subjects.
    pub subject_salt: Option<String>,
    /// DPoP server nonces (RFC 9449 §8): the HMAC secret (at least 32
    /// bytes, the same on every instance). Unset: no nonces.
    pub dpop_nonce_secret: Option<String>,
    /// How long a DPoP nonce stays valid, in seconds (default 300).
    pub dpop_nonce_lifetime_secs: Option<u64>,
}

/// What a host needs from a [`Config`]: see [`Config::build`].
#[non_exhaustive]
pub struct Built {
    /// The token endpoint, with every application and the attempt limiter.
    /// The per-address limit needs the client's address: tell the endpoint
    /// where your server puts it (`client_address`).
    pub endpoint: Endpoint,
    /// The store the endpoint uses, with the configured accounts imported.
    pub store: AnyStore,
    /// A validator that takes the tokens each application mints (its
    /// issuer, its `client_id` as audience, the endpoint's keys).
    pub validator: JwtValidateLayer,
    /// The remote key sources (JWKS URLs, discovered issuers), to fetch
    /// ahead of the first input JWT if the host wishes ([`prefetch`]).
    pub remote_sources: Vec<RemoteJwks>,
}

impl Config {
    /// Checks everything, opens the store and imports the configured
    /// service accounts, and builds the endpoint and the validator.
    /// Relative key and store paths start at `base_dir`.
    pub async fn build(&self, base_dir: &Path) -> Result<Built, BuildError> {
        if self.applications.is_empty() {
            return Err(BuildError::invalid("[[applications]]", "none is defined"));
        }
        let limits = self.attempt_limits.check()?;
        if limits.counts_per_instance()
            && store::Choice::of(self.store.as_ref(), base_dir)?.is_shared()
        {
            tracing::warn!(
                "[store] postgres is shared by several instances, but failed attempts are counted \
                 in this instance's memory: each instance allows the limits on its own; set \
                 [attempt_limits] redis = \"redis://...\" to count them together"
            );
        }
        let (applications, remote_sources) = application::build_all(&self.applications, base_dir)?;
        // The endpoint's own checks, before the store or a key file is
        // created: on a probe with a throwaway key and store.
        let probe_key =
            SigningKey::from_hmac_secret(&[0; 32]).map_err(|source| BuildError::Key {
                at: "[keys]".into(),
                source,
            })?;
        let _probe =
            TokenEndpointLayer::new(&self.issuer, KeyRing::new(probe_key), MemoryStore::new())
                .map_err(|source| endpoint_error("issuer", source))?
                .applications(applications.clone())
                .map_err(|source| endpoint_error("[[applications]]", source))?;
        let store = self.open_store(base_dir).await?;
        let keys = keys::load(&self.keys, base_dir)?;
        let endpoint = TokenEndpointLayer::new(&self.issuer, keys, store.clone())
            .map_err(|source| endpoint_error("issuer", source))?
            .replay_cache(store.clone())
            .revocation_list(store.clone());
        let endpoint = self
            .endpoint
            .apply(endpoint)?
            .applications(applications)
            .map_err(|source| endpoint_error("[[applications]]", source))?;
        let endpoint = limits.apply(endpoint).await?;
        for app in &self.applications {
            if let Some(application) = endpoint.get_application(&app.client_id) {
                tracing::info!(
                    client_id = app.client_id,
                    issuer = application.issuer(),
                    scopes = ?application.allowed_scopes(),
                    any_account = application.allows_any_account(),
                    "application"
                );
            }
        }
        // DPoP proofs at the sample API name the issuer's origin (never the
        // request's `Host`), and are spent in the store, so across
        // instances that share it.
        let validator = self
            .validator(&endpoint)
            .dpop_origin(&self.issuer)
            .map_err(|error| BuildError::invalid("issuer", error.to_string()))?
            .dpop_replay_cache(store.clone());
        Ok(Built {
            endpoint,
            store,
            validator,
            remote_sources,
        })
    }

    /// Opens the configured store (memory without `[store]`) and imports
    /// the configured service accounts, tokens and bindings, once they are
    /// checked: what an administration tool needs, without keys or
    /// applications.
    pub async fn open_store(&self, base_dir: &Path) -> Result<AnyStore, BuildError> {
        let accounts = accounts::configured(&self.service_accounts, &self.applications)?;
        let choice = store::Choice::of(self.store.as_ref(), base_dir)?;
        let description = choice.to_string();
        let store = choice.open().await?;
        accounts::import(&store, &accounts).await?;
        tracing::info!(store = description, "credential store ready");
        Ok(store)
    }

    /// How the configured store is described to an operator ("SQLite store
    /// FILE", "PostgreSQL store", "memory store"), and whether it is memory.
    pub fn describe_store(&self, base_dir: &Path) -> Result<(String, bool), BuildError> {
        let choice = store::Choice::of(self.store.as_ref(), base_dir)?;
        Ok((choice.to_string(), choice.is_memory()))
    }

    /// The configured account (by username) that declares the token with
    /// this digest, if any: the host should not revoke it in the store only,
    /// since `build` imports it again.
    pub fn declares_token(&self, digest: &TokenDigest) -> Option<&str> {
        self.service_accounts
            .iter()
            .find(|account| account.declares(digest))
            .map(|account| account.username.as_str())
    }

    /// Whether the configuration binds `username` to `client_id` (`build`
    /// applies such bindings again).
    pub fn declares_binding(&self, username: &str, client_id: &str) -> bool {
        self.service_accounts.iter().any(|account| {
            account.username == username
                && account.bindings.iter().any(|b| b.client_id == client_id)
        })
    }

    /// Checks a binding made at run time: a valid binding, to a configured
    /// application (scopes that the application does not allow are never
    /// granted: a warning).
    pub fn check_binding(&self, binding: &Binding) -> Result<(), BuildError> {
        accounts::check_binding(&self.applications, binding).map_err(|reason| {
            BuildError::invalid(format!("binding {:?}", binding.client_id), reason)
        })
    }

    /// The validator of the sample API: the tokens of every application,
    /// checked against the endpoint's own published keys. Access tokens
    /// without `typ: at+jwt` pass only when the endpoint omits it.
    fn validator(&self, endpoint: &Endpoint) -> JwtValidateLayer {
        let keys = endpoint.keys().verification_keys();
        let untyped = self.endpoint.at_jwt_typ == Some(false);
        self.applications
            .iter()
            .filter_map(|app| endpoint.get_application(&app.client_id))
            .fold(
                JwtValidateLayer::new().allow_untyped_access_tokens(untyped),
                |layer, application| {
                    layer.issuer(
                        Issuer::with_key_set(application.issuer(), (*keys).clone())
                            .audience(application.client_id()),
                    )
                },
            )
    }
}

impl EndpointConfig {
    /// Applies the options that are set.
    fn apply(&self, mut endpoint: Endpoint) -> Result<Endpoint, BuildError> {
        if let Some(enabled) = self.id_token {
            endpoint = endpoint.id_token(enabled);
        }
        if let Some(enabled) = self.at_jwt_typ {
            endpoint = endpoint.at_jwt_typ(enabled);
        }
        if let Some(bytes) = self.body_limit {
            if bytes == 0 {
                return Err(BuildError::invalid(
                    "[endpoint] body_limit",
                    "must be at least 1 byte",
                ));
            }
            endpoint = endpoint.body_limit(bytes);
        }
        if let Some(salt) = &self.subject_salt {
            endpoint = endpoint.subject_salt(salt.as_str());
        }
        if let Some(secret) = &self.dpop_nonce_secret {
            let lifetime = Duration::from_secs(self.dpop_nonce_lifetime_secs.unwrap_or(300));
            let nonces =
                DpopNonces::new(secret.as_bytes(), lifetime).map_err(|source| BuildError::Key {
                    at: "[endpoint] dpop_nonce_secret".into(),
                    source,
                })?;
            endpoint = endpoint.dpop_nonces(nonces);
        }
        Ok(endpoint)
    }
}

fn endpoint_error(at: &str, source: crate::issuer::ConfigError) -> BuildError {
    BuildError::Endpoint {
        at: at.to_owned(),
        source,
    }
}

/// A SHA-256 given as 64 hex digits.
fn parse_digest(key: &str, hex: &str) -> Result<TokenDigest, String> {
    TokenDigest::from_hex(hex).ok_or_else(|| format!("{key} must be 64 hex digits (a SHA-256)"))
}

/// `base_dir.join(path)`: relative paths start at the configuration's
/// directory.
fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    base_dir.join(path)
}
