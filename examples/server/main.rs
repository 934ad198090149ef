//! A machine-to-machine OAuth2 token server: [`TokenEndpointLayer`] in front
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
//! With a configuration file, service accounts, app-password digests, the
//! replay cache of single-use input JWTs and the revocation list live in the
//! store of its `[store]` table: an SQLite file (feature `sqlite`, the
//! default), PostgreSQL (feature `postgres`) or memory. The service accounts
//! of the file are imported into it at every start; an account or token that
//! is in the store already is left as it is there.
//!
//! Applications may also trust input JWTs (JWT authentication, e.g. a CI
//! platform's OIDC tokens): verification certificates, JWKS files, JWKS URLs,
//! CEL policies and federation, as the sample file shows. A policy is never
//! ignored: without the `cel` feature, a configuration that has one is
//! refused at start.
//!
//! Failed authentication attempts are limited per `client_id` and per peer
//! address, in memory or (feature `redis`) in a Redis shared by every
//! instance; the `[attempt_limits]` table sizes the limit or turns it off.
//!
//! Secrets never reach the log: the configuration types do not implement
//! `Debug`, and the library keeps only digests of tokens and secrets.

use std::collections::HashSet;
use std::error::Error;
use std::fmt;
use std::fs;
use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::{Parser, Subcommand};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_m2m_auth::issuer::{
    Application, AttemptLimits, StoreVerifier, SubjectMode, TokenEndpointLayer,
};
#[cfg(feature = "reqwest")]
use tower_m2m_auth::keys::ReqwestFetcher;
use tower_m2m_auth::keys::{
    DiscoveredJwks, JwksFetcher, KeyRing, KeySet, RemoteJwks, SigningKey, TrustedIssuer,
    VerificationKey, VerificationKeys,
};
#[cfg(feature = "postgres")]
use tower_m2m_auth::store::PgStore;
#[cfg(feature = "redis")]
use tower_m2m_auth::store::RedisStore;
#[cfg(feature = "sqlite")]
use tower_m2m_auth::store::SqliteStore;
use tower_m2m_auth::store::{
    AccountAdmin, AccountCredential, AdminError, AppPassword, Binding, CredentialStore,
    ExternalAccount, FailureLimit, MemoryAttemptLimiter, MemoryReplayCache, MemoryRevocationList,
    MemoryStore, ReplayCache, RevocationList, ServiceAccount, StoreError, TokenDigest,
};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

#[path = "../support/connections.rs"]
mod connections;
// `[metrics]` (Prometheus); its tests run the whole server.
#[path = "observability.rs"]
mod observability;

/// The embedded demo configuration: the documented sample file itself.
const DEMO_CONFIG: &str = include_str!("../server.toml");

/// Where the server listens unless told otherwise.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9000));

/// The token endpoint path (the layer's default, authentik's).
const TOKEN_PATH: &str = "/application/o/token/";

/// Namespace of the name-based UUIDs given to configured service accounts,
/// so that their `sub` stays the same across restarts.
const ACCOUNT_NAMESPACE: Uuid = Uuid::from_u128(0x5b1c_0a52_8f3e_4c4e_9d47_2f6a_86c1_e0d3);

/// A startup error, shown to the operator before a non-zero exit.
type BoxError = Box<dyn Error + Send + Sync>;

/// The endpoint layer as this server configures it: accounts, replay cache
/// and revocation list all in the configured store.
type Endpoint = TokenEndpointLayer<StoreVerifier<Store, Store>>;

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
    init_tracing(if serving { "info" } else { "warn" });
    let result = match (args.command, args.serve.listen) {
        (None, _) => run(args.config, args.serve).await,
        (Some(Command::Serve(serve)), None) => run(args.config, serve).await,
        (Some(_), Some(_)) => Err("--listen goes after `serve`, and only there".into()),
        (Some(command), None) => admin(args.config, command).await,
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
    let config = Config::parse(&source)?;
    let listen = args.listen.or(config.listen).unwrap_or(DEFAULT_LISTEN);
    // The demo has no public URL of its own: its issuer is where it listens.
    let issuer = match source {
        Source::Embedded => format!("http://{listen}"),
        Source::File { .. } => config.issuer.clone(),
    };

    // Everything that can be checked is, before the store file or the key
    // file is created.
    let choice = StoreChoice::of(config.store.as_ref(), &source)?;
    let accounts = configured_accounts(&config.service_accounts, &config.applications)?;
    let attempt_limits = config.attempt_limits.check()?;
    let (connection_limits, body_timeout) = config.server.limits()?;
    let mut remotes = RemoteSources::default();
    let applications = build_applications(&config.applications, source.base_dir(), &mut remotes)?;
    let store = open_store(choice, &accounts).await?;
    let keys = load_keys(&config.keys, &source)?;
    let endpoint = build_endpoint(&config, &issuer, keys, applications, store)?;
    let endpoint = attempt_limits
        .apply(endpoint)
        .await?
        .body_timeout(body_timeout);
    for remote in remotes.into_sources() {
        tokio::spawn(prefetch_jwks(remote));
    }

    observability::start(config.metrics.as_ref()).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    tracing::info!(address = %listen, %issuer, "listening");
    if let Source::Embedded = source {
        print_demo_instructions(&issuer, &config);
    }

    let validator = api_validator(&endpoint, &config);
    serve(listener, endpoint, validator, connection_limits).await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Command line and logging
// ---------------------------------------------------------------------------

/// OAuth2 client-credentials token server (tower-m2m-auth example).
///
/// Without a subcommand, serves (as `serve` does).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (default: the embedded demo configuration,
    /// which is examples/server.toml, with an in-memory store).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    #[command(flatten)]
    serve: ServeArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on [default: the configuration's `listen`, else
    /// 127.0.0.1:9000].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

/// What to do. Every command but `serve` works on the store that the
/// configuration's `[store]` names, and needs `--config FILE`.
#[derive(Subcommand)]
enum Command {
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
struct RevokedToken {
    /// The token itself (`-`: read it from stdin, which keeps it out of the
    /// shell history).
    #[arg(long)]
    token: Option<String>,
    /// Its SHA-256, 64 hex digits (`printf %s TOKEN | sha256sum`).
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default`), so that stdout
/// carries only the demo instructions, a new token or the list of accounts.
fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

// ---------------------------------------------------------------------------
// Configuration schema
// ---------------------------------------------------------------------------

/// Where the configuration comes from.
enum Source {
    /// The embedded demo configuration.
    Embedded,
    /// A configuration file, and its text.
    File { path: PathBuf, text: String },
}

impl Source {
    /// Reads the configuration file, or picks the embedded demo without one.
    fn load(path: Option<PathBuf>) -> Result<Self, BoxError> {
        let Some(path) = path else {
            return Ok(Self::Embedded);
        };
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Self::File { path, text }),
            Err(error) => Err(format!("cannot read {}: {error}", path.display()).into()),
        }
    }

    fn text(&self) -> &str {
        match self {
            Self::Embedded => DEMO_CONFIG,
            Self::File { text, .. } => text,
        }
    }

    /// The directory that relative paths in the configuration start from.
    fn base_dir(&self) -> &Path {
        match self {
            Self::File { path, .. } => path.parent().unwrap_or(Path::new("")),
            Self::Embedded => Path::new(""),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("the embedded demo configuration"),
            Self::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// The configuration file. See `examples/server.toml` for each key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Base URL of the issuer, e.g. `https://auth.example.com`.
    issuer: String,
    /// Address to listen on (`--listen` overrides it).
    listen: Option<SocketAddr>,
    #[serde(default)]
    keys: KeysConfig,
    #[serde(default)]
    endpoint: EndpointConfig,
    #[serde(default)]
    applications: Vec<ApplicationConfig>,
    #[serde(default)]
    service_accounts: Vec<ServiceAccountConfig>,
    store: Option<StoreConfig>,
    #[serde(default)]
    attempt_limits: AttemptLimitsConfig,
    #[serde(default)]
    server: ServerConfig,
    /// `[metrics]`: Prometheus metrics on a listener of their own.
    metrics: Option<observability::MetricsConfig>,
}

/// `[server]`: limits on connections, against slow and idle clients.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ServerConfig {
    /// Seconds a request's headers may take to arrive (and an idle
    /// connection may wait for its next request).
    header_read_timeout_secs: u64,
    /// Seconds a token request's body may take to arrive.
    body_read_timeout_secs: u64,
    /// Connections open at once.
    max_connections: usize,
    /// Seconds a shutdown waits for the requests in flight.
    shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 10,
            max_connections: 4096,
            shutdown_grace_secs: 30,
        }
    }
}

impl ServerConfig {
    /// The limits, once each is checked to be at least 1.
    fn limits(&self) -> Result<(connections::ConnectionLimits, Duration), BoxError> {
        let positive = |key: &str, value: u64| {
            if value == 0 {
                Err(format!("[server] {key} must be at least 1"))
            } else {
                Ok(Duration::from_secs(value))
            }
        };
        let limits = connections::ConnectionLimits {
            header_read_timeout: positive(
                "header_read_timeout_secs",
                self.header_read_timeout_secs,
            )?,
            max_connections: self.max_connections,
            shutdown_grace: positive("shutdown_grace_secs", self.shutdown_grace_secs)?,
        };
        if self.max_connections == 0 {
            return Err("[server] max_connections must be at least 1".into());
        }
        let body = positive("body_read_timeout_secs", self.body_read_timeout_secs)?;
        Ok((limits, body))
    }
}

