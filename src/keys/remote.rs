//! Keys fetched from a JWKS URL: cached, refreshed when stale or when a token
//! names an unknown `kid` (rate-limited), served from the last good copy
//! while the source is down, and failing closed when there never was one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use jsonwebtoken::jwk::JwkSet;

use super::KeySet;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A fetched document and how long it may be cached.
#[derive(Debug, Clone)]
pub struct FetchedDocument {
    /// The response body.
    pub body: Bytes,
    /// `Cache-Control: max-age` of the response, if any (`no-store` and
    /// `no-cache` count as zero).
    pub max_age: Option<Duration>,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not allowed (e.g. plain `http` to a non-loopback host).
    #[error("URL not allowed: {0}")]
    Forbidden(&'static str),
    /// The server answered with a non-success status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The response exceeded the size limit.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The request did not complete in time.
    #[error("timed out")]
    Timeout,
    /// Any other transport error.
    #[error("transport error: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Fetches documents (JWKS, discovery metadata) over HTTP. Implement it to
/// use your own client (custom CA, proxy, mTLS); [`ReqwestFetcher`] is the
/// default.
pub trait JwksFetcher: Send + Sync + 'static {
    /// GETs `url`.
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<FetchedDocument, FetchError>>;
}

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

/// Why remote keys are not available.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySourceError {
    /// The keys were never fetched successfully (fail closed).
    #[error("JWKS from {url} unavailable: {source}")]
    Unavailable {
        /// The JWKS URL.
        url: String,
        /// The last fetch error.
        #[source]
        source: FetchError,
    },
    /// The document is not a JWKS.
    #[error("the document at {url} is not a JWK set")]
    NotAJwks {
        /// The JWKS URL.
        url: String,
    },
    /// A fetch was refused by the rate limit and there is no copy to serve.
    #[error("JWKS from {url} not fetched yet; retry later")]
    Backoff {
        /// The JWKS URL.
        url: String,
    },
    /// OpenID discovery found no usable `jwks_uri`.
    #[error("discovery at {url} failed: {reason}")]
    Discovery {
        /// The metadata URL.
        url: String,
        /// What was wrong with the metadata.
        reason: &'static str,
    },
}

/// A JWKS URL with its cache. Cheap to clone; clones share the cache.
///
/// Reads never lock: the key set is swapped atomically. Only one fetch runs
/// at a time. A stale copy is refreshed in the background while every
/// request goes on with it, so a slow or broken source delays no token whose
/// key is cached; only tokens with an unknown `kid` wait for a fetch.
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    fetcher: Arc<dyn JwksFetcher>,
    policy: CachePolicy,
    current: ArcSwapOption<Cached>,
    refresh: Arc<tokio::sync::Mutex<()>>,
    /// Milliseconds since `epoch` of the last fetch attempt (0: never).
    last_attempt: AtomicU64,
    last_failed: std::sync::atomic::AtomicBool,
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
        Self {
            inner: Arc::new(Inner {
                url: url.into(),
                fetcher,
                policy,
                current: ArcSwapOption::empty(),
                refresh: Arc::new(tokio::sync::Mutex::new(())),
                last_attempt: AtomicU64::new(0),
                last_failed: std::sync::atomic::AtomicBool::new(false),
                epoch: Instant::now(),
            }),
        }
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The current keys: the cached copy while fresh; when stale, the stale
    /// copy, while one background task refreshes it (needs a tokio runtime);
    /// when there was never a copy, a fetch (and its error: fail closed).
    pub async fn keys(&self) -> Result<Arc<KeySet>, KeySourceError> {
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
                    task.fetch().await;
                });
            }
            return Ok(cached.keys.clone());
        }
        let _guard = inner.refresh.lock().await;
        if let Some(cached) = &*inner.current.load() {
            return Ok(cached.keys.clone());
        }
        if inner.in_backoff() {
            return Err(KeySourceError::Backoff {
                url: inner.url.clone(),
            });
        }
        inner.fetch_or_error().await
    }

    /// Refetches because a token named a `kid` that the cached keys lack, at
    /// most once per [`CachePolicy::unknown_kid_cooldown`]. Returns the keys
    /// after the refresh (or the current ones when rate-limited).
    pub async fn refresh_for_unknown_kid(&self, kid: &str) -> Result<Arc<KeySet>, KeySourceError> {
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
            return Err(KeySourceError::Backoff {
                url: inner.url.clone(),
            });
        }
        match inner.fetch_or_error().await {
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

    async fn fetch(&self) -> Option<Arc<KeySet>> {
        match self.fetch_or_error().await {
            Ok(keys) => Some(keys),
            Err(error) => {
                tracing::warn!(%error, "JWKS refresh failed; serving the last good copy");
                None
            }
        }
    }

    async fn fetch_or_error(&self) -> Result<Arc<KeySet>, KeySourceError> {
        self.last_attempt
            .store(self.now_millis(), Ordering::Release);
        let result = self.fetch_once().await;
        self.last_failed.store(result.is_err(), Ordering::Release);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(KeySourceError::Unavailable {
                source: FetchError::Timeout,
                ..
            }) => "timeout",
            Err(KeySourceError::NotAJwks { .. }) => "not_a_jwks",
            Err(_) => "unavailable",
        };
        metrics::counter!(crate::observe::JWKS_FETCHES, "outcome" => outcome).increment(1);
        result
    }

    async fn fetch_once(&self) -> Result<Arc<KeySet>, KeySourceError> {
        let unavailable = |source| KeySourceError::Unavailable {
            url: self.url.clone(),
            source,
        };
        let document =
            tokio::time::timeout(self.policy.fetch_timeout, self.fetcher.fetch(&self.url))
                .await
                .map_err(|_| unavailable(FetchError::Timeout))?
                .map_err(unavailable)?;
        // JSON is UTF-8 (RFC 8259 §8.1): checked first, since serde_json
        // skips the strings of members it ignores without checking them.
        let jwks: JwkSet = std::str::from_utf8(&document.body)
            .ok()
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| KeySourceError::NotAJwks {
                url: self.url.clone(),
            })?;
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
        tracing::debug!(url = %self.url, keys = keys.keys().count(), ?ttl, "JWKS fetched");
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
            .field("url", &self.inner.url)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// The `max-age` of a `Cache-Control` header value (`no-store`/`no-cache`:
/// zero).
pub fn cache_max_age(cache_control: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            max_age = seconds
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age
}

/// The one check of a URL to fetch keys or metadata from: an absolute
/// `https` URL, or plain `http` to a loopback host (keys fetched over http
/// elsewhere could be swapped on the way). [`ReqwestFetcher`] applies it to
/// every fetch; the configuration applies it when a source is configured.
#[cfg(any(feature = "reqwest", feature = "config"))]
pub(crate) fn check_fetch_url(url: &str) -> Result<(), FetchError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| FetchError::Forbidden("not a URL"))?;
    if uri.host().is_none() {
        return Err(FetchError::Forbidden("not an absolute URL"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_http(&uri) => Ok(()),
        _ => Err(FetchError::Forbidden(
            "only https (or http to loopback) is allowed",
        )),
    }
}

/// Whether a URL names a loopback host, where plain HTTP is allowed.
#[cfg(any(feature = "reqwest", feature = "config"))]
fn is_loopback_http(url: &http::Uri) -> bool {
    match url.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(feature = "reqwest")]
pub use self::reqwest_fetcher::ReqwestFetcher;

#[cfg(feature = "reqwest")]
mod reqwest_fetcher {
    use std::time::Duration;

    use bytes::BytesMut;

    use super::{
        BoxFuture, FetchError, FetchedDocument, JwksFetcher, cache_max_age, check_fetch_url,
    };

    /// The default [`JwksFetcher`], on reqwest with rustls (aws-lc-rs) and the
    /// platform's trust store.
    ///
    /// HTTPS only, except to loopback hosts; responses are limited in size
    /// (default 1 MiB) and time (default 10 seconds); redirects are not
    /// followed.
    #[derive(Debug, Clone)]
    pub struct ReqwestFetcher {
        client: reqwest::Client,
        max_size: usize,
        allow_http: bool,
    }

    impl ReqwestFetcher {
        /// A fetcher with its own client.
        pub fn new() -> Self {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("tower-m2m-auth/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default();
            Self::with_client(client)
        }

        /// A fetcher using your client (custom CA, proxy, mTLS, timeouts).
        pub fn with_client(client: reqwest::Client) -> Self {
            Self {
                client,
                max_size: 1024 * 1024,
                allow_http: false,
            }
        }

        /// The largest accepted response (default 1 MiB).
        pub fn max_size(mut self, bytes: usize) -> Self {
            self.max_size = bytes;
            self
        }

        /// Allows plain HTTP to any host. Keys fetched over HTTP can be
        /// replaced by anyone on the path: for tests and closed networks only.
        pub fn danger_allow_http(mut self) -> Self {
            self.allow_http = true;
            self
        }
    }

    impl Default for ReqwestFetcher {
        fn default() -> Self {
            Self::new()
        }
    }

    impl JwksFetcher for ReqwestFetcher {
        fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
            Box::pin(async move {
                let plain_http = url
                    .parse::<http::Uri>()
                    .is_ok_and(|uri| uri.scheme_str() == Some("http") && uri.host().is_some());
                if !(self.allow_http && plain_http) {
                    check_fetch_url(url)?;
                }
                let mut response = self
                    .client
                    .get(url)
                    .header(
                        http::header::ACCEPT,
                        "application/json, application/jwk-set+json",
                    )
                    .send()
                    .await
                    .map_err(transport)?;
                if !response.status().is_success() {
                    return Err(FetchError::Status(response.status().as_u16()));
                }
                let max_age = response
                    .headers()
                    .get(http::header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok())
                    .and_then(cache_max_age);
                if response
                    .content_length()
                    .is_some_and(|len| len > self.max_size as u64)
                {
                    return Err(FetchError::TooLarge(self.max_size));
                }
                let mut body = BytesMut::new();
                while let Some(chunk) = response.chunk().await.map_err(transport)? {
                    if body.len() + chunk.len() > self.max_size {
                        return Err(FetchError::TooLarge(self.max_size));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(FetchedDocument {
                    body: body.freeze(),
                    max_age,
                })
            })
        }
    }

    fn transport(error: reqwest::Error) -> FetchError {
        if error.is_timeout() {
            FetchError::Timeout
        } else {
            FetchError::Transport(Box::new(error))
        }
    }
}
