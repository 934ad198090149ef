//! Building the endpoint's HTTP responses: token (RFC 6749 §5.1), error
//! (§5.2), and public JSON documents (JWKS, metadata).

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::error::TokenError;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The body of a successful token response (RFC 6749 §5.1), as authentik
/// answers it. The tokens are compact JWS (base64url and dots: nothing to
/// escape), so they are copied as they are; only `scope` goes through the
/// JSON escaper.
pub(crate) fn token_body(
    access_token: &str,
    token_type: &str,
    expires_in: u64,
    scope: &str,
    id_token: Option<&str>,
    issued_token_type: Option<&'static str>,
) -> Vec<u8> {
    let scope = serde_json::to_string(scope).unwrap_or_else(|_| "\"\"".to_owned());
    let id_token_len = id_token.map_or(0, |token| token.len() + 16);
    let mut body = Vec::with_capacity(access_token.len() + id_token_len + scope.len() + 80);
    body.extend_from_slice(b"{\"access_token\":\"");
    body.extend_from_slice(access_token.as_bytes());
    body.extend_from_slice(b"\",\"token_type\":\"");
    body.extend_from_slice(token_type.as_bytes());
    body.extend_from_slice(b"\",\"expires_in\":");
    body.extend_from_slice(expires_in.to_string().as_bytes());
    body.extend_from_slice(b",\"scope\":");
    body.extend_from_slice(scope.as_bytes());
    if let Some(id_token) = id_token {
        body.extend_from_slice(b",\"id_token\":\"");
        body.extend_from_slice(id_token.as_bytes());
        body.push(b'"');
    }
    // RFC 8693 §2.2.1; the token types are fixed URNs, nothing to escape.
    if let Some(issued) = issued_token_type {
        body.extend_from_slice(b",\"issued_token_type\":\"");
        body.extend_from_slice(issued.as_bytes());
        body.push(b'"');
    }
    body.push(b'}');
    body
}

/// `200` with a token body, never cached (RFC 6749 §5.1).
pub(crate) fn token(body: Vec<u8>) -> Response<Full<Bytes>> {
    no_store(StatusCode::OK, Bytes::from(body))
}

/// An RFC 6749 §5.2 error. With `used_basic`, authentication failures are
/// 401 with `WWW-Authenticate: Basic`. The error itself goes into the
/// response's extensions, for outer layers to read.
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
    response.extensions_mut().insert(error);
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

#[cfg(test)]
mod tests {
    use super::token_body;

    #[test]
    fn token_body_is_the_json_of_rfc6749_5_1() {
        let body = token_body(
            "a.b.c",
            "Bearer",
            3600,
            "read \"x\" \\ y",
            Some("d.e.f"),
            None,
        );
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "access_token": "a.b.c", "token_type": "Bearer", "expires_in": 3600,
                "scope": "read \"x\" \\ y", "id_token": "d.e.f",
            })
        );
        let body = token_body("a.b.c", "DPoP", 60, "", None, Some("urn:x"));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json.get("id_token").is_none());
        assert_eq!(json["issued_token_type"], "urn:x");
        assert_eq!(json["token_type"], "DPoP");
        assert_eq!(json["scope"], "");
    }
}
