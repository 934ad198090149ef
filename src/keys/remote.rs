//! Keys fetched over HTTP, from a JWKS URL or from the `jwks_uri` that
//! OpenID discovery finds for an issuer: cached, refreshed when stale or
//! when a token names an unknown `kid` (rate-limited), served from the last
//! good copy while the source is down, and failing closed when there never
//! was one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::JwkSet;

use super::KeySet;
use super::discovery::discover_jwks_uri;
use super::fetch::{FetchError, FetchedDocument, JwksFetcher, without_credentials};

/// Bounds on caching and refreshing a remote JWKS.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CachePolicy {
    /// Used when the response has no `max-age` (default 5 minutes).
    pub default_ttl: Duration,
    /// `max-age` is raised to at least this (default 30 seconds); it wins
    /// over `max_ttl` when the two are given in the wrong order.
    pub min_ttl: Duration,
    /// `max-age` is lowered to at most this (default 1 day; `Duration::MAX`
    /// for no bound).
    pub max_ttl: Duration,
    /// At most one refresh for an unknown `kid` per this interval (default
    /// 30 seconds), so a flood of bogus `kid`s cannot hammer the source.
    pub unknown_kid_cooldown: Duration,
    /// After a failed fetch, wait this long before trying again (default 10
    /// seconds); meanwhile the last good copy is served.
    pub failure_backoff: Duration,
    /// Timeout of one fetch (default 10 seconds).
    pub fetch_timeout: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(86_400),
            unknown_kid_cooldown: Duration::from_secs(30),
            failure_backoff: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(10),
        }
    }
}

/// Keys fetched over HTTP: a JWKS URL ([`new`](Self::new)), or an issuer
/// known only by its URL, whose `jwks_uri` OpenID discovery finds on first
/// use ([`discover`](Self::discover)). Cheap to clone; clones share the
/// cache.
///
/// Reads never lock: the key set is swapped atomically. Only one fetch runs
/// at a time. A stale copy is refreshed in the background while every
/// request goes on with it, so a slow or broken source delays no token whose
/// key is cached; only tokens with an unknown `kid` wait for a fetch. A
/// failed fetch (or discovery) is retried after
/// [`CachePolicy::failure_backoff`]; meanwhile the last good copy is served,
/// or, if there never was one, every token is refused (fail closed).
///
/// Discovery is lazy, so a service can start before its issuer does; once
/// found, the `jwks_uri` is kept for good. The metadata's `issuer` must
/// equal the configured one (OpenID Connect Discovery §4.3, RFC 8414 §3.3),
/// so a discovered source speaks only for its own issuer.
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

/// Where the JWKS is.
enum Location {
    /// A JWKS URL.
    Url(String),
    /// The `jwks_uri` of an issuer's metadata, once discovered.
    Discovered {
        issuer: String,
        jwks_uri: OnceLock<String>,
    },
}

struct Inner {
    location: Location,
    fetcher: Arc<dyn JwksFetcher>,
    policy: CachePolicy,
    current: ArcSwapOption<Cached>,
    refresh: Arc<tokio::sync::Mutex<()>>,
    /// Milliseconds since `epoch` of the last fetch attempt (0: never).
    last_attempt: AtomicU64,
    last_failed: AtomicBool,
    epoch: Instant,
}

struct Cached {
    keys: Arc<KeySet>,
    expires: Instant,
}

impl RemoteJwks {
    /// The JWKS at `url`, fetched with `fetcher`, with the default policy.
    pub fn new(url: impl Into<String>, fetcher: Arc<dyn JwksFetcher>) -> Self {
        Self::with_policy(url, fetcher, CachePolicy::default())
    }

    /// The JWKS at `url` with a cache policy.
    pub fn with_policy(
        url: impl Into<String>,
        fetcher: Arc<dyn JwksFetcher>,
        policy: CachePolicy,
    ) -> Self {
        Self::at(Location::Url(url.into()), fetcher, policy)
    }

