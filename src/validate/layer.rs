//! The [`JwtValidateLayer`].

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use tower_layer::Layer;

use super::scope::RequiredScopes;
use super::verify::Config;
use super::{DefaultRejection, Issuer, JwtValidate};
use crate::keys::dpop::{DpopNonces, DpopRules, normalize_htu};
use crate::store::ReplayCache;

/// A tower layer that lets a request through only with a valid bearer
/// token from a trusted issuer, and puts the token's
/// [`VerifiedClaims`](super::VerifiedClaims) in the request's extensions.
///
/// Defaults, all safe:
///
/// | setting | default |
/// |---|---|
/// | issuers | none: every token is refused until one is added |
/// | audiences | none: every token is refused until one is added |
/// | algorithms | ES256, ES384, EdDSA, RS256/384/512, PS256/384/512 (no HMAC, never `none`) |
/// | leeway on `exp`/`nbf` | 30 seconds |
/// | token type | `typ: at+jwt` (or `application/at+jwt`) required: ID tokens and other JWTs of the issuer are refused |
/// | required scopes | none |
/// | requests without a token | refused |
/// | verified-token cache | 10,000 tokens, 16 MiB, entries live ≤ 5 minutes and never past `exp` |
/// | DPoP | bound tokens need the `DPoP` scheme and a proof ([`DpopRules::new`]); proofs spent in memory |
///
/// # Access tokens, not ID tokens
///
/// An issuer signs ID tokens and access tokens with the same key, for the
/// same audience; only the JOSE `typ` header tells them apart (RFC 9068
/// §2.1, §4). So by default a token passes only with `typ: at+jwt`, which
/// this crate's token endpoint sets on every access token and never on an
/// ID token (`typ: JWT`). Any other `typ` (`JWT`, `logout+jwt`, none) is
/// `invalid_token`.
///
/// Issuers that sign access tokens as plain JWTs (authentik; this crate's
/// endpoint with [`at_jwt_typ(false)`](crate::issuer::TokenEndpointLayer::at_jwt_typ))
/// need [`allow_untyped_access_tokens`](Self::allow_untyped_access_tokens)
/// (or the same setting on one [`Issuer`]). Even then, a token without
/// `typ` or with `typ: JWT` passes only if it carries `client_id`, `scope`
/// or `scp`: claims that authentik's and this crate's access tokens always
/// have and their ID tokens never do.
///
/// See the [module docs](crate::validate) for an example.
#[derive(Clone)]
#[must_use]
pub struct JwtValidateLayer<R = DefaultRejection> {
    pub(crate) config: Arc<Config>,
    pub(crate) rejection: R,
}

/// An invalid setting of the validator (its layer, rejection or scopes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A realm must be printable ASCII without `"` or `\`.
    #[error("the realm must be printable ASCII without '\"' or '\\'")]
    Realm,
    /// A scope is not an RFC 6749 scope token.
    #[error("invalid scope {0:?}: scopes are non-empty, without spaces, quotes or backslashes")]
    Scope(String),
    /// The algorithm allow-list is empty.
    #[error("the algorithm allow-list is empty")]
    NoAlgorithms,
    /// A DPoP origin must be an absolute `http`/`https` URL without path,
    /// query or user info.
    #[error("the DPoP origin must be like https://api.example.com")]
    DpopOrigin,
}

impl JwtValidateLayer {
    /// A layer with no issuer and no audience yet: add them with
    /// [`issuer`](Self::issuer) and [`audience`](Self::audience).
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config::default()),
            rejection: DefaultRejection::default(),
        }
    }

    /// The `realm` of the default rejection's `WWW-Authenticate` header
    /// (default `api`); see [`DefaultRejection::realm`].
    pub fn realm(mut self, realm: &str) -> Result<Self, SettingsError> {
        self.rejection = self.rejection.realm(realm)?;
        Ok(self)
    }

    /// The rules DPoP proofs are checked against (default
    /// [`DpopRules::new`]), and the `algs` of the default rejection's `DPoP`
    /// challenges. DPoP is always on: a bound token (`cnf.jkt`) passes only
    /// as `Authorization: DPoP` with a valid proof (RFC 9449 §7).
    pub fn dpop(mut self, rules: DpopRules) -> Self {
        self.rejection = self.rejection.dpop_algorithms(rules.algorithms());
        Arc::make_mut(&mut self.config).dpop.rules = rules;
        self
    }
}

