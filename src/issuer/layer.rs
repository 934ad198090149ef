//! The [`TokenEndpointLayer`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::application::Application;
use super::attempts::{AddressSource, AttemptGuard, AttemptLimits, Attempts};
use super::client_verifier::StoreVerifier;
use super::config::{self, EndpointConfig};
use super::directory::{Replays, Revocations};
use super::error::ConfigError;
use super::exchange;
use crate::keys::KeyRing;
use crate::store::{AttemptLimiter, CredentialStore, ReplayCache, RevocationList};

/// A tower layer that adds an OAuth2 token endpoint (client credentials) to
/// any service, with each application's JWKS and metadata.
///
/// Paths (authentik's by default; `{slug}` stands for the application slug):
///
/// | what | default path |
/// |---|---|
/// | token endpoint (`POST`) | `/application/o/token/` |
/// | issuer (`iss`) | `<base>/application/o/{slug}/` |
/// | JWKS (`GET`) | `/application/o/{slug}/jwks/` |
/// | OpenID discovery (`GET`) | `/application/o/{slug}/.well-known/openid-configuration` |
/// | RFC 8414 metadata (`GET`) | `/.well-known/oauth-authorization-server/application/o/{slug}/` |
/// | introspection, RFC 7662 (`POST`) | `/application/o/introspect/` |
/// | revocation, RFC 7009 (`POST`) | `/application/o/revoke/` |
///
/// See the [module docs](crate::issuer) for an example.
#[derive(Clone)]
#[must_use]
pub struct TokenEndpointLayer<V> {
    pub(crate) verifier: V,
    pub(crate) config: Arc<EndpointConfig>,
}

impl<S: CredentialStore> TokenEndpointLayer<StoreVerifier<S>> {
    /// An endpoint for the issuer at `base_url` (e.g.
    /// `https://auth.example.com`), signing with `keys`, whose service
    /// accounts, app passwords and bindings are in `store`.
    ///
    /// Clients are authenticated by a [`StoreVerifier`] over `store` (swap it
    /// with [`verifier`](TokenEndpointLayer::verifier)); whatever verifier
    /// is used, the endpoint itself checks against `store` which accounts
    /// are bound to which application, and that the account behind a traded
    /// token is still active.
    pub fn new(base_url: &str, keys: KeyRing, store: S) -> Result<Self, ConfigError> {
        let base_url = base_url.trim_end_matches('/');
        let uri: http::Uri = base_url.parse().map_err(|_| ConfigError::BaseUrl)?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        let bare = uri.path() == "/" && uri.query().is_none() && !base_url.contains('#');
        if !scheme_ok || uri.authority().is_none() || !bare {
            return Err(ConfigError::BaseUrl);
        }
        let store = Arc::new(store);
        Ok(Self {
            verifier: StoreVerifier::shared(store.clone()),
            config: Arc::new(EndpointConfig::new(base_url.to_owned(), keys, store)),
        })
    }
}

impl<V> TokenEndpointLayer<V> {
    /// Asks `verifier` who clients are instead: any
    /// `tower::Service<ClientAuthentication, Response = Principal, Error = VerifyError>`.
    /// Bindings and trades are still checked against the store.
    pub fn verifier<V2>(self, verifier: V2) -> TokenEndpointLayer<V2> {
        TokenEndpointLayer {
            verifier,
            config: self.config,
        }
    }

    fn update(mut self, f: impl FnOnce(&mut EndpointConfig)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.rebuild_routes();
        self
    }

    /// Adds an application. Refused: a `client_id` or slug taken already, a
    /// federation with an unknown application or with itself, an unpinned
    /// remote JWKS, and a trusted issuer that is one of this endpoint's own
    /// (see [`ConfigError`]).
    pub fn application(self, application: Application) -> Result<Self, ConfigError> {
        self.applications([application])
    }

    /// Adds several applications at once, in any order: federations among
    /// them are checked when all are in (no unknown target, no cycle).
    pub fn applications(
        mut self,
        applications: impl IntoIterator<Item = Application>,
    ) -> Result<Self, ConfigError> {
        let mut added = self.config.applications.clone();
        for application in applications {
            config::check_application(&application)?;
            let client_id = application.client_id().to_owned();
            if added.contains_key(&client_id) {
                return Err(ConfigError::DuplicateClientId(client_id));
            }
            if added.values().any(|app| app.slug() == application.slug()) {
                return Err(ConfigError::DuplicateSlug(application.slug().to_owned()));
            }
            // The name names the automatic account (and the default
            // username of JWT identities): two applications must not share one.
            if added.values().any(|app| app.name() == application.name()) {
                return Err(ConfigError::DuplicateName(application.name().to_owned()));
            }
            added.insert(client_id, Arc::new(application));
        }
        config::check_federation(&added)?;
        exchange::check_exchange(&added)?;
        self = self.update(|config| config.applications = added);
        config::check_trusted_issuers(&self.config)?;
        Ok(self)
    }

