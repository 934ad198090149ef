//! A trusted issuer: its `iss`, where its keys come from, and the audiences
//! its tokens may name.

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;

use crate::keys::{
    DiscoveredJwks, JwksFetcher, KeySet, KeySourceError, RemoteJwks, VerificationKey,
};

/// An issuer whose tokens [`JwtValidateLayer`](super::JwtValidateLayer)
/// accepts, chosen by the token's `iss`.
///
/// Its keys come from one source:
///
/// | source | constructor |
/// |---|---|
/// | static keys (PEM public keys, certificates, JWKs) | [`with_keys`](Self::with_keys) |
/// | an inline JWKS | [`with_jwks`](Self::with_jwks) |
/// | the issuer's JWKS URL | [`with_jwks_url`](Self::with_jwks_url), [`with_remote_jwks`](Self::with_remote_jwks) |
/// | the issuer URL alone (OpenID discovery) | [`discover`](Self::discover), [`with_discovery`](Self::with_discovery) |
///
/// Remote keys are cached, refreshed (rate-limited) when a token names an
/// unknown `kid`, served from the last good copy while the source is down,
/// and fail closed when there never was one: see
/// [`RemoteJwks`].
#[derive(Debug, Clone)]
pub struct Issuer {
    pub(crate) iss: String,
    pub(crate) keys: IssuerKeys,
    pub(crate) audiences: Vec<String>,
    pub(crate) untyped_access_tokens: Option<bool>,
}

#[derive(Debug, Clone)]
pub(crate) enum IssuerKeys {
    Static(Arc<KeySet>),
    Remote(RemoteJwks),
    Discovered(DiscoveredJwks),
}

impl Issuer {
    /// The issuer `iss`, trusting these keys.
    ///
    /// ```
    /// use tower_m2m_auth::keys::VerificationKey;
    /// use tower_m2m_auth::validate::Issuer;
    /// # let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    ///
    /// // A PEM public key (SPKI) or certificate; EdDSA keys need no `alg`.
    /// let key = VerificationKey::from_pem(pem.as_bytes()).unwrap();
    /// let issuer = Issuer::with_keys("https://auth.example.com/application/o/app/", [key])
    ///     .audience("my-client");
    /// ```
    pub fn with_keys(
        iss: impl Into<String>,
        keys: impl IntoIterator<Item = VerificationKey>,
    ) -> Self {
        Self::from_source(iss.into(), IssuerKeys::Static(Arc::new(KeySet::new(keys))))
    }

    /// The issuer `iss`, trusting the usable keys of an inline JWKS.
    pub fn with_jwks(iss: impl Into<String>, jwks: &JwkSet) -> Self {
        Self::from_source(
            iss.into(),
            IssuerKeys::Static(Arc::new(KeySet::from_jwks(jwks))),
        )
    }

    /// The issuer `iss`, trusting a key set.
    pub fn with_key_set(iss: impl Into<String>, keys: KeySet) -> Self {
        Self::from_source(iss.into(), IssuerKeys::Static(Arc::new(keys)))
    }

    /// The issuer `iss`, trusting the keys at its JWKS URL, fetched with the
    /// default [`ReqwestFetcher`](crate::keys::ReqwestFetcher) (HTTPS, or
    /// HTTP to loopback only).
    #[cfg(feature = "reqwest")]
    pub fn with_jwks_url(iss: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        let fetcher = Arc::new(crate::keys::ReqwestFetcher::new());
        Self::with_remote_jwks(iss, RemoteJwks::new(jwks_url, fetcher))
    }

    /// The issuer `iss`, trusting the keys of a [`RemoteJwks`]: your own
    /// [`JwksFetcher`] (custom CA, proxy) or [`CachePolicy`](crate::keys::CachePolicy).
    pub fn with_remote_jwks(iss: impl Into<String>, jwks: RemoteJwks) -> Self {
        Self::from_source(iss.into(), IssuerKeys::Remote(jwks))
    }

    /// The issuer `iss`, whose JWKS URL is found by OpenID discovery
    /// (`<iss>/.well-known/openid-configuration`, whose `issuer` must equal
    /// `iss`) on first use, with the default fetcher.
    #[cfg(feature = "reqwest")]
    pub fn discover(iss: impl Into<String>) -> Self {
        Self::discover_with(iss, Arc::new(crate::keys::ReqwestFetcher::new()))
    }

    /// Like [`discover`](Self::discover), fetching with your own client.
    pub fn discover_with(iss: impl Into<String>, fetcher: Arc<dyn JwksFetcher>) -> Self {
        Self::with_discovery(DiscoveredJwks::new(iss, fetcher))
    }

    /// The issuer of a [`DiscoveredJwks`].
    pub fn with_discovery(discovered: DiscoveredJwks) -> Self {
        Self::from_source(
            discovered.issuer().to_owned(),
            IssuerKeys::Discovered(discovered),
        )
    }

    fn from_source(iss: String, keys: IssuerKeys) -> Self {
        Self {
            iss,
            keys,
            audiences: Vec::new(),
            untyped_access_tokens: None,
        }
    }

    /// Accepts tokens of this issuer whose `aud` names `audience`. Without
    /// any, the layer's [`audience`](super::JwtValidateLayer::audience)s
    /// apply.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Whether this issuer's tokens without `typ: at+jwt` may pass as
    /// access tokens when they carry `client_id`, `scope` or `scp` (see
    /// [`JwtValidateLayer::allow_untyped_access_tokens`](super::JwtValidateLayer::allow_untyped_access_tokens),
    /// whose setting applies when this is not set). For an authentik
    /// issuer beside issuers that type their access tokens.
    pub fn allow_untyped_access_tokens(mut self, allow: bool) -> Self {
        self.untyped_access_tokens = Some(allow);
        self
    }

    /// The issuer (`iss`).
    pub fn iss(&self) -> &str {
        &self.iss
    }
}

impl IssuerKeys {
    pub(crate) async fn current(&self) -> Result<Arc<KeySet>, KeySourceError> {
        match self {
            IssuerKeys::Static(keys) => Ok(keys.clone()),
            IssuerKeys::Remote(remote) => remote.keys().await,
            IssuerKeys::Discovered(discovered) => discovered.keys().await,
        }
    }

    /// Refetches for an unknown `kid`; `None` for static keys.
    pub(crate) async fn refresh(&self, kid: &str) -> Option<Result<Arc<KeySet>, KeySourceError>> {
        match self {
            IssuerKeys::Static(_) => None,
            IssuerKeys::Remote(remote) => Some(remote.refresh_for_unknown_kid(kid).await),
            IssuerKeys::Discovered(discovered) => {
                Some(discovered.refresh_for_unknown_kid(kid).await)
            }
        }
    }
}
