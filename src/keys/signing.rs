//! A private signing key, parsed once and held, with its algorithm and `kid`.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use aws_lc_rs::{hmac, rsa::KeySize};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType, ThumbprintHash,
};
use jsonwebtoken::signature::{self, Signer};
use serde::Serialize;

use super::{KeyError, VerificationKey};

/// A private key that signs the tokens the issuer mints.
///
/// The key is parsed once, when it is created, and held in its parsed form,
/// so signing costs one raw signature and nothing more. Supported algorithms:
/// ES256 (the default), ES384, EdDSA (Ed25519), RS256 and HS256.
///
/// ```
/// use tower_m2m_auth::keys::SigningKey;
/// use jsonwebtoken::Algorithm;
///
/// let key = SigningKey::generate(Algorithm::ES256).unwrap();
/// assert_eq!(key.algorithm(), Algorithm::ES256);
/// // Asymmetric keys have a public JWK whose `kid` is its RFC 7638 thumbprint.
/// assert_eq!(key.public_jwk().unwrap().common.key_id.as_deref(), Some(key.kid()));
/// ```
pub struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    pair: KeyPairKind,
    /// PKCS#8 DER of the private key, kept to write a generated key to a file.
    pkcs8: Option<Vec<u8>>,
    public_jwk: Option<Jwk>,
    /// The encoded JOSE headers for the `typ` values the issuer uses, made
    /// once: `[none, "JWT", "at+jwt"]`.
    headers: [String; 3],
}

const CACHED_TYPS: [Option<&str>; 3] = [None, Some("JWT"), Some("at+jwt")];

enum KeyPairKind {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
    /// The secret as a signing key, and as the key that verifies what it
    /// signed (for the issuer's own use only, never published).
    Hmac(Box<hmac::Key>, Box<VerificationKey>),
}