    /// The token endpoint path (default `/application/o/token/`).
    pub fn token_path(self, path: &str) -> Result<Self, ConfigError> {
        let path = config::checked_path(path, false)?;
        Ok(self.update(|config| config.token_path = path))
    }

    /// The token introspection path, RFC 7662 (default `/application/o/introspect/`).
    pub fn introspection_path(self, path: &str) -> Result<Self, ConfigError> {
        let path = config::checked_path(path, false)?;
        Ok(self.update(|config| config.introspection_path = path))
    }

    /// The token revocation path, RFC 7009 (default `/application/o/revoke/`).
    pub fn revocation_path(self, path: &str) -> Result<Self, ConfigError> {
        let path = config::checked_path(path, false)?;
        Ok(self.update(|config| config.revocation_path = path))
    }

    /// Remembers the `jti`s of single-use input JWTs in `replay` until they
    /// expire (default: in memory, for one instance; share one between
    /// instances to refuse replays across them).
    pub fn replay_cache(self, replay: impl ReplayCache) -> Self {
        let replay: Arc<dyn Replays> = Arc::new(replay);
        self.update(|config| config.replay = replay)
    }

    /// Where revoked token ids are kept until they expire (default: in
    /// memory, for one instance; share one between instances).
    pub fn revocation_list(self, list: impl RevocationList) -> Self {
        let list: Arc<dyn Revocations> = Arc::new(list);
        self.update(|config| config.revocations = list)
    }

    /// Limits failed authentication attempts per `client_id` and per client
    /// address (default: no limit), at the token, introspection and
    /// revocation paths. A `client_id` or address with `limits` failures
    /// within the window gets 429 with `Retry-After` until the window ends,
    /// before its credentials are looked up. Only rejected credentials and
    /// unknown `client_id`s count, never malformed requests nor a verifier
    /// or store that could not answer; a success neither counts nor resets
    /// the count. If `limiter` cannot answer, requests get 503.
    ///
    /// Each request takes a failure slot before its credentials are checked
    /// (count, then decide: see [`AttemptLimiter`]), so concurrent guesses
    /// cannot pass the limit. Hence no more requests of one key are checked
    /// at once than it has slots left; the others wait up to 2 s for one to
    /// end, then get 429 with `Retry-After: 1`.
    ///
    /// The address limit needs the client's address: see
    /// [`client_address`](Self::client_address). Share one limiter (e.g.
    /// `RedisStore`, feature `redis`) between instances so that failures
    /// through any of them count.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_m2m_auth::issuer::{AttemptLimits, TokenEndpointLayer};
    /// # use tower_m2m_auth::store::{FailureLimit, MemoryAttemptLimiter};
    /// # fn f<V>(layer: TokenEndpointLayer<V>) -> TokenEndpointLayer<V> {
    /// layer.attempt_limiter(
    ///     MemoryAttemptLimiter::new(),
    ///     AttemptLimits::default()
    ///         .with_client_limit(Some(FailureLimit::new(10, Duration::from_secs(60)))),
    /// )
    /// # }
    /// ```
    pub fn attempt_limiter(self, limiter: impl AttemptLimiter, limits: AttemptLimits) -> Self {
        let limiter: Arc<dyn Attempts> = Arc::new(limiter);
        self.update(|config| config.attempts = Some(AttemptGuard::new(limiter, limits)))
    }