/// `[store]`: where service accounts, tokens, the replay cache and the
/// revocation list live. Exactly one key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreConfig {
    /// An SQLite file, relative to the configuration file (feature `sqlite`).
    sqlite: Option<PathBuf>,
    /// A PostgreSQL URL (feature `postgres`).
    postgres: Option<String>,
    /// `true`: in memory, lost at exit.
    memory: Option<bool>,
}

impl Config {
    fn parse(source: &Source) -> Result<Self, BoxError> {
        let config: Self = toml::from_str(source.text()).map_err(|error| {
            format!(
                "invalid configuration in {source}:\n{}",
                error.to_string().trim_end()
            )
        })?;
        if config.applications.is_empty() {
            return Err(format!("{source} defines no [[applications]]").into());
        }
        Ok(config)
    }
}

/// `[attempt_limits]`: the limit on failed authentication attempts, per
/// `client_id` and per peer address. On by default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AttemptLimitsConfig {
    /// `false` turns the limit off.
    enabled: bool,
    /// Failures per `client_id` within the window (0: no such limit).
    per_client_id: u32,
    /// Failures per peer address (IPv6: per /64) within the window (0: no
    /// such limit).
    per_address: u32,
    /// The window, opened by a key's first attempt.
    window_secs: u64,
    /// Addresses held at most by the in-memory limiter.
    max_addresses: usize,
    /// A Redis URL: count in Redis, shared by every instance (feature
    /// `redis`), instead of in memory.
    redis: Option<String>,
}

impl Default for AttemptLimitsConfig {
    fn default() -> Self {
        let limits = AttemptLimits::default();
        let max = |limit: Option<FailureLimit>| limit.map_or(0, |limit| limit.max_failures());
        Self {
            enabled: true,
            per_client_id: max(limits.client_limit()),
            per_address: max(limits.address_limit()),
            window_secs: limits
                .client_limit()
                .map_or(60, |limit| limit.window().as_secs()),
            max_addresses: MemoryAttemptLimiter::DEFAULT_CAPACITY,
            redis: None,
        }
    }
}

/// The checked `[attempt_limits]`: what [`AttemptLimitsConfig::apply`] sets up.
enum AttemptLimitsPlan {
    Off,
    Memory(AttemptLimits, usize),
    #[cfg(feature = "redis")]
    Redis(AttemptLimits, String),
}

impl AttemptLimitsConfig {
    fn check(&self) -> Result<AttemptLimitsPlan, BoxError> {
        if !self.enabled {
            return Ok(AttemptLimitsPlan::Off);
        }
        if self.window_secs == 0 {
            return Err("[attempt_limits] window_secs must be at least 1".into());
        }
        let window = Duration::from_secs(self.window_secs);
        let limit = |max: u32| (max > 0).then(|| FailureLimit::new(max, window));
        let limits = AttemptLimits::new()
            .with_client_limit(limit(self.per_client_id))
            .with_address_limit(limit(self.per_address));
        match &self.redis {
            None => Ok(AttemptLimitsPlan::Memory(limits, self.max_addresses)),
            #[cfg(feature = "redis")]
            Some(url) => Ok(AttemptLimitsPlan::Redis(limits, url.clone())),
            #[cfg(not(feature = "redis"))]
            Some(_) => Err(
                "[attempt_limits] redis needs the `redis` feature: run with \
                 `--features redis`, e.g. `cargo run --features sqlite,redis --example server \
                 -- --config FILE`"
                    .into(),
            ),
        }
    }
}

impl AttemptLimitsPlan {
    /// Puts the limiter on `endpoint`, keyed by `client_id` and by the peer
    /// address (axum's `ConnectInfo`, which [`serve`] provides).
    async fn apply(self, endpoint: Endpoint) -> Result<Endpoint, BoxError> {
        let describe = |limits: &AttemptLimits, place: &str| {
            let show = |limit: Option<FailureLimit>| {
                limit.map_or_else(|| "none".to_owned(), |l| l.max_failures().to_string())
            };
            tracing::info!(
                per_client_id = show(limits.client_limit()),
                per_address = show(limits.address_limit()),
                window_secs = limits
                    .client_limit()
                    .or(limits.address_limit())
                    .map(|l| l.window().as_secs()),
                counted_in = place,
                "failed attempts limited"
            );
        };
        let endpoint = match self {
            Self::Off => {
                tracing::warn!(
                    "[attempt_limits] enabled = false: failed authentication attempts are not \
                     limited, so credentials can be guessed as fast as the server answers"
                );
                return Ok(endpoint);
            }
            Self::Memory(limits, capacity) => {
                describe(&limits, "memory");
                endpoint.attempt_limiter(MemoryAttemptLimiter::with_capacity(capacity), limits)
            }
            #[cfg(feature = "redis")]
            Self::Redis(limits, url) => {
                let redis = RedisStore::connect(&url)
                    .await
                    // The URL may hold a password: name the table, not the URL.
                    .map_err(|error| format!("[attempt_limits] redis: {error}"))?;
                describe(&limits, "redis");
                endpoint.attempt_limiter(redis, limits)
            }
        };
        Ok(endpoint.client_address(|parts| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
        }))
    }
}

/// `[keys]`: key files, or the settings of a generated key.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysConfig {
    /// PEM private keys: the first signs, the others are only published.
    #[serde(default)]
    files: Vec<PathBuf>,
    /// Algorithm of the generated key (default ES256).
    algorithm: Option<KeyAlgorithm>,
    /// Where the generated key is kept (default `<config stem>.keys.pem`).
    generated_key_file: Option<PathBuf>,
}

/// The algorithms a generated key may use (asymmetric only: the JWKS must
/// be publishable).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
enum KeyAlgorithm {
    #[default]
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "ES384")]
    Es384,
    EdDSA,
    #[serde(rename = "RS256")]
    Rs256,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Algorithm::from(*self))
    }
}

impl From<KeyAlgorithm> for Algorithm {
    fn from(algorithm: KeyAlgorithm) -> Self {
        match algorithm {
            KeyAlgorithm::Es256 => Algorithm::ES256,
            KeyAlgorithm::Es384 => Algorithm::ES384,
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            KeyAlgorithm::Rs256 => Algorithm::RS256,
        }
    }
}

/// `[endpoint]`: options of the token endpoint, each defaulting to the
/// layer's default.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointConfig {
    id_token: Option<bool>,
    at_jwt_typ: Option<bool>,
    body_limit: Option<usize>,
    subject_salt: Option<String>,
}

/// One `[[applications]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplicationConfig {
    client_id: String,
    slug: String,
    name: Option<String>,
    client_secret: Option<String>,
    client_secret_sha256: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "default_token_lifetime")]
    token_lifetime_secs: u64,
    #[serde(default)]
    subject_mode: SubjectModeName,

    // JWT authentication: the input JWTs (client assertions) it trusts.
    /// The issuers it trusts, each with the keys that speak for it.
    #[serde(default)]
    trusted_issuers: Vec<TrustedIssuerConfig>,
    /// Former unscoped key sources: an error that says what to write.
    verification_certificates: Option<Vec<String>>,
    /// Former unscoped key sources: an error that says what to write.
    jwks_files: Option<Vec<String>>,
    /// Former unscoped key sources: an error that says what to write.
    jwks_urls: Option<Vec<String>>,
    /// CEL expressions that every input JWT must satisfy (feature `cel`).
    #[serde(default)]
    policies: Vec<String>,
    /// Accepted `aud` values (none: `aud` is not checked).
    #[serde(default)]
    assertion_audiences: Vec<String>,
    /// Accept each input JWT once (by `jti`).
    #[serde(default)]
    single_use_assertions: bool,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default)]
    assertion_leeway_secs: u64,
    /// `client_id`s of applications whose access tokens this one accepts.
    #[serde(default)]
    federated_applications: Vec<String>,
    /// Every service account may get tokens here (authentik without
    /// bindings); by default only accounts bound to the application.
    #[serde(default)]
    allow_any_account: bool,
    /// The longest an input JWT may be valid for (default 3600).
    max_assertion_lifetime_secs: Option<u64>,
    /// Accept every token a remote JWKS signs, with no policy or audience
    /// to pin this application's own.
    #[serde(default)]
    danger_accept_unpinned_jwks: bool,
}

fn default_token_lifetime() -> u64 {
    3600
}

/// One `[[applications.trusted_issuers]]` entry: an issuer (the exact `iss`
/// of its JWTs) and the key sources that speak for it, at least one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedIssuerConfig {
    issuer: String,
    /// Find the JWKS by OpenID discovery from the issuer URL.
    #[serde(default)]
    discovery: bool,
    /// A JWKS URL, fetched and cached (https, or http to loopback only).
    jwks_url: Option<String>,
    /// PEM files of `CERTIFICATE` or `PUBLIC KEY` blocks.
    #[serde(default)]
    certificates: Vec<PathBuf>,
    /// JSON Web Key Set files.
    #[serde(default)]
    jwks_files: Vec<PathBuf>,
}

