//! `[keys]`: the issuer's key ring, from key files or a generated key.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BuildError, resolve};
use crate::keys::{Algorithm, KeyRing, SigningKey};

/// `[keys]`: PEM key files, or the settings of a generated key.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeysConfig {
    /// PEM private keys: the first signs, the others are only published.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Algorithm of the generated key (default ES256).
    pub algorithm: Option<KeyAlgorithm>,
    /// Where the generated key is kept (created on first use, mode 0600).
    /// Without it (and without `files`) the key is generated in memory, for
    /// one run.
    pub generated_key_file: Option<PathBuf>,
}

/// The algorithms of a generated key (asymmetric only: the JWKS must be
/// publishable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256.
    #[default]
    #[serde(rename = "ES256")]
    Es256,
    /// ECDSA P-384 with SHA-384.
    #[serde(rename = "ES384")]
    Es384,
    /// Ed25519.
    EdDSA,
    /// RSA PKCS#1 v1.5 with SHA-256 (2048-bit; slow to sign).
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

/// The key ring: the configured key files, or a generated key.
pub(super) fn load(config: &KeysConfig, base_dir: &Path) -> Result<KeyRing, BuildError> {
    if !config.files.is_empty() {
        if config.algorithm.is_some() || config.generated_key_file.is_some() {
            return Err(BuildError::invalid(
                "[keys]",
                "`files` excludes `algorithm` and `generated_key_file`, which describe a \
                 generated key",
            ));
        }
        return load_files(&config.files, base_dir);
    }
    let algorithm = config.algorithm.unwrap_or_default();
    let key = match &config.generated_key_file {
        Some(file) => load_or_generate(&resolve(base_dir, file), algorithm)?,
        None => {
            let key = generate(algorithm)?;
            tracing::warn!(
                %algorithm,
                kid = key.kid(),
                "generated an in-memory signing key: its tokens do not verify after a restart"
            );
            key
        }
    };
    Ok(KeyRing::new(key))
}

/// Reads every key file: the first is active, the others only published.
fn load_files(files: &[PathBuf], base_dir: &Path) -> Result<KeyRing, BuildError> {
    let mut kids = HashSet::new();
    let mut ring: Option<KeyRing> = None;
    for file in files {
        let path = resolve(base_dir, file);
        let pem =
            fs::read(&path).map_err(|e| BuildError::read("read key file", path.clone(), e))?;
        let key = SigningKey::from_pem(&pem).map_err(|source| key_error(&path, source))?;
        if !kids.insert(key.kid().to_owned()) {
            let reason = format!("{} repeats a key listed before", path.display());
            return Err(BuildError::invalid("[keys]", reason));
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
    ring.ok_or_else(|| BuildError::invalid("[keys]", "`files` is empty"))
}

fn key_error(path: &Path, source: crate::keys::KeyError) -> BuildError {
    BuildError::Key {
        at: format!("key file {}", path.display()),
        source,
    }
}

fn generate(algorithm: KeyAlgorithm) -> Result<SigningKey, BuildError> {
    SigningKey::generate(algorithm.into()).map_err(|source| BuildError::Key {
        at: format!("cannot generate a {algorithm} key"),
        source,
    })
}

/// Reads the generated key kept at `path`, or generates and saves one.
fn load_or_generate(path: &Path, algorithm: KeyAlgorithm) -> Result<SigningKey, BuildError> {
    let pem = match fs::read(path) {
        Ok(pem) => pem,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return generate_and_save(path, algorithm);
        }
        Err(error) => return Err(BuildError::read("read key file", path.to_owned(), error)),
    };
    let key = SigningKey::from_pem(&pem).map_err(|source| key_error(path, source))?;
    if key.algorithm() != Algorithm::from(algorithm) {
        return Err(BuildError::invalid(
            "[keys]",
            format!(
                "{} holds a key for {:?}, but [keys] algorithm is {algorithm}: set the \
                 algorithm back, or delete the file to generate a new key",
                path.display(),
                key.algorithm(),
            ),
        ));
    }
    tracing::info!(%algorithm, kid = key.kid(), path = %path.display(), "loaded the generated signing key");
    Ok(key)
}

fn generate_and_save(path: &Path, algorithm: KeyAlgorithm) -> Result<SigningKey, BuildError> {
    let key = generate(algorithm)?;
    let pem = key
        .to_pkcs8_pem()
        .ok_or_else(|| BuildError::invalid("[keys]", "the generated key has no PKCS#8 form"))?;
    write_private_file(path, &pem)
        .map_err(|e| BuildError::read("save the generated key to", path.to_owned(), e))?;
    tracing::info!(%algorithm, kid = key.kid(), path = %path.display(), "generated a signing key and saved it");
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
