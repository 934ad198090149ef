//! Public keys that verify tokens, and the signature check shared by the
//! issuer (input JWTs) and the validator (access tokens).

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation};
use serde::de::DeserializeOwned;

use super::{JwtError, KeyError};

/// Every asymmetric algorithm this crate verifies: the default allow-list
/// on both sides (RFC 8725 §3.1: an explicit list; HMAC only when asked for).
pub(crate) const ASYMMETRIC_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The RSA ones (RS* and PS*).
const RSA_ALGORITHMS: &[Algorithm] = ASYMMETRIC_ALGORITHMS.split_at(3).1;

/// A public key that verifies signatures, with the algorithms it may be used
/// with.
///
/// The allow-list follows from the key's type (RFC 8725 §3.1): RSA keys
/// verify RS*/PS*, P-256 keys ES256, P-384 keys ES384, Ed25519 keys EdDSA; a
/// JWK's `alg`, when present, narrows it to that one algorithm. The token's
/// own `alg` header is never trusted beyond that list, `none` is never
/// accepted, and an HMAC algorithm is never used with a public key.
#[derive(Clone)]
pub struct VerificationKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl VerificationKey {
    /// A key from a public JWK. Symmetric (`oct`) keys, encryption keys
    /// (`use: enc`) and unsupported curves are refused.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(KeyError::UnsupportedKey);
        }
        let by_type: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return Err(KeyError::UnsupportedKey),
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            _ => return Err(KeyError::UnsupportedKey),
        };
        let algorithms = match jwk.common.key_algorithm {
            None => by_type,
            Some(declared) => {
                let declared =
                    Algorithm::try_from(declared).map_err(|_| KeyError::UnsupportedKey)?;
                if !by_type.contains(&declared) {
                    return Err(KeyError::UnsupportedKey);
                }
                vec![declared]
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|_| KeyError::UnsupportedKey)?;
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        })
    }

    /// A key from a PEM `PUBLIC KEY` (SPKI) or `CERTIFICATE` (only its public
    /// key is used; the certificate's dates and issuer are not checked: it is
    /// trusted because it is configured). RSA, EC P-256/P-384 and Ed25519.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let block = pem::parse(pem).map_err(|_| KeyError::InvalidPem)?;
        Self::from_pem_block(&block)
    }

    /// A key from one parsed PEM block (`PUBLIC KEY` or `CERTIFICATE`).
    pub(super) fn from_pem_block(block: &pem::Pem) -> Result<Self, KeyError> {
        let spki_der = match block.tag() {
            "PUBLIC KEY" => block.contents().to_vec(),
            "CERTIFICATE" => {
                let (_, certificate) = x509_parser::parse_x509_certificate(block.contents())
                    .map_err(|_| KeyError::UnsupportedKey)?;
                certificate.tbs_certificate.subject_pki.raw.to_vec()
            }
            _ => return Err(KeyError::InvalidPem),
        };
        Self::from_spki_der(&spki_der)
    }

    /// A key from DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        use x509_parser::x509::SubjectPublicKeyInfo;

        let (_, spki) =
            SubjectPublicKeyInfo::from_der(der).map_err(|_| KeyError::UnsupportedKey)?;
        let point = spki.subject_public_key.data.as_ref();
        let (algorithms, key) = match spki.parsed().map_err(|_| KeyError::UnsupportedKey)? {
            PublicKey::RSA(rsa) => (
                RSA_ALGORITHMS.to_vec(),
                // DER integers may carry a leading zero byte; JWK-style raw
                // components must not.
                DecodingKey::from_rsa_raw_components(
                    strip_leading_zeros(rsa.modulus),
                    strip_leading_zeros(rsa.exponent),
                ),
            ),
            PublicKey::EC(_) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|oid| oid.to_id_string());
                let algorithm = match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => Algorithm::ES256,
                    Some("1.3.132.0.34") => Algorithm::ES384,
                    _ => return Err(KeyError::UnsupportedKey),
                };
                (vec![algorithm], DecodingKey::from_ec_der(point))
            }
            _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
                (vec![Algorithm::EdDSA], DecodingKey::from_ed_der(point))
            }
            _ => return Err(KeyError::UnsupportedKey),
        };
        Ok(Self {
            kid: None,
            algorithms,
            key,
        })
    }

    /// An HS256 key from a shared secret (at least 32 bytes). Symmetric keys
    /// only come from explicit configuration, never from a JWKS.
    pub fn from_hmac_secret(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::WeakSecret);
        }
        Ok(Self {
            kid: None,
            algorithms: vec![Algorithm::HS256],
            key: DecodingKey::from_secret(secret),
        })
    }

    /// Sets the key id that tokens name in their `kid` header.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Narrows the allowed algorithms to those of `algorithms` that suit the
    /// key; fails if none does.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Result<Self, KeyError> {
        self.algorithms.retain(|a| algorithms.contains(a));
        if self.algorithms.is_empty() {
            return Err(KeyError::UnsupportedKey);
        }
        Ok(self)
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key verifies.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The parsed key.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// A set of verification keys, parsed once per configuration or per JWKS
/// refresh.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
}