impl SigningKey {
    /// Generates a fresh key for `algorithm` (ES256, ES384, EdDSA, RS256 with
    /// 2048 bits, or HS256 with 32 random bytes).
    pub fn generate(algorithm: Algorithm) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            Algorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::ES384 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)?.as_ref().to_vec(),
            Algorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)?
                .as_der()?
                .as_ref()
                .to_vec(),
            Algorithm::HS256 => {
                let mut secret = [0u8; 32];
                aws_lc_rs::rand::fill(&mut secret)?;
                return Self::from_hmac_secret(&secret);
            }
            other => return Err(KeyError::UnsupportedAlgorithm(other)),
        };
        Self::from_pkcs8_der(algorithm, &pkcs8)
    }

    /// Reads a private key from PEM: PKCS#8 (`PRIVATE KEY`) for every
    /// algorithm, or the older `EC PRIVATE KEY` (SEC1) and `RSA PRIVATE KEY`
    /// (PKCS#1) forms. The algorithm follows from the key: ES256 or ES384 by
    /// curve, EdDSA for Ed25519, RS256 for RSA.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let block = pem::parse(pem).map_err(|_| KeyError::InvalidPem)?;
        let der = block.contents();
        match block.tag() {
            "PRIVATE KEY" => {
                for algorithm in [
                    Algorithm::ES256,
                    Algorithm::ES384,
                    Algorithm::EdDSA,
                    Algorithm::RS256,
                ] {
                    if let Ok(key) = Self::from_pkcs8_der(algorithm, der) {
                        return Ok(key);
                    }
                }
                Err(KeyError::UnsupportedKey)
            }
            "EC PRIVATE KEY" => {
                for (algorithm, signing) in [
                    (Algorithm::ES256, &ECDSA_P256_SHA256_FIXED_SIGNING),
                    (Algorithm::ES384, &ECDSA_P384_SHA384_FIXED_SIGNING),
                ] {
                    if let Ok(pair) = EcdsaKeyPair::from_private_key_der(signing, der) {
                        let pkcs8 = pair.to_pkcs8v1()?.as_ref().to_vec();
                        return Self::assemble(algorithm, KeyPairKind::Ecdsa(pair), Some(pkcs8));
                    }
                }
                Err(KeyError::UnsupportedKey)
            }
            "RSA PRIVATE KEY" => {
                let pair = RsaKeyPair::from_der(der).map_err(|_| KeyError::UnsupportedKey)?;
                let pkcs8 = pair.as_der()?.as_ref().to_vec();
                Self::assemble(Algorithm::RS256, KeyPairKind::Rsa(pair), Some(pkcs8))
            }
            _ => Err(KeyError::InvalidPem),
        }
    }

    /// Reads a PKCS#8 DER private key for a known algorithm.
    pub fn from_pkcs8_der(algorithm: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        let rejected = |_| KeyError::UnsupportedKey;
        let pair = match algorithm {
            Algorithm::ES256 => KeyPairKind::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(rejected)?,
            ),
            Algorithm::ES384 => KeyPairKind::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der)
                    .map_err(rejected)?,
            ),
            Algorithm::EdDSA => KeyPairKind::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?,
            ),
            Algorithm::RS256 => KeyPairKind::Rsa(RsaKeyPair::from_pkcs8(der).map_err(rejected)?),
            other => return Err(KeyError::UnsupportedAlgorithm(other)),
        };
        Self::assemble(algorithm, pair, Some(der.to_vec()))
    }

    /// An HS256 key from a shared secret (at least 32 bytes, RFC 7518 §3.2).
    ///
    /// Symmetric keys are never published in the JWKS: whoever verifies the
    /// tokens must be given the same secret, and can then mint tokens too.
    /// In a [`KeyRing`](super::KeyRing), the issuer verifies them itself
    /// (introspection, revocation, federation). Its `kid` is derived from
    /// the secret's SHA-256 digest.
    pub fn from_hmac_secret(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::WeakSecret);
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
        let verifier = VerificationKey::from_hmac_secret(secret)?.with_kid(kid.clone());
        let pair = KeyPairKind::Hmac(
            Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret)),
            Box::new(verifier),
        );
        Ok(Self {
            headers: encoded_headers(Algorithm::HS256, &kid),
            kid,
            algorithm: Algorithm::HS256,
            pair,
            pkcs8: None,
            public_jwk: None,
        })
    }

    fn assemble(
        algorithm: Algorithm,
        pair: KeyPairKind,
        pkcs8: Option<Vec<u8>>,
    ) -> Result<Self, KeyError> {
        let mut jwk = public_jwk(algorithm, &pair).ok_or(KeyError::UnsupportedKey)?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| KeyError::UnsupportedKey)?;
        jwk.common.key_id = Some(kid.clone());
        Ok(Self {
            headers: encoded_headers(algorithm, &kid),
            kid,
            algorithm,
            pair,
            pkcs8,
            public_jwk: Some(jwk),
        })
    }

    /// Replaces the key id (by default the RFC 7638 SHA-256 thumbprint of the
    /// public key; for HS256 a digest of the secret).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = kid.into();
        self.headers = encoded_headers(self.algorithm, &self.kid);
        if let Some(jwk) = &mut self.public_jwk {
            jwk.common.key_id = Some(self.kid.clone());
        }
        if let KeyPairKind::Hmac(_, verifier) = &mut self.pair {
            **verifier = verifier.as_ref().clone().with_kid(self.kid.clone());
        }
        self
    }

    /// The key id, sent as the `kid` header of every token it signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWS algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public half as a JWK (with `kid`, `alg` and `use: sig`), or `None`
    /// for a symmetric key, which must never be published.
    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.public_jwk.as_ref()
    }

    /// For an HS256 key, the same secret as a key that verifies the tokens
    /// it signed: for the issuer itself (introspection, revocation,
    /// federation), never to be published.
    pub(crate) fn secret_verification_key(&self) -> Option<&VerificationKey> {
        match &self.pair {
            KeyPairKind::Hmac(_, verifier) => Some(verifier),
            _ => None,
        }
    }

    /// The private key as a PKCS#8 PEM document, to store a generated key.
    /// `None` for HS256 keys.
    pub fn to_pkcs8_pem(&self) -> Option<String> {
        let der = self.pkcs8.as_ref()?;
        Some(pem::encode(&pem::Pem::new("PRIVATE KEY", der.clone())))
    }

    /// Signs `claims` into a compact JWS with this key's `alg` and `kid`, and
    /// `typ` when given (e.g. `"at+jwt"`, RFC 9068 §2.1).
    pub fn sign_jwt<T: Serialize>(
        &self,
        typ: Option<&str>,
        claims: &T,
    ) -> Result<String, KeyError> {
        let claims = serde_json::to_vec(claims)?;
        let cached = CACHED_TYPS.iter().position(|cached| *cached == typ);
        let uncached;
        let header = match cached {
            Some(index) => &self.headers[index],
            None => {
                uncached = encode_header(self.algorithm, typ, &self.kid);
                &uncached
            }
        };
        let mut token = String::with_capacity(header.len() + claims.len().div_ceil(3) * 4 + 520);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature = self
            .try_sign(token.as_bytes())
            .map_err(|_| KeyError::Signing)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// The base64url JOSE header `{"alg", "typ"?, "kid"}`.
fn encode_header(algorithm: Algorithm, typ: Option<&str>, kid: &str) -> String {
    #[derive(Serialize)]
    struct Header<'a> {
        alg: Algorithm,
        #[serde(skip_serializing_if = "Option::is_none")]
        typ: Option<&'a str>,
        kid: &'a str,
    }
    let json = serde_json::to_vec(&Header {
        alg: algorithm,
        typ,
        kid,
    })
    .unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

fn encoded_headers(algorithm: Algorithm, kid: &str) -> [String; 3] {
    CACHED_TYPS.map(|typ| encode_header(algorithm, typ, kid))
}

impl Signer<Vec<u8>> for SigningKey {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let failed = signature::Error::from_source;
        match &self.pair {
            KeyPairKind::Ecdsa(pair) => Ok(pair
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            KeyPairKind::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            KeyPairKind::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
            KeyPairKind::Hmac(key, _) => Ok(hmac::sign(key, message).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for SigningKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn public_jwk(algorithm: Algorithm, pair: &KeyPairKind) -> Option<Jwk> {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let parameters = match pair {
        KeyPairKind::Ecdsa(pair) => {
            let point = pair.public_key().as_ref();
            let (curve, size) = match algorithm {
                Algorithm::ES256 => (EllipticCurve::P256, 32),
                Algorithm::ES384 => (EllipticCurve::P384, 48),
                _ => return None,
            };
            if point.len() != 1 + 2 * size || point[0] != 4 {
                return None;
            }
            AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve,
                x: b64(&point[1..=size]),
                y: b64(&point[1 + size..]),
            })
        }
        KeyPairKind::Ed25519(pair) => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: b64(pair.public_key().as_ref()),
        }),
        KeyPairKind::Rsa(pair) => {
            let public = pair.public_key();
            AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: b64(public.modulus().big_endian_without_leading_zero()),
                e: b64(public.exponent().big_endian_without_leading_zero()),
            })
        }
        KeyPairKind::Hmac(..) => return None,
    };
    Some(Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::from(algorithm)),
            ..Default::default()
        },
        algorithm: parameters,
    })
}
