//! OAuth2 machine-to-machine authentication for tower.
//!
//! - **Issuer side** ([`issuer`]): [`TokenEndpointLayer`] answers the token
//!   endpoint (`client_credentials`, RFC 8693 token exchange, RFC 8707
//!   resource indicators) in any tower stack, authenticating
//!   service accounts with app-password tokens, and mints signed JWT access
//!   tokens. It publishes its keys (JWKS) and metadata (OpenID discovery,
//!   RFC 8414) so any standard client or validator works with it.
//! - **Validator side** ([`validate`]): [`JwtValidateLayer`] protects
//!   downstream APIs: it verifies `Authorization: Bearer` tokens against the
//!   issuer's keys and hands the claims to handlers.
//! - **Sender-constrained tokens** ([`keys::dpop`]): DPoP (RFC 9449) on
//!   both sides: a token request with a proof gets a key-bound token, and
//!   the validator then demands the `DPoP` scheme and a fresh proof by that
//!   key.
//! - **Keys** ([`keys`]): signing keys parsed once, the issuer's key ring,
//!   and the one key source both sides verify with (`TrustedIssuer`: static
//!   keys, JWKS, JWKS URLs, OpenID discovery).
//! - **Stores** ([`store`]): where service accounts and their app passwords
//!   (stored as digests) are kept, with the replay cache and revocation list.
//! - **Policies** ([`policy`]): checks over input JWTs' claims.
//! - **Configuration** (`config`, feature `config`): the schema of a token
//!   server as serde types, and one `build` step to the layers and store.
//! - **Observability** ([`observe`]): metrics (through the `metrics` facade),
//!   spans and audit events, with the names an operator queries.
//!
//! The model is authentik's machine-to-machine "client credentials" feature,
//! wire-compatible with it.

// The other lints are in Cargo.toml's `[lints]`. These two are about the
// library's public API only: the integration tests share undocumented `pub`
// helpers.
#![deny(missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
pub mod issuer;
pub mod keys;
pub mod observe;
pub mod policy;
pub mod store;
pub mod validate;

/// The crate's boxed future (public as [`keys::fetch::BoxFuture`], for
/// custom fetchers).
pub(crate) use keys::fetch::BoxFuture;

pub use issuer::{TokenEndpoint, TokenEndpointLayer};
pub use keys::{KeyRing, SigningKey};
pub use validate::{JwtValidate, JwtValidateLayer};
