//! Why a DPoP proof was refused.

/// Why a DPoP proof (RFC 9449 §4.3) was refused. Safe to show a client: it
/// names the rule, never the proof or the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.description())]
#[non_exhaustive]
pub enum DpopError {
    /// A proof was required and the request has none.
    Missing,
    /// The request has more than one `DPoP` header (§4.3 step 1).
    MultipleProofs,
    /// Not a compact JWS with JSON header and claims, or a required claim
    /// (`htm`, `htu`, `iat`) is missing or of the wrong type (steps 2, 3).
    Malformed,
    /// `typ` is not `dpop+jwt` (step 4).
    WrongType,
    /// `alg` is `none`, symmetric, or not in the allow-list (step 5).
    Algorithm,
    /// The `jwk` header is missing, or not a supported public key for `alg`.
    InvalidKey,
    /// The `jwk` header holds private key members (step 7).
    PrivateKey,
    /// The signature does not verify with the `jwk` (step 6).
    BadSignature,
    /// `jti` is missing, empty, longer than 256 bytes or has a control
    /// character (it becomes a replay-cache key).
    MissingJti,
    /// `htm` is not the request's method (step 8).
    MethodMismatch,
    /// `htu` is not the request's URI, query and fragment ignored (step 9).
    UriMismatch,
    /// `iat` is outside the accepted window (step 11).
    Stale,
    /// The proof's `jti` was used before (§11.1).
    Replayed,
    /// `ath` is missing or not the hash of the access token (step 12).
    TokenHashMismatch,
    /// The proof's key is not the one the access token is bound to (`cnf.jkt`).
    KeyMismatch,
    /// The server requires a nonce and the proof has none, or a stale or
    /// forged one (§8, step 10): answered `use_dpop_nonce` with a fresh one.
    UseNonce,
}

impl DpopError {
    /// The reason class, for metrics and logs (`dpop_` and the variant in
    /// snake case).
    pub fn reason(&self) -> &'static str {
        match self {
            DpopError::Missing => "dpop_missing",
            DpopError::MultipleProofs => "dpop_multiple_proofs",
            DpopError::Malformed => "dpop_malformed",
            DpopError::WrongType => "dpop_wrong_type",
            DpopError::Algorithm => "dpop_algorithm",
            DpopError::InvalidKey => "dpop_invalid_key",
            DpopError::PrivateKey => "dpop_private_key",
            DpopError::BadSignature => "dpop_bad_signature",
            DpopError::MissingJti => "dpop_missing_jti",
            DpopError::MethodMismatch => "dpop_method_mismatch",
            DpopError::UriMismatch => "dpop_uri_mismatch",
            DpopError::Stale => "dpop_stale",
            DpopError::Replayed => "dpop_replayed",
            DpopError::TokenHashMismatch => "dpop_token_hash_mismatch",
            DpopError::KeyMismatch => "dpop_key_mismatch",
            DpopError::UseNonce => "dpop_use_nonce",
        }
    }

    /// What the rule is, for `error_description` (fixed text, safe to show).
    pub fn description(&self) -> &'static str {
        match self {
            DpopError::Missing => "the request has no DPoP proof",
            DpopError::MultipleProofs => "the request has more than one DPoP header",
            DpopError::Malformed => "the DPoP proof is not a well-formed JWT with htm, htu and iat",
            DpopError::WrongType => "the DPoP proof's typ is not dpop+jwt",
            DpopError::Algorithm => "the DPoP proof's algorithm is not allowed",
            DpopError::InvalidKey => {
                "the DPoP proof's jwk header is missing or not a supported public key"
            }
            DpopError::PrivateKey => "the DPoP proof's jwk header holds a private key",
            DpopError::BadSignature => "the DPoP proof's signature is invalid",
            DpopError::MissingJti => "the DPoP proof has no usable jti",
            DpopError::MethodMismatch => "the DPoP proof's htm does not match the request method",
            DpopError::UriMismatch => "the DPoP proof's htu does not match the request URI",
            DpopError::Stale => "the DPoP proof's iat is outside the accepted window",
            DpopError::Replayed => "the DPoP proof was used before",
            DpopError::TokenHashMismatch => "the DPoP proof's ath does not match the access token",
            DpopError::KeyMismatch => {
                "the DPoP proof's key is not the key the access token is bound to"
            }
            DpopError::UseNonce => "the DPoP proof must carry a fresh server nonce",
        }
    }
}
