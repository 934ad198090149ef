//! The issuer's errors, each with one job, and the one place where an error
//! becomes an RFC 6749 §5.2 answer:
//!
//! - [`TokenError`]: what the endpoint answers (`error` code, HTTP status,
//!   description). Every error response carries it in its
//!   [`http::Extensions`], so an outer layer (logging, a custom error page)
//!   can read it.
//! - [`VerifyError`]: what a credential verifier returns: the credentials
//!   were rejected, or it could not decide.
//! - [`Rejection`]: why credentials (or the account behind them) were
//!   refused, for logs, metrics and audit events; clients only see
//!   `invalid_grant`.
//! - [`ConfigError`]: a [`TokenEndpointLayer`](super::TokenEndpointLayer)
//!   that cannot be built as asked.

use std::time::Duration;

use http::StatusCode;

use super::application::ApplicationError;
use crate::keys::JwtError;
use crate::keys::dpop::DpopError;
use crate::store::StoreError;

/// Why a request to the token, introspection or revocation endpoint failed.
/// Each variant maps to one RFC 6749 §5.2 error code and HTTP status;
/// descriptions are fixed, safe to show, and never contain what the client
/// sent.
///
/// The endpoint attaches it to the extensions of every error response it
/// writes: `response.extensions().get::<TokenError>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The request is malformed: a missing or repeated parameter, a wrong
    /// content type, two client authentication methods at once.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// Client authentication failed: the `client_id` names no application,
    /// HTTP Basic is malformed, the client secret is wrong, or a client
    /// assertion is not valid (RFC 6749 §5.2, RFC 7523 §3.2).
    #[error("client authentication failed")]
    InvalidClient,
    /// The app password does not authenticate a service account, or the
    /// account may not get this grant (not bound, disabled, refused by a
    /// policy).
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
    /// A `resource` or `audience` that the application's tokens may not be
    /// minted for, or a malformed `resource` (RFC 8707 §2, RFC 8693 §2.2.2).
    #[error("invalid target")]
    InvalidTarget,
    /// The authenticated client may not use this grant: token exchange at an
    /// application configured for none (RFC 6749 §5.2).
    #[error("unauthorized client")]
    UnauthorizedClient,
    /// The DPoP proof is invalid, or missing where the application requires
    /// one (RFC 9449 §5): `invalid_dpop_proof`, 400.
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(DpopError),
    /// The endpoint requires a server nonce in DPoP proofs and the proof has
    /// none, or a stale one (RFC 9449 §8): `use_dpop_nonce`, 400, with a
    /// fresh nonce in `DPoP-Nonce`.
    #[error("a fresh DPoP nonce is required")]
    UseDpopNonce,
}

