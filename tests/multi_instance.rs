//! Several token-endpoint instances behind a load balancer: two instances on
//! one PostgreSQL (credentials) and one Redis (replay cache, revocation
//! list), each with its own connections, over real HTTP.
//!
//! Needs `TOWER_M2M_AUTH_PG_URL` and `TOWER_M2M_AUTH_REDIS_URL` (.ci/run
//! starts both servers and sets them).

#![cfg(all(feature = "postgres", feature = "redis"))]

mod common;

use axum::Router;
use axum::routing::any;
use common::jwks::External;
use common::pg::{fresh_database, required};
use common::{APP_SECRET, CLIENT_ID, JWT_BEARER, form_encode, http, replica, serve};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tower_m2m_auth::issuer::TokenEndpointLayer;
use tower_m2m_auth::keys::{Algorithm, KeyRing, SigningKey};
use tower_m2m_auth::store::{
    AccountAdmin, Binding, PgStore, RedisStore, ServiceAccount, TokenDigest,
};

const CI_CLIENT: &str = "ci-client";

/// One instance: its own database pool and Redis connection.
struct Instance {
    base: String,
    store: PgStore,
}

impl Instance {
    async fn start(
        database: &str,
        redis_prefix: &str,
        keys: &KeyRing,
        external: &External,
    ) -> Self {
        let store = PgStore::connect(database).await.unwrap();
        let redis = RedisStore::connect(&required("TOWER_M2M_AUTH_REDIS_URL"))
            .await
            .unwrap()
            .with_prefix(redis_prefix);
        let ci = external.ci_application(CI_CLIENT);
        // The instances share their signing keys, as replicas do.
        let layer =
            TokenEndpointLayer::new("https://auth.example.com", keys.clone(), store.clone())
                .unwrap();
        let layer = replica(layer, redis, ci);
        let app = Router::new()
            .route("/{*path}", any(|| async { "inner" }))
            .layer(layer);
        let base = serve(|_| app).await;
        Self { base, store }
    }

    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
        http()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(pairs))
            .send()
            .await
            .unwrap()
    }

    async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", username),
            ("password", password),
        ];
        self.post("/application/o/token/", &form).await
    }

    /// Creates the service account `username` through this instance's
    /// store, bound nowhere; returns its app password.
    async fn create_account(&self, username: &str) -> String {
        let (_, token) = self
            .store
            .create_service_account(ServiceAccount::new(username), None)
            .await
            .unwrap();
        token.expose_secret().to_owned()
    }

    /// Binds `username` to the test application (scope `read`).
    async fn bind(&self, username: &str) {
        self.store
            .bind_account(username, Binding::new(CLIENT_ID, ["read"]))
            .await
            .unwrap();
    }

    async fn with_app_secret(&self, path: &str, token: &str) -> Value {
        let form = [
            ("client_id", CLIENT_ID),
            ("client_secret", APP_SECRET),
            ("token", token),
        ];
        let response = self.post(path, &form).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// Two instances on one fresh database and one Redis key space.
async fn pair() -> (Instance, Instance, External) {
    let database = fresh_database().await;
    let prefix = format!("m2m-test-{}:", uuid::Uuid::new_v4().simple());
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let external = External::new(Algorithm::ES256);
    let a = Instance::start(&database, &prefix, &keys, &external).await;
    let b = Instance::start(&database, &prefix, &keys, &external).await;
    (a, b, external)
}

#[tokio::test]
async fn an_account_created_through_one_instance_is_accepted_by_the_other() {
    let (a, b, _) = pair().await;
    let token = a.create_account("svc-shared").await;
    let login = async || b.login("svc-shared", &token).await.status();
    // Unbound, it gets no token; bound through one instance, the other
    // accepts it at once; unbound again, refused at once.
    assert_eq!(login().await, 400);
    a.bind("svc-shared").await;
    assert_eq!(login().await, 200);
    assert!(
        a.store
            .unbind_account("svc-shared", CLIENT_ID)
            .await
            .unwrap()
    );
    assert_eq!(login().await, 400);
    a.bind("svc-shared").await;

    // Revoking the app password through one is seen by the other at once.
    assert!(
        a.store
            .revoke_app_password(&TokenDigest::of(&token))
            .await
            .unwrap()
    );
    assert_eq!(login().await, 400);
}

#[tokio::test]
async fn an_access_token_revoked_through_one_instance_is_inactive_on_the_other() {
    let (a, b, _) = pair().await;
    let password = a.create_account("svc-revoke").await;
    a.bind("svc-revoke").await;
    let json: Value = a.login("svc-revoke", &password).await.json().await.unwrap();
    let access = json["access_token"].as_str().unwrap();
    assert_eq!(
        b.with_app_secret("/application/o/introspect/", access)
            .await["active"],
        true
    );
    a.with_app_secret("/application/o/revoke/", access).await;
    assert_eq!(
        b.with_app_secret("/application/o/introspect/", access)
            .await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn a_single_use_assertion_replayed_on_the_other_instance_is_refused() {
    let (a, b, external) = pair().await;
    let now = jsonwebtoken::get_current_timestamp();
    let jwt = external.mint(&json!({
        "iss": "https://ci.example", "sub": "repo:org/app", "exp": now + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
    }));
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CI_CLIENT),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", jwt.as_str()),
    ];
    let exchange =
        async |instance: &Instance| instance.post("/application/o/token/", &form).await.status();
    assert_eq!(exchange(&a).await, 200);
    assert_eq!(exchange(&b).await, 400);
    assert_eq!(exchange(&a).await, 400);
}
