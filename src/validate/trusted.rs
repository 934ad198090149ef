//! A trusted issuer as the validator sees it: a [`TrustedIssuer`] (its
//! `iss` and the keys that speak for it) with the audiences its tokens may
//! name and whether its untyped tokens pass as access tokens.

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;

use crate::keys::fetch::JwksFetcher;
use crate::keys::{KeySet, RemoteJwks, TrustedIssuer, VerificationKey};

/// An issuer whose tokens [`JwtValidateLayer`](super::JwtValidateLayer)
/// accepts, chosen by the token's `iss`.
///
/// Its keys are a [`TrustedIssuer`], the key source the token endpoint uses
/// for input JWTs too; the constructors below build the common ones:
///
/// | source | constructor |
/// |---|---|
/// | static keys (PEM public keys, certificates, JWKs) | [`with_keys`](Self::with_keys), [`with_key_set`](Self::with_key_set) |
/// | an inline JWKS | [`with_jwks`](Self::with_jwks) |
/// | the issuer's JWKS URL | [`with_jwks_url`](Self::with_jwks_url), [`with_remote_jwks`](Self::with_remote_jwks) |
/// | the issuer URL alone (OpenID discovery) | [`discover`](Self::discover), [`discover_with`](Self::discover_with), [`with_discovery`](Self::with_discovery) |
/// | any mix of them | [`trusting`](Self::trusting) |
///
/// Remote keys are cached, refreshed (rate-limited) when a token names an
/// unknown `kid`, served from the last good copy while the source is down,
/// and fail closed when there never was one: see [`RemoteJwks`].
#[derive(Debug, Clone)]
pub struct Issuer {
    pub(crate) keys: TrustedIssuer,
    pub(crate) audiences: Vec<String>,
    pub(crate) untyped_access_tokens: Option<bool>,
}

impl Issuer {
    /// The issuer of `keys`, trusting them.
    pub fn trusting(keys: TrustedIssuer) -> Self {
        Self {
            keys,
            audiences: Vec::new(),
            untyped_access_tokens: None,
        }
    }

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
        Self::with_key_set(iss, KeySet::new(keys))
    }

    /// The issuer `iss`, trusting the usable keys of an inline JWKS.
    pub fn with_jwks(iss: impl Into<String>, jwks: &JwkSet) -> Self {
        Self::trusting(TrustedIssuer::new(iss).with_jwks(jwks))
    }

    /// The issuer `iss`, trusting a key set.
    pub fn with_key_set(iss: impl Into<String>, keys: KeySet) -> Self {
        Self::trusting(TrustedIssuer::new(iss).with_key_set(&keys))
    }

    /// The issuer `iss`, trusting the keys at its JWKS URL, fetched with the
    /// default [`ReqwestFetcher`](crate::keys::fetch::ReqwestFetcher)
    /// (HTTPS, or HTTP to loopback only).
    #[cfg(feature = "reqwest")]
    pub fn with_jwks_url(iss: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        let fetcher = Arc::new(crate::keys::fetch::ReqwestFetcher::new());
        Self::with_remote_jwks(iss, RemoteJwks::new(jwks_url, fetcher))
    }

    /// The issuer `iss`, trusting the keys of a [`RemoteJwks`]: your own
    /// [`JwksFetcher`] (custom CA, proxy) or
    /// [`CachePolicy`](crate::keys::CachePolicy). See
    /// [`TrustedIssuer::with_remote`] for a discovered source.
    pub fn with_remote_jwks(iss: impl Into<String>, jwks: RemoteJwks) -> Self {
        Self::trusting(TrustedIssuer::new(iss).with_remote(jwks))
    }

    /// The issuer `iss`, whose JWKS URL is found by OpenID discovery
    /// (`<iss>/.well-known/openid-configuration`, whose `issuer` must equal
    /// `iss`) on first use, with the default fetcher.
    #[cfg(feature = "reqwest")]
    pub fn discover(iss: impl Into<String>) -> Self {
        Self::discover_with(iss, Arc::new(crate::keys::fetch::ReqwestFetcher::new()))
    }

    /// Like [`discover`](Self::discover), fetching with your own client.
    pub fn discover_with(iss: impl Into<String>, fetcher: Arc<dyn JwksFetcher>) -> Self {
        Self::with_discovery(RemoteJwks::discover(iss, fetcher))
    }

    /// The issuer of a source made by [`RemoteJwks::discover`] (see
    /// [`TrustedIssuer::discovered`]).
    pub fn with_discovery(discovered: RemoteJwks) -> Self {
        Self::trusting(TrustedIssuer::discovered(discovered))
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
        self.keys.iss()
    }
}

impl From<TrustedIssuer> for Issuer {
    fn from(keys: TrustedIssuer) -> Self {
        Self::trusting(keys)
    }
}
