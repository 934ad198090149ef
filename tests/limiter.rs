//! The limit on failed authentication attempts, over real HTTP: one test per
//! rule.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::any;
use common::*;
use jsonwebtoken::Algorithm;
use secrecy::ExposeSecret;
use serde_json::Value;
use tower_m2m_auth::issuer::{Application, AttemptLimits, TokenEndpointLayer};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::store::{
    AccountCredential, Admission, AppPassword, AttemptKey, AttemptLimiter, Binding,
    CredentialStore, FailureLimit, MemoryAttemptLimiter, MemoryStore, ServiceAccount, StoreError,
    TokenDigest,
};

const OTHER_CLIENT: &str = "other-client";
const OTHER_SECRET: &str = "other-application-secret-0123";
const MINUTE: Duration = Duration::from_secs(60);

/// A credential store that counts its lookups, can be taken down, and
/// answers after a delay when given one (as a networked database does).
#[derive(Clone)]
struct CountingStore {
    inner: MemoryStore,
    lookups: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    latency: Duration,
}

impl CredentialStore for CountingStore {
    async fn app_password(
        &self,
        username: &str,
        digest: &TokenDigest,
    ) -> Result<Option<AccountCredential>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError("credential store unreachable".into()));
        }
        self.inner.app_password(username, digest).await
    }

    async fn binding(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> Result<Option<Binding>, StoreError> {
        self.inner.binding(account_id, client_id).await
    }
}

/// A limiter whose storage is down.
struct DownLimiter;

fn down() -> StoreError {
    StoreError("limiter storage unreachable".into())
}

impl AttemptLimiter for DownLimiter {
    async fn begin(&self, _: &AttemptKey, _: FailureLimit) -> Result<Admission, StoreError> {
        Err(down())
    }

    async fn end(&self, _: &AttemptKey, _: FailureLimit, _: bool) -> Result<(), StoreError> {
        Err(down())
    }

    async fn reset(&self, _: &AttemptKey) -> Result<(), StoreError> {
        Err(down())
    }
}

struct Limited {
    server: Server,
    lookups: Arc<AtomicUsize>,
    /// Takes the credential store down (verifier: 503) while set.
    store_down: Arc<AtomicBool>,
}

/// Where a test server finds the client's address.
type AddressSource = fn(&http::request::Parts) -> Option<IpAddr>;

fn connect_info(parts: &http::request::Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// The address a test client claims in `x-test-address`, so that one test
/// can speak from many addresses.
fn test_address_header(parts: &http::request::Parts) -> Option<IpAddr> {
    parts
        .headers
        .get("x-test-address")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Limits of `client` failures per `client_id` and `address` failures per
/// address, within `window`.
fn limits(client: Option<u32>, address: Option<u32>, window: Duration) -> AttemptLimits {
    AttemptLimits::default()
        .with_client_limit(client.map(|n| FailureLimit::new(n, window)))
        .with_address_limit(address.map(|n| FailureLimit::new(n, window)))
}

/// A server limiting attempts with `limiter`; with `address_source: true`,
/// it reads the client's address from axum's `ConnectInfo`.
async fn start_limited(
    limiter: impl AttemptLimiter,
    limits: AttemptLimits,
    address_source: bool,
) -> Limited {
    start_limited_with(
        limiter,
        limits,
        address_source.then_some(connect_info),
        Duration::ZERO,
    )
    .await
}

/// As [`start_limited`], with any address source, and a credential store
/// that answers after `latency`.
async fn start_limited_with(
    limiter: impl AttemptLimiter,
    limits: AttemptLimits,
    address_source: Option<AddressSource>,
    latency: Duration,
) -> Limited {
    let store = MemoryStore::new();
    let account = ServiceAccount::new(USERNAME);
    let (token, password) = AppPassword::generate(&account.id);
    store.insert_account(account.clone());
    store.insert_app_password(password);
    store.bind(USERNAME, all_scopes());
    let lookups = Arc::new(AtomicUsize::new(0));
    let store_down = Arc::new(AtomicBool::new(false));
    let counting = CountingStore {
        inner: store.clone(),
        lookups: lookups.clone(),
        down: store_down.clone(),
        latency,
    };

    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let mut layer = TokenEndpointLayer::new(&base, keys.clone(), counting)
        .unwrap()
        .application(application())
        .unwrap()
        .application(Application::new(OTHER_CLIENT, "other").with_client_secret(OTHER_SECRET))
        .unwrap()
        .attempt_limiter(limiter, limits);
    if let Some(source) = address_source {
        layer = layer.client_address(source);
    }
    let app = Router::new()
        .route("/{*path}", any(|| async { "inner" }))
        .layer(layer);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    Limited {
        server: Server {
            addr,
            base,
            store,
            keys,
            token: token.expose_secret().to_owned(),
            account,
        },
        lookups,
        store_down,
    }
}

async fn password_request(server: &Server, client_id: &str, password: &str) -> reqwest::Response {
    post_form(
        server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("username", USERNAME),
            ("password", password),
        ]),
    )
    .await
}

