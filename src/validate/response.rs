//! Why a request was refused, and the response that says so: RFC 6750 §3
//! for HTTP clients, a gRPC status for gRPC clients, or your own.

use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response, StatusCode};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use jsonwebtoken::Algorithm;

use super::dpop::uses_dpop;
use super::{AuthError, SettingsError};
use crate::keys::dpop::DpopRules;

/// Builds the response for a refused request.
///
/// Implemented by [`DefaultRejection`] and by every
/// `FnMut(&AuthError, &HeaderMap) -> Response<B> + Clone` closure, which gets
/// the error and the request's headers. The middleware attaches the
/// [`AuthError`] to the response's extensions afterwards, so layers further
/// out can see why a request was refused.
///
/// ```
/// use http::{HeaderMap, Request, Response, StatusCode};
/// use tower_m2m_auth::validate::{AuthError, JwtValidateLayer};
///
/// let layer = JwtValidateLayer::new().with_rejection(|error: &AuthError, _headers: &HeaderMap| {
///     let body = format!(r#"{{"error":"{error}"}}"#);
///     Response::builder()
///         .status(error.status())
///         .header("content-type", "application/json")
///         .body(body)
///         .unwrap()
/// });
/// # let _ = layer;
/// ```
pub trait OnAuthError<B>: Clone {
    /// The response for a request refused with `error`; `headers` are the
    /// request's.
    fn on_auth_error(&mut self, error: &AuthError, headers: &HeaderMap) -> Response<B>;
}

impl<B, F> OnAuthError<B> for F
where
    F: FnMut(&AuthError, &HeaderMap) -> Response<B> + Clone,
{
    fn on_auth_error(&mut self, error: &AuthError, headers: &HeaderMap) -> Response<B> {
        self(error, headers)
    }
}

/// The rejection response for `error`, with the error in its extensions.
pub(crate) fn reject<R, ReqBody, ResBody>(
    rejection: &mut R,
    error: AuthError,
    request: &Request<ReqBody>,
) -> Response<ResBody>
where
    R: OnAuthError<ResBody>,
{
    let mut response = rejection.on_auth_error(&error, request.headers());
    response.extensions_mut().insert(error);
    response
}

/// The default rejection: an empty-bodied RFC 6750 response, or a gRPC
/// status for requests with `content-type: application/grpc*`.
///
/// | error | HTTP | `WWW-Authenticate` | gRPC |
/// |---|---|---|---|
/// | no token, other scheme | 401 | `Bearer realm="api"` | 16 `UNAUTHENTICATED` |
/// | malformed header | 400 | `…, error="invalid_request"` | 16 |
/// | bad token | 401 | `…, error="invalid_token", error_description="…"` | 16 |
/// | missing scope | 403 | `…, error="insufficient_scope", …, scope="…"` | 7 `PERMISSION_DENIED` |
/// | keys unavailable | 503 | — | 14 `UNAVAILABLE` |
/// | bad DPoP proof | 401 | `DPoP realm="api", error="invalid_dpop_proof", …, algs="…"` | 16 |
///
/// Requests that use the `DPoP` scheme, and bound tokens sent as `Bearer`,
/// get `DPoP` challenges (RFC 9449 §7.1) with the `algs` the proofs may
/// use; a request without a token gets a `Bearer` and a `DPoP` challenge.
///
/// gRPC answers are HTTP 200 with `grpc-status` and `grpc-message` in the
/// headers and no body (a "trailers-only" response), which tonic and every
/// other gRPC client read as the call's status.
#[derive(Debug, Clone)]
pub struct DefaultRejection {
    realm: Arc<str>,
    /// The `algs` of `DPoP` challenges, space-separated.
    dpop_algs: Arc<str>,
}

impl Default for DefaultRejection {
    fn default() -> Self {
        Self {
            realm: Arc::from("api"),
            dpop_algs: Arc::from(""),
        }
        .dpop_algorithms(DpopRules::default().algorithms())
    }
}

impl DefaultRejection {
    /// The default rejection with realm `api`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `realm` of `WWW-Authenticate` (default `api`): printable ASCII
    /// without `"` or `\`.
    pub fn realm(mut self, realm: &str) -> Result<Self, SettingsError> {
        if !realm.bytes().all(is_quoted_string_safe) {
            return Err(SettingsError::Realm);
        }
        self.realm = Arc::from(realm);
        Ok(self)
    }

