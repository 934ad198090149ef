//! Key material shared by the issuer and the validator side.
//!
//! - [`SigningKey`]: a private key, parsed once, that signs the issuer's tokens.
//! - [`KeyRing`]: the issuer's keys: one active signer, every key published in
//!   the JWKS, so keys rotate without breaking tokens in flight.
//! - [`VerificationKey`] and [`KeySet`]: public keys (JWK, PEM public key or
//!   X.509 certificate) with a per-key algorithm allow-list, and the one
//!   signature check both sides use.
//! - [`RemoteJwks`]: keys fetched over HTTP, from a JWKS URL or from the
//!   `jwks_uri` OpenID discovery finds for an issuer: cached, refreshed
//!   (rate-limited) on an unknown `kid`, served stale while the source is
//!   down, failing closed without a first copy. [`CachePolicy`] bounds it;
//!   [`fetch`] holds the HTTP client seam ([`JwksFetcher`](fetch::JwksFetcher),
//!   [`ReqwestFetcher`](fetch::ReqwestFetcher)).
//! - [`TrustedIssuer`]: the one key source of both sides: an issuer (`iss`)
//!   and every key that speaks for it (static keys, inline JWKS, remote
//!   JWKS), with the one "verify; on an unknown `kid` refresh and retry"
//!   routine. [`VerificationKeys`] picks the token endpoint's by `iss`; the
//!   validator's [`Issuer`](crate::validate::Issuer) wraps one.
//! - [`dpop`]: DPoP proofs (RFC 9449), checked the same way on both sides.
//! - Errors: [`KeyError`] (a key could not be made, or a token not be
//!   signed), [`JwtError`] (a token did not verify),
//!   [`FetchError`](fetch::FetchError) (remote keys could not be fetched).

mod bundle;
mod discovery;
pub mod dpop;
mod error;
pub mod fetch;
mod peek;
mod remote;
mod ring;
mod signing;
mod sources;
mod verify;

pub use error::{JwtError, KeyError};
pub(crate) use peek::Peeked;
pub use remote::{CachePolicy, RemoteJwks};
pub use ring::KeyRing;
pub use signing::SigningKey;
pub use sources::{TrustedIssuer, VerificationKeys};
pub(crate) use verify::ASYMMETRIC_ALGORITHMS;
pub use verify::{KeySet, VerificationKey};

/// The JWS algorithms, re-exported from `jsonwebtoken` so that users need
/// no direct dependency to name one.
pub use jsonwebtoken::Algorithm;
