//! What the crate tells an operator: metrics, spans and audit events.
//!
//! # Metrics
//!
//! Recorded through the [`metrics`] facade: nothing is exported until the
//! application installs a recorder (e.g. `metrics-exporter-prometheus`), and
//! without one every macro is a no-op. The facade is a small dependency of
//! its own, so it is always on; [`TokenEndpointLayer::instrument`] and
//! [`JwtValidateLayer::instrument`] turn the metrics and spans of a layer
//! off.
//!
//! | name | kind | labels | counts |
//! |---|---|---|---|
//! | [`TOKENS_ISSUED`] | counter | `application`, `auth_method` | access tokens minted |
//! | [`REJECTIONS`] | counter | `endpoint`, `reason` | refused requests, by [reason class](crate::issuer::TokenError::reason) |
//! | [`JWKS_FETCHES`] | counter | `outcome` | remote JWKS fetches (discovery included): `ok`, `unavailable`, `timeout`, `not_a_jwks`, `discovery_failed` |
//! | [`TOKEN_CACHE`] | counter | `result` | verified-token cache lookups: `hit`, `miss` |
//! | [`LOCKOUTS`] | counter | `key` | requests refused by the attempt limiter: `client_id`, `address`, `busy` |
//! | [`REQUEST_DURATION`] | histogram (seconds) | `endpoint` | time the layer spent on a request |
//!
//! `endpoint` is `token`, `introspect`, `revoke`, `jwks`, `discovery` (the
//! token endpoint's paths) or `validate` (a request checked by
//! [`JwtValidateLayer`]; its duration is the token check alone, not the inner
//! service). `auth_method` is `app_password` (`username` + `password`),
//! `client_secret` (the application's secret or base64 `username:token`),
//! `jwt` (an input JWT) or `federation` (a token of a federated application
//! traded). Label values come from the configuration, never from a request,
//! so their number stays bounded.
//!
//! # Spans
//!
//! One `info` span per request the token endpoint answers
//! (`tower_m2m_auth.issuer`) and per request [`JwtValidateLayer`] checks
//! (`tower_m2m_auth.validate`), a child of the current span (tower-http's
//! `TraceLayer` request span, when there is one). Fields follow OpenTelemetry's
//! conventions where one exists: `otel.name`, `http.route`, `client.address`,
//! `error.type` (the RFC 6749 / RFC 6750 error code), `otel.status_code`
//! (`ERROR` on a 5xx answer); and `oauth2.client_id`, `oauth2.auth_method`,
//! `oauth2.outcome`, `oauth2.reason`, `oauth2.cache_hit`. No field ever holds
//! a secret, a credential or a token.
//!
//! # Audit events
//!
//! Events on the target [`AUDIT_TARGET`] (`tower_m2m_auth::audit`), the
//! equivalent of authentik's login events:
//!
//! - `event = "token_issued"` (level `INFO`): `application`, `account`,
//!   `account_id`, `auth_method`, `scope`, `jti`, `exp`, `act_iss` and
//!   `act_sub` (for a JWT-authenticated client: who the JWT said it was),
//!   `client.address`.
//! - `event = "credential_rejected"` (level `WARN`):
//!   `application` (the `client_id`, or empty when it names no application;
//!   then `unknown_client_id`, quoted and cut to 64 characters), `auth_method`, `reason` (a [`Rejection`](crate::issuer::Rejection)
//!   class, `unknown_client` or `locked_out`), `client.address`.
//!
//! Route them by target, e.g. to a file of JSON lines that the SIEM
//! collects, and keep them out of the ordinary log:
//!
//! ```no_run
//! use tracing::Level;
//! use tracing::level_filters::LevelFilter;
//! use tracing_subscriber::{filter::Targets, fmt, prelude::*};
//! use tower_m2m_auth::observe::AUDIT_TARGET;
//!
//! # fn main() -> std::io::Result<()> {
//! let audit_file = std::fs::OpenOptions::new().create(true).append(true).open("audit.jsonl")?;
//! tracing_subscriber::registry()
//!     .with(
//!         fmt::layer()
//!             .json()
//!             .with_writer(audit_file)
//!             .with_filter(Targets::new().with_target(AUDIT_TARGET, Level::INFO)),
//!     )
//!     .with(fmt::layer().with_filter(
//!         Targets::new()
//!             .with_default(Level::INFO)
//!             .with_target(AUDIT_TARGET, LevelFilter::OFF),
//!     ))
//!     .init();
//! # Ok(())
//! # }
//! ```
//!
//! [`TokenEndpointLayer::instrument`]: crate::issuer::TokenEndpointLayer::instrument
//! [`JwtValidateLayer::instrument`]: crate::validate::JwtValidateLayer::instrument
//! [`JwtValidateLayer`]: crate::validate::JwtValidateLayer

/// The tracing target of audit events.
pub const AUDIT_TARGET: &str = "tower_m2m_auth::audit";

/// Counter: access tokens minted, by `application` and `auth_method`.
pub const TOKENS_ISSUED: &str = "tower_m2m_auth_tokens_issued_total";
/// Counter: refused requests, by `endpoint` and `reason`.
pub const REJECTIONS: &str = "tower_m2m_auth_rejections_total";
/// Counter: remote JWKS fetches, by `outcome`.
pub const JWKS_FETCHES: &str = "tower_m2m_auth_jwks_fetches_total";
/// Counter: verified-token cache lookups, by `result` (`hit`, `miss`).
pub const TOKEN_CACHE: &str = "tower_m2m_auth_token_cache_lookups_total";
/// Counter: requests the attempt limiter refused, by `key`.
pub const LOCKOUTS: &str = "tower_m2m_auth_lockouts_total";
/// Histogram: seconds a layer spent on a request, by `endpoint`.
pub const REQUEST_DURATION: &str = "tower_m2m_auth_request_duration_seconds";

/// Registers the descriptions and units of the crate's metrics with the
/// installed recorder (exporters show them as `# HELP` lines). Call it once,
/// after installing the recorder.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        TOKENS_ISSUED,
        Unit::Count,
        "Access tokens minted, by application and authentication method."
    );
    describe_counter!(
        REJECTIONS,
        Unit::Count,
        "Requests refused, by endpoint and reason class."
    );
    describe_counter!(
        JWKS_FETCHES,
        Unit::Count,
        "Remote JWKS fetches, by outcome."
    );
    describe_counter!(
        TOKEN_CACHE,
        Unit::Count,
        "Verified-token cache lookups, by result (hit or miss)."
    );
    describe_counter!(
        LOCKOUTS,
        Unit::Count,
        "Requests refused by the attempt limiter, by key (client_id, address, busy)."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time the layer spent on a request, by endpoint."
    );
}

/// Seconds since `start`, for [`REQUEST_DURATION`].
pub(crate) fn record_duration(endpoint: &'static str, start: std::time::Instant) {
    metrics::histogram!(REQUEST_DURATION, "endpoint" => endpoint)
        .record(start.elapsed().as_secs_f64());
}
