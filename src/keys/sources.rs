//! Every key a party trusts: static keys and remote JWKS, as one source.

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{TokenData, Validation};
use serde::de::DeserializeOwned;

use super::{JwtError, KeySet, KeySourceError, RemoteJwks, VerificationKey};

/// The keys trusted to sign some tokens: any mix of static keys (PEM public
/// keys, X.509 certificates, inline JWKS) and JWKS URLs.
///
/// ```
/// use tower_m2m_auth::keys::{SigningKey, VerificationKey, VerificationKeys};
/// use jsonwebtoken::{Algorithm, Validation};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let signer = SigningKey::generate(Algorithm::EdDSA).unwrap();
/// let keys = VerificationKeys::new()
///     .with_key(VerificationKey::from_jwk(signer.public_jwk().unwrap()).unwrap());
/// let token = signer.sign_jwt(None, &serde_json::json!({"sub": "ci", "exp": 4_000_000_000u64})).unwrap();
/// let mut validation = Validation::new(Algorithm::EdDSA);
/// validation.validate_aud = false;
/// let data = keys.verify::<serde_json::Value>(&token, &validation).await.unwrap();
/// assert_eq!(data.claims["sub"], "ci");
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct VerificationKeys {
    fixed: Arc<KeySet>,
    remotes: Vec<RemoteJwks>,
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

impl VerificationKeys {
    /// No keys: nothing verifies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts one key.
    pub fn with_key(mut self, key: VerificationKey) -> Self {
        Arc::make_mut(&mut self.fixed).extend(&KeySet::new([key]));
        self
    }

    /// Trusts the usable keys of an inline JWKS.
    pub fn with_jwks(mut self, jwks: &JwkSet) -> Self {
        Arc::make_mut(&mut self.fixed).extend(&KeySet::from_jwks(jwks));
        self
    }

    /// Trusts the keys published at a JWKS URL.
    pub fn with_remote(mut self, remote: RemoteJwks) -> Self {
        self.remotes.push(remote);
        self
    }

    /// Whether any source is a JWKS URL (fetched, so possibly a platform
    /// that signs for many parties).
    pub fn has_remote(&self) -> bool {
        !self.remotes.is_empty()
    }

    /// Whether no key or source is configured.
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.remotes.is_empty()
    }

    /// Verifies `token` with the key it names (`kid`) or, without a `kid`,
    /// with each compatible key, then validates its claims.
    ///
    /// A `kid` found nowhere makes the remote sources refresh (rate-limited)
    /// before the token is refused.
    pub async fn verify<C: DeserializeOwned>(
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