    /// The `algs` of `DPoP` challenges (default: those of
    /// [`DpopRules::default`]); [`JwtValidateLayer::dpop`](super::JwtValidateLayer::dpop)
    /// sets them from its rules.
    pub fn dpop_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        let names: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
        self.dpop_algs = Arc::from(names.join(" "));
        self
    }

    /// The response for `error`, with an empty body of any type.
    pub fn response<B: Default>(&self, error: &AuthError, headers: &HeaderMap) -> Response<B> {
        if is_grpc(headers) {
            grpc_response(error)
        } else {
            self.http_response(error, headers)
        }
    }

    fn http_response<B: Default>(&self, error: &AuthError, headers: &HeaderMap) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = error.status();
        if error.status() != StatusCode::SERVICE_UNAVAILABLE {
            let dpop = uses_dpop(headers)
                || matches!(
                    error,
                    AuthError::InvalidDpopProof(_)
                        | AuthError::DpopBoundToken
                        | AuthError::UseDpopNonce { .. }
                );
            let challenge = self.challenge(error, dpop);
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
            if let AuthError::UseDpopNonce { nonce } = error
                && let Ok(value) = HeaderValue::from_str(nonce)
            {
                response.headers_mut().insert("dpop-nonce", value);
            }
            if matches!(
                error,
                AuthError::MissingToken | AuthError::UnsupportedScheme
            ) {
                let dpop = format!("DPoP realm=\"{}\", algs=\"{}\"", self.realm, self.dpop_algs);
                if let Ok(value) = HeaderValue::from_str(&dpop) {
                    response.headers_mut().append(WWW_AUTHENTICATE, value);
                }
            }
        } else {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        response
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9449 §7.1).
    fn challenge(&self, error: &AuthError, dpop: bool) -> String {
        let scheme = if dpop { "DPoP" } else { "Bearer" };
        let mut challenge = format!("{scheme} realm=\"{}\"", self.realm);
        if let Some(code) = error.error_code() {
            let description: String = error
                .to_string()
                .bytes()
                .filter(|b| is_quoted_string_safe(*b))
                .map(char::from)
                .collect();
            challenge.push_str(&format!(
                ", error=\"{code}\", error_description=\"{description}\""
            ));
        }
        if let AuthError::InsufficientScope { required } = error {
            challenge.push_str(&format!(", scope=\"{required}\""));
        }
        if dpop {
            challenge.push_str(&format!(", algs=\"{}\"", self.dpop_algs));
        }
        challenge
    }
}

impl<B: Default> OnAuthError<B> for DefaultRejection {
    fn on_auth_error(&mut self, error: &AuthError, headers: &HeaderMap) -> Response<B> {
        self.response(error, headers)
    }
}

/// RFC 6750's `error_description` and `realm` characters: %x20-21 /
/// %x23-5B / %x5D-7E.
fn is_quoted_string_safe(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'
}

/// Whether the request is a gRPC call (`content-type: application/grpc…`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..16))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc"))
}

/// gRPC's `grpc-message` encoding: percent-encode outside printable ASCII,
/// and `%` itself.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// A "trailers-only" gRPC response carrying `error`'s status.
pub fn grpc_response<B: Default>(error: &AuthError) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(error.grpc_status()));
    let message = utf8_percent_encode(&error.to_string(), GRPC_MESSAGE).to_string();
    if let Ok(message) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", message);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::JwtError;

    fn challenge(error: AuthError) -> String {
        let response: Response<()> = DefaultRejection::new().response(&error, &HeaderMap::new());
        response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn missing_token_challenge_has_no_error_code() {
        assert_eq!(challenge(AuthError::MissingToken), r#"Bearer realm="api""#);
    }

    #[test]
    fn invalid_token_challenge_names_the_rule() {
        assert_eq!(
            challenge(AuthError::InvalidToken(JwtError::Expired)),
            r#"Bearer realm="api", error="invalid_token", error_description="the token has expired""#
        );
    }

    #[test]
    fn insufficient_scope_challenge_lists_the_scope() {
        let error = AuthError::InsufficientScope {
            required: Arc::from("read write"),
        };
        assert!(challenge(error).ends_with(r#", scope="read write""#));
    }

    #[test]
    fn realm_with_a_quote_is_refused() {
        assert!(DefaultRejection::new().realm("a\"b").is_err());
        assert!(DefaultRejection::new().realm("orders api").is_ok());
    }

    #[test]
    fn grpc_requests_get_a_grpc_status() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        let response: Response<()> =
            DefaultRejection::new().response(&AuthError::MissingToken, &headers);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()["grpc-message"], "no bearer token");
    }
}