/// The `subject_mode` values.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SubjectModeName {
    #[default]
    HashedId,
    Username,
    Uuid,
    Id,
}

impl From<SubjectModeName> for SubjectMode {
    fn from(mode: SubjectModeName) -> Self {
        match mode {
            SubjectModeName::HashedId => SubjectMode::HashedId,
            SubjectModeName::Username => SubjectMode::Username,
            SubjectModeName::Uuid => SubjectMode::Uuid,
            SubjectModeName::Id => SubjectMode::Id,
        }
    }
}

/// One `[[service_accounts]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceAccountConfig {
    username: String,
    name: Option<String>,
    #[serde(default = "default_active")]
    active: bool,
    #[serde(default)]
    tokens: Vec<TokenConfig>,
    #[serde(default)]
    bindings: Vec<BindingConfig>,
}

fn default_active() -> bool {
    true
}

/// One binding of a configured service account: the application where it
/// may get tokens, and the scopes it may get there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingConfig {
    client_id: String,
    #[serde(default)]
    scopes: Vec<String>,
}

/// One app-password token of a service account: the token or its digest,
/// and an optional expiry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenConfig {
    token: Option<String>,
    sha256: Option<String>,
    expires: Option<toml::value::Datetime>,
    expires_unix: Option<u64>,
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// The key ring: the configured key files, or a generated key.
fn load_keys(config: &KeysConfig, source: &Source) -> Result<KeyRing, BoxError> {
    if !config.files.is_empty() {
        if config.algorithm.is_some() || config.generated_key_file.is_some() {
            return Err(
                "[keys]: `files` excludes `algorithm` and `generated_key_file`, \
                        which describe a generated key"
                    .into(),
            );
        }
        return load_key_files(&config.files, source.base_dir());
    }
    let algorithm = config.algorithm.unwrap_or_default();
    let key = match source {
        Source::Embedded => {
            let key = generate_key(algorithm)?;
            tracing::warn!(
                %algorithm,
                kid = key.kid(),
                "generated an in-memory signing key for the demo: \
                 its tokens do not verify after a restart"
            );
            key
        }
        Source::File { path, .. } => {
            let key_file = match &config.generated_key_file {
                Some(file) => source.base_dir().join(file),
                None => default_key_file(path),
            };
            load_or_generate_key(&key_file, algorithm)?
        }
    };
    Ok(KeyRing::new(key))
}

/// Reads every key file: the first is active, the others only published.
fn load_key_files(files: &[PathBuf], base_dir: &Path) -> Result<KeyRing, BoxError> {
    let mut kids = HashSet::new();
    let mut ring: Option<KeyRing> = None;
    for file in files {
        let path = base_dir.join(file);
        let key = read_key(&path)?;
        if !kids.insert(key.kid().to_owned()) {
            return Err(format!("[keys]: {} repeats a key listed before", path.display()).into());
        }
        let role = if ring.is_none() {
            "active"
        } else {
            "published"
        };
        tracing::info!(
            algorithm = ?key.algorithm(),
            kid = key.kid(),
            path = %path.display(),
            "{role} signing key"
        );
        ring = Some(match ring {
            None => KeyRing::new(key),
            Some(ring) => ring.with_published(key),
        });
    }
    ring.ok_or_else(|| "[keys]: `files` is empty".into())
}

/// `<config dir>/<config stem>.keys.pem`.
fn default_key_file(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map_or_else(|| "server".into(), |stem| stem.to_string_lossy());
    config_path.with_file_name(format!("{stem}.keys.pem"))
}

fn read_key(path: &Path) -> Result<SigningKey, BoxError> {
    let pem = fs::read(path)
        .map_err(|error| format!("cannot read key file {}: {error}", path.display()))?;
    SigningKey::from_pem(&pem)
        .map_err(|error| format!("key file {}: {error}", path.display()).into())
}

fn generate_key(algorithm: KeyAlgorithm) -> Result<SigningKey, BoxError> {
    SigningKey::generate(algorithm.into())
        .map_err(|error| format!("cannot generate a {algorithm} key: {error}").into())
}

/// Reads the generated key kept at `path`, or generates and saves one.
fn load_or_generate_key(path: &Path, algorithm: KeyAlgorithm) -> Result<SigningKey, BoxError> {
    match fs::read(path) {
        Ok(pem) => read_generated_key(path, &pem, algorithm),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            generate_and_save_key(path, algorithm)
        }
        Err(error) => Err(format!("cannot read key file {}: {error}", path.display()).into()),
    }
}

/// Parses the kept key, which must still match the configured algorithm.
fn read_generated_key(
    path: &Path,
    pem: &[u8],
    algorithm: KeyAlgorithm,
) -> Result<SigningKey, BoxError> {
    let key = SigningKey::from_pem(pem)
        .map_err(|error| format!("key file {}: {error}", path.display()))?;
    if key.algorithm() != Algorithm::from(algorithm) {
        return Err(format!(
            "{} holds a key for {:?}, but [keys] algorithm is {algorithm}: \
             set the algorithm back, or delete the file to generate a new key",
            path.display(),
            key.algorithm(),
        )
        .into());
    }
    tracing::info!(
        %algorithm,
        kid = key.kid(),
        path = %path.display(),
        "loaded the generated signing key"
    );
    Ok(key)
}

fn generate_and_save_key(path: &Path, algorithm: KeyAlgorithm) -> Result<SigningKey, BoxError> {
    let key = generate_key(algorithm)?;
    let pem = key
        .to_pkcs8_pem()
        .ok_or("the generated key has no PKCS#8 form to save")?;
    write_private_file(path, &pem).map_err(|error| {
        format!(
            "cannot save the generated key to {}: {error}",
            path.display()
        )
    })?;
    tracing::info!(
        %algorithm,
        kid = key.kid(),
        path = %path.display(),
        "generated a signing key and saved it"
    );
    Ok(key)
}

/// Creates `path`, which must not exist yet, readable by its owner only. A
/// file left half-written is removed.
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all());
    if written.is_err() {
        drop(file);
        let _ = fs::remove_file(path);
    }
    written
}

// ---------------------------------------------------------------------------
// Endpoint, applications and service accounts
// ---------------------------------------------------------------------------

/// The token endpoint layer, with every application, over `store` (its
/// service accounts, replay cache and revocation list).
fn build_endpoint(
    config: &Config,
    issuer: &str,
    keys: KeyRing,
    applications: Vec<Application>,
    store: Store,
) -> Result<Endpoint, BoxError> {
    let endpoint = TokenEndpointLayer::new(issuer, keys, store.clone())
        .map_err(|error| format!("issuer {issuer:?}: {error}"))?
        .replay_cache(store.clone())
        .revocation_list(store);
    let client_ids: Vec<String> = applications
        .iter()
        .map(|app| app.client_id().to_owned())
        .collect();
    let endpoint = apply_options(endpoint, &config.endpoint)?
        .applications(applications)
        .map_err(|error| format!("[[applications]]: {error}"))?;
    for client_id in client_ids {
        // Its issuer URL is known once it belongs to the endpoint.
        if let Some(application) = endpoint.get_application(&client_id) {
            tracing::info!(
                client_id,
                issuer = application.issuer(),
                scopes = ?application.allowed_scopes(),
                any_account = application.allows_any_account(),
                "application"
            );
        }
    }
    Ok(endpoint)
}

/// Applies the `[endpoint]` options that are set.
fn apply_options(mut endpoint: Endpoint, options: &EndpointConfig) -> Result<Endpoint, BoxError> {
    if let Some(enabled) = options.id_token {
        endpoint = endpoint.id_token(enabled);
    }
    if let Some(enabled) = options.at_jwt_typ {
        endpoint = endpoint.at_jwt_typ(enabled);
    }
    if let Some(bytes) = options.body_limit {
        if bytes == 0 {
            return Err("[endpoint] body_limit must be at least 1 byte".into());
        }
        endpoint = endpoint.body_limit(bytes);
    }
    if let Some(salt) = &options.subject_salt {
        endpoint = endpoint.subject_salt(salt.as_str());
    }
    Ok(endpoint)
}

/// Every application, checking that client ids and slugs are unique.
fn build_applications(
    configs: &[ApplicationConfig],
    base_dir: &Path,
    remotes: &mut RemoteSources,
) -> Result<Vec<Application>, BoxError> {
    let context = |index: usize, error| {
        format!(
            "[[applications]] #{} ({:?}): {error}",
            index + 1,
            configs[index].client_id
        )
    };
    // Unique client ids and slugs, and federations, are checked by the
    // endpoint once all are in.
    let mut applications = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        let application = config
            .build(base_dir, remotes)
            .map_err(|error| context(index, error))?;
        applications.push(application);
    }
    Ok(applications)
}

