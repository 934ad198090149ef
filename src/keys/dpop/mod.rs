//! DPoP, sender-constrained tokens (RFC 9449): the proof checks that the
//! token endpoint and the validator share.
//!
//! - [`DpopRules`]: the allowed algorithms and the `iat` window;
//!   [`DpopRules::check`] runs RFC 9449 §4.3 on one proof for one
//!   [`DpopRequest`] and gives a [`DpopProof`] (the key's thumbprint, and
//!   the `jti` to record in a replay cache).
//! - [`DpopNonces`]: stateless server nonces (§8), shared by instances with
//!   one secret.
//! - [`jwk_thumbprint`] (RFC 7638, the `jkt` of `cnf`) and
//!   [`normalize_htu`] (how `htu` is compared).
//! - [`DpopError`]: why a proof was refused.

mod error;
mod htu;
mod jwk;
mod nonce;
mod proof;

pub use error::DpopError;
pub use htu::normalize_htu;
pub use jwk::jwk_thumbprint;
pub use nonce::DpopNonces;
pub use proof::{DPOP_HEADER, DpopProof, DpopRequest, DpopRules, proof_header};

/// `base64url(SHA-256(token))`: the `ath` of a proof for `token`.
pub fn token_hash(token: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token))
}
