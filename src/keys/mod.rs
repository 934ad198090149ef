//! Key material shared by the issuer and the validator side.
//!
//! - [`SigningKey`]: a private key, parsed once, that signs the issuer's tokens.
//! - [`KeyRing`]: the issuer's keys: one active signer, every key published in
//!   the JWKS, so keys rotate without breaking tokens in flight.
//! - [`VerificationKey`] and [`KeySet`]: public keys (JWK, PEM public key or
//!   X.509 certificate) with a per-key algorithm allow-list, and the one
//!   signature check both sides use.
//! - [`RemoteJwks`]: keys behind a JWKS URL, cached and refreshed;
//!   [`DiscoveredJwks`]: the same, found from the issuer URL by OpenID discovery.
//! - [`TrustedIssuer`] and [`VerificationKeys`]: every key a party trusts
//!   (static and remote), each bound to the issuer (`iss`) it speaks for.

mod bundle;
mod discovery;
mod remote;
mod ring;
mod signing;
mod sources;
mod verify;

pub use discovery::{DiscoveredJwks, discover_jwks_uri, metadata_urls};
#[cfg(feature = "reqwest")]
pub use remote::ReqwestFetcher;
#[cfg(any(feature = "reqwest", feature = "config"))]
pub(crate) use remote::check_fetch_url;
pub use remote::{
    BoxFuture, CachePolicy, FetchError, FetchedDocument, JwksFetcher, KeySourceError, RemoteJwks,
    cache_max_age,
};
pub use ring::KeyRing;
pub use signing::SigningKey;
pub use sources::{TrustedIssuer, VerificationKeys, VerifyTokenError};
pub use verify::{ASYMMETRIC_ALGORITHMS, JwtError, KeySet, VerificationKey};

/// The JWS algorithms, re-exported from `jsonwebtoken` so that users need
/// no direct dependency to name one.
pub use jsonwebtoken::Algorithm;

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