impl ApplicationConfig {
    /// The application, once its settings are checked. Relative key file
    /// paths start at `base_dir`.
    fn build(&self, base_dir: &Path, remotes: &mut RemoteSources) -> Result<Application, String> {
        if self.client_id.is_empty() {
            return Err("client_id is empty".into());
        }
        check_slug(&self.slug)?;
        for scope in &self.scopes {
            check_scope(scope)?;
        }
        if self.token_lifetime_secs == 0 {
            return Err("token_lifetime_secs must be at least 1".into());
        }
        let mut application = Application::new(&self.client_id, &self.slug)
            .with_allowed_scopes(&self.scopes)
            .with_token_lifetime(Duration::from_secs(self.token_lifetime_secs))
            .with_subject_mode(self.subject_mode.into());
        if let Some(name) = &self.name {
            application = application.with_name(name);
        }
        if self.allow_any_account {
            application = application.danger_allow_any_account();
        }
        if self.danger_accept_unpinned_jwks {
            application = application.danger_accept_unpinned_jwks();
        }
        if let Some(secs) = self.max_assertion_lifetime_secs {
            if secs == 0 {
                return Err("max_assertion_lifetime_secs must be at least 1".into());
            }
            application = application.with_max_assertion_lifetime(Duration::from_secs(secs));
        }
        let application = self.with_secret(application)?;
        self.with_input_jwts(application, base_dir, remotes)
    }

    /// Adds the application's own client secret, if it has one.
    fn with_secret(&self, application: Application) -> Result<Application, String> {
        match (&self.client_secret, &self.client_secret_sha256) {
            (Some(_), Some(_)) => {
                Err("give client_secret or client_secret_sha256, not both".into())
            }
            (Some(secret), None) if secret.is_empty() => Err("client_secret is empty".into()),
            (Some(secret), None) => Ok(application.with_client_secret(secret)),
            (None, Some(hex)) => {
                let digest = parse_digest("client_secret_sha256", hex)?;
                Ok(application.with_client_secret_digest(digest))
            }
            (None, None) => Ok(application),
        }
    }
}

/// Slugs become URL path segments: letters, digits, `-`, `_` and `.`.
fn check_slug(slug: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if slug.is_empty() || slug.starts_with('.') || !slug.chars().all(valid) {
        return Err(format!(
            "slug {slug:?} must be letters, digits, '-', '_' or '.' (and not start with '.')"
        ));
    }
    Ok(())
}

/// A scope token of RFC 6749 §3.3: printable ASCII without space, `"` or `\`.
fn check_scope(scope: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_graphic() && c != '"' && c != '\\';
    if scope.is_empty() || !scope.chars().all(valid) {
        return Err(format!(
            "scope {scope:?} must be printable ASCII without spaces, quotes or backslashes"
        ));
    }
    Ok(())
}

/// A service account of the configuration, with its tokens and bindings.
struct ConfiguredAccount {
    account: ServiceAccount,
    passwords: Vec<AppPassword>,
    bindings: Vec<Binding>,
}

/// The service accounts of the configuration, checked: unique usernames
/// outside the reserved namespaces, no token configured twice, and bindings
/// to configured applications only.
fn configured_accounts(
    configs: &[ServiceAccountConfig],
    applications: &[ApplicationConfig],
) -> Result<Vec<ConfiguredAccount>, BoxError> {
    let mut accounts = Vec::with_capacity(configs.len());
    let mut usernames = HashSet::new();
    let mut digests = HashSet::new();
    for config in configs {
        let context = |error| format!("[[service_accounts]] {:?}: {error}", config.username);
        if config.username.is_empty() {
            return Err("[[service_accounts]]: username is empty".into());
        }
        if !usernames.insert(config.username.as_str()) {
            return Err(context("username is used twice".into()).into());
        }
        let account = config.account();
        account
            .check()
            .map_err(|error| context(error.to_string()))?;
        let mut passwords = Vec::with_capacity(config.tokens.len());
        for (index, token) in config.tokens.iter().enumerate() {
            let context = |error| context(format!("token #{}: {error}", index + 1));
            let password = token.app_password(&account.id).map_err(context)?;
            // The store keys tokens by digest: a repeated token would
            // silently move to the later account.
            if !digests.insert(*password.digest.as_bytes()) {
                return Err(context("this token is configured twice".into()).into());
            }
            if password
                .expires
                .is_some_and(|expires| expires <= SystemTime::now())
            {
                tracing::warn!(
                    username = %config.username,
                    token = index + 1,
                    "app-password token has expired"
                );
            }
            passwords.push(password);
        }
        let mut bindings: Vec<Binding> = Vec::with_capacity(config.bindings.len());
        for binding in &config.bindings {
            let context = |error| context(format!("binding {:?}: {error}", binding.client_id));
            if bindings.iter().any(|b| b.client_id == binding.client_id) {
                return Err(context("this application is bound twice".into()).into());
            }
            let binding = Binding::new(&binding.client_id, binding.scopes.iter().cloned());
            binding
                .check()
                .map_err(|error| context(error.to_string()))?;
            check_bound_application(applications, &binding).map_err(context)?;
            bindings.push(binding);
        }
        accounts.push(ConfiguredAccount {
            account,
            passwords,
            bindings,
        });
    }
    Ok(accounts)
}

/// A binding names a configured application (a typo would bind nothing);
/// scopes the application does not allow are never granted: a warning.
fn check_bound_application(
    applications: &[ApplicationConfig],
    binding: &Binding,
) -> Result<(), String> {
    let Some(application) = applications
        .iter()
        .find(|application| application.client_id == binding.client_id)
    else {
        let known: Vec<&str> = applications.iter().map(|a| a.client_id.as_str()).collect();
        return Err(format!(
            "no [[applications]] has client_id {:?} (configured: {})",
            binding.client_id,
            known.join(", ")
        ));
    };
    let unknown: Vec<&str> = binding
        .scopes
        .iter()
        .filter(|scope| !application.scopes.contains(scope))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        tracing::warn!(
            client_id = binding.client_id,
            scopes = unknown.join(" "),
            "bound scopes that the application does not allow are never granted"
        );
    }
    Ok(())
}

impl ServiceAccountConfig {
    /// The account, with an id and UUID derived from its username so that
    /// hashed subjects survive restarts.
    fn account(&self) -> ServiceAccount {
        let uuid = Uuid::new_v5(&ACCOUNT_NAMESPACE, self.username.as_bytes());
        ServiceAccount::new(&self.username)
            .with_uuid(uuid)
            .with_id(uuid.to_string())
            .with_name(self.name.as_deref().unwrap_or(&self.username))
            .with_active(self.active)
    }
}

impl TokenConfig {
    /// The stored form of this token, for the account `account_id`.
    fn app_password(&self, account_id: &str) -> Result<AppPassword, String> {
        let digest = match (&self.token, &self.sha256) {
            (Some(_), Some(_)) => return Err("give token or sha256, not both".into()),
            (None, None) => return Err("give token or sha256".into()),
            (Some(token), None) if token.is_empty() => return Err("token is empty".into()),
            (Some(token), None) => TokenDigest::of(token),
            (None, Some(hex)) => parse_digest("sha256", hex)?,
        };
        let password = AppPassword::new(account_id, digest);
        Ok(match self.expiry()? {
            Some(expires) => password.with_expires(expires),
            None => password,
        })
    }

    fn expiry(&self) -> Result<Option<SystemTime>, String> {
        match (&self.expires, self.expires_unix) {
            (Some(_), Some(_)) => Err("give expires or expires_unix, not both".into()),
            (Some(datetime), None) => datetime_to_system_time(datetime).map(Some),
            (None, Some(seconds)) => Ok(Some(UNIX_EPOCH + Duration::from_secs(seconds))),
            (None, None) => Ok(None),
        }
    }
}

fn parse_digest(key: &str, hex: &str) -> Result<TokenDigest, String> {
    TokenDigest::from_hex(hex).ok_or_else(|| format!("{key} must be 64 hex digits (a SHA-256)"))
}