impl KeySet {
    /// A set of these keys.
    pub fn new(keys: impl IntoIterator<Item = VerificationKey>) -> Self {
        Self {
            keys: keys.into_iter().map(Arc::new).collect(),
        }
    }

    /// The usable keys of a JWKS. Keys of no supported kind (symmetric,
    /// encryption, unknown curve) are skipped, not fatal: a JWKS may carry
    /// keys for other consumers.
    pub fn from_jwks(jwks: &JwkSet) -> Self {
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| match VerificationKey::from_jwk(jwk) {
                Ok(key) => Some(Arc::new(key)),
                Err(_) => {
                    tracing::debug!(kid = ?jwk.common.key_id, "skipping unusable JWK");
                    None
                }
            })
            .collect();
        Self { keys }
    }

    /// Adds the keys of `other`.
    pub fn extend(&mut self, other: &KeySet) {
        self.keys.extend(other.keys.iter().cloned());
    }

    /// The keys.
    pub fn keys(&self) -> impl Iterator<Item = &VerificationKey> {
        self.keys.iter().map(|key| &**key)
    }

    /// Whether a key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid() == Some(kid))
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token`'s signature with a key of this set and validates its
    /// claims with `validation`.
    ///
    /// With a `kid` header, the keys with that `kid` are tried, and keys
    /// that have no `kid` (a certificate, a PEM key); a `kid` that matches
    /// neither is [`JwtError::UnknownKey`]. Without a `kid`, every key is
    /// tried. A token with a `crit` header is [`JwtError::Malformed`]
    /// (RFC 7515 §4.1.11). Only keys whose allow-list holds the header's `alg` are used,
    /// and `alg` must be in `validation.algorithms` too (which may span
    /// algorithm families; a single algorithm there saves a clone).
    pub fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<TokenData<C>, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        // RFC 7515 §4.1.11: a `crit` header names extensions the recipient
        // must understand, and this crate understands none.
        if header.crit.is_some() {
            return Err(JwtError::Malformed);
        }
        if !validation.algorithms.contains(&header.alg) {
            return Err(JwtError::NoMatchingKey);
        }
        // jsonwebtoken wants every allowed algorithm of one family: narrow
        // the list to the token's (free when the caller passes one already).
        let narrowed;
        let validation = if validation.algorithms.len() == 1 {
            validation
        } else {
            let mut one = validation.clone();
            one.algorithms = vec![header.alg];
            narrowed = one;
            &narrowed
        };
        let kid = header.kid.as_deref();
        let candidates = self
            .keys
            .iter()
            .filter(|key| kid.is_none() || key.kid().is_none() || key.kid() == kid);
        // A kid that no key has stays "unknown" even when kid-less keys
        // fail on the signature: the caller may refresh a remote source.
        let unknown_kid = kid.is_some_and(|kid| !self.contains_kid(kid));
        let mut result = Err(if unknown_kid {
            JwtError::UnknownKey
        } else {
            JwtError::NoMatchingKey
        });
        for key in candidates {
            if !key.algorithms.contains(&header.alg) {
                continue;
            }
            match jsonwebtoken::decode::<C>(token, &key.key, validation) {
                Ok(data) => return Ok(data),
                Err(error) => {
                    let error = JwtError::from(error.into_kind());
                    if error != JwtError::BadSignature {
                        return Err(error);
                    }
                    if !unknown_kid {
                        result = Err(error);
                    }
                }
            }
        }
        result
    }
}
