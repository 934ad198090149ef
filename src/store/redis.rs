//! The replay cache, the revocation list and the attempt limiter in Redis,
//! shared by every instance that connects to the same server.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Cmd, FromRedisValue};

use super::{
    Admission, AttemptKey, AttemptLimiter, FailureLimit, ReplayCache, RevocationList, StoreError,
};

/// [`AttemptLimiter::begin`] in one step: a hash of failures `f` and
/// attempts in flight `p`, with the window as its expiry. Answers 0
/// (admitted: `p` incremented), -1 (busy) or the milliseconds until the
/// window of a locked-out key ends.
const BEGIN: &str = r"
local max = tonumber(ARGV[1])
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
if f >= max then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return math.max(ttl, 1)
end
local p = tonumber(redis.call('HGET', KEYS[1], 'p') or '0')
if f + p >= max then return -1 end
redis.call('HINCRBY', KEYS[1], 'p', 1)
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// [`AttemptLimiter::end`] in one step: `p` decremented, `f` incremented if
/// the attempt failed (opening a window if the attempt's own has ended); a
/// key left with neither is deleted.
const END: &str = r"
local failed = ARGV[2] == '1'
if redis.call('EXISTS', KEYS[1]) == 0 then
  if failed then
    redis.call('HSET', KEYS[1], 'f', 1)
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
  end
  return 0
end
local p = redis.call('HINCRBY', KEYS[1], 'p', -1)
if p < 0 then
  redis.call('HSET', KEYS[1], 'p', 0)
  p = 0
end
if failed then
  redis.call('HINCRBY', KEYS[1], 'f', 1)
  if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
  end
elseif p == 0 and tonumber(redis.call('HGET', KEYS[1], 'f') or '0') == 0 then
  redis.call('DEL', KEYS[1])
end
return 0";

/// A [`ReplayCache`], [`RevocationList`] and [`AttemptLimiter`] in Redis, so
/// that several token-endpoint instances refuse a replayed `jti`, see each
/// other's revocations and count failed attempts together.
///
/// Every key carries an expiry (the token's `exp`, the limiter's window), so
/// Redis holds nothing longer than it matters. Configure the server with
/// `maxmemory-policy noeviction`: an evicted replay or revocation key would
/// let a token through again, whereas a full server makes writes fail, which
/// the endpoint answers with 503 (fail closed).
///
/// Each operation is bounded by a timeout (2 s by default): a Redis that is
/// down, unreachable or stalled yields a [`StoreError`] (HTTP 503 at the
/// endpoint), never a hang. The connection is re-established in the
/// background once Redis is back. No TLS: use Redis on loopback or a private
/// network.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_m2m_auth::store::{MemoryStore, RedisStore};
/// use tower_m2m_auth::issuer::{AttemptLimits, TokenEndpointLayer};
/// # let keys = tower_m2m_auth::KeyRing::new(tower_m2m_auth::SigningKey::generate(jsonwebtoken::Algorithm::ES256)?);
///
/// let redis = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let layer = TokenEndpointLayer::new("https://auth.example.com", keys, MemoryStore::new())?
///     .replay_cache(redis.clone())
///     .revocation_list(redis.clone())
///     .attempt_limiter(redis, AttemptLimits::default());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    connection: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection info may hold a password: leave it out.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn store_error(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError(error.into())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `EXAT` for a key that must live through the second `expires_at` (as the
/// in-memory stores keep it), and at least one second from now.
fn expire_at(expires_at: u64) -> u64 {
    expires_at.saturating_add(1).max(now() + 1)
}

impl RedisStore {
    /// The default bound on each operation.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// The default prefix of every key.
    pub const DEFAULT_PREFIX: &'static str = "tower-m2m-auth:";

    /// Opens the Redis at `url` (`redis://[:password@]host:port/db`) and
    /// checks that it answers.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::open(url)?;
        store.ping().await?;
        Ok(store)
    }

    /// The Redis at `url`, connected lazily on first use (so an instance can
    /// start while Redis is down and answers 503 until it is up).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(store_error)?;
        let connection = Self::manager(&client, Self::DEFAULT_TIMEOUT)?;
        Ok(Self {
            client,
            connection,
            prefix: Arc::from(Self::DEFAULT_PREFIX),
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    fn manager(client: &Client, timeout: Duration) -> Result<ConnectionManager, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        client
            .get_connection_manager_lazy(config)
            .map_err(store_error)
    }

    /// Prefixes every key with `prefix` (default `tower-m2m-auth:`), e.g. to
    /// keep several issuers apart on one server.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// Bounds each operation, connecting included, by `timeout` (default
    /// 2 s). Set it before use: the connection is opened anew.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, StoreError> {
        self.connection = Self::manager(&self.client, timeout)?;
        self.timeout = timeout;
        Ok(self)
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.run(&::redis::cmd("PING")).await?;
        Ok(())
    }

    fn key(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.prefix)
    }

    async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut connection)).await {
            Ok(result) => result.map_err(store_error),
            Err(_) => Err(store_error(format!(
                "redis did not answer within {:?}",
                self.timeout
            ))),
        }
    }
}

impl ReplayCache for RedisStore {
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key("replay", key))
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(expire_at(expires_at));
        let set: Option<String> = self.run(&cmd).await?;
        Ok(set.is_some())
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key("replay", key));
        let _: i64 = self.run(&cmd).await?;
        Ok(())
    }
}

impl RevocationList for RedisStore {
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key("revoked", jti))
            .arg(1)
            .arg("EXAT")
            .arg(expire_at(expires_at));
        let _: Option<String> = self.run(&cmd).await?;
        Ok(())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("EXISTS");
        cmd.arg(self.key("revoked", jti));
        let found: u64 = self.run(&cmd).await?;
        Ok(found > 0)
    }
}

fn window_ms(limit: FailureLimit) -> u64 {
    u64::try_from(limit.window().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The key of an attempt counter: `attempt:`, not the `attempts:` of the
/// earlier string counters, so that a server still holding those does not
/// answer a type error.
const ATTEMPT: &str = "attempt";

impl AttemptLimiter for RedisStore {
    async fn begin(&self, key: &AttemptKey, limit: FailureLimit) -> Result<Admission, StoreError> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(BEGIN)
            .arg(1)
            .arg(self.key(ATTEMPT, key.as_str()))
            .arg(limit.max_failures())
            .arg(window_ms(limit));
        let answer: i64 = self.run(&cmd).await?;
        Ok(match answer {
            0 => Admission::Admitted,
            ms if ms > 0 => Admission::LockedOut(Duration::from_millis(ms.unsigned_abs())),
            _ => Admission::Busy,
        })
    }

    async fn end(
        &self,
        key: &AttemptKey,
        limit: FailureLimit,
        failed: bool,
    ) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(END)
            .arg(1)
            .arg(self.key(ATTEMPT, key.as_str()))
            .arg(window_ms(limit))
            .arg(u8::from(failed));
        let _: i64 = self.run(&cmd).await?;
        Ok(())
    }

    async fn reset(&self, key: &AttemptKey) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key(ATTEMPT, key.as_str()));
        let _: i64 = self.run(&cmd).await?;
        Ok(())
    }
}
