//! The command line, and logging.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// OAuth2 client-credentials token server (tower-m2m-auth example).
///
/// Without a subcommand, serves (as `serve` does).
#[derive(Parser)]
#[command(version)]
pub(crate) struct Args {
    /// TOML configuration file (default: the embedded demo configuration,
    /// which is examples/server.toml, with an in-memory store).
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) serve: ServeArgs,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: the configuration's `listen`, else
    /// 127.0.0.1:9000].
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
}

/// What to do. Every command but `serve` works on the store that the
/// configuration's `[store]` names, and needs `--config FILE`.
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve the token endpoint and the sample API (the default).
    Serve(ServeArgs),
    /// Create a service account and its first app-password token, printed
    /// once on stdout.
    CreateServiceAccount {
        /// Its username (`username` in token requests).
        username: String,
        /// Display name [default: the username].
        #[arg(long)]
        name: Option<String>,
        /// The token expires after this long: 30d, 12h, 90m, 3600s
        /// [default: never].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// Add another app-password token to a service account (to rotate
    /// without downtime), printed once on stdout.
    AddToken {
        /// The account's username.
        username: String,
        /// The token expires after this long: 30d, 12h, 90m, 3600s
        /// [default: never].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// List the accounts: username, display name, active, kind (`service`,
    /// or `jwt <issuer>` for identities recorded from input JWTs) and
    /// bindings (`client_id(scopes)`).
    List,
    /// Revoke an app-password token, given as itself or by its SHA-256.
    RevokeToken(RevokedToken),
    /// Disable a service account: none of its tokens authenticates.
    Disable {
        /// The account's username.
        username: String,
    },
    /// Enable a disabled service account again.
    Enable {
        /// The account's username.
        username: String,
    },
    /// Bind a service account to an application: it may then get tokens
    /// there, with at most these scopes (and the application's). Binding
    /// again replaces the scopes.
    Bind {
        /// The account's username.
        username: String,
        /// The application's `client_id` (one of the configuration's).
        client_id: String,
        /// A scope the account may get there; repeat for several [default:
        /// none].
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// Remove a service account's binding to an application: its next token
    /// request there is refused.
    Unbind {
        /// The account's username.
        username: String,
        /// The application's `client_id`.
        client_id: String,
    },
}

/// The token to revoke.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct RevokedToken {
    /// The token itself (`-`: read it from stdin, which keeps it out of the
    /// shell history).
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// Its SHA-256, 64 hex digits (`printf %s TOKEN | sha256sum`).
    #[arg(long, value_name = "HEX")]
    pub(crate) sha256: Option<String>,
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default`), so that stdout
/// carries only the demo instructions, a new token or the list of accounts.
pub(crate) fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// A duration like `30d`, `12h`, `90m` or `3600s` (jiff's friendly format,
/// a day being 24 hours).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let usage = || {
        format!("{text:?}: expected a number and a unit (d, h, m or s), e.g. 30d, 12h, 90m, 3600s")
    };
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(usage());
    }
    let span: jiff::Span = text.parse().map_err(|_| usage())?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| format!("{text:?} is too long"))?;
    if duration.is_zero() {
        return Err(format!(
            "{text:?}: a token that expires at once is of no use"
        ));
    }
    Duration::try_from(duration).map_err(|_| usage())
}