/// A request with a wrong app password: 400 `invalid_grant`, counted.
async fn fail(server: &Server, client_id: &str) {
    let response = password_request(server, client_id, "wrong-token").await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_grant");
}

async fn succeed(server: &Server) {
    let response = password_request(server, CLIENT_ID, &server.token).await;
    assert_eq!(response.status(), 200);
}

async fn other_client_succeeds(server: &Server) {
    let response = post_form(
        server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", OTHER_CLIENT),
            ("client_secret", OTHER_SECRET),
        ]),
    )
    .await;
    assert_eq!(response.status(), 200);
}

/// Asserts a 429 answer of RFC 6749 shape; returns its `Retry-After`.
async fn too_many(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(error_code(response).await, "temporarily_unavailable");
    retry_after
}

#[tokio::test]
async fn failures_beyond_the_client_limit_get_429_with_retry_after() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(3), None, MINUTE),
        false,
    )
    .await;
    let server = &limited.server;
    for _ in 0..3 {
        fail(server, CLIENT_ID).await;
    }
    // Even the right credentials wait until the window ends.
    let retry_after = too_many(password_request(server, CLIENT_ID, &server.token).await).await;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn locked_out_client_id_costs_no_credential_lookup() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(2), None, MINUTE),
        false,
    )
    .await;
    let server = &limited.server;
    fail(server, CLIENT_ID).await;
    fail(server, CLIENT_ID).await;
    let before = limited.lookups.load(Ordering::SeqCst);
    for _ in 0..5 {
        too_many(password_request(server, CLIENT_ID, "another-guess").await).await;
    }
    assert_eq!(limited.lookups.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn another_client_id_is_not_limited_by_a_locked_out_one() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(2), None, MINUTE),
        false,
    )
    .await;
    let server = &limited.server;
    fail(server, CLIENT_ID).await;
    fail(server, CLIENT_ID).await;
    too_many(password_request(server, CLIENT_ID, &server.token).await).await;
    other_client_succeeds(server).await;
}

#[tokio::test]
async fn address_limit_counts_failures_across_client_ids() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(None, Some(3), MINUTE),
        true,
    )
    .await;
    let server = &limited.server;
    fail(server, CLIENT_ID).await;
    fail(server, OTHER_CLIENT).await;
    // A client_id that names no application counts for the address too.
    let response = password_request(server, "no-such-client", "guess").await;
    assert_eq!(error_code(response).await, "invalid_client");
    // 127.0.0.1 is now locked out, whichever client it speaks for.
    too_many(password_request(server, CLIENT_ID, &server.token).await).await;
    let response = post_form(
        server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", OTHER_CLIENT),
            ("client_secret", OTHER_SECRET),
        ]),
    )
    .await;
    too_many(response).await;
}

#[tokio::test]
async fn address_limit_is_off_without_an_address_source() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(None, Some(2), MINUTE),
        false,
    )
    .await;
    let server = &limited.server;
    for _ in 0..4 {
        fail(server, CLIENT_ID).await;
    }
    succeed(server).await;
}

#[tokio::test]
async fn made_up_client_ids_are_not_remembered() {
    let limiter = MemoryAttemptLimiter::new();
    let limited = start_limited(limiter.clone(), limits(Some(2), None, MINUTE), true).await;
    for i in 0..5 {
        let response = password_request(&limited.server, &format!("made-up-{i}"), "x").await;
        assert_eq!(error_code(response).await, "invalid_client");
    }
    assert!(limiter.is_empty());
}

