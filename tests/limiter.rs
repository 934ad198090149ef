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
use common::jwks::External;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use tower_m2m_auth::issuer::{
    Application, AttemptLimits, ClientAuthentication, Principal, Rejection, StoreVerifier,
    TokenEndpointLayer, VerifyError,
};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::store::{
    AccountCredential, Admission, AttemptKey, AttemptLimiter, Binding, CredentialStore,
    FailureLimit, MemoryAttemptLimiter, MemoryReplayCache, MemoryStore, ReplayCache, StoreError,
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
    let (store, account, token) = account_store();
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
    let server = Server::at(listener.local_addr().unwrap(), store, keys, account, token);
    let mut layer = TokenEndpointLayer::new(&server.base, server.keys.clone(), counting)
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
        server,
        lookups,
        store_down,
    }
}

/// A request with a wrong app password: 400 `invalid_grant`, counted.
async fn fail(server: &Server, client_id: &str) {
    let response = post_password(server, client_id, "wrong-token").await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_grant");
}

async fn succeed(server: &Server) {
    let response = post_password(server, CLIENT_ID, &server.token).await;
    assert_eq!(response.status(), 200);
}

/// The other application, authenticated by its client secret.
async fn other_client(server: &Server) -> reqwest::Response {
    post_form(
        server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", OTHER_CLIENT),
            ("client_secret", OTHER_SECRET),
        ]),
    )
    .await
}

/// The right app password at `CLIENT_ID`, refused with 429 until the lock
/// ends.
async fn locked_out(server: &Server) -> u64 {
    too_many(post_password(server, CLIENT_ID, &server.token).await).await
}

// ---- the rule matrix: one row per rule ------------------------------------------------

/// One step of a row: a request and the answer the rule wants, or a change
/// of the world between requests.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A wrong app password at this client_id: 400 `invalid_grant`.
    Fail(&'static str),
    /// The right app password at `CLIENT_ID`: 200.
    Succeed,
    /// The other application's client secret: 200.
    OtherSucceeds,
    /// The right app password at `CLIENT_ID`: 429 with a `Retry-After` of
    /// at least 1 s and at most the window.
    Locked,
    /// The other application's client secret: 429.
    OtherLocked,
    /// A client_id that names no application, in the form: 400
    /// `invalid_client`.
    UnknownClient,
    /// A wrong client secret (HTTP Basic) at the introspection endpoint:
    /// 401 `invalid_client`.
    FailIntrospection,
    /// The credential store goes down (`true`) or comes back.
    StoreDown(bool),
    /// A wrong app password while the store is down: 503
    /// `temporarily_unavailable`.
    Unavailable,
    /// Waits out the window.
    WaitForTheWindow,
}

use Step::*;

/// A rule of the limiter, as the steps that show it.
struct Row {
    rule: &'static str,
    /// Failures allowed per client_id and per address.
    client: Option<u32>,
    address: Option<u32>,
    window: Duration,
    /// Whether the server knows the client's address (`ConnectInfo`).
    address_source: bool,
    /// Each step, `n` times.
    steps: &'static [(usize, Step)],
}