impl TokenError {
    /// The reason class of the refusal, for metrics and logs (finer than
    /// [`code`](Self::code), and never naming a secret): `invalid_request`,
    /// `payload_too_large`, `body_timeout`, `invalid_client`,
    /// `bad_credentials`, `unsupported_grant_type`, `unavailable`,
    /// `server_error`, `locked_out`, `invalid_target` or `unauthorized_client`.
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
            TokenError::InvalidTarget => "invalid_target",
            TokenError::UnauthorizedClient => "unauthorized_client",
            TokenError::InvalidDpopProof(error) => error.reason(),
            TokenError::UseDpopNonce => "dpop_use_nonce",
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
            TokenError::InvalidTarget => "invalid_target",
            TokenError::UnauthorizedClient => "unauthorized_client",
            TokenError::InvalidDpopProof(_) => "invalid_dpop_proof",
            TokenError::UseDpopNonce => "use_dpop_nonce",
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
            TokenError::InvalidTarget => {
                "A requested resource or audience is malformed or not allowed for this client."
            }
            TokenError::UnauthorizedClient => "This client may not use this grant type.",
            TokenError::InvalidDpopProof(error) => error.description(),
            TokenError::UseDpopNonce => {
                "The DPoP proof must carry the nonce of the DPoP-Nonce response header."
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

    /// The error of a caller of introspection or revocation: there the
    /// credentials authenticate the calling client itself, so credentials
    /// that fail are `invalid_client` (RFC 7662 §2.3, RFC 7009 §2.1).
    pub(crate) fn of_caller(self) -> Self {
        match self {
            TokenError::InvalidGrant => TokenError::InvalidClient,
            other => other,
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

impl From<VerifyError> for TokenError {
    /// A refused client credential (a wrong application secret, an input
    /// JWT that is not valid) is `invalid_client` (RFC 6749 §5.2, RFC 7523
    /// §3.2); a refused app password or grant (an unbound or disabled
    /// account, a policy's refusal) is `invalid_grant`; a verifier that
    /// could not decide is `temporarily_unavailable`.
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Rejected(rejection) if rejection.fails_client_authentication() => {
                TokenError::InvalidClient
            }
            VerifyError::Rejected(_) => TokenError::InvalidGrant,
            VerifyError::Unavailable(_) => TokenError::TemporarilyUnavailable,
        }
    }
}

/// Why a client was not authenticated: the error of a credential verifier
/// (and of the endpoint's own checks after it). Either the credentials were
/// refused, or nobody could decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The credentials do not authenticate anyone, or not here. Answered as
    /// `invalid_client` or `invalid_grant` (see [`Rejection`]); the reason
    /// goes to tracing and audit events only.
    #[error("credentials rejected: {0}")]
    Rejected(Rejection),
    /// The verifier could not decide: its store or backend is down, or the
    /// keys that might verify an input JWT could not be fetched and there is
    /// no earlier copy (fail closed). Answered as `temporarily_unavailable`
    /// with status 503; the cause goes to tracing only.
    #[error("credentials could not be verified: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for VerifyError {
    fn from(error: StoreError) -> Self {
        VerifyError::Unavailable(Box::new(error))
    }
}

impl From<JwtError> for VerifyError {
    /// An input JWT's keys could not be fetched (and there is no earlier
    /// copy) is "could not decide"; every other JWT error is a rejection.
    fn from(error: JwtError) -> Self {
        match error {
            JwtError::KeysUnavailable => VerifyError::Unavailable(Box::new(error)),
            error => VerifyError::Rejected(Rejection::InvalidAssertion(error)),
        }
    }
}

/// The precise reason credentials were rejected, for logs and audit events;
/// the client is only told `invalid_client` or `invalid_grant`
/// ([`fails_client_authentication`](Self::fails_client_authentication)).
///
/// Each stage has its own: the verifier (`UnknownCredentials`,
/// `AccountDisabled`, `PasswordExpired`, `MalformedSecret`), the endpoint's
/// input-JWT checks (`InvalidAssertion`, `UntrustedAssertion`,
/// `AssertionReplayed`, `PolicyDenied`, `AssertionLifetime`), federation
/// (`InvalidAssertion`, `NotAnAccessToken`, `AccountRemoved`,
/// `AccountDisabled`) and authorization (`NotBound`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// No such account, or the account has no such app password.
    #[error("unknown account or app password")]
    UnknownCredentials,
    /// The account is disabled.
    #[error("account disabled")]
    AccountDisabled,
    /// The app password has expired.
    #[error("app password expired")]
    PasswordExpired,
    /// `client_secret` is neither the application's secret nor base64 of
    /// `username:token`.
    #[error("client secret is not base64(username:token)")]
    MalformedSecret,
    /// An input JWT did not verify (signature, dates, issuer, audience).
    #[error("input JWT rejected: {0}")]
    InvalidAssertion(JwtError),
    /// An input JWT was sent to an application that trusts no JWT issuer.
    #[error("the application trusts no input JWTs")]
    UntrustedAssertion,
    /// A single-use input JWT was replayed (or lacks a `jti`).
    #[error("input JWT replayed or without jti")]
    AssertionReplayed,
    /// A policy denied the input JWT.
    #[error("input JWT denied by policy")]
    PolicyDenied,
    /// The input JWT is valid for longer than the application accepts
    /// ([`Application::with_max_assertion_lifetime`](super::Application::with_max_assertion_lifetime)).
    #[error("input JWT lives longer than the application accepts")]
    AssertionLifetime,
    /// The account is not bound to the application (see
    /// [`Binding`](crate::store::Binding)).
    #[error("account not bound to the application")]
    NotBound,
    /// The account behind a traded token no longer exists (or its name now
    /// belongs to another account).
    #[error("the account behind the token no longer exists")]
    AccountRemoved,
    /// A token offered for a trade is not an access token (an ID token).
    #[error("not an access token")]
    NotAnAccessToken,
    /// A token offered for a trade is DPoP-bound (`cnf.jkt`): trading it
    /// would hand its holder an unbound successor, a downgrade (RFC 9449
    /// §7.2), so it is refused.
    #[error("a DPoP-bound token cannot be traded")]
    BoundToken,
}

impl Rejection {
    /// Whether the client's own credential failed (answered
    /// `invalid_client`): a client secret that is neither the application's
    /// nor an app password, or a JWT presented as the client's credential
    /// that is not valid, not trusted, replayed, too long-lived, or a token
    /// of this issuer that cannot be traded. The others (a wrong app
    /// password, an account that is gone, disabled or not bound, a policy's
    /// refusal) refuse the grant (`invalid_grant`).
    pub fn fails_client_authentication(&self) -> bool {
        matches!(
            self,
            Rejection::MalformedSecret
                | Rejection::InvalidAssertion(_)
                | Rejection::UntrustedAssertion
                | Rejection::AssertionReplayed
                | Rejection::AssertionLifetime
                | Rejection::NotAnAccessToken
                | Rejection::BoundToken
        )
    }

