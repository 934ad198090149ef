//! The router: sends a request for one of the endpoint's paths down its
//! pipeline (token, introspection, revocation, JWKS, metadata), then writes
//! the response, turning a [`TokenError`] into RFC 6749 §5.2's answer, and
//! records the request's metrics and span fields.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;
use tracing::Span;

use super::config::{EndpointConfig, Route};
use super::credentials::{ClientAuthentication, Principal};
use super::error::{TokenError, VerifyError};
use super::request::BoxError;
use super::{dpop, introspection, metadata, mint, response, token};
use crate::observe::{self, REJECTIONS};

/// Answers a request to one of the endpoint's paths.
pub(crate) async fn handle<V, B>(
    config: Arc<EndpointConfig>,
    route: Route,
    verifier: V,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let start = config.instrument.then(std::time::Instant::now);
    let name = route.name();
    let head = request.method() == Method::HEAD;
    let used_basic = uses_basic(&request);
    let instrument = config.instrument;
    let answer = |result: Result<Response<Full<Bytes>>, TokenError>| match result {
        Ok(response) => {
            if instrument {
                Span::current().record("oauth2.outcome", "ok");
            }
            response
        }
        Err(error) => {
            tracing::debug!(error = %error, "request to the token endpoint rejected");
            if instrument {
                observe_rejection(name, &error);
            }
            response::error(error, used_basic)
        }
    };
    let response = match route {
        Route::Token | Route::Introspect | Route::Revoke if request.method() != Method::POST => {
            response::method_not_allowed("POST")
        }
        Route::Token => {
            let mut response = answer(
                token::issue(&config, verifier, request)
                    .await
                    .map(response::token),
            );
            dpop::add_nonce(&config.dpop, &mut response, mint::now());
            response
        }
        // Boxed, so that token requests do not carry their futures' size.
        Route::Introspect => {
            answer(Box::pin(introspection::introspect(&config, verifier, request)).await)
        }
        Route::Revoke => answer(Box::pin(introspection::revoke(&config, verifier, request)).await),
        Route::Jwks | Route::Discovery(_) if !(head || request.method() == Method::GET) => {
            response::method_not_allowed("GET, HEAD")
        }
        Route::Jwks => response::public_json(config.keys.jwks_json(), head),
        Route::Discovery(application) => {
            response::public_json(metadata::discovery(&config, &application), head)
        }
    };
    if let Some(start) = start {
        observe::record_duration(name, start);
    }
    response
}

/// Counts a refused request and notes why on its span.
fn observe_rejection(endpoint: &'static str, error: &TokenError) {
    metrics::counter!(REJECTIONS, "endpoint" => endpoint, "reason" => error.reason()).increment(1);
    let span = Span::current();
    span.record("oauth2.outcome", "rejected");
    span.record("oauth2.reason", error.reason());
    span.record("error.type", error.code());
    if matches!(
        error,
        TokenError::ServerError | TokenError::TemporarilyUnavailable
    ) {
        span.record("otel.status_code", "ERROR");
    }
}

/// Whether the client authenticated with HTTP Basic.
fn uses_basic<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().get(..6))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
}