    /// Where the [attempt limiter](Self::attempt_limiter) finds the client's
    /// address. By default it is a [`std::net::SocketAddr`] in the request
    /// extensions; where there is none, the address limit does not apply.
    ///
    /// With axum, serve with `into_make_service_with_connect_info::<SocketAddr>()`
    /// and read `ConnectInfo`:
    ///
    /// ```
    /// # use std::net::SocketAddr;
    /// # use axum::extract::ConnectInfo;
    /// # use tower_m2m_auth::issuer::TokenEndpointLayer;
    /// # fn f<V>(layer: TokenEndpointLayer<V>) -> TokenEndpointLayer<V> {
    /// layer.client_address(|parts| {
    ///     parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())
    /// })
    /// # }
    /// ```
    ///
    /// Behind a reverse proxy every request comes from the proxy: read the
    /// address the proxy sets (e.g. the last `X-Forwarded-For` entry it
    /// appends), and only from a proxy you run, since clients can set such
    /// headers themselves.
    pub fn client_address<F>(self, source: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<IpAddr> + Send + Sync + 'static,
    {
        let source: AddressSource = Arc::new(source);
        self.update(|config| config.client_address = source)
    }

    /// The issuer path template (default `/application/o/{slug}/`).
    pub fn issuer_path(self, path: &str) -> Result<Self, ConfigError> {
        let path = config::checked_path(path, true)?;
        let layer = self.update(|config| config.issuer_path = path);
        config::check_trusted_issuers(&layer.config)?;
        Ok(layer)
    }

    /// The JWKS path template (default `/application/o/{slug}/jwks/`).
    pub fn jwks_path(self, path: &str) -> Result<Self, ConfigError> {
        let path = config::checked_path(path, true)?;
        Ok(self.update(|config| config.jwks_path = path))
    }

    /// The OpenID discovery path template (default
    /// `/application/o/{slug}/.well-known/openid-configuration`).
    pub fn discovery_path(self, path: &str) -> Result<Self, ConfigError> {
        let path = config::checked_path(path, true)?;
        Ok(self.update(|config| config.discovery_path = path))
    }

    /// The largest accepted token request body (default 64 KiB); larger ones
    /// get 413 and are not read further.
    pub fn body_limit(self, bytes: usize) -> Self {
        self.update(|config| config.body_limit = bytes)
    }

    /// How long the endpoint waits for a request body (default: no limit of
    /// its own; put the server's or tower-http's timeout in front). Needs a
    /// tokio runtime with its timer enabled.
    pub fn body_timeout(self, timeout: Duration) -> Self {
        self.update(|config| config.body_timeout = Some(timeout))
    }

    /// Whether token responses carry an `id_token` besides the access token
    /// (default `true`, as authentik answers). Each costs one more signature.
    pub fn id_token(self, enabled: bool) -> Self {
        self.update(|config| config.id_token = enabled)
    }

    /// Whether access tokens carry the JOSE header `typ: at+jwt` (RFC 9068
    /// §2.1; default `true`). ID tokens always carry `typ: JWT`, so this is
    /// what lets a validator tell the two apart.
    ///
    /// `false` omits `typ` from access tokens, for clients that cannot
    /// handle `at+jwt` (as with authentik's tokens). Validators of this
    /// crate then need
    /// [`allow_untyped_access_tokens`](crate::validate::JwtValidateLayer::allow_untyped_access_tokens),
    /// which still refuses ID tokens (they carry no `client_id`).
    pub fn at_jwt_typ(self, enabled: bool) -> Self {
        self.update(|config| config.at_jwt_typ = enabled)
    }

    /// Whether the endpoint records metrics and spans (default `true`; see
    /// [`observe`](crate::observe)). Audit events are emitted either way.
    pub fn instrument(self, enabled: bool) -> Self {
        self.update(|config| config.instrument = enabled)
    }

    /// The salt of the hashed-id `sub` (default: the issuer base URL). Keep
    /// it stable: changing it changes every hashed subject.
    pub fn subject_salt(self, salt: impl Into<String>) -> Self {
        let salt = salt.into();
        self.update(|config| config.subject_salt = salt)
    }

    /// The absolute URL of the token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}{}", self.config.base_url, self.config.token_path)
    }

    /// The absolute JWKS URL of the application with this slug.
    pub fn jwks_url(&self, slug: &str) -> String {
        self.config.url(&self.config.jwks_path, slug)
    }

    /// The absolute OpenID discovery URL of the application with this slug.
    pub fn discovery_url(&self, slug: &str) -> String {
        self.config.url(&self.config.discovery_path, slug)
    }

    /// The issuer's key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.config.keys
    }

    /// The application registered under `client_id`.
    pub fn get_application(&self, client_id: &str) -> Option<&Application> {
        self.config.applications.get(client_id).map(|app| &**app)
    }
}

impl<V> std::fmt::Debug for TokenEndpointLayer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpointLayer")
            .field("base_url", &self.config.base_url)
            .field("token_path", &self.config.token_path)
            .field("applications", &self.config.applications.len())
            .field("keys", &self.config.keys)
            .finish_non_exhaustive()
    }
}
