//! Shared fixtures: the token endpoint layer with a service account and an
//! application, served on 127.0.0.1 ([`start`]) or called in process
//! ([`Endpoint`], `oneshot`).

#![allow(dead_code)]

pub mod foreign;
pub mod guesses;
pub mod jwks;
pub mod oneshot;
#[cfg(feature = "postgres")]
pub mod pg;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::any;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use secrecy::ExposeSecret;
use tower_m2m_auth::issuer::{
    Application, ClientAuthentication, Principal, StoreVerifier, TokenEndpointLayer, VerifyError,
};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::store::{AppPassword, Binding, MemoryStore, ServiceAccount};

#[allow(unused_imports)]
pub use oneshot::{Answer, Endpoint, Post};

pub const CLIENT_ID: &str = "test-client";
pub const SLUG: &str = "test-app";
pub const APP_SECRET: &str = "application-secret-0123456789";
pub const USERNAME: &str = "svc-deployer";

/// The layer the fixtures build (before `configure` adjusts it).
pub type TestLayer = TokenEndpointLayer<StoreVerifier<MemoryStore>>;

/// A running test server and what it was configured with.
pub struct Server {
    pub addr: SocketAddr,
    pub base: String,
    pub store: MemoryStore,
    pub keys: KeyRing,
    pub token: String,
    pub account: ServiceAccount,
}

