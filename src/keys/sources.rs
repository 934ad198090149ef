//! The one key-source abstraction: every key a party trusts, each bound to
//! the issuer it speaks for (static keys, inline JWKS, JWKS URLs, OpenID
//! discovery), and the one "verify; on an unknown `kid` refresh and retry"
//! routine that the token endpoint (input JWTs) and the validator share.

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{TokenData, Validation};
use serde::de::DeserializeOwned;

use super::peek::Peeked;
use super::{JwtError, KeySet, RemoteJwks, VerificationKey};

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
/// The key source of both sides: the token endpoint's input JWTs
/// ([`VerificationKeys`]) and the validator's
/// [`Issuer`](crate::validate::Issuer). A key that signs for several
/// issuers is added to each of them.
///
/// ```
/// use std::sync::Arc;
/// use tower_m2m_auth::keys::fetch::JwksFetcher;
/// use tower_m2m_auth::keys::{RemoteJwks, TrustedIssuer, VerificationKeys};
///
/// # fn keys(fetcher: Arc<dyn JwksFetcher>) -> VerificationKeys {
/// // GitHub Actions: the issuer URL alone; discovery finds its JWKS.
/// let github = TrustedIssuer::discovered(RemoteJwks::discover(
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
    remotes: Vec<RemoteJwks>,
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

    /// The issuer of a source made by [`RemoteJwks::discover`], trusting the
    /// keys at the `jwks_uri` its metadata names (the metadata's `issuer`
    /// must equal it, so the binding is the issuer's own word). A JWKS URL
    /// source has no issuer of its own: give it one with
    /// [`new`](Self::new) and [`with_remote`](Self::with_remote); here it
    /// is refused (see there), leaving an issuer that trusts nothing.
    pub fn discovered(discovered: RemoteJwks) -> Self {
        match discovered.issuer() {
            Some(iss) => Self::new(iss).with_remote(discovered),
            None => {
                tracing::warn!(
                    url = %discovered.url(),
                    "a JWKS URL is not a discovered source: it speaks for no issuer by itself"
                );
                Self::new("")
            }
        }
    }

    /// Trusts one key (a certificate, a PEM public key, a JWK) for this issuer.
    pub fn with_key(mut self, key: VerificationKey) -> Self {
        Arc::make_mut(&mut self.fixed).extend(&KeySet::new([key]));
        self
    }

    /// Trusts the usable keys of an inline JWKS for this issuer.
    pub fn with_jwks(self, jwks: &JwkSet) -> Self {
        self.with_key_set(&KeySet::from_jwks(jwks))
    }

    /// Trusts every key of a set for this issuer.
    pub fn with_key_set(mut self, keys: &KeySet) -> Self {
        Arc::make_mut(&mut self.fixed).extend(keys);
        self
    }

    /// Trusts the keys of a remote source for this issuer: a JWKS URL, or
    /// the discovered JWKS of this same issuer. A source discovered for
    /// another issuer speaks only for that one: it is refused (logged, and
    /// not added), so it never vouches for this `iss`.
    pub fn with_remote(mut self, remote: RemoteJwks) -> Self {
        match remote.issuer() {
            Some(discovered) if discovered != self.iss => {
                tracing::warn!(
                    iss = %self.iss,
                    %discovered,
                    "a JWKS discovered for another issuer is not trusted for this one"
                );
            }
            _ => self.remotes.push(remote),
        }
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

    /// Verifies `token` with this issuer's keys (its `iss` is the caller's
    /// business), then validates its claims with `validation`: the one
    /// routine of both sides. A `kid` found nowhere makes the remote sources
    /// refresh once (rate-limited) before the token is refused.
    pub(crate) async fn verify_token<C: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<TokenData<C>, JwtError> {
        let outcome = self.verify_once(token, validation).await;
        if !matches!(outcome, Err(JwtError::UnknownKey)) {
            return outcome;
        }
        let Some(kid) = jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|header| header.kid)
        else {
            return outcome;
        };
        let mut refreshed = false;
        for remote in &self.remotes {
            refreshed |= remote
                .refresh_for_unknown_kid(&kid)
                .await
                .is_ok_and(|keys| keys.contains_kid(&kid));
        }
        if refreshed {
            self.verify_once(token, validation).await
        } else {
            outcome
        }
    }

    async fn verify_once<C: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<TokenData<C>, JwtError> {
        // The most specific miss so far (see `most_specific`).
        let mut last = None;
        if !self.fixed.is_empty() || self.remotes.is_empty() {
            match self.fixed.verify(token, validation) {
                Err(error) if is_key_miss(&error) => last = Some(error),
                outcome => return outcome,
            }
        }
        let mut unavailable = false;
        for remote in &self.remotes {
            let Ok(keys) = remote.keys().await else {
                unavailable = true;
                continue;
            };
            match keys.verify(token, validation) {
                Err(error) if is_key_miss(&error) => {
                    last = Some(match last {
                        Some(before) => most_specific(before, error),
                        None => error,
                    });
                }
                outcome => return outcome,
            }
        }
        // The key may be in the source we could not read: fail closed.
        match last {
            Some(JwtError::BadSignature) => Err(JwtError::BadSignature),
            _ if unavailable => Err(JwtError::KeysUnavailable),
            last => Err(last.unwrap_or(JwtError::NoMatchingKey)),
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
    pub fn with_discovery(self, discovered: RemoteJwks) -> Self {
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
    /// refused; a source that cannot be read, with no earlier copy, refuses
    /// it with [`JwtError::KeysUnavailable`] (fail closed).
    pub async fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<TokenData<C>, JwtError> {
        let iss = Peeked::parse(token)?.iss.ok_or(JwtError::InvalidClaims)?;
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
            return Err(JwtError::InvalidIssuer);
        }
        // jsonwebtoken checks the verified claims' `iss` against the issuer
        // whose keys verified them.
        let mut validation = validation.clone();
        validation.set_issuer(&[&issuer.iss]);
        validation.required_spec_claims.insert("iss".to_owned());
        issuer.verify_token(token, &validation).await
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
