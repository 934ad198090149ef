//! Fetching documents (JWKS, discovery metadata) over HTTP: the
//! [`JwksFetcher`] trait, its default [`ReqwestFetcher`], and what a custom
//! fetcher needs ([`FetchedDocument`], [`FetchError`], [`BoxFuture`],
//! [`cache_max_age`]).
//!
//! ```
//! use std::time::Duration;
//! use tower_m2m_auth::keys::fetch::{
//!     BoxFuture, FetchError, FetchedDocument, JwksFetcher, cache_max_age,
//! };
//!
//! /// Serves one fixed document, whatever the URL.
//! struct Fixed(&'static str);
//!
//! impl JwksFetcher for Fixed {
//!     fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
//!         Box::pin(async move {
//!             Ok(FetchedDocument {
//!                 body: self.0.as_bytes().to_vec().into(),
//!                 max_age: cache_max_age("public, max-age=60"),
//!             })
//!         })
//!     }
//! }
//! # assert_eq!(cache_max_age("max-age=60"), Some(Duration::from_secs(60)));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

#[cfg(feature = "reqwest")]
pub use self::reqwest_fetcher::ReqwestFetcher;

/// A boxed, sendable future: what [`JwksFetcher::fetch`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A fetched document and how long it may be cached.
#[derive(Debug, Clone)]
pub struct FetchedDocument {
    /// The response body.
    pub body: Bytes,
    /// `Cache-Control: max-age` of the response, if any (`no-store` and
    /// `no-cache` count as zero; see [`cache_max_age`]).
    pub max_age: Option<Duration>,
}

/// Why remote keys could not be fetched: the transport (what a
/// [`JwksFetcher`] returns) or the document. Never names a secret; the URL
/// is logged beside it.
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
    /// The document is not a JWK set.
    #[error("the document is not a JWK set")]
    NotAJwks,
    /// OpenID discovery found no usable `jwks_uri`.
    #[error("discovery failed: {0}")]
    Discovery(&'static str),
    /// A fetch failed a moment ago and there is no copy to serve: not
    /// retried until [`CachePolicy::failure_backoff`](super::CachePolicy::failure_backoff)
    /// has passed.
    #[error("not fetched yet; retry later")]
    Backoff,
}

impl FetchError {
    /// The outcome label of the `tower_m2m_auth_jwks_fetches_total` metric.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            FetchError::Timeout => "timeout",
            FetchError::NotAJwks => "not_a_jwks",
            FetchError::Discovery(_) => "discovery_failed",
            _ => "unavailable",
        }
    }
}

/// Fetches documents (JWKS, discovery metadata) over HTTP. Implement it to
/// use your own client (custom CA, proxy, mTLS); [`ReqwestFetcher`] is the
/// default.
pub trait JwksFetcher: Send + Sync + 'static {
    /// GETs `url`.
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<FetchedDocument, FetchError>>;
}

/// The `max-age` of a `Cache-Control` header value (`no-store`/`no-cache`:
/// zero), for a custom [`JwksFetcher`]'s [`FetchedDocument::max_age`].
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

/// The rule for a URL to fetch keys from (a JWKS URL, or an issuer URL
/// for discovery): absolute, without credentials (`user:password@`, which
/// every log line and error naming the URL would carry), and `https`, or
/// plain `http` to a loopback host only (keys fetched over `http` could be
/// swapped on the way) unless `allow_http`. [`ReqwestFetcher`] applies it
/// to every fetch; a configuration can apply it at start.
#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
pub(crate) fn check_url(url: &str, allow_http: bool) -> Result<(), FetchError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| FetchError::Forbidden("not a URL"))?;
    let Some(host) = uri.host() else {
        return Err(FetchError::Forbidden("not an absolute URL"));
    };
    if uri
        .authority()
        .is_some_and(|authority| authority.as_str().contains('@'))
    {
        return Err(FetchError::Forbidden(
            "credentials in the URL (user:password@) are not allowed",
        ));
    }
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_http || loopback => Ok(()),
        _ => Err(FetchError::Forbidden(
            "only https (or http to loopback) is allowed",
        )),
    }
}

#[cfg(feature = "reqwest")]
mod reqwest_fetcher {
    use std::time::Duration;

    use bytes::BytesMut;

    use super::{BoxFuture, FetchError, FetchedDocument, JwksFetcher, cache_max_age, check_url};

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
                check_url(url, self.allow_http)?;
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

/// `url` as logs and errors may show it: without the credentials of its
/// authority (`https://user:password@host/` gives `https://…@host/`), which
/// [`check_url`] refuses but a URL may still hold when it is reported.
pub(crate) fn without_credentials(url: &str) -> std::borrow::Cow<'_, str> {
    let start = url.find("://").map_or(0, |at| at + 3);
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| start + at);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}…{}", &url[..start], &url[start + at..]).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{FetchError, check_url, without_credentials};

    #[test]
    fn urls_are_reported_without_their_credentials() {
        let rows = [
            (
                "https://user:pa55@auth.example/jwks",
                "https://…@auth.example/jwks",
            ),
            ("https://user@auth.example", "https://…@auth.example"),
            (
                "https://a:b@c@auth.example/x@y",
                "https://…@auth.example/x@y",
            ),
            (
                "https://auth.example/jwks?user=a@b",
                "https://auth.example/jwks?user=a@b",
            ),
            ("not a url", "not a url"),
        ];
        for (url, shown) in rows {
            assert_eq!(without_credentials(url), shown, "{url}");
        }
    }

    #[test]
    fn keys_are_fetched_over_https_or_from_loopback_only() {
        for url in [
            "https://auth.example/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://[::1]/jwks",
            "http://localhost/jwks",
        ] {
            assert!(check_url(url, false).is_ok(), "{url}");
        }
        for url in [
            "http://auth.example/jwks",
            "ftp://auth.example/jwks",
            "/jwks",
            "not a url",
            "https://user:password@auth.example/jwks",
            "http://user@127.0.0.1/jwks",
        ] {
            assert!(
                matches!(check_url(url, false), Err(FetchError::Forbidden(_))),
                "{url}"
            );
        }
        assert!(check_url("http://auth.example/jwks", true).is_ok());
    }
}
