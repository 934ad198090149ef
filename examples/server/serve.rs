//! HTTP: the token endpoint in front of the sample API, until Ctrl-C.

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_m2m_auth::config::Endpoint;
use tower_m2m_auth::validate::JwtValidateLayer;

use crate::connections;

/// Serves the API behind the token endpoint until Ctrl-C (or SIGTERM).
pub(crate) async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    validator: JwtValidateLayer,
    limits: connections::ConnectionLimits,
) {
    // The endpoint wraps the whole router: it answers its own paths (token,
    // JWKS, metadata) before any routing and passes every other request on.
    let app = ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(endpoint)
        .service(api(validator));
    connections::serve(listener, app, limits, shutdown_signal()).await;
    tracing::info!("stopped");
}

/// The application the tokens are for: every route needs a bearer token
/// that this server minted.
fn api(validator: JwtValidateLayer) -> Router {
    Router::new()
        .route("/api/hello", get(hello))
        .layer(validator)
}

/// `GET /api/hello`.
async fn hello() -> &'static str {
    "Hello from the sample API\n"
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