/// A TOML offset date-time (RFC 3339, e.g. `2030-01-01T00:00:00Z`) as a
/// `SystemTime`.
fn datetime_to_system_time(datetime: &toml::value::Datetime) -> Result<SystemTime, String> {
    use toml::value::Offset;

    let (Some(date), Some(time), Some(offset)) = (datetime.date, datetime.time, datetime.offset)
    else {
        return Err(format!(
            "expires = {datetime} needs a date, a time and an offset, e.g. 2030-01-01T00:00:00Z"
        ));
    };
    let offset_minutes = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(date.year.into(), date.month.into(), date.day.into());
    let seconds = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    let seconds =
        u64::try_from(seconds).map_err(|_| format!("expires = {datetime} is before 1970"))?;
    Ok(UNIX_EPOCH + Duration::new(seconds, time.nanosecond))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

// ---------------------------------------------------------------------------
// JWT authentication: the input JWTs an application trusts
// ---------------------------------------------------------------------------

/// The largest `assertion_leeway_secs`. Leeway lengthens the life of every
/// input JWT: it is for clock skew, not for accepting expired tokens.
const MAX_ASSERTION_LEEWAY_SECS: u64 = 300;

impl ApplicationConfig {
    /// Whether the application accepts input JWTs from some issuer.
    fn trusts_input_jwts(&self) -> bool {
        !(self.trusted_issuers.is_empty() && self.federated_applications.is_empty())
    }

    /// The keys of the trusted issuers, each bound to its issuer, and how
    /// many static keys they hold.
    fn verification_keys(
        &self,
        base_dir: &Path,
        remotes: &mut RemoteSources,
    ) -> Result<(VerificationKeys, usize), String> {
        self.refuse_unscoped_keys()?;
        let mut keys = VerificationKeys::new();
        let mut static_keys = 0;
        let mut seen = HashSet::new();
        for config in &self.trusted_issuers {
            let iss = &config.issuer;
            let context = |error: String| format!("trusted_issuers {iss:?}: {error}");
            if iss.is_empty() {
                return Err(
                    "trusted_issuers: issuer is empty (it is the exact `iss` of the \
                     JWTs its keys sign)"
                        .into(),
                );
            }
            if !seen.insert(iss.as_str()) {
                return Err(context(
                    "listed twice: put all its key sources in one table".into(),
                ));
            }
            if !config.discovery
                && config.jwks_url.is_none()
                && config.certificates.is_empty()
                && config.jwks_files.is_empty()
            {
                return Err(context(
                    "no key source: set discovery = true, jwks_url, certificates or jwks_files"
                        .into(),
                ));
            }
            let mut issuer = if config.discovery {
                TrustedIssuer::discovered(remotes.discover(iss).map_err(context)?)
            } else {
                TrustedIssuer::new(iss)
            };
            for file in &config.certificates {
                for key in read_verification_keys(&base_dir.join(file)).map_err(context)? {
                    issuer = issuer.with_key(key);
                    static_keys += 1;
                }
            }
            for file in &config.jwks_files {
                let (jwks, usable) = read_jwks_file(&base_dir.join(file)).map_err(context)?;
                issuer = issuer.with_jwks(&jwks);
                static_keys += usable;
            }
            if let Some(url) = &config.jwks_url {
                issuer = issuer.with_remote(remotes.get(url).map_err(context)?);
            }
            keys = keys.with_issuer(issuer);
        }
        Ok((keys, static_keys))
    }

    /// The former flat key sources trusted their keys for any `iss`: refuse
    /// them, showing the table that replaces them.
    fn refuse_unscoped_keys(&self) -> Result<(), String> {
        let quoted = |values: &[String]| {
            let values: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
            values.join(", ")
        };
        let old = [
            (
                "verification_certificates",
                &self.verification_certificates,
                "certificates",
            ),
            ("jwks_files", &self.jwks_files, "jwks_files"),
        ];
        for (key, values, new_key) in old {
            if let Some(values) = values {
                return Err(format!(
                    "`{key}` is no longer supported: each key source now names the issuer it \
                     speaks for, and verifies only JWTs whose `iss` is that issuer. Write\n\n\
                     [[applications.trusted_issuers]]\n\
                     issuer = \"<the exact iss of the JWTs these keys sign>\"\n\
                     {new_key} = [{}]\n",
                    quoted(values)
                ));
            }
        }
        if let Some(urls) = &self.jwks_urls {
            let url = urls.first().map(String::as_str).unwrap_or("https://...");
            return Err(format!(
                "`jwks_urls` is no longer supported: each key source now names the issuer it \
                 speaks for, and verifies only JWTs whose `iss` is that issuer. Write, for \
                 each URL,\n\n\
                 [[applications.trusted_issuers]]\n\
                 issuer = \"<the exact iss of the JWTs this JWKS signs>\"\n\
                 jwks_url = {url:?}\n\n\
                 or, for an issuer that publishes OpenID discovery metadata,\n\n\
                 [[applications.trusted_issuers]]\n\
                 issuer = \"<its issuer URL>\"\n\
                 discovery = true\n"
            ));
        }
        Ok(())
    }

    /// Adds the trusted keys and the rules of JWT authentication.
    fn with_input_jwts(
        &self,
        application: Application,
        base_dir: &Path,
        remotes: &mut RemoteSources,
    ) -> Result<Application, String> {
        if !self.trusts_input_jwts() {
            // Rules with no key to apply to would go silently unused.
            let rules = [
                ("policies", !self.policies.is_empty()),
                ("assertion_audiences", !self.assertion_audiences.is_empty()),
                ("single_use_assertions", self.single_use_assertions),
                ("assertion_leeway_secs", self.assertion_leeway_secs != 0),
                (
                    "max_assertion_lifetime_secs",
                    self.max_assertion_lifetime_secs.is_some(),
                ),
                (
                    "danger_accept_unpinned_jwks",
                    self.danger_accept_unpinned_jwks,
                ),
            ];
            if let Some((key, _)) = rules.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{key} is set, but the application trusts no input JWT: add \
                     [[applications.trusted_issuers]] or federated_applications"
                ));
            }
            self.refuse_unscoped_keys()?;
            return Ok(application);
        }

        let (keys, static_keys) = self.verification_keys(base_dir, remotes)?;
        let issuers: Vec<String> = keys.issuers().map(|i| i.iss().to_owned()).collect();
        let has_keys = !keys.is_empty();
        let mut application =
            with_policies(application.with_verification_keys(keys), &self.policies)?;

        if let Some(empty) = self.assertion_audiences.iter().find(|aud| aud.is_empty()) {
            return Err(format!("assertion_audiences: {empty:?} is empty"));
        }
        if !self.assertion_audiences.is_empty() {
            application = application.with_assertion_audiences(&self.assertion_audiences);
        }
        if self.assertion_leeway_secs > MAX_ASSERTION_LEEWAY_SECS {
            return Err(format!(
                "assertion_leeway_secs = {} is more than {MAX_ASSERTION_LEEWAY_SECS}: \
                 leeway is for clock skew, and lengthens the life of every input JWT",
                self.assertion_leeway_secs
            ));
        }
        application = application
            .with_assertion_leeway(Duration::from_secs(self.assertion_leeway_secs))
            .with_single_use_assertions(self.single_use_assertions);
        for client_id in &self.federated_applications {
            application = application.with_federated_application(client_id);
        }

        tracing::info!(
            client_id = self.client_id,
            static_keys,
            issuers = ?issuers,
            policies = self.policies.len(),
            audiences = ?self.assertion_audiences,
            single_use = self.single_use_assertions,
            leeway_secs = self.assertion_leeway_secs,
            federated = ?self.federated_applications,
            "application trusts input JWTs"
        );
        if has_keys && self.policies.is_empty() && self.assertion_audiences.is_empty() {
            tracing::warn!(
                client_id = self.client_id,
                "every JWT signed by the trusted keys is accepted: when they sign for others \
                 too (a CI platform signs for every repository), add `policies` that pin \
                 yours, e.g. claims.repository"
            );
        }
        Ok(application)
    }
}

/// The keys of a PEM file of one or more `CERTIFICATE` or `PUBLIC KEY`
/// blocks. Only a certificate's public key is used: its dates and issuer are
/// not checked, it is trusted because it is configured.
fn read_verification_keys(path: &Path) -> Result<Vec<VerificationKey>, String> {
    let text = fs::read(path).map_err(|error| {
        format!(
            "cannot read verification certificate {}: {error}",
            path.display()
        )
    })?;
    let blocks = pem::parse_many(&text)
        .map_err(|error| format!("{}: invalid PEM: {error}", path.display()))?;
    if blocks.is_empty() {
        return Err(format!(
            "{}: no PEM block (expected CERTIFICATE or PUBLIC KEY)",
            path.display()
        ));
    }
    let mut keys = Vec::with_capacity(blocks.len());
    for (index, block) in blocks.iter().enumerate() {
        let what = format!("{} (PEM block #{})", path.display(), index + 1);
        match block.tag() {
            "CERTIFICATE" | "PUBLIC KEY" => {}
            tag if tag.ends_with("PRIVATE KEY") => {
                return Err(format!(
                    "{what} is a private key: configure the issuer's certificate or public \
                     key, never its private key"
                ));
            }
            "RSA PUBLIC KEY" => {
                return Err(format!(
                    "{what} is a PKCS#1 RSA PUBLIC KEY: convert it to a PUBLIC KEY with \
                     `openssl rsa -RSAPublicKey_in -pubout`"
                ));
            }
            tag => {
                return Err(format!(
                    "{what} is a {tag:?} block: expected CERTIFICATE or PUBLIC KEY"
                ));
            }
        }
        let key = VerificationKey::from_pem(pem::encode(block).as_bytes()).map_err(|_| {
            format!(
                "{what}: unsupported or malformed {} (supported: RSA, EC P-256 or P-384, Ed25519)",
                block.tag().to_lowercase()
            )
        })?;
        tracing::debug!(path = %path.display(), algorithms = ?key.algorithms(), "verification key");
        keys.push(key);
    }
    Ok(keys)
}

