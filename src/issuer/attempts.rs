//! Limiting failed authentication attempts per `client_id` and per client
//! address, at the token, introspection and revocation endpoints.
//!
//! Count, then decide: before the verifier runs, each key of the request
//! takes a failure slot in the limiter, in the same atomic step that decides
//! whether it may try at all; a key with no free slot gets 429 (locked out:
//! until its window ends; every slot held by attempts in flight: after a
//! short wait for one to end). So however many requests arrive at once, no
//! more than the limit are verified and fail. Once the request is answered,
//! the slot stays taken if it was an authentication failure (credentials the
//! verifier rejected: `invalid_grant`, or `invalid_client` at introspection
//! and revocation; and `client_id`s that name no application, counted for the
//! address only, so that made-up `client_id`s cannot fill the limiter), and
//! is given back otherwise (a success, a verifier or store that could not
//! answer). Malformed requests are refused before they take a slot.
//!
//! A single-use input JWT goes on only once its `jti` is written, which
//! with a SQL store means waiting for a commit. The request waits without
//! its slots (given back once the endpoint verified the JWT), so that the
//! writes of a client's requests are not capped at its failure limit, and
//! goes on to the verifier without them: taking them anew could refuse it
//! (429) with its `jti` already spent. A replay or a refusal found then (the
//! JWT's signature is valid, so it is not a guess) is counted where a slot
//! is free.
//!
//! A success does not reset the `client_id` counter: a `client_id` is public
//! and shared by every service account of its application, so one valid
//! credential would otherwise let an attacker reset the counter between
//! guesses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::BoxFuture;
use crate::store::{
    Admission, AttemptKey, AttemptKeyKind, AttemptLimiter, FailureLimit, StoreError,
};

use super::error::TokenError;

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
    fn begin<'a>(
        &'a self,
        key: &'a AttemptKey,
        limit: FailureLimit,
    ) -> BoxFuture<'a, Result<Admission, StoreError>>;
    fn end<'a>(
        &'a self,
        key: &'a AttemptKey,
        limit: FailureLimit,
        failed: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<T: AttemptLimiter> Attempts for T {
    fn begin<'a>(
        &'a self,
        key: &'a AttemptKey,
        limit: FailureLimit,
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        Box::pin(AttemptLimiter::begin(self, key, limit))
    }

    fn end<'a>(
        &'a self,
        key: &'a AttemptKey,
        limit: FailureLimit,
        failed: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(AttemptLimiter::end(self, key, limit, failed))
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
    /// Wakes the requests of this endpoint that wait for a slot whenever an
    /// attempt gives its slots back, so that a burst of one client's
    /// requests (all its slots in flight) waits for the next free slot, not
    /// for a backoff timer. (Slots freed by other instances sharing a Redis
    /// limiter are still found by the timer.)
    pub(crate) released: Arc<tokio::sync::Notify>,
}

impl AttemptGuard {
    /// The guard of `limiter` with `limits`.
    pub(crate) fn new(limiter: Arc<dyn Attempts>, limits: AttemptLimits) -> Self {
        Self {
            limiter,
            limits,
            released: Arc::default(),
        }
    }
}

/// The slots one request holds, one per key. Dropped without
/// [`end`](Self::end) (the request abandoned midway), they stay taken until
/// their windows end: an abandoned attempt counts as a failure.
pub(crate) struct Attempt<'a> {
    guard: &'a AttemptGuard,
    held: Vec<(AttemptKey, FailureLimit)>,
}

/// How long a request waits for a slot while every one is held by attempts
/// in flight, before it gets 429.
const BUSY_WAIT: Duration = Duration::from_secs(2);