    /// The JWKS of `issuer` (exactly as its tokens' `iss`), found by OpenID
    /// discovery (`<issuer>/.well-known/openid-configuration`, then RFC
    /// 8414's location), with the default policy.
    pub fn discover(issuer: impl Into<String>, fetcher: Arc<dyn JwksFetcher>) -> Self {
        Self::discover_with_policy(issuer, fetcher, CachePolicy::default())
    }

    /// Like [`discover`](Self::discover), with a cache policy.
    pub fn discover_with_policy(
        issuer: impl Into<String>,
        fetcher: Arc<dyn JwksFetcher>,
        policy: CachePolicy,
    ) -> Self {
        let location = Location::Discovered {
            issuer: issuer.into(),
            jwks_uri: OnceLock::new(),
        };
        Self::at(location, fetcher, policy)
    }

    fn at(location: Location, fetcher: Arc<dyn JwksFetcher>, policy: CachePolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                location,
                fetcher,
                policy,
                current: ArcSwapOption::empty(),
                refresh: Arc::new(tokio::sync::Mutex::new(())),
                last_attempt: AtomicU64::new(0),
                last_failed: AtomicBool::new(false),
                epoch: Instant::now(),
            }),
        }
    }

    /// The JWKS URL; for a discovered source, the issuer URL.
    pub fn url(&self) -> &str {
        match &self.inner.location {
            Location::Url(url) => url,
            Location::Discovered { issuer, .. } => issuer,
        }
    }

    /// The issuer a discovered source speaks for; `None` for a JWKS URL,
    /// which speaks for whichever issuer it is configured with.
    pub fn issuer(&self) -> Option<&str> {
        match &self.inner.location {
            Location::Url(_) => None,
            Location::Discovered { issuer, .. } => Some(issuer),
        }
    }

    /// The JWKS URL, once known (at once for [`new`](Self::new), after
    /// discovery for [`discover`](Self::discover)).
    pub fn jwks_uri(&self) -> Option<&str> {
        match &self.inner.location {
            Location::Url(url) => Some(url),
            Location::Discovered { jwks_uri, .. } => jwks_uri.get().map(String::as_str),
        }
    }

    /// The current keys: the cached copy while fresh; when stale, the stale
    /// copy, while one background task refreshes it (needs a tokio runtime);
    /// when there was never a copy, a fetch (and its error: fail closed).
    pub async fn keys(&self) -> Result<Arc<KeySet>, FetchError> {
        let inner = &self.inner;
        if let Some(cached) = &*inner.current.load() {
            if Instant::now() < cached.expires {
                return Ok(cached.keys.clone());
            }
            // Unless someone is refreshing already, or it failed a moment
            // ago, refresh in the background; go on with the stale copy.
            if !inner.in_backoff()
                && let Ok(guard) = inner.refresh.clone().try_lock_owned()
            {
                let task = self.inner.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    // A failure is logged; the stale copy stays.
                    let _ = task.fetch().await;
                });
            }
            return Ok(cached.keys.clone());
        }
        let _guard = inner.refresh.lock().await;
        if let Some(cached) = &*inner.current.load() {
            return Ok(cached.keys.clone());
        }
        if inner.in_backoff() {
            return Err(FetchError::Backoff);
        }
        inner.fetch().await
    }

    /// Refetches because a token named a `kid` that the cached keys lack, at
    /// most once per [`CachePolicy::unknown_kid_cooldown`]. Returns the keys
    /// after the refresh (or the current ones when rate-limited or when the
    /// refresh failed).
    pub async fn refresh_for_unknown_kid(&self, kid: &str) -> Result<Arc<KeySet>, FetchError> {
        let inner = &self.inner;
        let _guard = inner.refresh.lock().await;
        if let Some(cached) = &*inner.current.load() {
            // Another task may have refreshed while we waited.
            if cached.keys.contains_kid(kid)
                || inner.since_last_attempt() < inner.policy.unknown_kid_cooldown
            {
                return Ok(cached.keys.clone());
            }
        } else if inner.in_backoff() {
            return Err(FetchError::Backoff);
        }
        match inner.fetch().await {
            Ok(keys) => Ok(keys),
            Err(error) => match &*inner.current.load() {
                Some(cached) => Ok(cached.keys.clone()),
                None => Err(error),
            },
        }
    }
}