impl Default for JwtValidateLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> JwtValidateLayer<R> {
    fn update(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.rebuild();
        self
    }

    /// Trusts `issuer`: tokens whose `iss` equals its `iss` are verified
    /// with its keys (an issuer with the same `iss` is replaced).
    pub fn issuer(self, issuer: Issuer) -> Self {
        self.update(|config| {
            config.issuers.retain(|known| known.iss() != issuer.iss());
            config.issuers.push(issuer);
        })
    }

    /// Accepts tokens whose `aud` names `audience` (one of the configured
    /// audiences must be named; `aud` is required). Applies to the issuers
    /// that have no audience of their own ([`Issuer::audience`]).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        let audience = audience.into();
        self.update(|config| config.audiences.push(audience))
    }

    /// The algorithm allow-list (RFC 8725 §3.1), replacing the default. A
    /// token is verified only with an algorithm that is in this list *and*
    /// in its key's own list (which follows from the key type), so naming
    /// HS256 here never lets a public key act as an HMAC secret.
    pub fn algorithms(self, algorithms: &[Algorithm]) -> Result<Self, SettingsError> {
        if algorithms.is_empty() {
            return Err(SettingsError::NoAlgorithms);
        }
        let algorithms = algorithms.to_vec();
        Ok(self.update(|config| config.algorithms = algorithms))
    }

    /// The clock skew tolerated on `exp` and `nbf` (default 30 seconds,
    /// whole seconds).
    pub fn leeway(self, leeway: Duration) -> Self {
        self.update(|config| config.leeway = leeway.as_secs())
    }

    /// Also accepts, as access tokens, JWTs with no `typ` header or with
    /// `typ: JWT`, **if** they carry a `client_id`, `scope` or `scp` claim,
    /// which ID tokens never have. For issuers that do not mark access
    /// tokens with `typ: at+jwt`: authentik, or this crate's endpoint with
    /// [`at_jwt_typ(false)`](crate::issuer::TokenEndpointLayer::at_jwt_typ).
    /// Applies to the issuers without a setting of their own
    /// ([`Issuer::allow_untyped_access_tokens`]). Default `false`: only
    /// `typ: at+jwt` passes (RFC 9068 §4).
    pub fn allow_untyped_access_tokens(self, allow: bool) -> Self {
        self.update(|config| config.untyped_access_tokens = allow)
    }

    /// Requires every one of `scopes` in the token's `scope` (or `scp`)
    /// claim, on every route behind the layer; 403 `insufficient_scope`
    /// otherwise. For per-route scopes, use
    /// [`RequireScopeLayer`](super::RequireScopeLayer).
    pub fn require_scopes<I>(mut self, scopes: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let scopes = RequiredScopes::new(scopes)?;
        // Scopes are checked per request, not cached: the cache stays.
        Arc::make_mut(&mut self.config).scopes = Some(scopes);
        Ok(self)
    }

    /// Lets requests without a bearer token (no `Authorization` header, or
    /// another scheme) through, without claims: handlers decide, e.g. with
    /// `Option<Claims<T>>`. A request *with* a bearer token is still refused
    /// when the token is invalid. Default: `false`.
    pub fn allow_missing_token(mut self, allow: bool) -> Self {
        Arc::make_mut(&mut self.config).allow_missing = allow;
        self
    }

    /// The most tokens the verified-token cache holds (default 10,000; `0`
    /// turns the cache off, so every request pays a signature check).
    pub fn token_cache(self, max_entries: usize) -> Self {
        self.update(|config| config.cache_settings.max_entries = max_entries)
    }

    /// The most memory the verified-token cache uses, approximately
    /// (default 16 MiB).
    pub fn token_cache_max_bytes(self, max_bytes: usize) -> Self {
        self.update(|config| config.cache_settings.max_bytes = max_bytes)
    }

    /// How long a verified token is served from the cache at most (default
    /// 5 minutes; never past its `exp`). This bounds how long a token signed
    /// by a key the issuer has since withdrawn from its JWKS stays accepted.
    pub fn token_cache_max_ttl(self, max_ttl: Duration) -> Self {
        self.update(|config| config.cache_settings.max_ttl = max_ttl)
    }

    /// Whether the layer records metrics and spans (default `true`; see
    /// [`observe`](crate::observe)).
    pub fn instrument(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).instrument = enabled;
        self
    }

    /// Answers refused requests with `rejection`: an [`OnAuthError`]
    /// implementation or a closure `FnMut(&AuthError, &HeaderMap) -> Response<B>`.
    ///
    /// [`OnAuthError`]: super::OnAuthError
    pub fn with_rejection<T>(self, rejection: T) -> JwtValidateLayer<T> {
        JwtValidateLayer {
            config: self.config,
            rejection,
        }
    }

    /// The external origin (`https://api.example.com`) that the `htu` of
    /// DPoP proofs must name (RFC 9449 §4.3), as clients reach this API
    /// (behind a proxy or TLS terminator too). A layer without one refuses
    /// DPoP-bound tokens (`invalid_dpop_proof`, with a warning logged once):
    /// the request's own `Host` and URI are chosen by whoever sends it, so a
    /// proof made for another host's API would pass with a forged `Host`.
    ///
    /// ```
    /// use tower_m2m_auth::validate::JwtValidateLayer;
    ///
    /// let layer = JwtValidateLayer::new().dpop_origin("https://api.example.com")?;
    /// # Ok::<_, tower_m2m_auth::validate::SettingsError>(())
    /// ```
    pub fn dpop_origin(mut self, origin: &str) -> Result<Self, SettingsError> {
        // An origin normalizes to `scheme://authority/`: three slashes.
        match normalize_htu(origin) {
            Some(normalized)
                if normalized.ends_with('/') && normalized.matches('/').count() == 3 =>
            {
                let origin = normalized.trim_end_matches('/').to_owned();
                Arc::make_mut(&mut self.config).dpop.origin = Some(origin);
                Ok(self)
            }
            _ => Err(SettingsError::DpopOrigin),
        }
    }

    /// Without a [`dpop_origin`](Self::dpop_origin), takes the origin that
    /// DPoP proofs must name from each request: its scheme and authority,
    /// or `http://` and its `Host`. Whoever sends the request chooses them,
    /// so a proof made for another API passes here with that API's `Host`:
    /// only for an API that no proxy fronts and that checks `Host` itself.
    pub fn danger_dpop_origin_from_request(mut self) -> Self {
        Arc::make_mut(&mut self.config).dpop.origin_from_request = true;
        self
    }

    /// Where the `jti`s of DPoP proofs are remembered until they are too
    /// old to pass (default: in memory, for one instance; share one, e.g.
    /// `RedisStore`, so that a proof is spent on every instance at once).
    pub fn dpop_replay_cache(mut self, replay: impl ReplayCache) -> Self {
        Arc::make_mut(&mut self.config).dpop.replay = Arc::new(replay);
        self
    }

    /// Requires a server nonce in every DPoP proof (RFC 9449 §9): a proof
    /// without a valid one is refused with `use_dpop_nonce` and a fresh
    /// nonce ([`AuthError::UseDpopNonce`](super::AuthError::UseDpopNonce),
    /// which the default rejection sends as `DPoP-Nonce`). Default: no nonces.
    pub fn dpop_nonces(mut self, nonces: DpopNonces) -> Self {
        Arc::make_mut(&mut self.config).dpop.nonces = Some(nonces);
        self
    }

    /// The rejection.
    pub fn rejection(&self) -> &R {
        &self.rejection
    }
}

impl<S, R: Clone> Layer<S> for JwtValidateLayer<R> {
    type Service = JwtValidate<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtValidate::new(inner, self)
    }
}

impl<R> std::fmt::Debug for JwtValidateLayer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config = &self.config;
        f.debug_struct("JwtValidateLayer")
            .field(
                "issuers",
                &config.issuers.iter().map(Issuer::iss).collect::<Vec<_>>(),
            )
            .field("audiences", &config.audiences)
            .field("algorithms", &config.algorithms)
            .field("leeway", &config.leeway)
            .field("untyped_access_tokens", &config.untyped_access_tokens)
            .field("scopes", &config.scopes)
            .field("allow_missing_token", &config.allow_missing)
            .field("cache", &config.cache)
            .finish_non_exhaustive()
    }
}