const ROWS: &[Row] = &[
    Row {
        rule: "failures_beyond_the_client_limit_get_429_with_retry_after",
        client: Some(3),
        address: None,
        window: MINUTE,
        address_source: false,
        // Even the right credentials wait until the window ends.
        steps: &[(3, Fail(CLIENT_ID)), (1, Locked)],
    },
    Row {
        rule: "another_client_id_is_not_limited_by_a_locked_out_one",
        client: Some(2),
        address: None,
        window: MINUTE,
        address_source: false,
        steps: &[(2, Fail(CLIENT_ID)), (1, Locked), (1, OtherSucceeds)],
    },
    Row {
        rule: "address_limit_counts_failures_across_client_ids",
        client: None,
        address: Some(3),
        window: MINUTE,
        address_source: true,
        // A client_id that names no application counts for the address too;
        // then 127.0.0.1 is locked out, whichever client it speaks for.
        steps: &[
            (1, Fail(CLIENT_ID)),
            (1, Fail(OTHER_CLIENT)),
            (1, UnknownClient),
            (1, Locked),
            (1, OtherLocked),
        ],
    },
    Row {
        rule: "address_limit_is_off_without_an_address_source",
        client: None,
        address: Some(2),
        window: MINUTE,
        address_source: false,
        steps: &[(4, Fail(CLIENT_ID)), (1, Succeed)],
    },
    Row {
        rule: "success_does_not_reset_the_client_count",
        client: Some(3),
        address: None,
        window: MINUTE,
        address_source: false,
        steps: &[
            (2, Fail(CLIENT_ID)),
            (1, Succeed),
            (1, Fail(CLIENT_ID)),
            (1, Locked),
        ],
    },
    Row {
        rule: "successes_do_not_consume_the_budget",
        client: Some(3),
        address: Some(3),
        window: MINUTE,
        address_source: true,
        steps: &[
            (10, Succeed),
            (10, OtherSucceeds),
            (3, Fail(CLIENT_ID)),
            (1, Locked),
        ],
    },
    Row {
        rule: "locked_out_client_is_accepted_again_after_retry_after",
        client: Some(2),
        address: Some(2),
        // (Long enough that the two failures and the locked request fit in
        // it on a loaded machine: with 1 s the window once ended first.)
        window: Duration::from_secs(2),
        address_source: true,
        steps: &[
            (2, Fail(CLIENT_ID)),
            (1, Locked),
            (1, WaitForTheWindow),
            (1, Succeed),
        ],
    },
    Row {
        rule: "an_unavailable_store_does_not_count_as_a_failure",
        client: Some(2),
        address: Some(2),
        window: MINUTE,
        address_source: true,
        steps: &[
            (1, StoreDown(true)),
            (5, Unavailable),
            (1, StoreDown(false)),
            (1, Fail(CLIENT_ID)),
            (1, Succeed),
            (1, Fail(CLIENT_ID)),
            (1, Locked),
        ],
    },
    Row {
        rule: "failed_introspection_counts_against_the_client",
        client: Some(2),
        address: None,
        window: MINUTE,
        address_source: false,
        steps: &[(2, FailIntrospection), (1, Locked)],
    },
];

