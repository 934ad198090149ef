//! A machine-to-machine OAuth2 token server: `TokenEndpointLayer` in front
//! of an axum application, configured from a TOML file.
//!
//! ```text
//! cargo run --example server                                    # embedded demo configuration
//! cargo run --example server -- --config my.toml --listen 0.0.0.0:9000
//! RUST_LOG=info,tower_m2m_auth=debug cargo run --example server # also log rejections
//! cargo run --features cel --example server -- --config ci.toml # with CEL `policies`
//!
//! # Service accounts in the store that the configuration's [store] names
//! # (SQLite by default: <config stem>.db next to the configuration file)
//! cargo run --features sqlite --example server -- create-service-account ci --config my.toml --expires 30d
//! cargo run --features sqlite --example server -- add-token ci --config my.toml
//! cargo run --features sqlite --example server -- list --config my.toml
//! cargo run --features sqlite --example server -- revoke-token --sha256 <hex> --config my.toml
//! cargo run --features sqlite --example server -- disable ci --config my.toml   # or enable
//! cargo run --features sqlite --example server -- bind ci deploy-bot --scope deploy --config my.toml
//! cargo run --features sqlite --example server -- unbind ci deploy-bot --config my.toml
//! ```
//!
//! `examples/server.toml` documents the configuration format. Without
//! `--config` the server runs on an embedded copy of that file, with an
//! in-memory signing key and store, and prints curl commands to try it.
//!
//! This example only wires things together: the configuration schema, every
//! check of it, key loading, the store chosen at run time and the import of
//! the configured service accounts are the library's (`tower_m2m_auth::config`).
//! Here: the command line and logging (`cli.rs`), the file and its
//! server-only tables (`file.rs`), HTTP (`serve.rs`, `../support/`), the
//! administration commands (`admin.rs`), the demo instructions (`demo.rs`)
//! and `[metrics]` (`observability.rs`).

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use axum::extract::ConnectInfo;
use clap::Parser;
use tokio::net::TcpListener;

mod admin;
mod cli;
#[path = "../support/connections.rs"]
mod connections;
mod demo;
mod file;
// `[metrics]` (Prometheus); its tests run the whole server.
mod observability;
mod report;
mod serve;

use cli::{Args, Command, ServeArgs};
use file::{ServerFile, Source};

/// A startup error, shown to the operator before a non-zero exit.
type BoxError = Box<dyn Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            // Help and version: 0; a usage error: 1, as any other error.
            return if error.exit_code() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    // The administration commands speak for themselves: only warnings.
    let serving = matches!(args.command, None | Some(Command::Serve(_)));
    cli::init_tracing(if serving { "info" } else { "warn" });
    let result = match (args.command, args.serve.listen) {
        (None, _) => run(args.config, args.serve).await,
        (Some(Command::Serve(serve)), None) => run(args.config, serve).await,
        (Some(_), Some(_)) => Err("--listen goes after `serve`, and only there".into()),
        (Some(command), None) => admin::run(args.config, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration, builds the endpoint and serves until Ctrl-C.
async fn run(config_path: Option<PathBuf>, args: ServeArgs) -> Result<(), BoxError> {
    let source = Source::load(config_path)?;
    let mut file = ServerFile::parse(&source)?;
    let listen = args.listen.or(file.listen).unwrap_or(file::DEFAULT_LISTEN);
    let (connection_limits, body_timeout) = file.server.limits()?;
    source.fill_defaults(&mut file.config, listen);
    let built = file.config.build(source.base_dir()).await?;
    // The attempt limiter's address limit: the peer address that
    // `connections::serve` puts in each request (`ConnectInfo`).
    let endpoint = built
        .endpoint
        .body_timeout(body_timeout)
        .client_address(|parts| {
            let info = parts.extensions.get::<ConnectInfo<SocketAddr>>();
            info.map(|info| info.0.ip())
        });
    for remote in built.remote_sources {
        tokio::spawn(async move { tower_m2m_auth::config::prefetch(&remote).await });
    }

    observability::start(file.metrics.as_ref()).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let issuer = &file.config.issuer;
    tracing::info!(address = %listen, %issuer, "listening");
    if let Source::Embedded = source {
        demo::print_instructions(issuer, &file.config);
    }
    serve::serve(listener, endpoint, built.validator, connection_limits).await;
    Ok(())
}
