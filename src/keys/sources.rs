//! Every key a party trusts, each bound to the issuer it speaks for: static
//! keys, JWKS URLs and OpenID discovery.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{TokenData, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{DiscoveredJwks, JwtError, KeySet, KeySourceError, RemoteJwks, VerificationKey};

/// The keys trusted to sign some tokens, grouped by the issuer each speaks
/// for: a token is verified only with the keys of the issuer its `iss` names,
/// and a token whose `iss` no [`TrustedIssuer`] has is refused
/// ([`JwtError::UntrustedIssuer`]).
///
/// So a key trusted for one issuer cannot vouch for another: a partner's
/// certificate does not verify a JWT that claims to come from a CI platform.
///
/// ```
/// use tower_m2m_auth::keys::{SigningKey, TrustedIssuer, VerificationKey, VerificationKeys};
/// use jsonwebtoken::{Algorithm, Validation};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let signer = SigningKey::generate(Algorithm::EdDSA).unwrap();
/// let key = VerificationKey::from_jwk(signer.public_jwk().unwrap()).unwrap();
/// let keys = VerificationKeys::new()
///     .with_issuer(TrustedIssuer::new("https://ci.example").with_key(key));
/// let claims = serde_json::json!({"iss": "https://ci.example", "sub": "ci", "exp": 4_000_000_000u64});
/// let token = signer.sign_jwt(None, &claims).unwrap();
/// let mut validation = Validation::new(Algorithm::EdDSA);
/// validation.validate_aud = false;
/// let data = keys.verify::<serde_json::Value>(&token, &validation).await.unwrap();
/// assert_eq!(data.claims["sub"], "ci");
///
/// // The same key, claiming another issuer: refused.
/// let claims = serde_json::json!({"iss": "https://other.example", "sub": "ci", "exp": 4_000_000_000u64});
/// let token = signer.sign_jwt(None, &claims).unwrap();
/// assert!(keys.verify::<serde_json::Value>(&token, &validation).await.is_err());
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct VerificationKeys {
    issuers: Vec<TrustedIssuer>,
}

/// One issuer (an exact `iss` value) and the keys that speak for it: any mix
/// of static keys (PEM public keys, X.509 certificates, inline JWKS), JWKS
/// URLs and, for an issuer found by OpenID discovery, its `jwks_uri`.
///
/// A key that signs for several issuers is added to each of them.
///
/// ```
/// use std::sync::Arc;
/// use tower_m2m_auth::keys::{DiscoveredJwks, JwksFetcher, TrustedIssuer, VerificationKeys};
///
/// # fn keys(fetcher: Arc<dyn JwksFetcher>) -> VerificationKeys {
/// // GitHub Actions: the issuer URL alone; discovery finds its JWKS.
/// let github = TrustedIssuer::discovered(DiscoveredJwks::new(
///     "https://token.actions.githubusercontent.com",
///     fetcher,
/// ));
/// VerificationKeys::new().with_issuer(github)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    iss: String,
    fixed: Arc<KeySet>,
    remotes: Vec<RemoteKeys>,
}

/// A key source fetched over HTTP.
#[derive(Debug, Clone)]
enum RemoteKeys {
    Jwks(RemoteJwks),
    Discovered(DiscoveredJwks),
}

impl RemoteKeys {
    async fn keys(&self) -> Result<Arc<KeySet>, KeySourceError> {
        match self {
            RemoteKeys::Jwks(remote) => remote.keys().await,
            RemoteKeys::Discovered(discovered) => discovered.keys().await,
        }
    }

    async fn refresh_for_unknown_kid(&self, kid: &str) -> Result<Arc<KeySet>, KeySourceError> {
        match self {
            RemoteKeys::Jwks(remote) => remote.refresh_for_unknown_kid(kid).await,
            RemoteKeys::Discovered(discovered) => discovered.refresh_for_unknown_kid(kid).await,
        }
    }
}