impl Inner {
    fn now_millis(&self) -> u64 {
        // +1 so that 0 keeps meaning "never".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn since_last_attempt(&self) -> Duration {
        match self.last_attempt.load(Ordering::Acquire) {
            0 => Duration::MAX,
            at => Duration::from_millis(self.now_millis().saturating_sub(at)),
        }
    }

    fn in_backoff(&self) -> bool {
        self.last_failed.load(Ordering::Acquire)
            && self.since_last_attempt() < self.policy.failure_backoff
    }

    /// One fetch (after discovery, if needed), counted and, when it fails,
    /// logged with the source's URL. Callers hold `refresh`.
    async fn fetch(&self) -> Result<Arc<KeySet>, FetchError> {
        self.last_attempt
            .store(self.now_millis(), Ordering::Release);
        let result = self.fetch_once().await;
        self.last_failed.store(result.is_err(), Ordering::Release);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => {
                let url = match &self.location {
                    Location::Url(url) => url,
                    Location::Discovered { issuer, .. } => issuer,
                };
                let url = without_credentials(url);
                tracing::warn!(%url, %error, "JWKS fetch failed; serving the last good copy if any");
                error.outcome()
            }
        };
        metrics::counter!(crate::observe::JWKS_FETCHES, "outcome" => outcome).increment(1);
        result
    }

    /// `fetcher.fetch(url)` within the policy's timeout.
    async fn get(&self, url: &str) -> Result<FetchedDocument, FetchError> {
        tokio::time::timeout(self.policy.fetch_timeout, self.fetcher.fetch(url))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    async fn jwks_uri(&self) -> Result<&str, FetchError> {
        match &self.location {
            Location::Url(url) => Ok(url),
            Location::Discovered { issuer, jwks_uri } => {
                if let Some(known) = jwks_uri.get() {
                    return Ok(known);
                }
                let discovery = discover_jwks_uri(&*self.fetcher, issuer);
                let found = tokio::time::timeout(self.policy.fetch_timeout, discovery)
                    .await
                    .map_err(|_| FetchError::Timeout)??;
                tracing::debug!(
                    issuer = %without_credentials(issuer),
                    jwks_uri = %without_credentials(&found),
                    "issuer discovered"
                );
                Ok(jwks_uri.get_or_init(|| found))
            }
        }
    }

    async fn fetch_once(&self) -> Result<Arc<KeySet>, FetchError> {
        let url = self.jwks_uri().await?;
        let document = self.get(url).await?;
        // JSON is UTF-8 (RFC 8259 §8.1): checked first, since serde_json
        // skips the strings of members it ignores without checking them.
        let jwks: JwkSet = std::str::from_utf8(&document.body)
            .ok()
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or(FetchError::NotAJwks)?;
        let keys = Arc::new(KeySet::from_jwks(&jwks));
        // Not `clamp`, which panics on bounds given in the wrong order:
        // then `min_ttl` wins.
        let ttl = document
            .max_age
            .unwrap_or(self.policy.default_ttl)
            .min(self.policy.max_ttl)
            .max(self.policy.min_ttl);
        self.current.store(Some(Arc::new(Cached {
            keys: keys.clone(),
            expires: deadline(ttl),
        })));
        let url = without_credentials(url);
        tracing::debug!(%url, keys = keys.keys().count(), ?ttl, "JWKS fetched");
        Ok(keys)
    }
}

/// `ttl` from now; a TTL past what an `Instant` can hold (a `max-age` of
/// 2^64 - 1 seconds with no `max_ttl`) means a century.
fn deadline(ttl: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    let now = Instant::now();
    now.checked_add(ttl)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.url())
            .field("jwks_uri", &self.jwks_uri())
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}
