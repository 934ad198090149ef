//! A downstream API host: an axum application protected by
//! [`JwtValidateLayer`], trusting the tokens of the example token server
//! (`examples/server/`) through its JWKS URL.
//!
//! ```text
//! cargo run --example server                       # the issuer, on 127.0.0.1:9000
//! cargo run --example downstream --features axum   # this API, on 127.0.0.1:9001
//!
//! TOKEN=$(curl -s http://127.0.0.1:9000/application/o/token/ \
//!     -d 'grant_type=client_credentials&client_id=demo-client&username=demo-deployer&password=demo-app-password-not-a-secret&scope=read' \
//!     | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
//! curl -i http://127.0.0.1:9001/api/hello -H "Authorization: Bearer $TOKEN"    # 200
//! curl -i http://127.0.0.1:9001/api/hello                                      # 401
//! curl -i -X POST http://127.0.0.1:9001/api/write -H "Authorization: Bearer $TOKEN"  # 403: no `write` scope
//! ```
//!
//! `/orders` and `/billing` are two more APIs, each accepting only tokens
//! minted for it (`aud` = its resource, RFC 8707): see the README's
//! "Resource indicators" and "Token exchange" for the curl flows.
//! DPoP-bound tokens (RFC 9449) pass too, as `Authorization: DPoP <token>`
//! with a fresh proof per request, and never as `Bearer`: see the README's
//! "DPoP" section (`scripts/interop/dpop_client.py` is such a client).
//!
//! Routes:
//!
//! | route | needs |
//! |---|---|
//! | `GET /health` | nothing |
//! | `GET /api/hello` | a valid token |
//! | `GET /api/claims` | a valid token; answers its claims as JSON (the `Claims<T>` extractor) |
//! | `POST /api/write` | a valid token with scope `write` |
//! | `GET /orders` | a token of the demo application for `--orders-audience` |
//! | `GET /billing` | a token of `--billing-issuer` (the orders service's application) for `--billing-audience` |

use std::error::Error;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};
use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tower_m2m_auth::validate::{
    Claims, Issuer, JwtValidateLayer, RequireScopeLayer, VerifiedClaims,
};
use tracing_subscriber::EnvFilter;

/// Command line.
#[derive(Parser)]
#[command(about = "A downstream API that accepts the example token server's access tokens")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// The origin clients reach this API at, which DPoP proofs must name
    /// (default: `http://` and the listen address).
    #[arg(long)]
    origin: Option<String>,
    /// The issuer (`iss` of the tokens): the example server's demo application.
    #[arg(long, default_value = "http://127.0.0.1:9000/application/o/demo/")]
    issuer: String,
    /// The issuer's JWKS URL [default: `<issuer>jwks/`, the example server's].
    #[arg(long)]
    jwks_url: Option<String>,
    /// Find the JWKS URL by OpenID discovery from the issuer URL instead.
    #[arg(long, conflicts_with = "jwks_url")]
    discover: bool,
    /// The accepted audience: the demo application's client_id.
    #[arg(long, default_value = "demo-client")]
    audience: String,
    /// Turn the verified-token cache off (every request pays a signature check).
    #[arg(long)]
    no_cache: bool,
    /// Also accept access tokens without `typ: at+jwt` if they carry
    /// `client_id` or `scope` (authentik's, or the example server's with
    /// `[endpoint] at_jwt_typ = false`). ID tokens stay refused.
    #[arg(long)]
    allow_untyped_access_tokens: bool,
    /// The resource of the orders API: `/orders` takes only tokens for it.
    #[arg(long, default_value = "http://127.0.0.1:9001/orders")]
    orders_audience: String,
    /// The issuer of the billing API's tokens: the orders service's application.
    #[arg(long, default_value = "http://127.0.0.1:9000/application/o/orders/")]
    billing_issuer: String,
    /// The resource of the billing API: `/billing` takes only tokens for it.
    #[arg(long, default_value = "http://127.0.0.1:9001/billing")]
    billing_audience: String,
}

/// The claims `/api/claims` answers with.
#[derive(Serialize, Deserialize)]
struct AccessToken {
    iss: String,
    sub: String,
    /// One audience, or several (a token for several resources).
    aud: serde_json::Value,
    exp: u64,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    preferred_username: Option<String>,
}

async fn hello(claims: VerifiedClaims) -> String {
    format!("hello {}\n", claims.subject().unwrap_or("anonymous"))
}

async fn claims(Claims(token): Claims<AccessToken>) -> axum::Json<AccessToken> {
    axum::Json(token)
}

/// `/orders` and `/billing`: who the token is for, its audience and client.
async fn resource(claims: VerifiedClaims) -> String {
    let sub = claims.subject().unwrap_or("?");
    let (aud, client) = (claims.audiences().join(" "), claims.client_id());
    format!("{sub} (aud {aud}, client {})\n", client.unwrap_or("?"))
}

async fn write(claims: VerifiedClaims) -> String {
    format!("written by {}\n", claims.subject().unwrap_or("?"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let issuer = if args.discover {
        Issuer::discover(&args.issuer)
    } else {
        let jwks_url = args
            .jwks_url
            .clone()
            .unwrap_or_else(|| format!("{}jwks/", args.issuer));
        Issuer::with_jwks_url(&args.issuer, jwks_url)
    };
    // DPoP proofs name this API's origin, never what a request's Host says.
    let origin = args
        .origin
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));
    // Each resource's API accepts only tokens minted for it.
    let orders = JwtValidateLayer::new()
        .issuer(issuer.clone())
        .audience(&args.orders_audience)
        .dpop_origin(&origin)?;
    let billing_jwks = format!("{}jwks/", args.billing_issuer);
    let billing = JwtValidateLayer::new()
        .issuer(Issuer::with_jwks_url(&args.billing_issuer, billing_jwks))
        .audience(&args.billing_audience)
        .dpop_origin(&origin)?;
    let mut layer = JwtValidateLayer::new()
        .issuer(issuer)
        .audience(&args.audience)
        .allow_untyped_access_tokens(args.allow_untyped_access_tokens)
        .dpop_origin(&origin)?;
    if args.no_cache {
        layer = layer.token_cache(0);
    }

    let api = Router::new()
        .route("/api/hello", get(hello))
        .route("/api/claims", get(claims))
        .route(
            "/api/write",
            post(write).layer(RequireScopeLayer::new(["write"])?),
        )
        .layer(layer);
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/orders", get(resource).layer(orders))
        .route("/billing", get(resource).layer(billing))
        .merge(api);

    let listener = TcpListener::bind(args.listen).await?;
    tracing::info!(address = %args.listen, issuer = %args.issuer, audience = %args.audience, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