#[tokio::test]
async fn malformed_requests_are_not_counted() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(1), Some(1), MINUTE),
        true,
    )
    .await;
    let server = &limited.server;
    let malformed = [
        // no grant_type
        form_encode(&[("client_id", CLIENT_ID), ("client_secret", "x")]),
        // an unsupported grant type
        form_encode(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", "x"),
        ]),
        // a username without a password
        form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
        ]),
        // two client authentication methods
        form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", "x"),
            ("client_secret", "y"),
        ]),
        // a repeated parameter
        "grant_type=client_credentials&client_id=test-client&client_id=test-client".to_owned(),
    ];
    for body in &malformed {
        let response = post_form(server, body).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_ne!(error_code(response).await, "invalid_grant", "{body}");
    }
    let response = http()
        .post(server.token_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    succeed(server).await;
}

#[tokio::test]
async fn locked_out_client_is_accepted_again_after_retry_after() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(2), Some(2), Duration::from_secs(1)),
        true,
    )
    .await;
    let server = &limited.server;
    fail(server, CLIENT_ID).await;
    fail(server, CLIENT_ID).await;
    let retry_after = too_many(password_request(server, CLIENT_ID, &server.token).await).await;
    assert_eq!(retry_after, 1);
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100)).await;
    succeed(server).await;
}

#[tokio::test]
async fn success_does_not_reset_the_client_count() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(3), None, MINUTE),
        false,
    )
    .await;
    let server = &limited.server;
    fail(server, CLIENT_ID).await;
    fail(server, CLIENT_ID).await;
    succeed(server).await;
    fail(server, CLIENT_ID).await;
    too_many(password_request(server, CLIENT_ID, &server.token).await).await;
}

#[tokio::test]
async fn failed_introspection_counts_against_the_client() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(2), None, MINUTE),
        false,
    )
    .await;
    let server = &limited.server;
    for _ in 0..2 {
        let response = http()
            .post(server.url("/application/o/introspect/"))
            .basic_auth(CLIENT_ID, Some("wrong-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(&[("token", "anything")]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    too_many(password_request(server, CLIENT_ID, &server.token).await).await;
}

#[tokio::test]
async fn http_basic_client_over_the_limit_gets_429_without_a_basic_challenge() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(1), None, MINUTE),
        false,
    )
    .await;
    let server = &limited.server;
    let basic = |secret: &'static str| {
        http()
            .post(server.token_url())
            .basic_auth(OTHER_CLIENT, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
    };
    assert_eq!(basic("wrong").await.unwrap().status(), 401);
    let response = basic(OTHER_SECRET).await.unwrap();
    assert!(!response.headers().contains_key("www-authenticate"));
    too_many(response).await;
}

#[tokio::test]
async fn limiter_that_cannot_answer_is_503() {
    let limited = start_limited(DownLimiter, limits(Some(2), Some(2), MINUTE), true).await;
    let server = &limited.server;
    let response = password_request(server, CLIENT_ID, &server.token).await;
    assert_eq!(response.status(), 503);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"], "temporarily_unavailable");
    assert_eq!(limited.lookups.load(Ordering::SeqCst), 0);
}

// ---- count, then decide -----------------------------------------------------------

fn wrong_guess() -> String {
    form_encode(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("username", USERNAME),
        ("password", "wrong-token"),
    ])
}

/// A store lookup as slow as a database round trip, so that guesses overlap.
const LOOKUP: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cannot_pass_the_client_limit() {
    let limited = start_limited_with(
        MemoryAttemptLimiter::new(),
        limits(Some(10), None, MINUTE),
        None,
        LOOKUP,
    )
    .await;
    let server = &limited.server;
    let answers = guesses::send_at_once(&[server.token_url()], &wrong_guess(), 50).await;
    assert!(answers.other.is_empty(), "{answers:?}");
    assert!(answers.invalid_grant <= 10, "{answers:?}");
    assert_eq!(answers.invalid_grant + answers.too_many, 50, "{answers:?}");
    assert!(limited.lookups.load(Ordering::SeqCst) <= 10);
    // The budget is spent: the right credentials wait too.
    too_many(password_request(server, CLIENT_ID, &server.token).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cannot_pass_the_address_limit() {
    let limited = start_limited_with(
        MemoryAttemptLimiter::new(),
        limits(None, Some(10), MINUTE),
        Some(connect_info),
        LOOKUP,
    )
    .await;
    let server = &limited.server;
    let answers = guesses::send_at_once(&[server.token_url()], &wrong_guess(), 50).await;
    assert!(answers.other.is_empty(), "{answers:?}");
    assert!(answers.invalid_grant <= 10, "{answers:?}");
    assert_eq!(answers.invalid_grant + answers.too_many, 50, "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_successes_all_get_their_tokens() {
    let limited = start_limited_with(
        MemoryAttemptLimiter::new(),
        limits(Some(4), Some(4), MINUTE),
        Some(connect_info),
        LOOKUP,
    )
    .await;
    let server = &limited.server;
    let body = form_encode(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("username", USERNAME),
        ("password", &server.token),
    ]);
    let barrier = Arc::new(tokio::sync::Barrier::new(12));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (barrier, url, body) = (barrier.clone(), server.token_url(), body.clone());
            tokio::spawn(async move {
                let client = http();
                barrier.wait().await;
                let response = client
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                response.status()
            })
        })
        .collect();
    // More at once than the limit: they wait for a slot, none is refused.
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    // And none of them counted.
    for _ in 0..3 {
        fail(server, CLIENT_ID).await;
    }
    succeed(server).await;
}