/// A JWKS file, and how many of its keys can verify signatures.
fn read_jwks_file(path: &Path) -> Result<(JwkSet, usize), String> {
    let text = fs::read(path)
        .map_err(|error| format!("cannot read JWKS file {}: {error}", path.display()))?;
    let jwks: JwkSet = serde_json::from_slice(&text).map_err(|error| {
        format!(
            "{} is not a JWK set ({{\"keys\": [...]}}): {error}",
            path.display()
        )
    })?;
    let usable = KeySet::from_jwks(&jwks).keys().count();
    if usable == 0 {
        return Err(format!(
            "{} has no usable key (RSA, EC P-256 or P-384, Ed25519; symmetric and \
             encryption keys are skipped)",
            path.display()
        ));
    }
    if usable < jwks.keys.len() {
        tracing::warn!(
            path = %path.display(),
            skipped = jwks.keys.len() - usable,
            "JWKS file: skipping keys that cannot verify signatures"
        );
    }
    Ok((jwks, usable))
}

/// Adds the CEL `policies`, each compiled (so checked) now.
#[cfg(feature = "cel")]
fn with_policies(mut application: Application, policies: &[String]) -> Result<Application, String> {
    use tower_m2m_auth::policy::CelPolicy;

    for (index, expression) in policies.iter().enumerate() {
        let policy = CelPolicy::new(expression)
            .map_err(|error| format!("policies[{index}] {expression:?}: {error}"))?;
        application = application.with_policy(policy);
    }
    Ok(application)
}

/// Without CEL, a configured policy cannot be enforced: refuse to start
/// rather than trust input JWTs the policy would deny.
#[cfg(not(feature = "cel"))]
fn with_policies(application: Application, policies: &[String]) -> Result<Application, String> {
    if policies.is_empty() {
        return Ok(application);
    }
    Err(
        "`policies` are CEL expressions, and this build has no CEL support: \
         run with `--features cel`, e.g. \
         `cargo run --features cel --example server -- --config FILE`"
            .into(),
    )
}

/// The JWKS URLs and discovered issuers of every application: one cache per
/// distinct URL or issuer, all fetched by one HTTP client.
#[derive(Default)]
struct RemoteSources {
    #[cfg(feature = "reqwest")]
    fetcher: Option<Arc<dyn JwksFetcher>>,
    by_url: Vec<RemoteJwks>,
    by_issuer: Vec<DiscoveredJwks>,
}

/// A remote key source to fetch ahead of the first input JWT.
enum RemoteSource {
    Jwks(RemoteJwks),
    Discovered(DiscoveredJwks),
}

impl RemoteSources {
    /// The source for `url`, shared with the applications that trust it too.
    fn get(&mut self, url: &str) -> Result<RemoteJwks, String> {
        check_url("jwks_url", url)?;
        if let Some(remote) = self.by_url.iter().find(|remote| remote.url() == url) {
            return Ok(remote.clone());
        }
        let remote = RemoteJwks::new(url, self.fetcher()?);
        self.by_url.push(remote.clone());
        Ok(remote)
    }

    /// The JWKS of `issuer`, found by OpenID discovery (whose metadata must
    /// name the same issuer), shared with the applications that trust it too.
    fn discover(&mut self, issuer: &str) -> Result<DiscoveredJwks, String> {
        check_url("issuer (with discovery = true)", issuer)?;
        if let Some(known) = self.by_issuer.iter().find(|known| known.issuer() == issuer) {
            return Ok(known.clone());
        }
        let discovered = DiscoveredJwks::new(issuer, self.fetcher()?);
        self.by_issuer.push(discovered.clone());
        Ok(discovered)
    }

    #[cfg(feature = "reqwest")]
    fn fetcher(&mut self) -> Result<Arc<dyn JwksFetcher>, String> {
        let fetcher = self
            .fetcher
            .get_or_insert_with(|| Arc::new(ReqwestFetcher::new()));
        Ok(fetcher.clone())
    }

    #[cfg(not(feature = "reqwest"))]
    fn fetcher(&mut self) -> Result<Arc<dyn JwksFetcher>, String> {
        Err(
            "jwks_url and discovery need the `reqwest` feature (on by default): \
             build without --no-default-features"
                .into(),
        )
    }

    fn into_sources(self) -> Vec<RemoteSource> {
        let urls = self.by_url.into_iter().map(RemoteSource::Jwks);
        urls.chain(self.by_issuer.into_iter().map(RemoteSource::Discovered))
            .collect()
    }
}

/// A URL to fetch keys from (a JWKS URL, or an issuer URL for discovery)
/// must be https, or plain http to a loopback host (the fetcher refuses
/// anything else; saying so at start beats a 503 on each request).
fn check_url(key: &str, url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("{key}: {url:?} is not a URL"))?;
    let Some(host) = uri.host() else {
        return Err(format!("{key}: {url:?} is not an absolute URL"));
    };
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        Some("http") => Err(format!(
            "{key}: {url:?}: plain http is only allowed to loopback hosts \
             (keys fetched over http could be swapped on the way): use https"
        )),
        _ => Err(format!("{key}: {url:?} must be an https URL")),
    }
}