    /// The reason class, for metrics and audit events: the variant's name in
    /// snake case (`unknown_credentials`, `invalid_assertion`, `not_bound`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::UnknownCredentials => "unknown_credentials",
            Rejection::AccountDisabled => "account_disabled",
            Rejection::PasswordExpired => "password_expired",
            Rejection::MalformedSecret => "malformed_secret",
            Rejection::InvalidAssertion(_) => "invalid_assertion",
            Rejection::UntrustedAssertion => "untrusted_assertion",
            Rejection::AssertionReplayed => "assertion_replayed",
            Rejection::PolicyDenied => "policy_denied",
            Rejection::AssertionLifetime => "assertion_lifetime",
            Rejection::NotBound => "not_bound",
            Rejection::AccountRemoved => "account_removed",
            Rejection::NotAnAccessToken => "not_an_access_token",
            Rejection::BoundToken => "bound_token",
        }
    }
}

impl From<Rejection> for VerifyError {
    fn from(rejection: Rejection) -> Self {
        VerifyError::Rejected(rejection)
    }
}

/// An invalid endpoint configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The issuer base URL is not an absolute `http(s)` URL without a path,
    /// query or fragment.
    #[error(
        "the issuer base URL must be an absolute http(s) URL without path, e.g. https://auth.example.com"
    )]
    BaseUrl,
    /// A path does not start with `/`, or a per-application path lacks `{slug}`.
    #[error("invalid path {0:?}: paths start with '/' and per-application paths contain {{slug}}")]
    Path(String),
    /// Two applications with one `client_id`.
    #[error("two applications have the client_id {0:?}")]
    DuplicateClientId(String),
    /// Two applications with one slug (they would share an issuer).
    #[error("two applications have the slug {0:?}")]
    DuplicateSlug(String),
    /// Two applications with one name: their automatic accounts
    /// (`ak-<name>-client_credentials`) would share a username, and so a
    /// `sub` in the `Username` subject mode.
    #[error("two applications have the name {0:?} (it names their automatic accounts)")]
    DuplicateName(String),
    /// An application federates with a `client_id` that no application has.
    #[error("application {client_id:?} federates with {federated:?}, which is no application")]
    UnknownFederatedApplication {
        /// The federating application.
        client_id: String,
        /// The `client_id` it names.
        federated: String,
    },
    /// An application's token exchange accepts the tokens of a `client_id`
    /// that no application has.
    #[error(
        "application {client_id:?} accepts tokens of {accepted:?} in exchange, which is no application"
    )]
    UnknownExchangeApplication {
        /// The exchanging application.
        client_id: String,
        /// The `client_id` it names.
        accepted: String,
    },
    /// An application trusts, as an external issuer of input JWTs, the
    /// issuer of one of this endpoint's applications. Its tokens would then
    /// pass as input JWTs, without the checks of this issuer's own tokens
    /// (revocation, DPoP binding, the account behind them): accept them with
    /// `Application::with_federated_application` instead.
    #[error(
        "application {client_id:?} trusts the issuer of application {owner:?}, one of this \
         server's own: accept its tokens with federated_applications \
         (Application::with_federated_application) instead"
    )]
    TrustsOwnIssuer {
        /// The trusting application.
        client_id: String,
        /// The application whose issuer it names.
        owner: String,
    },
    /// An application federates with itself.
    #[error("application {0:?} federates with itself")]
    SelfFederation(String),
    /// Applications federate in a circle (each listed accepts the next one's
    /// tokens, the last the first's), so tokens could be traded round it.
    #[error("applications federate in a cycle: {0:?}")]
    FederationCycle(Vec<String>),
    /// An application's own settings are invalid (a bad slug or scope, a
    /// leeway over the cap, rules for input JWTs without keys…).
    #[error("application {client_id:?}: {error}")]
    Application {
        /// The application's `client_id`.
        client_id: String,
        /// What is wrong with it.
        error: ApplicationError,
    },
    /// An application trusts a remote JWKS with neither a policy nor an
    /// assertion audience, so it would accept every token that source signs,
    /// for anyone (see `Application::danger_accept_unpinned_jwks`).
    #[error(
        "application {0:?} trusts a remote JWKS but pins nothing: add a policy or an assertion \
         audience that only its own tokens pass, or opt in with danger_accept_unpinned_jwks"
    )]
    UnpinnedJwks(String),
}
