//! Building the endpoint's HTTP responses: token (RFC 6749 §5.1), error
//! (§5.2), and public JSON documents (JWKS, metadata).

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::TokenError;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A successful token response (RFC 6749 §5.1), as authentik answers it.
#[derive(Serialize)]
pub(crate) struct TokenResponse<'a> {
    pub(crate) access_token: &'a str,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
    pub(crate) scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<&'a str>,
}

/// `200` with a token body, never cached (RFC 6749 §5.1).
pub(crate) fn token(body: Vec<u8>) -> Response<Full<Bytes>> {
    no_store(StatusCode::OK, Bytes::from(body))
}

/// An RFC 6749 §5.2 error. With `used_basic`, authentication failures are
/// 401 with `WWW-Authenticate: Basic`.
pub(crate) fn error(error: TokenError, used_basic: bool) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct ErrorBody {
        error: &'static str,
        error_description: &'static str,
    }
    let body = serde_json::to_vec(&ErrorBody {
        error: error.code(),
        error_description: error.description(),
    })
    .unwrap_or_default();
    let status = error.status(used_basic);
    let mut response = no_store(status, Bytes::from(body));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"token\", charset=\"UTF-8\""),
        );
    }
    if let Some(secs) = error.retry_after() {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// `405` with the allowed methods.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// A public JSON document (JWKS, discovery metadata), cacheable for a few
/// minutes and readable cross-origin.
pub(crate) fn public_json(body: Bytes, head: bool) -> Response<Full<Bytes>> {
    let length = body.len();
    let mut response = Response::new(if head {
        Full::default()
    } else {
        Full::new(body)
    });
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, APPLICATION_JSON);
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

fn no_store(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, APPLICATION_JSON);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
