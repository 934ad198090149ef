//! The configuration file: the library's `Config`, beside the tables only
//! a server has (`listen`, `[server]`, `[metrics]`).

use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tower_m2m_auth::config::{Config, StoreConfig};

use crate::BoxError;
use crate::connections::ConnectionLimits;
use crate::observability::MetricsConfig;

/// The embedded demo configuration: the documented sample file itself.
const DEMO_CONFIG: &str = include_str!("../server.toml");

/// Where the server listens unless told otherwise.
pub(crate) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9000));

/// Where the configuration comes from.
pub(crate) enum Source {
    /// The embedded demo configuration.
    Embedded,
    /// A configuration file, and its text.
    File { path: PathBuf, text: String },
}

impl Source {
    /// Reads the configuration file, or picks the embedded demo without one.
    pub(crate) fn load(path: Option<PathBuf>) -> Result<Self, BoxError> {
        let Some(path) = path else {
            return Ok(Self::Embedded);
        };
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Self::File { path, text }),
            Err(error) => Err(format!("cannot read {}: {error}", path.display()).into()),
        }
    }

    /// The directory that relative paths in the configuration start from.
    pub(crate) fn base_dir(&self) -> &Path {
        match self {
            Self::File { path, .. } => path.parent().unwrap_or(Path::new("")),
            Self::Embedded => Path::new(""),
        }
    }

    /// What the file leaves to the server: the demo's issuer is where it
    /// listens, and its key and store are in memory; a file's generated key
    /// and SQLite store default to `<stem>.keys.pem` and `<stem>.db` beside it.
    pub(crate) fn fill_defaults(&self, config: &mut Config, listen: SocketAddr) {
        let Self::File { path, .. } = self else {
            config.issuer = format!("http://{listen}");
            config.store = Some(StoreConfig::memory());
            config.keys.generated_key_file = None;
            return;
        };
        let stem = path
            .file_stem()
            .map_or_else(|| "server".into(), |stem| stem.to_string_lossy());
        if config.keys.files.is_empty() && config.keys.generated_key_file.is_none() {
            config.keys.generated_key_file = Some(path.with_file_name(format!("{stem}.keys.pem")));
        }
        if config.store.is_none() {
            let file = path.with_file_name(format!("{stem}.db"));
            if cfg!(feature = "sqlite") {
                config.store = Some(StoreConfig::sqlite(file));
            } else {
                tracing::warn!(
                    sqlite_file = %file.display(),
                    "this build has no `sqlite` feature: service accounts are kept in memory and \
                     changes are lost at exit; run with `--features sqlite` to keep them in an \
                     SQLite file"
                );
            }
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

/// The configuration file: the library's schema and the server's own tables.
pub(crate) struct ServerFile {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) server: ServerConfig,
    pub(crate) metrics: Option<MetricsConfig>,
    pub(crate) config: Config,
}

/// The server's own top-level keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerKeys {
    /// Address to listen on (`--listen` overrides it).
    listen: Option<SocketAddr>,
    #[serde(default)]
    server: ServerConfig,
    /// `[metrics]`: Prometheus metrics on a listener of their own.
    metrics: Option<MetricsConfig>,
}

impl ServerFile {
    /// Parses the TOML text: the server's keys apart, the rest as `Config`
    /// (which refuses unknown keys).
    pub(crate) fn parse(source: &Source) -> Result<Self, BoxError> {
        let text = match source {
            Source::Embedded => DEMO_CONFIG,
            Source::File { text, .. } => text,
        };
        let invalid = |error: toml::de::Error| {
            format!(
                "invalid configuration in {source}, {}",
                place_and_message(&error, text)
            )
        };
        // Split with the spans kept, so that an error in either part still
        // points into the file.
        let document = toml::de::DeTable::parse(text).map_err(invalid)?;
        let span = document.span();
        let (own, rest): (toml::de::DeTable<'_>, toml::de::DeTable<'_>) =
            document.into_inner().into_iter().partition(|(key, _)| {
                ["listen", "server", "metrics"].contains(&key.get_ref().as_ref())
            });
        let part = |table| toml::de::Deserializer::from(toml::Spanned::new(span.clone(), table));
        let own = ServerKeys::deserialize(part(own)).map_err(invalid)?;
        let config = Config::deserialize(part(rest)).map_err(invalid)?;
        Ok(Self {
            listen: own.listen,
            server: own.server,
            metrics: own.metrics,
            config,
        })
    }
}

/// Where `error` points in `text` ("line L, column C: "), then its message.
/// Unlike the TOML error's own display, the line is not quoted: it may hold
/// a secret (the value of a misspelt `client_secret`, an unclosed string).
fn place_and_message(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return message.to_owned();
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |at| at + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}: {message}")
}

/// `[server]`: limits on connections, against slow and idle clients.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerConfig {
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
    /// The connection limits and the body timeout, each at least 1.
    pub(crate) fn limits(&self) -> Result<(ConnectionLimits, Duration), BoxError> {
        let positive = |key: &str, value: u64| match value {
            0 => Err(format!("[server] {key} must be at least 1")),
            _ => Ok(Duration::from_secs(value)),
        };
        if self.max_connections == 0 {
            return Err("[server] max_connections must be at least 1".into());
        }
        let limits = ConnectionLimits {
            header_read_timeout: positive(
                "header_read_timeout_secs",
                self.header_read_timeout_secs,
            )?,
            max_connections: self.max_connections,
            shutdown_grace: positive("shutdown_grace_secs", self.shutdown_grace_secs)?,
        };
        let body = positive("body_read_timeout_secs", self.body_read_timeout_secs)?;
        Ok((limits, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `ServerFile::parse` gives for the file `text`.
    fn error_of(text: &str) -> String {
        let source = Source::File {
            path: "bad.toml".into(),
            text: text.into(),
        };
        match ServerFile::parse(&source) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(error) => error.to_string(),
        }
    }

    /// Every kind of mistake points at its place in the file, and never
    /// quotes its line, which may hold a secret: one row each for the
    /// library's settings, the server's own and TOML's syntax, then
    /// mistakes on a secret's line (a misspelt key, a value of the wrong
    /// type, an unclosed string, a PostgreSQL URL with a password).
    #[test]
    fn configuration_errors_name_their_place_not_their_line() {
        const SECRET: &str = "app-secret-in-a-bad-line";
        let app = "[[applications]]\nclient_id = \"x\"\nslug = \"x\"\n";
        let head = format!("issuer = \"https://a\"\n{app}");
        let rows = [
            (format!("{head}scope = [\"r\"]\n"), "line 5, column 1"),
            (
                format!("issuer = \"https://a\"\n[server]\nmax_connections = \"many\"\n{app}"),
                "line 3, column 19",
            ),
            (
                format!("issuer = \"https://a\"\nlisten = \n{app}"),
                "line 2, column",
            ),
            (
                format!("{head}client_secrte = \"{SECRET}\"\n"),
                "line 5, column 1",
            ),
            (
                format!("{head}client_secret = [\"{SECRET}\"]\n"),
                "line 5, column 17",
            ),
            (format!("{head}client_secret = \"{SECRET}\n"), "line 5"),
            (
                format!("[store]\npostgres = \"postgres://u:{SECRET}@h/db\" x\n"),
                "line 2",
            ),
        ];
        for (text, place) in rows {
            let error = error_of(&text);
            assert!(error.contains(place), "{place}: {error}");
            assert!(
                error.starts_with("invalid configuration in bad.toml"),
                "{error}"
            );
            assert!(!error.contains(SECRET), "secret echoed: {error}");
        }
    }
}
