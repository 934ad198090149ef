//! `[store]` and `[attempt_limits]`: where accounts live, and where failed
//! attempts are counted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{BuildError, Endpoint, resolve};
use crate::issuer::AttemptLimits;
use crate::store::{AnyStore, FailureLimit, MemoryAttemptLimiter};

/// `[store]`: where service accounts, tokens, the replay cache and the
/// revocation list live. Exactly one key.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// An SQLite file (feature `sqlite`), relative to the base directory.
    pub sqlite: Option<PathBuf>,
    /// A PostgreSQL URL (feature `postgres`).
    pub postgres: Option<String>,
    /// `true`: in memory, lost at exit.
    pub memory: Option<bool>,
}

impl StoreConfig {
    /// An SQLite file.
    pub fn sqlite(file: impl Into<PathBuf>) -> Self {
        Self {
            sqlite: Some(file.into()),
            ..Self::default()
        }
    }

    /// In memory.
    pub fn memory() -> Self {
        Self {
            memory: Some(true),
            ..Self::default()
        }
    }
}

/// Which store the configuration names, checked but not opened yet.
pub(super) enum Choice {
    Memory,
    #[cfg(feature = "sqlite")]
    Sqlite(PathBuf),
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl Choice {
    pub(super) fn of(config: Option<&StoreConfig>, base_dir: &Path) -> Result<Self, BuildError> {
        let Some(config) = config else {
            return Ok(Self::Memory);
        };
        let sqlite = config.sqlite.as_ref().map(|file| resolve(base_dir, file));
        match (sqlite, &config.postgres, config.memory) {
            #[cfg(feature = "sqlite")]
            (Some(file), None, None) => Ok(Self::Sqlite(file)),
            #[cfg(feature = "postgres")]
            (None, Some(url), None) => Ok(Self::Postgres(url.clone())),
            #[cfg(not(feature = "sqlite"))]
            (Some(_), None, None) => Err(missing("[store] sqlite", "sqlite")),
            #[cfg(not(feature = "postgres"))]
            (None, Some(_), None) => Err(missing("[store] postgres", "postgres")),
            (None, None, Some(true)) => Ok(Self::Memory),
            (None, None, Some(false)) => Err(BuildError::invalid(
                "[store] memory = false",
                "name the store instead (sqlite = \"FILE\" or postgres = \"URL\"), or leave \
                 [store] out for SQLite next to the configuration file",
            )),
            _ => Err(BuildError::invalid(
                "[store]",
                "give exactly one of sqlite = \"FILE\", postgres = \"URL\" or memory = true",
            )),
        }
    }

    pub(super) fn is_memory(&self) -> bool {
        matches!(self, Self::Memory)
    }

    /// Whether the store is meant to be shared by several instances.
    pub(super) fn is_shared(&self) -> bool {
        #[cfg(feature = "postgres")]
        if let Self::Postgres(_) = self {
            return true;
        }
        false
    }

    /// Connects (creating the SQLite file and the tables if needed).
    pub(super) async fn open(self) -> Result<AnyStore, BuildError> {
        match self {
            Self::Memory => Ok(AnyStore::memory()),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(file) => {
                let at = format!("cannot open the SQLite store {}", file.display());
                let name = file
                    .to_str()
                    .ok_or_else(|| BuildError::invalid(&at, "the path is not UTF-8"))?;
                // A bare name would be taken for a URL if it began with "sqlite:".
                let name = if name.starts_with("sqlite:") {
                    format!("./{name}")
                } else {
                    name.to_owned()
                };
                let store = crate::store::SqliteStore::connect(&name)
                    .await
                    .map_err(|source| BuildError::Store { at, source })?;
                Ok(AnyStore::new(store))
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(url) => {
                // The error never repeats the URL, which may hold a password.
                let store = crate::store::PgStore::connect(&url)
                    .await
                    .map_err(|source| BuildError::Store {
                        at: "cannot open the PostgreSQL store".into(),
                        source,
                    })?;
                Ok(AnyStore::new(store))
            }
        }
    }
}

impl fmt::Display for Choice {
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

#[allow(dead_code, reason = "unused when every store feature is on")]
fn missing(setting: &'static str, feature: &'static str) -> BuildError {
    BuildError::MissingFeature { setting, feature }
}

/// `[attempt_limits]`: the limit on failed authentication attempts, per
/// `client_id` and per peer address. On by default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AttemptLimitsConfig {
    /// `false` turns the limit off.
    pub enabled: bool,
    /// Failures per `client_id` within the window (0: no such limit).
    pub per_client_id: u32,
    /// Failures per peer address (IPv6: per /64) within the window (0: no
    /// such limit).
    pub per_address: u32,
    /// The window, opened by a key's first attempt.
    pub window_secs: u64,
    /// Addresses held at most by the in-memory limiter.
    pub max_addresses: usize,
    /// A Redis URL: count in Redis, shared by every instance (feature
    /// `redis`), instead of in memory.
    pub redis: Option<String>,
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

/// The checked `[attempt_limits]`.
pub(super) enum LimitsPlan {
    Off,
    Memory(AttemptLimits, usize),
    #[cfg(feature = "redis")]
    Redis(AttemptLimits, String),
}

impl AttemptLimitsConfig {
    pub(super) fn check(&self) -> Result<LimitsPlan, BuildError> {
        if !self.enabled {
            return Ok(LimitsPlan::Off);
        }
        if self.window_secs == 0 {
            return Err(BuildError::invalid(
                "[attempt_limits] window_secs",
                "must be at least 1",
            ));
        }
        let window = Duration::from_secs(self.window_secs);
        let limit = |max: u32| (max > 0).then(|| FailureLimit::new(max, window));
        let limits = AttemptLimits::new()
            .with_client_limit(limit(self.per_client_id))
            .with_address_limit(limit(self.per_address));
        match &self.redis {
            None => Ok(LimitsPlan::Memory(limits, self.max_addresses)),
            #[cfg(feature = "redis")]
            Some(url) => Ok(LimitsPlan::Redis(limits, url.clone())),
            #[cfg(not(feature = "redis"))]
            Some(_) => Err(missing("[attempt_limits] redis", "redis")),
        }
    }
}

impl LimitsPlan {
    /// Whether failed attempts are counted in this instance's memory.
    pub(super) fn counts_per_instance(&self) -> bool {
        matches!(self, Self::Memory(..))
    }

    /// Puts the limiter on `endpoint` (the address limit needs the host to
    /// tell the endpoint where the client address is: `client_address`).
    pub(super) async fn apply(self, endpoint: Endpoint) -> Result<Endpoint, BuildError> {
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
        Ok(match self {
            Self::Off => {
                tracing::warn!(
                    "[attempt_limits] enabled = false: failed authentication attempts are not \
                     limited, so credentials can be guessed as fast as the server answers"
                );
                endpoint
            }
            Self::Memory(limits, capacity) => {
                describe(&limits, "memory");
                endpoint.attempt_limiter(MemoryAttemptLimiter::with_capacity(capacity), limits)
            }
            #[cfg(feature = "redis")]
            Self::Redis(limits, url) => {
                // The URL may hold a password: name the table, not the URL.
                let redis = crate::store::RedisStore::connect(&url)
                    .await
                    .map_err(|source| BuildError::Store {
                        at: "[attempt_limits] redis".into(),
                        source,
                    })?;
                describe(&limits, "redis");
                endpoint.attempt_limiter(redis, limits)
            }
        })
    }
}
