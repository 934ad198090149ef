//! `[metrics]`: the library's metrics in Prometheus format, on a listener of
//! their own (so that the token endpoint's port never serves them).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::Deserialize;
use tokio::net::TcpListener;
use tower_m2m_auth::observe::{self, REQUEST_DURATION};

use super::BoxError;

/// `[metrics]`. Without `listen`, no metrics are recorded.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Address of the metrics listener, e.g. `127.0.0.1:9464`.
    listen: Option<SocketAddr>,
    /// Path of the metrics page. Default: `/metrics`.
    #[serde(default = "default_path")]
    path: String,
}

fn default_path() -> String {
    "/metrics".into()
}

/// Buckets of the request-duration histogram, in seconds: a token request
/// takes tens of microseconds in process, a JWKS refresh or a store round
/// trip milliseconds.
const DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// How often histograms are compacted.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder and serves its page at `listen`, when
/// the configuration asks for it. Returns the address it listens on.
pub(crate) async fn start(config: Option<&MetricsConfig>) -> Result<Option<SocketAddr>, BoxError> {
    let Some(MetricsConfig {
        listen: Some(listen),
        path,
    }) = config
    else {
        return Ok(None);
    };
    if !path.starts_with('/') {
        return Err(format!("[metrics] path {path:?} must start with '/'").into());
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen for metrics on {listen}: {error}"))?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), DURATION_BUCKETS)?
        .install_recorder()
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
    observe::describe_metrics();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP).await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route(
        path,
        get(move || {
            let page = handle.render();
            async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], page) }
        }),
    );
    let address = listener.local_addr()?;
    tracing::info!(%address, %path, "metrics listening");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics listener failed");
        }
    });
    Ok(Some(address))
}

#[cfg(test)]
#[path = "observability_tests/mod.rs"]
mod tests;
