//! A gRPC service behind [`JwtValidateLayer`]: tonic's standard health
//! service (`grpc.health.v1.Health`, no protoc needed), trusting the tokens
//! of the example token server (`examples/server/`).
//!
//! ```text
//! cargo run --example server                   # the issuer, on 127.0.0.1:9000
//! cargo run --example grpc                     # this gRPC server, on 127.0.0.1:50051
//!
//! cargo run --example grpc -- check            # UNAUTHENTICATED: no token
//! TOKEN=$(curl -s http://127.0.0.1:9000/application/o/token/ \
//!     -d 'grant_type=client_credentials&client_id=demo-client&username=demo-deployer&password=demo-app-password-not-a-secret&scope=read' \
//!     | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
//! cargo run --example grpc -- check --token "$TOKEN"   # SERVING
//! ```
//!
//! Unauthenticated calls get gRPC status 16 `UNAUTHENTICATED`, calls without
//! a required scope 7 `PERMISSION_DENIED`: the layer answers gRPC requests
//! (`content-type: application/grpc`) with a gRPC status, not an HTTP 401.
//! A service method of your own reads the claims with
//! `request.extensions().get::<VerifiedClaims>()`.

use std::error::Error;
use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};

#[derive(Parser)]
#[command(about = "tonic-health behind JwtValidateLayer, and a client to call it")]
struct Args {
    /// Address to listen on (server) or to call (check).
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the health service (the default).
    Serve {
        /// The issuer (`iss` of the tokens).
        #[arg(long, default_value = "http://127.0.0.1:9000/application/o/demo/")]
        issuer: String,
        /// The accepted audience.
        #[arg(long, default_value = "demo-client")]
        audience: String,
        /// A scope every call needs.
        #[arg(long)]
        scope: Option<String>,
        /// Also accept access tokens without `typ: at+jwt` if they carry
        /// `client_id` or `scope` (authentik's, or the example server's with
        /// `[endpoint] at_jwt_typ = false`). ID tokens stay refused.
        #[arg(long)]
        allow_untyped_access_tokens: bool,
    },
    /// Call `grpc.health.v1.Health/Check` and print the answer.
    Check {
        /// The access token to send.
        #[arg(long)]
        token: Option<String>,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let args = Args::parse();
    match args.command.unwrap_or(Command::Serve {
        issuer: "http://127.0.0.1:9000/application/o/demo/".into(),
        audience: "demo-client".into(),
        scope: None,
        allow_untyped_access_tokens: false,
    }) {
        Command::Serve {
            issuer,
            audience,
            scope,
            allow_untyped_access_tokens,
        } => {
            serve(
                args.addr,
                &issuer,
                &audience,
                scope,
                allow_untyped_access_tokens,
            )
            .await
        }
        Command::Check { token } => check(args.addr, token).await,
    }
}

async fn serve(
    addr: SocketAddr,
    issuer: &str,
    audience: &str,
    scope: Option<String>,
    allow_untyped_access_tokens: bool,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut layer = JwtValidateLayer::new()
        .issuer(Issuer::with_jwks_url(issuer, format!("{issuer}jwks/")))
        .audience(audience)
        .allow_untyped_access_tokens(allow_untyped_access_tokens);
    if let Some(scope) = scope {
        layer = layer.require_scopes([scope])?;
    }
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("gRPC health service on {addr}, trusting {issuer} for audience {audience}");
    Server::builder()
        .layer(layer)
        .add_service(health)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn check(
    addr: SocketAddr,
    token: Option<String>,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    match client.check(request).await {
        Ok(response) => {
            let status = response.into_inner().status();
            println!("{}", status.as_str_name());
        }
        Err(status) => println!("{:?}: {}", status.code(), status.message()),
    }
    Ok(())
}
