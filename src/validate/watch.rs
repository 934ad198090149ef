//! The metrics and span of one check, when the layer is instrumented.

use std::time::Instant;

use http::{Request, Response};
use tracing::Span;
use tracing::field::Empty;

use super::verify::Config;
use super::{AuthError, VerifiedClaims};
use crate::observe::{self, REJECTIONS};

/// Times and traces the check of one request.
pub(crate) struct Watch {
    span: Span,
    start: Instant,
}

impl Watch {
    /// Starts watching, if `config` says so. The span is a child of the
    /// caller's (tower-http's `TraceLayer`, say).
    #[inline]
    pub(crate) fn start(config: &Config) -> Option<Self> {
        config.instrument.then(|| Self {
            span: tracing::info_span!(
                "tower_m2m_auth.validate",
                otel.name = "validate",
                otel.status_code = Empty,
                oauth2.client_id = Empty,
                oauth2.outcome = Empty,
                oauth2.reason = Empty,
                oauth2.cache_hit = Empty,
                error.type = Empty,
            ),
            start: Instant::now(),
        })
    }

    /// The span, to run the token's verification in.
    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// Notes whether the token came from the verified-token cache.
    pub(crate) fn cache_hit(&self, hit: bool) {
        self.span.record("oauth2.cache_hit", hit);
    }

    /// The request goes on to the inner service (with claims, or without a
    /// token where that is allowed).
    pub(crate) fn passed<B>(self, request: &Request<B>) {
        match request.extensions().get::<VerifiedClaims>() {
            Some(claims) => {
                if let Some(client_id) = claims.client_id() {
                    self.span.record("oauth2.client_id", client_id);
                }
                self.span.record("oauth2.outcome", "ok");
            }
            None => {
                self.span.record("oauth2.outcome", "anonymous");
            }
        }
        observe::record_duration("validate", self.start);
    }

    /// The request was refused with `response` (whose extensions hold the
    /// [`AuthError`]).
    pub(crate) fn refused<B>(self, response: &Response<B>) {
        if let Some(error) = response.extensions().get::<AuthError>() {
            let reason = error.reason();
            metrics::counter!(REJECTIONS, "endpoint" => "validate", "reason" => reason)
                .increment(1);
            self.span.record("oauth2.outcome", "rejected");
            self.span.record("oauth2.reason", reason);
            if let Some(code) = error.error_code() {
                self.span.record("error.type", code);
            }
            if *error == AuthError::KeysUnavailable {
                self.span.record("otel.status_code", "ERROR");
            }
        }
        observe::record_duration("validate", self.start);
    }
}