impl Server {
    /// The fixture of a server at `http://{addr}`.
    pub fn at(
        addr: SocketAddr,
        store: MemoryStore,
        keys: KeyRing,
        account: ServiceAccount,
        token: String,
    ) -> Self {
        Self {
            addr,
            base: format!("http://{addr}"),
            store,
            keys,
            token,
            account,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token_url(&self) -> String {
        self.url("/application/o/token/")
    }

    pub fn issuer(&self) -> String {
        self.url(&format!("/application/o/{SLUG}/"))
    }

    /// Adds another service account with one fresh token, bound to the
    /// test application with all its scopes.
    pub fn add_account(&self, username: &str) -> (ServiceAccount, String) {
        let (account, token) = self.add_unbound_account(username);
        self.store.bind(username, all_scopes());
        (account, token)
    }

    /// Adds another service account with one fresh token, bound nowhere.
    pub fn add_unbound_account(&self, username: &str) -> (ServiceAccount, String) {
        let account = ServiceAccount::new(username);
        let (token, password) = AppPassword::generate(&account.id);
        self.store.insert_account(account.clone());
        self.store.insert_app_password(password);
        (account, token.expose_secret().to_owned())
    }

    pub async fn jwks(&self) -> JwkSet {
        reqwest::get(self.url(&format!("/application/o/{SLUG}/jwks/")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A binding to the test application with every scope it allows.
pub fn all_scopes() -> Binding {
    Binding::new(CLIENT_ID, ["read", "write", "openid"])
}

pub fn application() -> Application {
    Application::new(CLIENT_ID, SLUG)
        .with_name("test")
        .with_client_secret(APP_SECRET)
        .with_allowed_scopes(["read", "write", "openid"])
}

/// Starts a server signing with `algorithm`; `configure` may adjust the layer.
pub async fn start_with(
    algorithm: Algorithm,
    configure: impl FnOnce(TestLayer) -> TestLayer,
) -> Server {
    start_with_application(algorithm, application(), configure).await
}

/// Like [`start_with`], with `application` as the test application (its
/// `client_id` must be `CLIENT_ID`).
pub async fn start_with_application(
    algorithm: Algorithm,
    application: Application,
    configure: impl FnOnce(TestLayer) -> TestLayer,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (app, server) = build(addr, algorithm, application, configure);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    server
}

/// The test application's layer around the echoing inner service, at
/// `http://{addr}`, with its store (one bound service account) and keys.
pub fn build(
    addr: SocketAddr,
    algorithm: Algorithm,
    application: Application,
    configure: impl FnOnce(TestLayer) -> TestLayer,
) -> (Router, Server) {
    let (store, account, token) = account_store();
    let keys = KeyRing::new(SigningKey::generate(algorithm).unwrap());
    let server = Server::at(addr, store, keys, account, token);
    let layer = TokenEndpointLayer::new(&server.base, server.keys.clone(), server.store.clone())
        .unwrap()
        .application(application)
        .unwrap();
    let app = Router::new()
        .route("/{*path}", any(echo))
        .layer(configure(layer));
    (app, server)
}

/// A store holding the test service account (`USERNAME`) with one app
/// password, bound to the test application with all its scopes; returns
/// the store, the account and its app password.
pub fn account_store() -> (MemoryStore, ServiceAccount, String) {
    let store = MemoryStore::new();
    let account = ServiceAccount::new(USERNAME).with_name("Deployer");
    let (token, password) = AppPassword::generate(&account.id);
    store.insert_account(account.clone());
    store.insert_app_password(password);
    store.bind(USERNAME, all_scopes());
    (store, account, token.expose_secret().to_owned())
}

/// The layer of one of several replicas sharing `redis` as their replay
/// cache and revocation list, with the test application and `ci`.
#[cfg(feature = "redis")]
pub fn replica<V>(
    layer: TokenEndpointLayer<V>,
    redis: tower_m2m_auth::store::RedisStore,
    ci: Application,
) -> TokenEndpointLayer<V> {
    layer
        .replay_cache(redis.clone())
        .application(application())
        .unwrap()
        .application(ci)
        .unwrap()
        .revocation_list(redis)
}

/// A verifier a test serves (`TokenEndpointLayer::verifier`): who the
/// client of a `ClientAuthentication` is, callable from any task.
pub trait Verifier:
    tower::Service<ClientAuthentication, Response = Principal, Error = VerifyError, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Verifier for T where
    T: tower::Service<
            ClientAuthentication,
            Response = Principal,
            Error = VerifyError,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves the router `app` builds on 127.0.0.1 (a free port); `app` gets
/// the server's base URL (`http://127.0.0.1:port`, the issuer of a token
/// endpoint in it), which is returned.
pub async fn serve(app: impl FnOnce(&str) -> Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = app(&base);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

pub async fn start() -> Server {
    start_with(Algorithm::ES256, |layer| layer).await
}

/// The inner service: echoes method, path, query and a few headers in
/// response headers, and streams the request body back.
async fn echo(request: Request<Body>) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    axum::response::Response::builder()
        .header("x-inner-method", parts.method.as_str())
        .header("x-inner-uri", parts.uri.to_string())
        .header(
            "x-inner-content-type",
            parts
                .headers
                .get("content-type")
                .cloned()
                .unwrap_or_else(|| axum::http::HeaderValue::from_static("")),
        )
        .body(body)
        .unwrap()
}

/// A plain HTTP client that never retries or follows redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The HTTP client of the oauth2 crate (reqwest 0.12).
pub fn oauth2_http() -> reqwest012::Client {
    reqwest012::Client::builder()
        .redirect(reqwest012::redirect::Policy::none())
        .build()
        .unwrap()
}

/// POSTs a form body (given raw) to the token endpoint.
pub async fn post_form(server: &Server, body: &str) -> reqwest::Response {
    post_form_to(&server.token_url(), body).await
}

/// A form-encoded POST of `body` to `url`.
pub async fn post_form_to(url: &str, body: &str) -> reqwest::Response {
    http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// A token request to the token URL `url` at `client_id`, with `jwt` as
/// its client assertion.
pub async fn post_assertion_to(url: &str, client_id: &str, jwt: &str) -> reqwest::Response {
    let form = form_encode(&[
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", jwt),
    ]);
    post_form_to(url, &form).await
}

/// A token request at `client_id` as the test service account
/// (`USERNAME`) with app password `password`.
pub async fn post_password(server: &Server, client_id: &str, password: &str) -> reqwest::Response {
    post_form(server, &password_form(client_id, password)).await
}

/// The form of [`post_password`].
pub fn password_form(client_id: &str, password: &str) -> String {
    form_encode(&[
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("username", USERNAME),
        ("password", password),
    ])
}

/// Asserts a 429 answer of RFC 6749 shape (`temporarily_unavailable`, a
/// `Retry-After` in whole seconds); returns its `Retry-After`.
pub async fn too_many(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(error_code(response).await, "temporarily_unavailable");
    retry_after
}

/// The `error` code of an RFC 6749 §5.2 response, after checking its shape.
pub async fn error_code(response: reqwest::Response) -> String {
    Answer::read(response).await.error()
}

/// Verifies a JWT against the published JWKS (picked by `kid`) and returns its claims.
pub fn verify(jwks: &JwkSet, token: &str, audience: &str, issuer: &str) -> serde_json::Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.expect("token has a kid");
    let jwk = jwks.find(&kid).expect("kid is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .unwrap()
        .claims
}

/// The `client_assertion_type` of RFC 7523 §2.2.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A token request at `client_id` with `jwt` as its client assertion,
/// asking for `scope`.
pub async fn post_assertion(
    server: &Server,
    client_id: &str,
    jwt: &str,
    scope: &str,
) -> reqwest::Response {
    post_form(
        server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", jwt),
            ("scope", scope),
        ]),
    )
    .await
}

/// Runs `run` for every row of a rule table, each in its own task and all
/// at once; panics listing every row that broke (each row's own panic
/// message names its rule), not only the first.
pub async fn check_rows<R, F>(rows: &'static [R], run: impl Fn(&'static R) -> F)
where
    R: Sync,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = rows.iter().map(|row| tokio::spawn(run(row))).collect();
    let mut broken = Vec::new();
    for task in tasks {
        if let Err(error) = task.await {
            let panic = error.into_panic();
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            broken.push(message);
        }
    }
    assert!(broken.is_empty(), "rules broken:\n{}", broken.join("\n"));
}

pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}
