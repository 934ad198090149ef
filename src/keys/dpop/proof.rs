//! Checking one DPoP proof (RFC 9449 §4.3), shared by the token endpoint and
//! the validator. Everything but single use, which needs the caller's
//! replay cache: [`DpopProof::replay_key`].

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::jwk::{HeaderJwk, ProofKey};
use super::{DpopError, DpopNonces, normalize_htu, token_hash};

/// The `DPoP` request header.
pub const DPOP_HEADER: &str = "dpop";

/// The longest `jti` accepted (it is kept in the replay cache).
const MAX_JTI: usize = 256;

/// The rules a DPoP proof is checked against, the same on both sides.
///
/// | setting | default |
/// |---|---|
/// | algorithms | ES256, ES384, EdDSA, RS256/384/512, PS256/384/512 (never `none` or HMAC) |
/// | `iat` at most this old | 60 seconds |
/// | `iat` at most this far ahead (clock skew) | 5 seconds |
#[derive(Debug, Clone)]
pub struct DpopRules {
    algorithms: Vec<Algorithm>,
    max_age: u64,
    leeway: u64,
}

impl Default for DpopRules {
    fn default() -> Self {
        Self {
            algorithms: crate::keys::ASYMMETRIC_ALGORITHMS.to_vec(),
            max_age: 60,
            leeway: 5,
        }
    }
}

/// What a proof must match: the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// The request's method (`htm`).
    pub method: &'a str,
    /// The request's URI as [`normalize_htu`] gives it (`htu`).
    pub htu: &'a str,
    /// The access token the request presents, if any (`ath`).
    pub access_token: Option<&'a str>,
    /// The server's nonces, if it requires them (`nonce`).
    pub nonces: Option<&'a DpopNonces>,
}

/// A proof that passed every check but single use.
#[derive(Debug, Clone)]
pub struct DpopProof {
    thumbprint: String,
    jti: String,
    expires_at: u64,
}

impl DpopProof {
    /// The RFC 7638 thumbprint of the proof's key (the `jkt`).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The replay-cache key of the proof: its key's thumbprint and `jti`,
    /// so one client cannot spend another's `jti`.
    pub fn replay_key(&self) -> String {
        format!("dpop:{}:{}", self.thumbprint, self.jti)
    }

    /// Until when (Unix seconds) the `jti` must be remembered: after that
    /// the proof is too old anyway.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    typ: Option<String>,
    alg: String,
    #[serde(default)]
    jwk: Option<HeaderJwk>,
    /// Extensions the recipient must understand (RFC 7515 §4.1.11): none
    /// is, so a proof with `crit` is refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    jti: Option<String>,
    htm: String,
    htu: String,
    iat: serde_json::Number,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

impl DpopRules {
    /// Rules with the defaults in the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The algorithm allow-list; symmetric algorithms are dropped from it.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms
            .iter()
            .copied()
            .filter(|a| crate::keys::ASYMMETRIC_ALGORITHMS.contains(a))
            .collect();
        self
    }

    /// How old a proof's `iat` may be (default 60 s), and how far ahead of
    /// this clock (default 5 s).
    pub fn with_iat_window(mut self, max_age: Duration, leeway: Duration) -> Self {
        self.max_age = max_age.as_secs();
        self.leeway = leeway.as_secs();
        self
    }

    /// The allowed algorithms (`dpop_signing_alg_values_supported`, `algs`).
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Checks `proof` for `request` at `now` (Unix seconds): every rule of
    /// RFC 9449 §4.3 but single use (see [`DpopProof::replay_key`]) and the
    /// match of the key with a token's `cnf.jkt`.
    pub fn check(
        &self,
        proof: &str,
        request: &DpopRequest<'_>,
        now: u64,
    ) -> Result<DpopProof, DpopError> {
        let mut parts = proof.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DpopError::Malformed);
        };
        let header: Header = json_part(header_b64)?;
        if header.crit.is_some() {
            return Err(DpopError::Malformed);
        }
        if header.typ.as_deref() != Some("dpop+jwt") {
            return Err(DpopError::WrongType);
        }
        let algorithm: Algorithm = header.alg.parse().map_err(|_| DpopError::Algorithm)?;
        if !self.algorithms.contains(&algorithm) {
            return Err(DpopError::Algorithm);
        }
        let key = ProofKey::from_header(header.jwk.ok_or(DpopError::InvalidKey)?)?;
        if !key.key.algorithms().contains(&algorithm) {
            return Err(DpopError::InvalidKey);
        }
        let message = &proof[..header_b64.len() + 1 + claims_b64.len()];
        let valid = jsonwebtoken::crypto::verify(
            signature,
            message.as_bytes(),
            key.key.decoding_key(),
            algorithm,
        );
        if !valid.unwrap_or(false) {
            return Err(DpopError::BadSignature);
        }
        let claims: Claims = json_part(claims_b64)?;
        let jti = claims
            .jti
            .filter(|jti| {
                !jti.is_empty() && jti.len() <= MAX_JTI && !jti.chars().any(char::is_control)
            })
            .ok_or(DpopError::MissingJti)?;
        if claims.htm != request.method {
            return Err(DpopError::MethodMismatch);
        }
        if normalize_htu(&claims.htu).as_deref() != Some(request.htu) {
            return Err(DpopError::UriMismatch);
        }
        if let Some(nonces) = request.nonces {
            let nonce = claims.nonce.as_deref().unwrap_or("");
            if !nonces.is_valid(nonce, now) {
                return Err(DpopError::UseNonce);
            }
        }
        // A NumericDate may have a fraction: the whole seconds count.
        let iat = claims
            .iat
            .as_f64()
            .filter(|iat| *iat >= 0.0)
            .ok_or(DpopError::Malformed)? as u64;
        if iat > now.saturating_add(self.leeway) || iat.saturating_add(self.max_age) < now {
            return Err(DpopError::Stale);
        }
        if let Some(token) = request.access_token
            && claims.ath.as_deref() != Some(token_hash(token).as_str())
        {
            return Err(DpopError::TokenHashMismatch);
        }
        Ok(DpopProof {
            thumbprint: key.thumbprint,
            jti,
            expires_at: iat.saturating_add(self.max_age).saturating_add(1),
        })
    }
}

/// A base64url JSON part of the proof.
fn json_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, DpopError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| DpopError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| DpopError::Malformed)
}

/// The request's one `DPoP` header: `Ok(None)` without one, an error for
/// several (§4.3 step 1) or a value that is not text.
pub fn proof_header(headers: &HeaderMap) -> Result<Option<&str>, DpopError> {
    let mut values = headers.get_all(DPOP_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DpopError::MultipleProofs);
    }
    value.to_str().map(Some).map_err(|_| DpopError::Malformed)
}
