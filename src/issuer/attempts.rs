//! Limiting failed authentication attempts per `client_id` and per client
//! address, at the token, introspection and revocation endpoints.
//!
//! Only authentication failures count: credentials the verifier rejected
//! (`invalid_grant`, or `invalid_client` at introspection and revocation) and
//! `client_id`s that name no application (counted for the address only, so
//! that made-up `client_id`s cannot fill the limiter). Malformed requests do
//! not count. A key over its limit gets 429 before the verifier runs, so a
//! brute force costs no credential lookup. A success does not reset the
//! `client_id` counter: a `client_id` is public and shared by every service
//! account of its application, so one valid credential would otherwise let
//! an attacker reset the counter between guesses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::keys::BoxFuture;
use crate::store::{AttemptLimiter, FailureLimit, StoreError};

use super::TokenError;

/// The failure limits of the token endpoint's
/// [`attempt_limiter`](super::TokenEndpointLayer::attempt_limiter).
///
/// The default is 10 failures per `client_id` and 20 per client address
/// within 60 s. The address limit applies only when the endpoint knows the
/// client's address: see
/// [`client_address`](super::TokenEndpointLayer::client_address).
///
/// The limit per `client_id` also locks out that application's legitimate
/// clients while it holds: anyone who knows a `client_id` can keep its
/// clients at 429. Lower it only as far as that is acceptable; the address
/// limit has no such cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct AttemptLimits {
    client: Option<FailureLimit>,
    address: Option<FailureLimit>,
}

impl Default for AttemptLimits {
    fn default() -> Self {
        Self {
            client: Some(FailureLimit::new(10, Duration::from_secs(60))),
            address: Some(FailureLimit::new(20, Duration::from_secs(60))),
        }
    }
}

impl AttemptLimits {
    /// The defaults: 10 failures per `client_id`, 20 per address, in 60 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The limit per `client_id` (`None`: none).
    pub fn with_client_limit(mut self, limit: Option<FailureLimit>) -> Self {
        self.client = limit;
        self
    }

    /// The limit per client address (`None`: none). IPv6 addresses count
    /// per /64, the block one host usually holds.
    pub fn with_address_limit(mut self, limit: Option<FailureLimit>) -> Self {
        self.address = limit;
        self
    }

    /// The limit per `client_id`.
    pub fn client_limit(&self) -> Option<FailureLimit> {
        self.client
    }

    /// The limit per client address.
    pub fn address_limit(&self) -> Option<FailureLimit> {
        self.address
    }
}

/// An [`AttemptLimiter`] behind a pointer (its futures boxed).
pub(crate) trait Attempts: Send + Sync + 'static {
    fn check<'a>(
        &'a self,
        key: &'a str,
        limit: FailureLimit,
    ) -> BoxFuture<'a, Result<Option<Duration>, StoreError>>;
    fn record_failure<'a>(
        &'a self,
        key: &'a str,
        limit: FailureLimit,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<T: AttemptLimiter> Attempts for T {
    fn check<'a>(
        &'a self,
        key: &'a str,
        limit: FailureLimit,
    ) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        Box::pin(AttemptLimiter::check(self, key, limit))
    }

    fn record_failure<'a>(
        &'a self,
        key: &'a str,
        limit: FailureLimit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(AttemptLimiter::record_failure(self, key, limit))
    }
}

/// Where the client's address comes from.
pub(crate) type AddressSource = Arc<dyn Fn(&http::request::Parts) -> Option<IpAddr> + Send + Sync>;

/// The default address source: a `SocketAddr` in the request extensions.
pub(crate) fn socket_addr_extension() -> AddressSource {
    Arc::new(|parts: &http::request::Parts| {
        parts.extensions.get::<SocketAddr>().map(SocketAddr::ip)
    })
}

/// The limiter with its limits, as the endpoint holds it.
#[derive(Clone)]
pub(crate) struct AttemptGuard {
    pub(crate) limiter: Arc<dyn Attempts>,
    pub(crate) limits: AttemptLimits,
}

/// The keys of one request, each with its limit.
pub(crate) struct Attempt<'a> {
    guard: &'a AttemptGuard,
    address: Option<(String, FailureLimit)>,
    client: Option<(String, FailureLimit)>,
}

impl AttemptGuard {
    /// Checks the address of a request (and its `client_id`, when it names an
    /// application): 429 if either is locked out.
    pub(crate) async fn admit(
        &self,
        address: Option<IpAddr>,
        known_client_id: Option<&str>,
    ) -> Result<Attempt<'_>, TokenError> {
        let attempt = Attempt {
            guard: self,
            address: self
                .limits
                .address
                .zip(address)
                .map(|(limit, address)| (address_key(address), limit)),
            client: self
                .limits
                .client
                .zip(known_client_id)
                .map(|(limit, client_id)| (format!("client:{client_id}"), limit)),
        };
        for (key, limit) in attempt.keys() {
            match self.limiter.check(key, limit).await {
                Ok(None) => {}
                Ok(Some(wait)) => {
                    tracing::debug!(key, "too many failed attempts");
                    return Err(TokenError::TooManyAttempts(wait));
                }
                Err(error) => {
                    tracing::warn!(%error, "attempt limiter unavailable");
                    return Err(TokenError::TemporarilyUnavailable);
                }
            }
        }
        Ok(attempt)
    }
}

impl Attempt<'_> {
    fn keys(&self) -> impl Iterator<Item = (&str, FailureLimit)> {
        [&self.address, &self.client]
            .into_iter()
            .flatten()
            .map(|(key, limit)| (key.as_str(), *limit))
    }

    /// Counts an authentication failure against every key of the request.
    /// A limiter that cannot record it is logged; the answer stays the
    /// failure (the next check fails closed if the limiter is still down).
    pub(crate) async fn failed(&self) {
        for (key, limit) in self.keys() {
            if let Err(error) = self.guard.limiter.record_failure(key, limit).await {
                tracing::warn!(%error, "attempt limiter could not record a failure");
            }
        }
    }
}

/// `address:<ip>`, IPv6 by its /64 (IPv4-mapped addresses as IPv4).
fn address_key(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => format!("address:{v4}"),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("address:{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_eq!(address_key(a), "address:2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "address:192.0.2.7");
    }
}