/// Fetches a JWKS (discovering it first, for an issuer with `discovery`)
/// ahead of the first input JWT, to report a source that cannot be read at
/// start. Not fatal: the source may come up later, and until then the JWTs
/// it should verify are refused (503).
async fn prefetch_jwks(remote: RemoteSource) {
    let (source, keys) = match &remote {
        RemoteSource::Jwks(jwks) => (jwks.url(), jwks.keys().await),
        RemoteSource::Discovered(discovered) => (discovered.issuer(), discovered.keys().await),
    };
    match keys {
        Ok(keys) if keys.is_empty() => tracing::warn!(
            source,
            "the JWKS has no usable key: no input JWT verifies with it"
        ),
        Ok(keys) => tracing::info!(source, keys = keys.keys().count(), "JWKS fetched"),
        Err(error) => tracing::warn!(
            source,
            %error,
            "cannot fetch the JWKS yet: the input JWTs it should verify are refused until it can"
        ),
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// Serves the API behind the token endpoint until Ctrl-C (or SIGTERM).
async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    validator: JwtValidateLayer,
    limits: connections::ConnectionLimits,
) {
    // The endpoint wraps the whole router: it answers its own paths (token,
    // JWKS, metadata) before any routing and passes every other request on.
    // Each request carries its peer's address (`ConnectInfo`), for the
    // attempt limiter.
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

/// Trusts the tokens each application of the endpoint mints: its issuer,
/// its `client_id` as audience, and the endpoint's own published keys.
/// Access tokens without `typ: at+jwt` (`[endpoint] at_jwt_typ = false`)
/// pass only then, and only with their `client_id`: ID tokens never do.
fn api_validator(endpoint: &Endpoint, config: &Config) -> JwtValidateLayer {
    let keys = endpoint.keys().verification_keys();
    let untyped = config.endpoint.at_jwt_typ == Some(false);
    config
        .applications
        .iter()
        .filter_map(|app| endpoint.get_application(&app.client_id))
        .fold(
            JwtValidateLayer::new().allow_untyped_access_tokens(untyped),
            |layer, application| {
                layer.issuer(
                    Issuer::with_key_set(application.issuer(), (*keys).clone())
                        .audience(application.client_id()),
                )
            },
        )
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

// ---------------------------------------------------------------------------
// Demo instructions
// ---------------------------------------------------------------------------

/// Prints, on stdout, how to try the demo with curl.
fn print_demo_instructions(base: &str, config: &Config) {
    let Some(application) = config.applications.first() else {
        return;
    };
    let discovery = format!(
        "{base}/application/o/{}/.well-known/openid-configuration",
        application.slug
    );
    let jwks = format!("{base}/application/o/{}/jwks/", application.slug);

    println!();
    println!("tower-m2m-auth demo server on {base}");
    println!("(embedded demo configuration: pass --config FILE to use your own)");
    println!();
    if let Some(body) = demo_token_request(config, application) {
        println!("Get a token:");
        println!("  curl -s {base}{TOKEN_PATH} -d {}", shell_quote(&body));
        println!();
    }
    println!("JWKS (the public keys that verify the tokens):");
    println!("  curl -s {jwks}");
    println!();
    println!("OpenID discovery document:");
    println!("  curl -s {discovery}");
    println!();
    println!("Sample API (needs a token from the endpoint; 401 without):");
    if let Some(body) = demo_token_request(config, application) {
        println!(
            "  TOKEN=$(curl -s {base}{TOKEN_PATH} -d {} | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')",
            shell_quote(&body)
        );
    }
    println!("  curl -s {base}/api/hello -H \"Authorization: Bearer $TOKEN\"");
    println!();
}

/// The form body of a token request by the first active demo account that
/// has a plain-text token, for `application`.
fn demo_token_request(config: &Config, application: &ApplicationConfig) -> Option<String> {
    let (account, token) = config
        .service_accounts
        .iter()
        .filter(|account| account.active)
        .find_map(|account| {
            let token = account.tokens.iter().find_map(|t| t.token.as_deref())?;
            Some((account.username.as_str(), token))
        })?;
    let scope = application.scopes.join(" ");
    serde_urlencoded::to_string([
        ("grant_type", "client_credentials"),
        ("client_id", application.client_id.as_str()),
        ("username", account),
        ("password", token),
        ("scope", scope.as_str()),
    ])
    .ok()
}

/// `value` as one POSIX shell word.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------
// The store: service accounts, replay cache and revocation list
// ---------------------------------------------------------------------------

/// Which store the configuration names, checked but not opened yet.
enum StoreChoice {
    Memory,
    #[cfg(feature = "sqlite")]
    Sqlite(PathBuf),
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl StoreChoice {
    /// The `[store]` of a configuration file; the embedded demo always keeps
    /// its store in memory.
    fn of(config: Option<&StoreConfig>, source: &Source) -> Result<Self, BoxError> {
        let Source::File { path, .. } = source else {
            return Ok(Self::Memory);
        };
        let Some(config) = config else {
            return Self::default_for(path);
        };
        match (&config.sqlite, &config.postgres, config.memory) {
            (Some(file), None, None) => Self::sqlite(source.base_dir().join(file)),
            (None, Some(url), None) => Self::postgres(url),
            (None, None, Some(true)) => Ok(Self::Memory),
            (None, None, Some(false)) => Err("[store] memory = false: name the store instead \
                 (sqlite = \"FILE\" or postgres = \"URL\"), or leave [store] out for SQLite \
                 next to the configuration file"
                .into()),
            _ => Err(
                "[store]: give exactly one of sqlite = \"FILE\", postgres = \"URL\" \
                      or memory = true"
                    .into(),
            ),
        }
    }

    /// Without `[store]`: `<config stem>.db` next to the configuration file.
    #[cfg(feature = "sqlite")]
    fn default_for(config_path: &Path) -> Result<Self, BoxError> {
        Ok(Self::Sqlite(default_store_file(config_path)))
    }

    /// Without `[store]` nor the `sqlite` feature: memory, with a warning.
    #[cfg(not(feature = "sqlite"))]
    fn default_for(config_path: &Path) -> Result<Self, BoxError> {
        tracing::warn!(
            sqlite_file = %default_store_file(config_path).display(),
            "this build has no `sqlite` feature: service accounts are kept in memory and \
             changes are lost at exit; run with `--features sqlite` to keep them in an SQLite file"
        );
        Ok(Self::Memory)
    }

    #[cfg(feature = "sqlite")]
    fn sqlite(file: PathBuf) -> Result<Self, BoxError> {
        Ok(Self::Sqlite(file))
    }

    #[cfg(not(feature = "sqlite"))]
    fn sqlite(_: PathBuf) -> Result<Self, BoxError> {
        Err(
            "[store] sqlite needs the `sqlite` feature: run with `--features sqlite`, e.g. \
             `cargo run --features sqlite --example server -- --config FILE`"
                .into(),
        )
    }

    #[cfg(feature = "postgres")]
    fn postgres(url: &str) -> Result<Self, BoxError> {
        Ok(Self::Postgres(url.to_owned()))
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres(_: &str) -> Result<Self, BoxError> {
        Err(
            "[store] postgres needs the `postgres` feature: run with `--features postgres`, \
             e.g. `cargo run --features postgres --example server -- --config FILE`"
                .into(),
        )
    }

    /// Connects (creating the SQLite file and the tables if needed).
    async fn open(self) -> Result<Store, BoxError> {
        match self {
            Self::Memory => Ok(Store::Memory(MemoryBackend::default())),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(file) => {
                let name = file
                    .to_str()
                    .ok_or_else(|| format!("[store] sqlite: {} is not UTF-8", file.display()))?;
                // A bare name would be taken for a URL if it began with "sqlite:".
                let name = if name.starts_with("sqlite:") {
                    format!("./{name}")
                } else {
                    name.to_owned()
                };
                let store = SqliteStore::connect(&name).await.map_err(|error| {
                    format!("cannot open the SQLite store {}: {error}", file.display())
                })?;
                Ok(Store::Sqlite(store))
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(url) => {
                // The error never repeats the URL, which may hold a password.
                let store = PgStore::connect(&url)
                    .await
                    .map_err(|error| format!("cannot open the PostgreSQL store: {error}"))?;
                Ok(Store::Postgres(store))
            }
        }
    }
}

impl fmt::Display for StoreChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory store"),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(file) => write!(f, "SQLite store {}", file.display()),
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => f.write_str("PostgreSQL store"),
        }
    }
}

/// `<config dir>/<config stem>.db`.
fn default_store_file(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map_or_else(|| "server".into(), |stem| stem.to_string_lossy());
    config_path.with_file_name(format!("{stem}.db"))
}

/// Opens the store and imports the configured service accounts.
async fn open_store(
    choice: StoreChoice,
    accounts: &[ConfiguredAccount],
) -> Result<Store, BoxError> {
    let description = choice.to_string();
    let store = choice.open().await?;
    import_accounts(&store, accounts).await?;
    tracing::info!(store = description, "credential store ready");
    Ok(store)
}

/// Brings the configured service accounts and tokens into the store. What
/// is there already stays as it is: a restart changes nothing, and an
/// account disabled with `disable` stays disabled. A configured token that
/// was revoked is imported again, though: remove it from the file too.
/// Configured bindings are applied at every start (the file's scopes win);
/// bindings made with `bind` to other applications stay.
async fn import_accounts(store: &Store, accounts: &[ConfiguredAccount]) -> Result<(), BoxError> {
    let mut new_tokens = 0;
    for configured in accounts {
        let username = configured.account.username.as_str();
        let context = |error| format!("[[service_accounts]] {username:?}: {error}");
        let stored = store
            .import_service_account(configured.account.clone())
            .await
            .map_err(|error| context(error.to_string()))?;
        if (&stored.name, stored.active) != (&configured.account.name, configured.account.active) {
            tracing::warn!(
                username,
                name = stored.name,
                active = stored.active,
                "service account: the store's name and active flag win over the configuration's \
                 (use the enable and disable commands)"
            );
        }
        for (index, password) in configured.passwords.iter().enumerate() {
            match store.import_app_password(username, password.clone()).await {
                Ok(true) => new_tokens += 1,
                Ok(false) => {}
                Err(AdminError::PasswordOfAnotherAccount) => {
                    return Err(context(format!(
                        "token #{}: the store holds this token for another service account",
                        index + 1
                    ))
                    .into());
                }
                Err(error) => return Err(context(format!("token #{}: {error}", index + 1)).into()),
            }
        }
        for binding in &configured.bindings {
            store
                .bind_account(username, binding.clone())
                .await
                .map_err(|error| context(format!("binding {:?}: {error}", binding.client_id)))?;
        }
    }
    tracing::info!(
        service_accounts = accounts.len(),
        new_tokens,
        "configured service accounts imported"
    );
    Ok(())
}

/// The memory store, with its replay cache and revocation list.
#[derive(Clone, Default)]
struct MemoryBackend {
    accounts: MemoryStore,
    replay: MemoryReplayCache,
    revoked: MemoryRevocationList,
}

/// The store the configuration names; every trait by delegation.
#[derive(Clone)]
enum Store {
    Memory(MemoryBackend),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(PgStore),
}

/// `$body` with `$s` bound to the store (for memory: its part `$part`).
macro_rules! dispatch {
    ($store:expr, $part:ident, |$s:ident| $body:expr) => {
        match $store {
            Store::Memory(memory) => {
                let $s = &memory.$part;
                $body
            }
            #[cfg(feature = "sqlite")]
            Store::Sqlite($s) => $body,
            #[cfg(feature = "postgres")]
            Store::Postgres($s) => $body,
        }
    };
}

impl CredentialStore for Store {
    async fn app_password(
        &self,
        username: &str,
        digest: &TokenDigest,
    ) -> Result<Option<AccountCredential>, StoreError> {
        dispatch!(self, accounts, |s| s.app_password(username, digest).await)
    }

    async fn external_account(
        &self,
        account: &ExternalAccount,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        dispatch!(self, accounts, |s| s.external_account(account).await)
    }

    async fn account(&self, username: &str) -> Result<Option<ServiceAccount>, StoreError> {
        dispatch!(self, accounts, |s| s.account(username).await)
    }

    async fn binding(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> Result<Option<Binding>, StoreError> {
        dispatch!(self, accounts, |s| s.binding(account_id, client_id).await)
    }
}

impl ReplayCache for Store {
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, StoreError> {
        dispatch!(self, replay, |s| s.first_use(key, expires_at).await)
    }
}

impl RevocationList for Store {
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        dispatch!(self, revoked, |s| s.revoke(jti, expires_at).await)
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        dispatch!(self, revoked, |s| s.is_revoked(jti).await)
    }
}

impl AccountAdmin for Store {
    async fn create_service_account(
        &self,
        account: ServiceAccount,
        expires: Option<SystemTime>,
    ) -> Result<(ServiceAccount, secrecy::SecretString), AdminError> {
        dispatch!(self, accounts, |s| s
            .create_service_account(account, expires)
            .await)
    }

    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>, StoreError> {
        dispatch!(self, accounts, |s| s.list_service_accounts().await)
    }

    async fn add_app_password(
        &self,
        username: &str,
        expires: Option<SystemTime>,
    ) -> Result<secrecy::SecretString, AdminError> {
        dispatch!(self, accounts, |s| s
            .add_app_password(username, expires)
            .await)
    }

    async fn revoke_app_password(&self, digest: &TokenDigest) -> Result<bool, StoreError> {
        dispatch!(self, accounts, |s| s.revoke_app_password(digest).await)
    }

    async fn set_account_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        dispatch!(self, accounts, |s| s
            .set_account_active(username, active)
            .await)
    }

    async fn import_service_account(
        &self,
        account: ServiceAccount,
    ) -> Result<ServiceAccount, AdminError> {
        dispatch!(self, accounts, |s| s.import_service_account(account).await)
    }

    async fn import_app_password(
        &self,
        username: &str,
        password: AppPassword,
    ) -> Result<bool, AdminError> {
        dispatch!(self, accounts, |s| s
            .import_app_password(username, password)
            .await)
    }

    async fn bind_account(&self, username: &str, binding: Binding) -> Result<(), AdminError> {
        dispatch!(self, accounts, |s| s.bind_account(username, binding).await)
    }

    async fn unbind_account(&self, username: &str, client_id: &str) -> Result<bool, AdminError> {
        dispatch!(self, accounts, |s| s
            .unbind_account(username, client_id)
            .await)
    }

    async fn list_bindings(&self, username: &str) -> Result<Vec<Binding>, AdminError> {
        dispatch!(self, accounts, |s| s.list_bindings(username).await)
    }
}

// ---------------------------------------------------------------------------
// Administration commands
// ---------------------------------------------------------------------------

/// Runs an administration command against the configured store. Messages go
/// to stderr; stdout carries only a new token, or the list of accounts.
async fn admin(config_path: Option<PathBuf>, command: Command) -> Result<(), BoxError> {
    let Some(config_path) = config_path else {
        return Err(
            "this command needs --config FILE, whose [store] it works on \
                    (the embedded demo keeps its accounts in memory, for one run)"
                .into(),
        );
    };
    let source = Source::load(Some(config_path))?;
    let config = Config::parse(&source)?;
    let choice = StoreChoice::of(config.store.as_ref(), &source)?;
    if matches!(choice, StoreChoice::Memory) && !matches!(command, Command::List) {
        return Err(format!(
            "{source} keeps its service accounts in memory, so a change made here would be \
             lost at once: name a persistent [store] (SQLite, the default with the `sqlite` \
             feature: run with `--features sqlite`)"
        )
        .into());
    }
    let accounts = configured_accounts(&config.service_accounts, &config.applications)?;
    let store_name = choice.to_string();
    let store = open_store(choice, &accounts).await?;

    match command {
        Command::Serve(_) => unreachable!("serve is not an administration command"),
        Command::CreateServiceAccount {
            username,
            name,
            expires,
        } => {
            check_username(&username)?;
            let expires = expires.map(expiry_after).transpose()?;
            let mut account = ServiceAccount::new(&username);
            if let Some(name) = name {
                account = account.with_name(name);
            }
            let (account, token) = store.create_service_account(account, expires).await?;
            eprintln!(
                "Created service account {:?} ({:?}) in the {store_name}.",
                account.username, account.name
            );
            print_new_token(&account.username, &token, expires);
        }
        Command::AddToken { username, expires } => {
            let expires = expires.map(expiry_after).transpose()?;
            let token = store.add_app_password(&username, expires).await?;
            eprintln!("Added an app-password token to {username:?} in the {store_name}.");
            print_new_token(&username, &token, expires);
        }
        Command::List => {
            let mut listed = Vec::new();
            for account in store.list_service_accounts().await? {
                let bindings = store.list_bindings(&account.username).await?;
                listed.push((account, bindings));
            }
            print_accounts(&listed);
        }
        Command::RevokeToken(which) => {
            let digest = which.digest()?;
            // Every start imports the configured tokens again.
            if let Some(owner) = accounts
                .iter()
                .find(|configured| configured.passwords.iter().any(|p| p.digest == digest))
            {
                return Err(format!(
                    "{source} declares this token for {:?}: remove it from the file first, \
                     then revoke it (the server imports the file's tokens at every start)",
                    owner.account.username
                )
                .into());
            }
            if !store.revoke_app_password(&digest).await? {
                return Err(
                    format!("no app-password token with this digest in the {store_name}").into(),
                );
            }
            eprintln!("Revoked the app-password token {}.", digest.to_hex());
        }
        Command::Disable { username } => set_active(&store, &username, false, &store_name).await?,
        Command::Enable { username } => set_active(&store, &username, true, &store_name).await?,
        Command::Bind {
            username,
            client_id,
            scopes,
        } => {
            let binding = Binding::new(client_id, scopes);
            binding.check()?;
            check_bound_application(&config.applications, &binding)?;
            store.bind_account(&username, binding.clone()).await?;
            eprintln!(
                "Bound {username:?} to {:?} with scopes [{}] in the {store_name}.",
                binding.client_id,
                binding.scopes.join(" ")
            );
        }
        Command::Unbind {
            username,
            client_id,
        } => {
            // Every start applies the configured bindings again.
            if accounts.iter().any(|configured| {
                configured.account.username == username
                    && configured.bindings.iter().any(|b| b.client_id == client_id)
            }) {
                return Err(format!(
                    "{source} binds {username:?} to {client_id:?}: remove the binding from the \
                     file first, then unbind (the server applies the file's bindings at every \
                     start)"
                )
                .into());
            }
            if !store.unbind_account(&username, &client_id).await? {
                return Err(format!(
                    "{username:?} is not bound to {client_id:?} in the {store_name}"
                )
                .into());
            }
            eprintln!("Unbound {username:?} from {client_id:?} in the {store_name}.");
        }
    }
    Ok(())
}

async fn set_active(
    store: &Store,
    username: &str,
    active: bool,
    store_name: &str,
) -> Result<(), BoxError> {
    if !store.set_account_active(username, active).await? {
        return Err(AdminError::NoSuchAccount(username.to_owned()).into());
    }
    let state = if active { "enabled" } else { "disabled" };
    eprintln!("Service account {username:?} {state} in the {store_name}.");
    Ok(())
}

/// Usernames travel in form bodies and show in logs: printable, no spaces.
fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() || !username.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "username {username:?} must be printable ASCII without spaces"
        ));
    }
    Ok(())
}

