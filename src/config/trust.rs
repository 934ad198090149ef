//! `[[applications.trusted_issuers]]`: the issuers whose input JWTs an
//! application trusts, and the key sources that speak for each.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::resolve;
use crate::keys::fetch::JwksFetcher;
use crate::keys::{KeySet, RemoteJwks, TrustedIssuer, VerificationKey, VerificationKeys};

/// One `[[applications.trusted_issuers]]` entry: an issuer (the exact `iss`
/// of its JWTs) and the key sources that speak for it, at least one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TrustedIssuerConfig {
    /// The exact `iss` of the JWTs its keys sign.
    pub issuer: String,
    /// Find the JWKS by OpenID discovery from the issuer URL.
    #[serde(default)]
    pub discovery: bool,
    /// A JWKS URL, fetched and cached (https, or http to loopback only).
    pub jwks_url: Option<String>,
    /// PEM files of `CERTIFICATE` or `PUBLIC KEY` blocks.
    #[serde(default)]
    pub certificates: Vec<PathBuf>,
    /// JSON Web Key Set files.
    #[serde(default)]
    pub jwks_files: Vec<PathBuf>,
}

/// Fetches a remote key source now (a JWKS URL, or an issuer's JWKS found
/// by discovery) and logs the outcome, to report at start a source that
/// cannot be read. Not fatal: until it can be, the input JWTs it should
/// verify are refused (503).
pub async fn prefetch(remote: &RemoteJwks) {
    let source = remote.issuer().unwrap_or(remote.url());
    match remote.keys().await {
        Ok(keys) if keys.is_empty() => {
            tracing::warn!(
                source,
                "the JWKS has no usable key: no input JWT verifies with it"
            );
        }
        Ok(keys) => tracing::info!(source, keys = keys.keys().count(), "JWKS fetched"),
        Err(error) => tracing::warn!(
            source,
            %error,
            "cannot fetch the JWKS yet: the input JWTs it should verify are refused until it can"
        ),
    }
}

/// The keys of the trusted issuers, each bound to its issuer.
pub(super) fn verification_keys(
    configs: &[TrustedIssuerConfig],
    base_dir: &Path,
    remotes: &mut Remotes,
) -> Result<VerificationKeys, String> {
    let mut keys = VerificationKeys::new();
    let mut seen = HashSet::new();
    for config in configs {
        let iss = &config.issuer;
        let context = |error: String| format!("trusted_issuers {iss:?}: {error}");
        if iss.is_empty() {
            return Err("trusted_issuers: issuer is empty (it is the exact `iss` of the JWTs its keys sign)".into());
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
                "no key source: set discovery = true, jwks_url, certificates or jwks_files".into(),
            ));
        }
        let mut issuer = if config.discovery {
            TrustedIssuer::discovered(remotes.discover(iss).map_err(context)?)
        } else {
            TrustedIssuer::new(iss)
        };
        for file in &config.certificates {
            let path = resolve(base_dir, file);
            let pem = fs::read(&path)
                .map_err(|e| context(format!("cannot read {}: {e}", path.display())))?;
            let bundle = VerificationKey::from_pem_bundle(&pem)
                .map_err(|e| context(format!("{}: {e}", path.display())))?;
            for key in bundle {
                issuer = issuer.with_key(key);
            }
        }
        for file in &config.jwks_files {
            issuer = issuer.with_jwks(&read_jwks_file(&resolve(base_dir, file)).map_err(context)?);
        }
        if let Some(url) = &config.jwks_url {
            issuer = issuer.with_remote(remotes.get(url).map_err(context)?);
        }
        keys = keys.with_issuer(issuer);
    }
    Ok(keys)
}

/// A JWKS file, with at least one key that can verify signatures.
fn read_jwks_file(path: &Path) -> Result<JwkSet, String> {
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
        tracing::warn!(path = %path.display(), skipped = jwks.keys.len() - usable, "JWKS file: skipping keys that cannot verify signatures");
    }
    Ok(jwks)
}

/// The remote sources of every application, one per distinct URL or
/// issuer, all fetched by one HTTP client.
#[derive(Default)]
pub(super) struct Remotes {
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    fetcher: Option<Arc<dyn JwksFetcher>>,
    by_url: Vec<RemoteJwks>,
    by_issuer: Vec<RemoteJwks>,
}

impl Remotes {
    /// The source for `url`, shared with the applications that trust it too.
    fn get(&mut self, url: &str) -> Result<RemoteJwks, String> {
        check_url("jwks_url", url)?;
        let fetcher = self.fetcher()?;
        Ok(shared(
            &mut self.by_url,
            |known| known.url() == url,
            || RemoteJwks::new(url, fetcher),
        ))
    }

    /// The JWKS of `issuer`, found by OpenID discovery.
    fn discover(&mut self, issuer: &str) -> Result<RemoteJwks, String> {
        check_url("issuer (with discovery = true)", issuer)?;
        let fetcher = self.fetcher()?;
        Ok(shared(
            &mut self.by_issuer,
            |known| known.issuer() == Some(issuer),
            || RemoteJwks::discover(issuer, fetcher),
        ))
    }

    /// Every source, to fetch ahead of the first input JWT.
    pub(super) fn into_sources(self) -> Vec<RemoteJwks> {
        self.by_url.into_iter().chain(self.by_issuer).collect()
    }

    #[cfg(feature = "reqwest")]
    fn fetcher(&mut self) -> Result<Arc<dyn JwksFetcher>, String> {
        let fetcher = self
            .fetcher
            .get_or_insert_with(|| Arc::new(crate::keys::fetch::ReqwestFetcher::new()));
        Ok(fetcher.clone())
    }

    #[cfg(not(feature = "reqwest"))]
    fn fetcher(&mut self) -> Result<Arc<dyn JwksFetcher>, String> {
        Err("jwks_url and discovery need the `reqwest` feature (on by default)".into())
    }
}

/// The source in `known` that `matches`, or a new one, kept there.
fn shared<T: Clone>(
    known: &mut Vec<T>,
    matches: impl Fn(&T) -> bool,
    new: impl FnOnce() -> T,
) -> T {
    if let Some(source) = known.iter().find(|source| matches(source)) {
        return source.clone();
    }
    let source = new();
    known.push(source.clone());
    source
}

/// The library's one check of a URL to fetch keys from, at start rather
/// than as a 503 on each request.
fn check_url(key: &str, url: &str) -> Result<(), String> {
    use crate::keys::fetch;
    fetch::check_url(url, false)
        .map_err(|error| format!("{key}: {:?}: {error}", fetch::without_credentials(url)))
}