#[tokio::test]
async fn successes_do_not_consume_the_budget() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(3), Some(3), MINUTE),
        true,
    )
    .await;
    let server = &limited.server;
    for _ in 0..10 {
        succeed(server).await;
        other_client_succeeds(server).await;
    }
    for _ in 0..3 {
        fail(server, CLIENT_ID).await;
    }
    too_many(password_request(server, CLIENT_ID, &server.token).await).await;
}

#[tokio::test]
async fn an_unavailable_store_does_not_count_as_a_failure() {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(Some(2), Some(2), MINUTE),
        true,
    )
    .await;
    let server = &limited.server;
    limited.store_down.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let response = password_request(server, CLIENT_ID, "wrong-token").await;
        assert_eq!(response.status(), 503);
        assert_eq!(error_code(response).await, "temporarily_unavailable");
    }
    limited.store_down.store(false, Ordering::SeqCst);
    fail(server, CLIENT_ID).await;
    succeed(server).await;
    fail(server, CLIENT_ID).await;
    too_many(password_request(server, CLIENT_ID, &server.token).await).await;
}

#[tokio::test]
async fn eviction_pressure_does_not_reset_a_partly_filled_client_counter() {
    // Room for 8 addresses; the flood below brings 200.
    let limiter = MemoryAttemptLimiter::with_capacity(8);
    let limited = start_limited_with(
        limiter.clone(),
        limits(Some(3), Some(100), MINUTE),
        Some(test_address_header),
        Duration::ZERO,
    )
    .await;
    let server = &limited.server;
    let client = http();
    let from = |address: String, client_id: &str, password: &str| {
        client
            .post(server.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-test-address", address)
            .body(form_encode(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("username", USERNAME),
                ("password", password),
            ]))
            .send()
    };
    for _ in 0..2 {
        let response = from("192.0.2.1".into(), CLIENT_ID, "wrong-token")
            .await
            .unwrap();
        assert_eq!(error_code(response).await, "invalid_grant");
    }
    // Failures from 200 other addresses, at made-up client_ids.
    for i in 0..200u32 {
        let address = format!("10.0.{}.{}", i / 250, i % 250 + 1);
        let response = from(address, "made-up-client", "x").await.unwrap();
        assert_eq!(error_code(response).await, "invalid_client");
    }
    assert!(limiter.len() <= 8 + 1, "{}", limiter.len());
    // The victim's counter still holds its 2 failures: one more locks it.
    let response = from("198.51.100.1".into(), CLIENT_ID, "wrong-token")
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "invalid_grant");
    too_many(
        from("198.51.100.2".into(), CLIENT_ID, &server.token)
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn an_operator_reset_unlocks_a_client() {
    let limiter = MemoryAttemptLimiter::new();
    let limited = start_limited(limiter.clone(), limits(Some(1), None, MINUTE), false).await;
    let server = &limited.server;
    fail(server, CLIENT_ID).await;
    too_many(password_request(server, CLIENT_ID, &server.token).await).await;
    limiter.reset(&AttemptKey::client(CLIENT_ID)).await.unwrap();
    assert_eq!(
        limiter
            .begin(
                &AttemptKey::client(OTHER_CLIENT),
                FailureLimit::new(1, MINUTE)
            )
            .await
            .unwrap(),
        Admission::Admitted
    );
    succeed(server).await;
}
