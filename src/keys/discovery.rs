//! OpenID Connect Discovery (and RFC 8414): an issuer URL alone leads to its
//! `jwks_uri`, whose keys are then fetched and cached by a [`RemoteJwks`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{CachePolicy, FetchError, JwksFetcher, KeySet, KeySourceError, RemoteJwks};

/// The metadata URLs of `issuer`, in the order they are tried: OpenID
/// Connect Discovery 1.0 §4 (`<issuer>/.well-known/openid-configuration`),
/// then RFC 8414 §3.1 (the well-known suffix inserted before the issuer's
/// path).
pub fn metadata_urls(issuer: &str) -> [String; 2] {
    let trimmed = issuer.trim_end_matches('/');
    let openid = format!("{trimmed}/.well-known/openid-configuration");
    let rfc8414 = match trimmed.split_once("://") {
        Some((scheme, rest)) => match rest.find('/') {
            Some(slash) => format!(
                "{scheme}://{}/.well-known/oauth-authorization-server{}",
                &rest[..slash],
                &rest[slash..]
            ),
            None => format!("{scheme}://{rest}/.well-known/oauth-authorization-server"),
        },
        None => format!("{trimmed}/.well-known/oauth-authorization-server"),
    };
    [openid, rfc8414]
}

#[derive(Deserialize)]
struct Metadata {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// Finds the `jwks_uri` of `issuer` from its metadata document.
///
/// The document's `issuer` must equal `issuer` exactly (OpenID Connect
/// Discovery §4.3, RFC 8414 §3.3), so a metadata document cannot vouch for
/// another issuer. The RFC 8414 location is tried when the OpenID one
/// answers 404.
pub async fn discover_jwks_uri(
    fetcher: &dyn JwksFetcher,
    issuer: &str,
) -> Result<String, KeySourceError> {
    let [openid, rfc8414] = metadata_urls(issuer);
    let (url, document) = match fetcher.fetch(&openid).await {
        Err(FetchError::Status(404)) => {
            let document = fetcher.fetch(&rfc8414).await;
            (rfc8414, document)
        }
        document => (openid, document),
    };
    let document = document.map_err(|source| KeySourceError::Unavailable {
        url: url.clone(),
        source,
    })?;
    let discovery = |reason| KeySourceError::Discovery {
        url: url.clone(),
        reason,
    };
    // JSON is UTF-8 (RFC 8259 §8.1): checked first, since serde_json skips
    // the strings of members it ignores without checking them.
    let metadata: Metadata = std::str::from_utf8(&document.body)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| discovery("the document is not authorization server metadata"))?;
    if metadata.issuer.as_deref() != Some(issuer) {
        return Err(discovery(
            "the metadata's issuer differs from the configured issuer",
        ));
    }
    metadata
        .jwks_uri
        .filter(|uri| !uri.is_empty())
        .ok_or_else(|| discovery("the metadata has no jwks_uri"))
}

/// The keys of an issuer known only by its URL: its `jwks_uri` is found by
/// OpenID discovery on first use, then read through a [`RemoteJwks`] (cache,
/// refresh on unknown `kid`, last good copy, fail closed).
///
/// Discovery is lazy, so a service can start before its issuer does; a
/// failed discovery is retried after [`CachePolicy::failure_backoff`].
/// Cheap to clone; clones share the discovery and the key cache.
#[derive(Clone)]
pub struct DiscoveredJwks {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    fetcher: Arc<dyn JwksFetcher>,
    policy: CachePolicy,
    remote: tokio::sync::OnceCell<RemoteJwks>,
    /// Milliseconds since `epoch` of the last failed discovery (0: none).
    last_failure: AtomicU64,
    epoch: Instant,
}

impl DiscoveredJwks {
    /// The issuer `issuer` (exactly as its tokens' `iss`), with the default
    /// cache policy.
    pub fn new(issuer: impl Into<String>, fetcher: Arc<dyn JwksFetcher>) -> Self {
        Self::with_policy(issuer, fetcher, CachePolicy::default())
    }

    /// The issuer `issuer` with a cache policy for its JWKS.
    pub fn with_policy(
        issuer: impl Into<String>,
        fetcher: Arc<dyn JwksFetcher>,
        policy: CachePolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer: issuer.into(),
                fetcher,
                policy,
                remote: tokio::sync::OnceCell::new(),
                last_failure: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The issuer's JWKS, once discovered.
    pub fn resolved(&self) -> Option<&RemoteJwks> {
        self.inner.remote.get()
    }

    /// The issuer's JWKS: discovered on the first call (one discovery at a
    /// time), then the same [`RemoteJwks`] for good.
    pub async fn remote(&self) -> Result<&RemoteJwks, KeySourceError> {
        let inner = &*self.inner;
        if let Some(remote) = inner.remote.get() {
            return Ok(remote);
        }
        let failed_at = inner.last_failure.load(Ordering::Acquire);
        if failed_at != 0 {
            let since = Duration::from_millis(inner.now_millis().saturating_sub(failed_at));
            if since < inner.policy.failure_backoff {
                return Err(KeySourceError::Backoff {
                    url: metadata_urls(&inner.issuer)[0].clone(),
                });
            }
        }
        inner
            .remote
            .get_or_try_init(|| async {
                let discovered = tokio::time::timeout(
                    inner.policy.fetch_timeout,
                    discover_jwks_uri(&*inner.fetcher, &inner.issuer),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(KeySourceError::Unavailable {
                        url: metadata_urls(&inner.issuer)[0].clone(),
                        source: FetchError::Timeout,
                    })
                });
                match discovered {
                    Ok(jwks_uri) => {
                        tracing::debug!(issuer = %inner.issuer, %jwks_uri, "issuer discovered");
                        Ok(RemoteJwks::with_policy(
                            jwks_uri,
                            inner.fetcher.clone(),
                            inner.policy,
                        ))
                    }
                    Err(error) => {
                        tracing::warn!(issuer = %inner.issuer, %error, "discovery failed");
                        inner
                            .last_failure
                            .store(inner.now_millis(), Ordering::Release);
                        Err(error)
                    }
                }
            })
            .await
    }

    /// The current keys (see [`RemoteJwks::keys`]).
    pub async fn keys(&self) -> Result<Arc<KeySet>, KeySourceError> {
        self.remote().await?.keys().await
    }

    /// Refetches for an unknown `kid` (see
    /// [`RemoteJwks::refresh_for_unknown_kid`]).
    pub async fn refresh_for_unknown_kid(&self, kid: &str) -> Result<Arc<KeySet>, KeySourceError> {
        self.remote().await?.refresh_for_unknown_kid(kid).await
    }
}

impl Inner {
    fn now_millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

impl std::fmt::Debug for DiscoveredJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveredJwks")
            .field("issuer", &self.inner.issuer)
            .field("jwks", &self.inner.remote.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::metadata_urls;

    #[test]
    fn metadata_urls_follow_both_specs() {
        let [openid, rfc8414] = metadata_urls("https://auth.example.com/application/o/app/");
        assert_eq!(
            openid,
            "https://auth.example.com/application/o/app/.well-known/openid-configuration"
        );
        assert_eq!(
            rfc8414,
            "https://auth.example.com/.well-known/oauth-authorization-server/application/o/app"
        );
        let [openid, rfc8414] = metadata_urls("https://auth.example.com");
        assert_eq!(
            openid,
            "https://auth.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            rfc8414,
            "https://auth.example.com/.well-known/oauth-authorization-server"
        );
    }
}
