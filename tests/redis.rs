//! Several token-endpoint instances sharing one Redis (feature `redis`):
//! replay cache, revocation list and attempt limiter, over real HTTP.
//!
//! The server is at `TOWER_M2M_AUTH_REDIS_URL` (.ci/run starts one and sets
//! it); each test keeps to its own key prefix.

#![cfg(feature = "redis")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::any;
use common::jwks::External;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_m2m_auth::issuer::{AttemptLimits, TokenEndpointLayer};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::store::{
    Admission, AttemptKey, AttemptLimiter, FailureLimit, MemoryStore, RedisStore, ReplayCache,
    RevocationList, ServiceAccount,
};

const ISSUER_BASE: &str = "https://auth.example.com";
const CI_CLIENT: &str = "ci-client";
const MINUTE: Duration = Duration::from_secs(60);

fn redis_url() -> String {
    std::env::var("TOWER_M2M_AUTH_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "set TOWER_M2M_AUTH_REDIS_URL for the Redis tests (.ci/run starts a server and sets it)"
        )
    })
}

/// A key prefix of this test's own.
fn prefix() -> String {
    format!("test-{}:", uuid::Uuid::new_v4().simple())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One token-endpoint instance; all instances of a test share the issuer,
/// its keys, the account store and the Redis behind `redis`.
struct Instance {
    server: Server,
}

/// What the instances of one test share.
struct Shared {
    keys: KeyRing,
    store: MemoryStore,
    account: ServiceAccount,
    token: String,
    external: External,
}

impl Shared {
    fn new() -> Self {
        let (store, account, token) = account_store();
        Self {
            keys: KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap()),
            store,
            account,
            token,
            external: External::new(Algorithm::ES256),
        }
    }

    /// Starts an instance whose replay cache, revocation list and attempt
    /// limiter (3 failures per `client_id` a minute) are `redis`.
    async fn start(&self, redis: RedisStore) -> Instance {
        self.start_limited(redis, 3).await
    }

    /// As [`start`](Self::start), with `max_failures` per `client_id` a minute.
    async fn start_limited(&self, redis: RedisStore, max_failures: u32) -> Instance {
        let ci = self
            .external
            .ci_application(CI_CLIENT)
            .with_allowed_scopes(["deploy"]);
        let layer =
            TokenEndpointLayer::new(ISSUER_BASE, self.keys.clone(), self.store.clone()).unwrap();
        let layer = replica(layer, redis.clone(), ci).attempt_limiter(
            redis,
            AttemptLimits::default()
                .with_client_limit(Some(FailureLimit::new(max_failures, MINUTE)))
                .with_address_limit(None),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/{*path}", any(|| async { "inner" }))
            .layer(layer);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let server = Server::at(
            addr,
            self.store.clone(),
            self.keys.clone(),
            self.account.clone(),
            self.token.clone(),
        );
        Instance { server }
    }

    /// Two instances, each with its own connection to the shared Redis.
    async fn pair(&self) -> (Instance, Instance) {
        let prefix = prefix();
        let a = RedisStore::connect(&redis_url())
            .await
            .unwrap()
            .with_prefix(&prefix);
        let b = RedisStore::connect(&redis_url())
            .await
            .unwrap()
            .with_prefix(&prefix);
        (self.start(a).await, self.start(b).await)
    }

    fn assertion(&self) -> String {
        let now = now();
        self.external.mint(&json!({
            "iss": "https://ci.example",
            "sub": "repo:org/app:ref:refs/heads/main",
            "exp": now + 300,
            "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
        }))
    }
}

impl Instance {
    async fn exchange(&self, jwt: &str) -> reqwest::Response {
        post_assertion(&self.server, CI_CLIENT, jwt, "deploy").await
    }

    async fn password(&self, password: &str) -> reqwest::Response {
        post_password(&self.server, CLIENT_ID, password).await
    }

    /// A wrong app password: 400 `invalid_grant`, counted.
    async fn fail(&self) {
        let response = self.password("wrong-token").await;
        assert_eq!(error_code(response).await, "invalid_grant");
    }

    async fn access_token(&self) -> String {
        let response = self.password(&self.server.token).await;
        assert_eq!(response.status(), 200);
        let json: Value = response.json().await.unwrap();
        json["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(&self, path: &str, token: &str) -> reqwest::Response {
        http()
            .post(self.server.url(path))
            .basic_auth(CLIENT_ID, Some(APP_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(&[("token", token)]))
            .send()
            .await
            .unwrap()
    }

    async fn active(&self, token: &str) -> bool {
        let response = self.call("/application/o/introspect/", token).await;
        assert_eq!(response.status(), 200);
        let json: Value = response.json().await.unwrap();
        json["active"].as_bool().unwrap()
    }
}

// ---- several instances, one Redis --------------------------------------------

#[tokio::test]
async fn replayed_single_use_jti_is_refused_by_the_other_instance() {
    let shared = Shared::new();
    let (a, b) = shared.pair().await;
    let jwt = shared.assertion();
    assert_eq!(a.exchange(&jwt).await.status(), 200);
    let replay = b.exchange(&jwt).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(error_code(replay).await, "invalid_client");
    // A fresh assertion is still welcome at either.
    assert_eq!(b.exchange(&shared.assertion()).await.status(), 200);
}

#[tokio::test]
async fn revocation_through_one_instance_is_seen_by_the_other() {
    let shared = Shared::new();
    let (a, b) = shared.pair().await;
    let token = a.access_token().await;
    assert!(b.active(&token).await);
    assert_eq!(a.call("/application/o/revoke/", &token).await.status(), 200);
    assert!(!b.active(&token).await);
    assert!(!a.active(&token).await);
}

#[tokio::test]
async fn failed_attempts_are_counted_across_instances() {
    let shared = Shared::new();
    let (a, b) = shared.pair().await;
    for instance in [&a, &b, &a] {
        instance.fail().await;
    }
    let retry_after = too_many(b.password(&shared.token).await).await;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

/// 50 wrong guesses at once, taking turns among `count` instances with a
/// limit of 10 failures: at most 10 reach the verifier, the rest get 429,
/// and then the right credentials wait too.
async fn fifty_guesses_at(count: usize) {
    let shared = Shared::new();
    let prefix = prefix();
    let mut instances = Vec::new();
    for _ in 0..count {
        let redis = RedisStore::connect(&redis_url())
            .await
            .unwrap()
            .with_prefix(&prefix);
        instances.push(shared.start_limited(redis, 10).await);
    }
    let urls: Vec<String> = instances.iter().map(|i| i.server.token_url()).collect();
    let guess = password_form(CLIENT_ID, "wrong-token");
    guesses::send_at_once(&urls, &guess, 50)
        .await
        .assert_capped(50, 10);
    too_many(instances[0].password(&shared.token).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_at_two_instances_cannot_pass_the_limit() {
    fifty_guesses_at(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cannot_pass_the_limit() {
    fifty_guesses_at(1).await;
}

#[tokio::test]
async fn successes_do_not_consume_the_budget() {
    let shared = Shared::new();
    let (a, b) = shared.pair().await;
    for _ in 0..5 {
        assert_eq!(a.password(&shared.token).await.status(), 200);
        assert_eq!(b.password(&shared.token).await.status(), 200);
    }
    for instance in [&a, &b, &a] {
        instance.fail().await;
    }
    too_many(b.password(&shared.token).await).await;
}

// ---- the store's own rules ------------------------------------------------------

/// One attempt of `key` that fails.
async fn fail(redis: &RedisStore, key: &AttemptKey, limit: FailureLimit) {
    assert_eq!(redis.begin(key, limit).await.unwrap(), Admission::Admitted);
    redis.end(key, limit, true).await.unwrap();
}

async fn fresh_redis() -> RedisStore {
    RedisStore::connect(&redis_url())
        .await
        .unwrap()
        .with_prefix(prefix())
}

#[tokio::test]
async fn locked_out_key_is_free_again_when_its_window_ends() {
    let redis = fresh_redis().await;
    let k = AttemptKey::client("k");
    let limit = FailureLimit::new(2, Duration::from_millis(1200));
    fail(&redis, &k, limit).await;
    fail(&redis, &k, limit).await;
    let Admission::LockedOut(wait) = redis.begin(&k, limit).await.unwrap() else {
        panic!("not locked out");
    };
    assert!(wait <= Duration::from_millis(1200), "{wait:?}");
    let other = AttemptKey::client("other");
    assert_eq!(
        redis.begin(&other, limit).await.unwrap(),
        Admission::Admitted
    );
    tokio::time::sleep(wait + Duration::from_millis(100)).await;
    assert_eq!(redis.begin(&k, limit).await.unwrap(), Admission::Admitted);
}

#[tokio::test]
async fn attempts_in_flight_hold_the_remaining_slots() {
    let redis = fresh_redis().await;
    let k = AttemptKey::address("192.0.2.1".parse().unwrap());
    let limit = FailureLimit::new(3, MINUTE);
    fail(&redis, &k, limit).await;
    for _ in 0..2 {
        assert_eq!(redis.begin(&k, limit).await.unwrap(), Admission::Admitted);
    }
    assert_eq!(redis.begin(&k, limit).await.unwrap(), Admission::Busy);
    redis.end(&k, limit, false).await.unwrap();
    assert_eq!(redis.begin(&k, limit).await.unwrap(), Admission::Admitted);
    redis.end(&k, limit, true).await.unwrap();
    redis.end(&k, limit, true).await.unwrap();
    assert!(matches!(
        redis.begin(&k, limit).await.unwrap(),
        Admission::LockedOut(_)
    ));
}

#[tokio::test]
async fn attempts_that_do_not_fail_leave_no_trace() {
    let redis = fresh_redis().await;
    let k = AttemptKey::client("k");
    let limit = FailureLimit::new(1, MINUTE);
    for _ in 0..5 {
        assert_eq!(redis.begin(&k, limit).await.unwrap(), Admission::Admitted);
        redis.end(&k, limit, false).await.unwrap();
    }
    fail(&redis, &k, limit).await;
    assert!(matches!(
        redis.begin(&k, limit).await.unwrap(),
        Admission::LockedOut(_)
    ));
}

#[tokio::test]
async fn reset_unlocks_a_key() {
    let redis = fresh_redis().await;
    let k = AttemptKey::client("k");
    let limit = FailureLimit::new(1, MINUTE);
    fail(&redis, &k, limit).await;
    assert!(matches!(
        redis.begin(&k, limit).await.unwrap(),
        Admission::LockedOut(_)
    ));
    redis.reset(&k).await.unwrap();
    assert_eq!(redis.begin(&k, limit).await.unwrap(), Admission::Admitted);
}

#[tokio::test]
async fn replay_and_revocation_keys_expire_with_their_tokens() {
    let redis = RedisStore::connect(&redis_url())
        .await
        .unwrap()
        .with_prefix(prefix());
    let soon = now() + 1;
    assert!(redis.first_use("jti-1", soon).await.unwrap());
    assert!(!redis.first_use("jti-1", soon).await.unwrap());
    // Forgotten: a first use again, once.
    redis.forget("jti-1").await.unwrap();
    assert!(redis.first_use("jti-1", soon).await.unwrap());
    assert!(!redis.first_use("jti-1", soon).await.unwrap());
    redis.revoke("jti-2", soon).await.unwrap();
    assert!(redis.is_revoked("jti-2").await.unwrap());
    assert!(!redis.is_revoked("jti-3").await.unwrap());
    // Kept through the second `soon`, gone after it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(redis.first_use("jti-1", now() + 60).await.unwrap());
    assert!(!redis.is_revoked("jti-2").await.unwrap());
}

// ---- a Redis that goes away -----------------------------------------------------

/// A TCP proxy in front of the test Redis that can drop every connection
/// and refuse new ones, as a Redis that restarts or a network that fails.
struct Proxy {
    url: String,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}/", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let accept_up = up.clone();
        let accept_generation = generation.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = accept_generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            url,
            up,
            generation,
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let host_port = url
        .trim_start_matches("redis://")
        .split(['/', '?'])
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    std::net::ToSocketAddrs::to_socket_addrs(&host_port)
        .unwrap()
        .next()
        .unwrap()
}

#[tokio::test]
async fn redis_going_away_is_503_and_coming_back_is_recovered() {
    let proxy = Proxy::start(redis_addr()).await;
    let shared = Shared::new();
    let redis = RedisStore::connect(&proxy.url)
        .await
        .unwrap()
        .with_prefix(prefix());
    let instance = shared.start(redis).await;
    assert_eq!(instance.password(&shared.token).await.status(), 200);

    proxy.set_up(false);
    for _ in 0..3 {
        let started = Instant::now();
        let response = instance.password(&shared.token).await;
        assert_eq!(response.status(), 503);
        assert_eq!(error_code(response).await, "temporarily_unavailable");
        assert!(started.elapsed() < Duration::from_secs(5));
        let response = instance.exchange(&shared.assertion()).await;
        assert_eq!(response.status(), 503);
    }

    proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = instance.password(&shared.token).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "no reconnection to Redis");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(instance.exchange(&shared.assertion()).await.status(), 200);
}

#[tokio::test]
async fn stalled_redis_is_503_within_the_timeout() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let shared = Shared::new();
    let redis = RedisStore::open(&url)
        .unwrap()
        .with_timeout(Duration::from_millis(300))
        .unwrap();
    let instance = shared.start(redis).await;
    let started = Instant::now();
    let response = instance.password(&shared.token).await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connecting_to_no_redis_is_an_error_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    drop(listener);
    let started = Instant::now();
    assert!(RedisStore::connect(&url).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}