/// Why a token could not be verified with a [`VerificationKeys`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyTokenError {
    /// The token is invalid.
    #[error(transparent)]
    Invalid(#[from] JwtError),
    /// No key verified the token, and a key source that might hold its key
    /// could not be read (fail closed).
    #[error(transparent)]
    Unavailable(#[from] KeySourceError),
}

impl TrustedIssuer {
    /// The issuer whose tokens carry exactly this `iss`, with no key yet.
    pub fn new(iss: impl Into<String>) -> Self {
        Self {
            iss: iss.into(),
            fixed: Arc::default(),
            remotes: Vec::new(),
        }
    }

    /// The issuer of a [`DiscoveredJwks`], trusting the keys at the
    /// `jwks_uri` its metadata names (the metadata's `issuer` must equal it,
    /// so the binding is the issuer's own word).
    pub fn discovered(discovered: DiscoveredJwks) -> Self {
        let mut issuer = Self::new(discovered.issuer());
        issuer.remotes.push(RemoteKeys::Discovered(discovered));
        issuer
    }

    /// Trusts one key (a certificate, a PEM public key, a JWK) for this issuer.
    pub fn with_key(mut self, key: VerificationKey) -> Self {
        Arc::make_mut(&mut self.fixed).extend(&KeySet::new([key]));
        self
    }

    /// Trusts the usable keys of an inline JWKS for this issuer.
    pub fn with_jwks(mut self, jwks: &JwkSet) -> Self {
        Arc::make_mut(&mut self.fixed).extend(&KeySet::from_jwks(jwks));
        self
    }

    /// Trusts the keys published at a JWKS URL for this issuer.
    pub fn with_remote(mut self, remote: RemoteJwks) -> Self {
        self.remotes.push(RemoteKeys::Jwks(remote));
        self
    }

    /// The issuer (`iss`).
    pub fn iss(&self) -> &str {
        &self.iss
    }

    /// Whether a JWKS URL or a discovered JWKS speaks for this issuer.
    pub fn has_remote(&self) -> bool {
        !self.remotes.is_empty()
    }

    /// Whether no key or source speaks for this issuer.
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.remotes.is_empty()
    }

    /// Adds the keys and sources of `other` (same issuer).
    fn merge(&mut self, other: TrustedIssuer) {
        Arc::make_mut(&mut self.fixed).extend(&other.fixed);
        self.remotes.extend(other.remotes);
    }

    /// Verifies with this issuer's keys, refreshing the remote sources once
    /// (rate-limited) for a `kid` found nowhere.
    async fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<TokenData<C>, VerifyTokenError> {
        let mut outcome = self.verify_once(token, validation).await;
        if let Err(VerifyTokenError::Invalid(JwtError::UnknownKey)) = &outcome {
            let kid = jsonwebtoken::decode_header(token)
                .ok()
                .and_then(|header| header.kid)
                .unwrap_or_default();
            let mut refreshed = false;
            for remote in &self.remotes {
                refreshed |= remote
                    .refresh_for_unknown_kid(&kid)
                    .await
                    .is_ok_and(|keys| keys.contains_kid(&kid));
            }
            if refreshed {
                outcome = self.verify_once(token, validation).await;
            }
        }
        outcome
    }

    async fn verify_once<C: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<TokenData<C>, VerifyTokenError> {
        let mut last = match self.fixed.verify(token, validation) {
            Ok(data) => return Ok(data),
            Err(error) if !is_key_miss(&error) => return Err(error.into()),
            Err(error) => error,
        };
        let mut unavailable = None;
        for remote in &self.remotes {
            let keys = match remote.keys().await {
                Ok(keys) => keys,
                Err(error) => {
                    unavailable = Some(error);
                    continue;
                }
            };
            match keys.verify(token, validation) {
                Ok(data) => return Ok(data),
                Err(error) if !is_key_miss(&error) => return Err(error.into()),
                Err(error) => last = most_specific(last, error),
            }
        }
        match unavailable {
            // The key may be in the source we could not read: fail closed, and say why.
            Some(error) if last != JwtError::BadSignature => Err(error.into()),
            _ => Err(last.into()),
        }
    }
}

impl VerificationKeys {
    /// No issuer: nothing verifies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `issuer`'s keys for tokens whose `iss` is exactly
    /// [`issuer.iss()`](TrustedIssuer::iss). Adding the same issuer twice
    /// joins its keys.
    pub fn with_issuer(mut self, issuer: TrustedIssuer) -> Self {
        match self
            .issuers
            .iter_mut()
            .find(|known| known.iss == issuer.iss)
        {
            Some(known) => known.merge(issuer),
            None => self.issuers.push(issuer),
        }
        self
    }

    /// Trusts an issuer found by OpenID discovery (see
    /// [`TrustedIssuer::discovered`]).
    pub fn with_discovery(self, discovered: DiscoveredJwks) -> Self {
        self.with_issuer(TrustedIssuer::discovered(discovered))
    }

    /// Whether no key or source is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.iter().all(TrustedIssuer::is_empty)
    }

    /// Whether some issuer's keys come from a JWKS URL or discovery: keys
    /// that a shared platform may use to sign for many parties.
    pub fn has_remote(&self) -> bool {
        self.issuers.iter().any(TrustedIssuer::has_remote)
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &TrustedIssuer> {
        self.issuers.iter()
    }

    /// Verifies `token` with the keys of the issuer its `iss` names, then
    /// validates its claims; the verified `iss` must be that issuer (and one
    /// of `validation.iss`, when set).
    ///
    /// Among that issuer's keys, the one the token names (`kid`) is used or,
    /// without a `kid`, each compatible key. A `kid` found nowhere makes the
    /// issuer's remote sources refresh (rate-limited) before the token is
    /// refused.
    pub async fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<TokenData<C>, VerifyTokenError> {
        let iss = unverified_issuer(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|issuer| issuer.iss == *iss)
            .ok_or(JwtError::UntrustedIssuer)?;
        if validation
            .iss
            .as_ref()
            .is_some_and(|accepted| !accepted.contains(&issuer.iss))
        {
            return Err(JwtError::InvalidIssuer.into());
        }
        // jsonwebtoken checks the verified claims' `iss` against the issuer
        // whose keys verified them.
        let mut validation = validation.clone();
        validation.set_issuer(&[&issuer.iss]);
        validation.required_spec_claims.insert("iss".to_owned());
        issuer.verify(token, &validation).await
    }
}

#[derive(Deserialize)]
struct PeekPayload<'a> {
    #[serde(borrow, default)]
    iss: Option<Cow<'a, str>>,
}

/// The `iss` of a token, not verified yet: it only selects the keys.
fn unverified_issuer(token: &str) -> Result<String, JwtError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice::<PeekPayload<'_>>(&payload)
        .map_err(|_| JwtError::InvalidClaims)?
        .iss
        .map(Cow::into_owned)
        .ok_or(JwtError::InvalidClaims)
}

/// Whether another key source might still verify the token.
fn is_key_miss(error: &JwtError) -> bool {
    matches!(
        error,
        JwtError::UnknownKey | JwtError::NoMatchingKey | JwtError::BadSignature
    )
}

/// A bad signature says more than "no key" when reporting across sources.
fn most_specific(a: JwtError, b: JwtError) -> JwtError {
    match (&a, &b) {
        (JwtError::BadSignature, _) => a,
        (_, JwtError::BadSignature) => b,
        (JwtError::UnknownKey, JwtError::NoMatchingKey) => b,
        _ => a,
    }
}