/// Runs `row` against a server of its own; panics naming the rule and the
/// step that broke it.
async fn run(row: &'static Row) {
    let limited = start_limited(
        MemoryAttemptLimiter::new(),
        limits(row.client, row.address, row.window),
        row.address_source,
    )
    .await;
    let server = &limited.server;
    let rule = row.rule;
    for (index, &(times, step)) in row.steps.iter().enumerate() {
        for time in 0..times {
            let at = format!("{rule}: step {index} ({step:?}), time {time}");
            let response = match step {
                Fail(client_id) => post_password(server, client_id, "wrong-token").await,
                Succeed => post_password(server, CLIENT_ID, &server.token).await,
                OtherSucceeds | OtherLocked => other_client(server).await,
                Locked => post_password(server, CLIENT_ID, &server.token).await,
                UnknownClient => post_password(server, "no-such-client", "guess").await,
                FailIntrospection => http()
                    .post(server.url("/application/o/introspect/"))
                    .basic_auth(CLIENT_ID, Some("wrong-secret"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form_encode(&[("token", "anything")]))
                    .send()
                    .await
                    .unwrap(),
                Unavailable => post_password(server, CLIENT_ID, "wrong-token").await,
                StoreDown(down) => {
                    limited.store_down.store(down, Ordering::SeqCst);
                    continue;
                }
                WaitForTheWindow => {
                    tokio::time::sleep(row.window + Duration::from_millis(100)).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().parse::<u64>().unwrap());
            let error = response
                .json::<Value>()
                .await
                .ok()
                .and_then(|json| json["error"].as_str().map(str::to_owned));
            let (want_status, want_error) = match step {
                Fail(_) => (400, Some("invalid_grant")),
                Succeed | OtherSucceeds => (200, None),
                Locked | OtherLocked => (429, Some("temporarily_unavailable")),
                UnknownClient => (400, Some("invalid_client")),
                FailIntrospection => (401, Some("invalid_client")),
                Unavailable => (503, Some("temporarily_unavailable")),
                StoreDown(_) | WaitForTheWindow => unreachable!(),
            };
            assert_eq!(
                (status, error.as_deref()),
                (want_status, want_error),
                "{at}"
            );
            if want_status == 429 {
                let retry_after = retry_after.unwrap_or_else(|| panic!("{at}: no Retry-After"));
                assert!(
                    (1..=row.window.as_secs()).contains(&retry_after),
                    "{at}: Retry-After {retry_after}"
                );
            }
        }
    }
}

/// Every row, each on its own server and all at once; fails naming every
/// rule that broke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_limit_rules() {
    check_rows(ROWS, run).await;
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
        too_many(post_password(server, CLIENT_ID, "another-guess").await).await;
    }
    assert_eq!(limited.lookups.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn made_up_client_ids_are_not_remembered() {
    let limiter = MemoryAttemptLimiter::new();
    let limited = start_limited(limiter.clone(), limits(Some(2), None, MINUTE), true).await;
    for i in 0..5 {
        let response = post_password(&limited.server, &format!("made-up-{i}"), "x").await;
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
    let response = post_password(server, CLIENT_ID, &server.token).await;
    assert_eq!(response.status(), 503);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"], "temporarily_unavailable");
    assert_eq!(limited.lookups.load(Ordering::SeqCst), 0);
}

// ---- count, then decide -----------------------------------------------------------

fn wrong_guess() -> String {
    password_form(CLIENT_ID, "wrong-token")
}

/// A store lookup as slow as a database round trip, so that guesses overlap.
const LOOKUP: Duration = Duration::from_millis(20);

/// 50 wrong guesses at once against a limit of 10 under `limits`: at most
/// 10 reach the verifier, every other one is refused with 429.
async fn fifty_guesses_at_once(
    limits: AttemptLimits,
    address_source: Option<AddressSource>,
) -> Limited {
    let limited =
        start_limited_with(MemoryAttemptLimiter::new(), limits, address_source, LOOKUP).await;
    let url = limited.server.token_url();
    guesses::send_at_once(&[url], &wrong_guess(), 50)
        .await
        .assert_capped(50, 10);
    limited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cannot_pass_the_client_limit() {
    let limited = fifty_guesses_at_once(limits(Some(10), None, MINUTE), None).await;
    assert!(limited.lookups.load(Ordering::SeqCst) <= 10);
    // The budget is spent: the right credentials wait too.
    locked_out(&limited.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cannot_pass_the_address_limit() {
    fifty_guesses_at_once(limits(None, Some(10), MINUTE), Some(connect_info)).await;
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
    let body = password_form(CLIENT_ID, &server.token);
    // More at once than the limit: they wait for a slot, none is refused.
    let answers = guesses::send_at_once(&[server.token_url()], &body, 12).await;
    assert_eq!(answers.ok, 12, "{answers:?}");
    // And none of them counted.
    for _ in 0..3 {
        fail(server, CLIENT_ID).await;
    }
    succeed(server).await;
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
            .body(password_form(client_id, password))
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
    locked_out(server).await;
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

// ---- single-use assertions: the jti is written after the slots are given back -----

/// A replay cache (in memory) whose first uses each wait until
/// `together` of them are under way at once, or 5 s: it shows how many
/// single-use requests of one client wait for their write together.
#[derive(Clone)]
struct GatheringReplay {
    inner: MemoryReplayCache,
    gathered: Arc<tokio::sync::Barrier>,
}

impl ReplayCache for GatheringReplay {
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, StoreError> {
        tokio::time::timeout(Duration::from_secs(5), self.gathered.wait())
            .await
            .map_err(|_| StoreError("first uses were not under way together".into()))?;
        self.inner.first_use(key, expires_at).await
    }
}

/// A token endpoint with the single-use CI application `ci-client` of
/// `external`, `replay` as replay cache and a limit of `limit` failures per
/// `client_id`; its token URL.
async fn start_single_use(external: &External, replay: impl ReplayCache, limit: u32) -> String {
    let verifier = StoreVerifier::new(MemoryStore::new());
    start_single_use_with(external, replay, limit, verifier).await
}

/// [`start_single_use`], with `verifier` deciding who the clients are.
async fn start_single_use_with(
    external: &External,
    replay: impl ReplayCache,
    limit: u32,
    verifier: impl Verifier,
) -> String {
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let base = serve(|base| {
        let limits = limits(Some(limit), None, MINUTE);
        let layer = TokenEndpointLayer::new(base, keys, MemoryStore::new())
            .unwrap()
            .verifier(verifier)
            .replay_cache(replay)
            .application(external.ci_application("ci-client"))
            .unwrap()
            .attempt_limiter(MemoryAttemptLimiter::new(), limits);
        Router::new()
            .route("/{*path}", any(|| async { "inner" }))
            .layer(layer)
    })
    .await;
    format!("{base}/application/o/token/")
}

/// A new single-use assertion of `external`.
fn single_use_assertion(external: &External) -> String {
    let now = common::foreign::now();
    external.mint(&serde_json::json!({
        "iss": "https://ci.example",
        "sub": "repo:org/app:ref:refs/heads/main",
        "exp": now + 300,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
    }))
}

/// A token request with `jwt` as client assertion of `ci-client`.
async fn assert_with(url: &str, jwt: &str) -> reqwest::Response {
    post_assertion_to(url, "ci-client", jwt).await
}

/// A client's single-use requests wait for their `jti` writes without
/// holding its failure slots: with a limit of 2, six wait together (as
/// they would share one commit of a SQL store), and all get tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_use_writes_of_one_client_are_not_capped_at_its_failure_limit() {
    let external = External::new(Algorithm::ES256);
    let replay = GatheringReplay {
        inner: MemoryReplayCache::new(),
        gathered: Arc::new(tokio::sync::Barrier::new(6)),
    };
    let url = start_single_use(&external, replay, 2).await;
    let jwts: Vec<String> = (0..6).map(|_| single_use_assertion(&external)).collect();
    let answers = futures_util::future::join_all(jwts.iter().map(|jwt| assert_with(&url, jwt)));
    for response in answers.await {
        assert_eq!(response.status(), 200);
    }
}

/// A replayed single-use assertion is refused and, though its slot was
/// given back before the replay was found, counts as a failure: after
/// `limit` replays even a new assertion is locked out.
#[tokio::test]
async fn replayed_single_use_assertions_count_as_failures() {
    let external = External::new(Algorithm::ES256);
    let url = start_single_use(&external, MemoryReplayCache::new(), 3).await;
    let jwt = single_use_assertion(&external);
    assert_eq!(assert_with(&url, &jwt).await.status(), 200);
    for _ in 0..3 {
        let replay = assert_with(&url, &jwt).await;
        assert_eq!(replay.status(), 400);
        assert_eq!(error_code(replay).await, "invalid_client");
    }
    too_many(assert_with(&url, &single_use_assertion(&external)).await).await;
}

/// A replay cache (in memory) whose first use waits, once `armed`, until
/// `release` has a permit; `entered` is notified when one starts to wait.
#[derive(Clone)]
struct HeldReplay {
    inner: MemoryReplayCache,
    entered: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Semaphore>,
}

impl ReplayCache for HeldReplay {
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, StoreError> {
        self.entered.notify_one();
        let _permit = self.release.acquire().await.expect("semaphore open");
        self.inner.first_use(key, expires_at).await
    }
}

/// A single-use request whose `jti` is being written while its client gets
/// locked out is not refused afterwards: it was admitted, and a 429 then
/// would use its JWT up without a token. Failures still lock the client out
/// for the requests that come after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_during_a_single_use_write_does_not_use_the_jwt_up() {
    let external = External::new(Algorithm::ES256);
    let untrusted = External::new(Algorithm::ES256);
    let replay = HeldReplay {
        inner: MemoryReplayCache::new(),
        entered: Arc::new(tokio::sync::Notify::new()),
        release: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let (entered, release) = (replay.entered.clone(), replay.release.clone());
    let url = start_single_use(&external, replay, 2).await;

    let jwt = single_use_assertion(&external);
    let in_flight = tokio::spawn({
        let (url, jwt) = (url.clone(), jwt.clone());
        async move { assert_with(&url, &jwt).await }
    });
    tokio::time::timeout(Duration::from_secs(5), entered.notified())
        .await
        .expect("the jti write started");
    // Two assertions signed by an untrusted key: the limit of 2 is reached.
    for _ in 0..2 {
        let refused = assert_with(&url, &single_use_assertion(&untrusted)).await;
        assert_eq!(refused.status(), 400);
        assert_eq!(error_code(refused).await, "invalid_client");
    }
    too_many(assert_with(&url, &single_use_assertion(&external)).await).await;

    release.add_permits(1);
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert!(body["access_token"].is_string());
    // The client stays locked out, with or without that JWT again.
    release.add_permits(10);
    too_many(assert_with(&url, &jwt).await).await;
}

/// A single-use assertion that the verifier refuses, though its slots were
/// given back before its `jti` was written, counts as a failure: after
/// `limit` refusals the client is locked out.
#[tokio::test]
async fn single_use_assertions_the_verifier_refuses_count_as_failures() {
    let external = External::new(Algorithm::ES256);
    let calls = Arc::new(AtomicUsize::new(0));
    let verifier = tower::service_fn({
        let calls = calls.clone();
        move |_: ClientAuthentication| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<Principal, _>(VerifyError::Rejected(Rejection::UnknownCredentials)) }
        }
    });
    let url = start_single_use_with(&external, MemoryReplayCache::new(), 3, verifier).await;
    for _ in 0..3 {
        let refused = assert_with(&url, &single_use_assertion(&external)).await;
        assert_eq!(refused.status(), 400);
        assert_eq!(error_code(refused).await, "invalid_grant");
    }
    too_many(assert_with(&url, &single_use_assertion(&external)).await).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