impl RevokedToken {
    /// The digest of the token to revoke.
    fn digest(&self) -> Result<TokenDigest, BoxError> {
        match (&self.token, &self.sha256) {
            (_, Some(hex)) => Ok(parse_digest("--sha256", hex)?),
            (Some(token), None) if token == "-" => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|error| format!("cannot read the token from stdin: {error}"))?;
                let token = line.trim_end_matches(['\r', '\n']);
                if token.is_empty() {
                    return Err("no token on stdin".into());
                }
                Ok(TokenDigest::of(token))
            }
            (Some(token), None) => Ok(TokenDigest::of(token)),
            (None, None) => Err("give --token or --sha256".into()),
        }
    }
}

/// Prints a new token: on stdout, alone, so that scripts can capture it.
fn print_new_token(username: &str, token: &secrecy::SecretString, expires: Option<SystemTime>) {
    use secrecy::ExposeSecret as _;

    match expires {
        Some(expires) => eprintln!("The token expires at {}.", format_time(expires)),
        None => eprintln!("The token does not expire."),
    }
    eprintln!(
        "warning: the token is shown only this once (only its SHA-256 is stored): \
         keep it now. Clients log in with username={username} and password=<token>."
    );
    println!("{}", token.expose_secret());
}

/// The accounts with their bindings, as a table on stdout. KIND tells
/// service accounts from identities recorded from input JWTs (`jwt <iss>`),
/// which never get app passwords or bindings.
fn print_accounts(accounts: &[(ServiceAccount, Vec<Binding>)]) {
    let rows: Vec<[String; 5]> = accounts
        .iter()
        .map(|(account, bindings)| {
            let active = if account.active { "yes" } else { "no" };
            let kind = match &account.external_issuer {
                Some(issuer) => format!("jwt {issuer}"),
                None if account.is_jwt_identity() => "jwt".to_owned(),
                None => "service".to_owned(),
            };
            let bindings: Vec<String> = bindings
                .iter()
                .map(|b| format!("{}({})", b.client_id, b.scopes.join(",")))
                .collect();
            [
                account.username.clone(),
                account.name.clone(),
                active.to_owned(),
                kind,
                bindings.join(" "),
            ]
        })
        .collect();
    let headers = ["USERNAME", "NAME", "ACTIVE", "KIND", "BINDINGS"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut line = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:width$}  "));
            }
        }
        println!("{}", line.trim_end());
    };
    line(headers);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}

/// `--expires` after now.
fn expiry_after(duration: Duration) -> Result<SystemTime, String> {
    SystemTime::now()
        .checked_add(duration)
        .ok_or_else(|| "--expires is too far in the future".into())
}

/// A duration like `30d`, `12h`, `90m` or `3600s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let usage = || {
        format!("{text:?}: expected a number and a unit (d, h, m or s), e.g. 30d, 12h, 90m, 3600s")
    };
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| usage())?;
    let unit_seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(usage()),
    };
    if number == 0 {
        return Err(format!(
            "{text:?}: a token that expires at once is of no use"
        ));
    }
    number
        .checked_mul(unit_seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// `time` as RFC 3339 UTC, to the second.
fn format_time(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX);
    let (year, month, day) = civil_from_days(days);
    let rest = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, the inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