impl AttemptGuard {
    /// Takes a slot for the address of a request and for its `client_id`
    /// (when it names an application): 429 if either is locked out, or still
    /// busy after [`BUSY_WAIT`]; 503 if the limiter cannot answer.
    pub(crate) async fn admit(
        &self,
        address: Option<IpAddr>,
        known_client_id: Option<&str>,
    ) -> Result<Attempt<'_>, TokenError> {
        let keys = self.keys(address, known_client_id);
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            let mut attempt = Attempt {
                guard: self,
                held: Vec::with_capacity(keys.len()),
            };
            let mut busy = false;
            for (key, limit) in &keys {
                match self.limiter.begin(key, *limit).await {
                    Ok(Admission::Admitted) => attempt.held.push((key.clone(), *limit)),
                    Ok(Admission::Busy) => {
                        busy = true;
                        break;
                    }
                    Ok(Admission::LockedOut(wait)) => {
                        tracing::debug!(key = key.as_str(), "too many failed attempts");
                        let kind = match key.kind() {
                            AttemptKeyKind::Client => "client_id",
                            AttemptKeyKind::Address => "address",
                        };
                        metrics::counter!(crate::observe::LOCKOUTS, "key" => kind).increment(1);
                        attempt.end(false).await;
                        return Err(TokenError::TooManyAttempts(wait));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "attempt limiter unavailable");
                        attempt.end(false).await;
                        return Err(TokenError::TemporarilyUnavailable);
                    }
                }
            }
            if !busy {
                return Ok(attempt);
            }
            // Give back what this round took, so that two requests waiting
            // on each other's keys cannot block each other. (Quietly: waking
            // the other waiters for that would have them spin on each other.)
            attempt.give_back(false).await;
            if tokio::time::Instant::now() + pause > deadline {
                tracing::debug!("every attempt slot in flight");
                metrics::counter!(crate::observe::LOCKOUTS, "key" => "busy").increment(1);
                return Err(TokenError::TooManyAttempts(Duration::from_secs(1)));
            }
            // Until an attempt of this endpoint gives its slots back, or
            // the pause ends (a slot freed elsewhere, or between the check
            // above and here).
            let _ = tokio::time::timeout(pause, self.released.notified()).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The keys of a request, each with its limit.
    fn keys(
        &self,
        address: Option<IpAddr>,
        known_client_id: Option<&str>,
    ) -> Vec<(AttemptKey, FailureLimit)> {
        [
            self.limits
                .address
                .zip(address)
                .map(|(limit, address)| (AttemptKey::address(address), limit)),
            self.limits
                .client
                .zip(known_client_id)
                .map(|(limit, client_id)| (AttemptKey::client(client_id), limit)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Counts a failure found after the request's attempt ended (a replayed
    /// single-use assertion, or one the verifier refused), for each key that
    /// has a free slot to count it in: a key locked out needs no more, and
    /// one whose slots are all in flight is not pushed past its limit. Not
    /// waited for; never refuses.
    pub(crate) async fn record_failure(
        &self,
        address: Option<IpAddr>,
        known_client_id: Option<&str>,
    ) {
        for (key, limit) in self.keys(address, known_client_id) {
            let counted = match self.limiter.begin(&key, limit).await {
                Ok(Admission::Admitted) => self.limiter.end(&key, limit, true).await,
                Ok(Admission::Busy | Admission::LockedOut(_)) => Ok(()),
                Err(error) => Err(error),
            };
            if let Err(error) = counted {
                tracing::warn!(%error, "attempt limiter could not count a failure");
            }
        }
    }
}

impl Attempt<'_> {
    /// Ends the attempt: `failed` (an authentication failure) keeps its
    /// slots taken, otherwise they are given back. A limiter that cannot
    /// record it is logged; the answer stays as it is (a slot not given
    /// back is freed when its window ends).
    pub(crate) async fn end(self, failed: bool) {
        let guard = self.guard;
        if self.give_back(failed).await && !failed {
            guard.released.notify_waiters();
        }
    }

    /// Ends the attempt's slots; whether it held any.
    async fn give_back(self, failed: bool) -> bool {
        for (key, limit) in &self.held {
            if let Err(error) = self.guard.limiter.end(key, *limit, failed).await {
                tracing::warn!(%error, "attempt limiter could not end an attempt");
            }
        }
        !self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FailureLimit, MemoryAttemptLimiter};

    /// A request that waits for a slot (every one in flight) takes it as
    /// soon as an attempt gives its slot back, not when a backoff timer
    /// fires: with the clock paused, no time passes.
    #[tokio::test(start_paused = true)]
    async fn a_waiting_attempt_takes_a_slot_as_soon_as_one_is_given_back() {
        let limits = AttemptLimits::default()
            .with_address_limit(None)
            .with_client_limit(Some(FailureLimit::new(1, Duration::from_secs(60))));
        let guard = AttemptGuard::new(Arc::new(MemoryAttemptLimiter::new()), limits);
        let first = guard.admit(None, Some("client")).await.unwrap();
        let start = tokio::time::Instant::now();
        let (second, ()) = tokio::join!(guard.admit(None, Some("client")), async {
            tokio::task::yield_now().await;
            first.end(false).await;
        });
        assert!(second.is_ok());
        assert_eq!(tokio::time::Instant::now(), start);
        // A failed attempt keeps its slot: the next one waits until 429.
        second.unwrap().end(true).await;
        let third = guard.admit(None, Some("client")).await;
        assert!(matches!(third, Err(TokenError::TooManyAttempts(_))));
    }
}
