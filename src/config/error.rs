//! Why a configuration cannot be built.

use std::path::PathBuf;

use crate::keys::KeyError;
use crate::store::{AdminError, StoreError};

/// Why a [`Config`](super::Config) cannot be built. Each names the setting
/// as a configuration file spells it (`[[applications]] #2 ("ci")`,
/// `[keys]`…), and never repeats a secret or a URL that may hold one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is invalid, or settings contradict each other.
    #[error("{at}: {reason}")]
    Invalid {
        /// Where, as the configuration file names it.
        at: String,
        /// What is wrong, and what to write instead.
        reason: String,
    },
    /// The endpoint refused an application (see [`crate::issuer::ConfigError`]).
    #[error("{at}: {source}")]
    Endpoint {
        /// Where, as the configuration file names it.
        at: String,
        /// The endpoint's reason.
        #[source]
        source: crate::issuer::ConfigError,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// `read` or `write`, and what.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key could not be read or generated.
    #[error("{at}: {source}")]
    Key {
        /// The key file, or the setting.
        at: String,
        /// The key's reason.
        #[source]
        source: KeyError,
    },
    /// The store cannot be opened or reached.
    #[error("{at}: {source}")]
    Store {
        /// Which store.
        at: String,
        /// The store's reason.
        #[source]
        source: StoreError,
    },
    /// The store refused a configured account, token or binding.
    #[error("{at}: {source}")]
    Account {
        /// Which account, token or binding.
        at: String,
        /// The store's reason.
        #[source]
        source: AdminError,
    },
    /// A setting needs a cargo feature this build lacks.
    #[error(
        "{setting} needs the `{feature}` feature: build with `--features {feature}`, e.g. \
         `cargo run --features {feature} --example server -- --config FILE`"
    )]
    MissingFeature {
        /// The setting.
        setting: &'static str,
        /// The feature.
        feature: &'static str,
    },
}

impl BuildError {
    /// An [`Invalid`](Self::Invalid) setting.
    pub(crate) fn invalid(at: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            at: at.into(),
            reason: reason.into(),
        }
    }

    /// A file that cannot be read.
    pub(crate) fn read(what: &'static str, path: PathBuf, source: std::io::Error) -> Self {
        Self::File {
            action: what,
            path,
            source,
        }
    }
}
