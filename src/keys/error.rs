//! The errors of the key layer: a key could not be made or a token not be
//! signed ([`KeyError`]), a token did not verify ([`JwtError`]). Why remote
//! keys could not be fetched is [`FetchError`](super::fetch::FetchError).

use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;

/// Why a key could not be created, or a token not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input is not a PEM document of a supported kind.
    #[error(
        "not a supported PEM document (private keys: PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY; public: PUBLIC KEY, CERTIFICATE)"
    )]
    InvalidPem,
    /// A PEM bundle of verification keys holds no PEM block.
    #[error("no PEM block (expected CERTIFICATE or PUBLIC KEY)")]
    EmptyPemBundle,
    /// A block of a PEM bundle of verification keys is a private key: only
    /// certificates and public keys are trusted to verify.
    #[error(
        "PEM block #{0} is a private key: configure the issuer's certificate or public key, \
         never its private key"
    )]
    PrivateKeyInBundle(usize),
    /// A block of a PEM bundle of verification keys is neither a
    /// `CERTIFICATE` nor a `PUBLIC KEY`.
    #[error(
        "PEM block #{block} is {tag:?}: expected CERTIFICATE or PUBLIC KEY (convert a PKCS#1 \
         RSA PUBLIC KEY with `openssl rsa -RSAPublicKey_in -pubout`)"
    )]
    UnexpectedPemBlock {
        /// Its position in the bundle, from 1.
        block: usize,
        /// Its PEM tag.
        tag: String,
    },
    /// A block of a PEM bundle holds a key of no supported type or curve.
    #[error(
        "PEM block #{0}: unsupported or malformed key (supported: RSA, EC P-256 or P-384, Ed25519)"
    )]
    UnsupportedKeyInBundle(usize),
    /// The key parsed, but is of no supported type or curve.
    #[error("unsupported or malformed key")]
    UnsupportedKey,
    /// The algorithm is not one this crate signs with.
    #[error("unsupported signing algorithm {0:?}")]
    UnsupportedAlgorithm(Algorithm),
    /// An HMAC secret shorter than 32 bytes (RFC 7518 §3.2).
    #[error("HS256 secrets must be at least 32 bytes long")]
    WeakSecret,
    /// The claims could not be serialized.
    #[error("claims could not be serialized: {0}")]
    Claims(#[from] serde_json::Error),
    /// The crypto backend failed to sign.
    #[error("signing failed")]
    Signing,
    /// The crypto backend failed (key generation, random numbers, encoding).
    #[error("the crypto backend failed")]
    Backend,
}

impl From<aws_lc_rs::error::Unspecified> for KeyError {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        KeyError::Backend
    }
}

/// Why a JWT did not verify, on either side. Safe to show a client: it
/// names the rule, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not a compact JWS with a supported `alg` (this includes `alg: none`).
    #[error("the token is malformed")]
    Malformed,
    /// The `kid` header names no known key.
    #[error("the token's key is unknown")]
    UnknownKey,
    /// No key allows the token's algorithm.
    #[error("no key accepts the token's algorithm")]
    NoMatchingKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` is past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` (or `iat`) is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not an accepted issuer.
    #[error("the token's issuer is not accepted")]
    InvalidIssuer,
    /// `iss` names an issuer that no trusted key source speaks for.
    #[error("no trusted key speaks for the token's issuer")]
    UntrustedIssuer,
    /// `aud` is not an accepted audience.
    #[error("the token's audience is not accepted")]
    InvalidAudience,
    /// The token was revoked.
    #[error("the token was revoked")]
    Revoked,
    /// A required claim is missing or has the wrong type.
    #[error("the token lacks a required claim or a claim is malformed")]
    InvalidClaims,
    /// No key verified the token, and a key source that might hold its key
    /// could not be read, with no earlier copy (fail closed). Not the
    /// token's fault: the source logs why, with its URL.
    #[error("the keys to verify the token are unavailable")]
    KeysUnavailable,
}

impl JwtError {
    /// The reason class, for metrics and logs: the variant's name in snake
    /// case (`malformed`, `expired`, `bad_signature`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::UnknownKey => "unknown_key",
            JwtError::NoMatchingKey => "no_matching_key",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::InvalidIssuer => "invalid_issuer",
            JwtError::UntrustedIssuer => "untrusted_issuer",
            JwtError::InvalidAudience => "invalid_audience",
            JwtError::Revoked => "revoked",
            JwtError::InvalidClaims => "invalid_claims",
            JwtError::KeysUnavailable => "keys_unavailable",
        }
    }
}

impl From<ErrorKind> for JwtError {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::InvalidIssuer,
            ErrorKind::InvalidAudience => JwtError::InvalidAudience,
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::InvalidSubject
            | ErrorKind::Json(_) => JwtError::InvalidClaims,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => JwtError::NoMatchingKey,
            _ => JwtError::Malformed,
        }
    }
}
