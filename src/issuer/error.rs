//! Token endpoint errors, and their mapping to RFC 6749 §5.2 responses: the
//! one place where an error becomes a status code and an `error` code.

use std::time::Duration;

use http::StatusCode;

/// Why a token request failed. Each variant maps to one RFC 6749 §5.2 error
/// code and HTTP status; descriptions are fixed, safe to show, and never
/// contain what the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The request is malformed: a missing or repeated parameter, a wrong
    /// content type, two client authentication methods at once.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The `client_id` names no application, or HTTP Basic is malformed.
    #[error("client authentication failed")]
    InvalidClient,
    /// The credentials do not authenticate a service account.
    #[error("invalid grant")]
    InvalidGrant,
    /// A `grant_type` other than `client_credentials` or `password`.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// The body is larger than the endpoint's limit (HTTP 413).
    #[error("request body too large")]
    PayloadTooLarge,
    /// The body did not arrive within the configured time (HTTP 408).
    #[error("request body timed out")]
    BodyTimeout,
    /// The credential verifier could not decide (HTTP 503).
    #[error("temporarily unavailable")]
    TemporarilyUnavailable,
    /// The token could not be signed (HTTP 500).
    #[error("server error")]
    ServerError,
    /// Too many failed authentication attempts for this `client_id` or
    /// address; retry after the duration (HTTP 429 with `Retry-After`).
    /// RFC 6749 has no code for this: it is answered as
    /// `temporarily_unavailable`, the registered code closest in meaning
    /// (retry later, nothing wrong with the request).
    #[error("too many failed attempts, retry after {0:?}")]
    TooManyAttempts(Duration),
}

impl TokenError {
    /// The reason class of the refusal, for metrics and logs (finer than
    /// [`code`](Self::code), and never naming a secret): `invalid_request`,
    /// `payload_too_large`, `body_timeout`, `invalid_client`,
    /// `bad_credentials`, `unsupported_grant_type`, `unavailable`,
    /// `server_error` or `locked_out`.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::PayloadTooLarge => "payload_too_large",
            TokenError::BodyTimeout => "body_timeout",
            TokenError::InvalidClient => "invalid_client",
            TokenError::InvalidGrant => "bad_credentials",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::TemporarilyUnavailable => "unavailable",
            TokenError::ServerError => "server_error",
            TokenError::TooManyAttempts(_) => "locked_out",
        }
    }

    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_)
            | TokenError::PayloadTooLarge
            | TokenError::BodyTimeout => "invalid_request",
            TokenError::InvalidClient => "invalid_client",
            TokenError::InvalidGrant => "invalid_grant",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::TemporarilyUnavailable | TokenError::TooManyAttempts(_) => {
                "temporarily_unavailable"
            }
            TokenError::ServerError => "server_error",
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(reason) => reason,
            TokenError::InvalidClient => "Client authentication failed.",
            TokenError::InvalidGrant => {
                "The credentials are invalid, expired, revoked, or belong to another client."
            }
            TokenError::UnsupportedGrantType => {
                "The grant type is not supported; use client_credentials."
            }
            TokenError::PayloadTooLarge => "The request body is too large.",
            TokenError::BodyTimeout => "The request body was not received in time.",
            TokenError::TemporarilyUnavailable => {
                "The server cannot verify credentials right now; try again later."
            }
            TokenError::ServerError => "The server could not issue a token.",
            TokenError::TooManyAttempts(_) => {
                "Too many failed authentication attempts; retry after the time in Retry-After."
            }
        }
    }

    /// The HTTP status. Authentication failures are 400 as authentik answers
    /// them, but 401 when the client authenticated with HTTP Basic
    /// (RFC 6749 §5.2), which then also gets `WWW-Authenticate: Basic`.
    pub fn status(&self, used_basic: bool) -> StatusCode {
        match self {
            TokenError::InvalidClient | TokenError::InvalidGrant if used_basic => {
                StatusCode::UNAUTHORIZED
            }
            TokenError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            TokenError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            TokenError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            TokenError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            TokenError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `Retry-After` header, in whole seconds (rounded up, at least 1).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            TokenError::TooManyAttempts(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Some(secs.max(1))
            }
            _ => None,
        }
    }
}
