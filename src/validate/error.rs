//! Why a request was refused: [`AuthError`], its HTTP status, RFC 6750 /
//! RFC 9449 error code and gRPC status.

use std::sync::Arc;

use http::StatusCode;

use crate::keys::JwtError;
use crate::keys::dpop::DpopError;

/// Why a request was refused. Every message is safe to show a client: it
/// names the rule, never the token.
///
/// The error is attached to the rejection response's extensions, whichever
/// [`OnAuthError`](super::OnAuthError) built it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header (RFC 6750 §3.1: no error code).
    #[error("no bearer token")]
    MissingToken,
    /// An `Authorization` header with another scheme than `Bearer` (RFC 6750
    /// §3.1: answered as if there were no token).
    #[error("the authorization scheme is not Bearer")]
    UnsupportedScheme,
    /// The `Authorization` header is malformed (empty token, several
    /// headers): `invalid_request`, 400.
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// The token is not valid: `invalid_token`, 401. (Never
    /// [`JwtError::KeysUnavailable`], which is [`AuthError::KeysUnavailable`].)
    #[error(transparent)]
    InvalidToken(JwtError),
    /// The token is not an access token: its `typ` header is not `at+jwt`
    /// (RFC 9068 §4), and it is not a plain JWT with an access-token claim
    /// where those are allowed (an ID token, for one): `invalid_token`, 401.
    #[error("the token is not a JWT access token (typ at+jwt)")]
    WrongTokenType,
    /// The token lacks a required scope: `insufficient_scope`, 403.
    #[error("the token lacks a required scope")]
    InsufficientScope {
        /// The required scopes, space-separated (RFC 6750 §3 `scope`).
        required: Arc<str>,
    },
    /// The keys to verify the token could not be read and there was never a
    /// good copy (fail closed): 503, gRPC `UNAVAILABLE`.
    #[error("the token cannot be verified right now; try again later")]
    KeysUnavailable,
    /// The DPoP proof of a `DPoP`-scheme request is missing or invalid (RFC
    /// 9449 §7.1): `invalid_dpop_proof`, 401, with a `DPoP` challenge.
    #[error(transparent)]
    InvalidDpopProof(DpopError),
    /// A DPoP-bound token (`cnf.jkt`) presented as a bearer token, which
    /// would strip its binding (RFC 9449 §7.2): `invalid_token`, 401, with a
    /// `DPoP` challenge.
    #[error("the token is DPoP-bound: present it with the DPoP scheme and a proof")]
    DpopBoundToken,
    /// A token without `cnf.jkt` presented with the `DPoP` scheme:
    /// `invalid_token`, 401.
    #[error("the token is not DPoP-bound: present it with the Bearer scheme")]
    UnboundDpopToken,
    /// The validator requires server nonces and the proof has none, or a
    /// stale one (RFC 9449 §9): `use_dpop_nonce`, 401, with `nonce` in a
    /// `DPoP-Nonce` header.
    #[error("the DPoP proof must carry the nonce of the DPoP-Nonce header")]
    UseDpopNonce {
        /// A fresh nonce for the client's next proof.
        nonce: Arc<str>,
    },
    /// The replay cache that spends DPoP proofs could not answer: 503, gRPC
    /// `UNAVAILABLE`.
    #[error("the DPoP proof cannot be checked right now; try again later")]
    ReplayCacheUnavailable,
}

impl From<JwtError> for AuthError {
    fn from(error: JwtError) -> Self {
        match error {
            JwtError::KeysUnavailable => AuthError::KeysUnavailable,
            error => AuthError::InvalidToken(error),
        }
    }
}

impl AuthError {
    /// The reason class, for metrics and logs: `missing_token`,
    /// `invalid_request`, a [`JwtError::reason`], `wrong_token_type`,
    /// `insufficient_scope` or `keys_unavailable`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken | AuthError::UnsupportedScheme => "missing_token",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::InvalidToken(error) => error.reason(),
            AuthError::WrongTokenType => "wrong_token_type",
            AuthError::InsufficientScope { .. } => "insufficient_scope",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::InvalidDpopProof(error) => error.reason(),
            AuthError::DpopBoundToken => "dpop_bound_token",
            AuthError::UnboundDpopToken => "unbound_dpop_token",
            AuthError::UseDpopNonce { .. } => "dpop_use_nonce",
            AuthError::ReplayCacheUnavailable => "replay_cache_unavailable",
        }
    }

    /// The HTTP status of the default response.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthError::KeysUnavailable | AuthError::ReplayCacheUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 §3.1 error code, if the response carries one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingToken
            | AuthError::UnsupportedScheme
            | AuthError::KeysUnavailable
            | AuthError::ReplayCacheUnavailable => None,
            AuthError::InvalidRequest(_) => Some("invalid_request"),
            AuthError::InvalidToken(_)
            | AuthError::WrongTokenType
            | AuthError::DpopBoundToken
            | AuthError::UnboundDpopToken => Some("invalid_token"),
            AuthError::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            AuthError::UseDpopNonce { .. } => Some("use_dpop_nonce"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    /// The gRPC status code of the default gRPC response: 16
    /// `UNAUTHENTICATED`, 7 `PERMISSION_DENIED` or 14 `UNAVAILABLE`.
    pub fn grpc_status(&self) -> u16 {
        match self {
            AuthError::InsufficientScope { .. } => 7,
            AuthError::KeysUnavailable | AuthError::ReplayCacheUnavailable => 14,
            _ => 16,
        }
    }
}
