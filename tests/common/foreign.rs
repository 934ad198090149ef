//! A foreign issuer made in the test: its own keys, its JWKS and OpenID
//! discovery document served by a local HTTP server, tokens minted by hand.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};
use tower_m2m_auth::keys::{KeyRing, SigningKey};

/// A running foreign issuer.
pub struct Foreign {
    pub base: String,
    pub iss: String,
    pub ring: KeyRing,
    /// JWKS requests served so far.
    pub jwks_hits: Arc<AtomicUsize>,
    /// When set, the JWKS is served with this transformation (e.g. `alg`
    /// removed from every key).
    pub strip_alg: bool,
}

#[derive(Clone)]
struct Shared {
    ring: KeyRing,
    iss: String,
    jwks_url: String,
    hits: Arc<AtomicUsize>,
    strip_alg: bool,
}

/// The JWKS of `ring`, without `alg` on any key when `strip_alg`.
fn published(ring: &KeyRing, strip_alg: bool) -> JwkSet {
    let mut jwks: JwkSet = ring.jwks();
    if strip_alg {
        for key in &mut jwks.keys {
            key.common.key_algorithm = None;
        }
    }
    jwks
}

async fn jwks(State(shared): State<Shared>) -> axum::response::Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let jwks = published(&shared.ring, shared.strip_alg);
    ([("cache-control", "max-age=600")], axum::Json(jwks)).into_response()
}

async fn discovery(State(shared): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!({
        "issuer": shared.iss,
        "jwks_uri": shared.jwks_url,
        "token_endpoint": format!("{}token", shared.iss),
    }))
}

impl Foreign {
    /// Starts an issuer signing with a fresh `algorithm` key.
    pub async fn start(algorithm: Algorithm) -> Self {
        Self::start_with(algorithm, false).await
    }

    /// Starts an issuer whose JWKS omits `alg` when `strip_alg`.
    pub async fn start_with(algorithm: Algorithm, strip_alg: bool) -> Self {
        let ring = KeyRing::new(SigningKey::generate(algorithm).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let iss = format!("{base}/foreign/");
        let hits = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            ring: ring.clone(),
            iss: iss.clone(),
            jwks_url: format!("{base}/foreign/jwks"),
            hits: hits.clone(),
            strip_alg,
        };
        let app = Router::new()
            .route("/foreign/jwks", get(jwks))
            .route("/foreign/.well-known/openid-configuration", get(discovery))
            .with_state(shared);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            iss,
            ring,
            jwks_hits: hits,
            strip_alg,
        }
    }

    /// An issuer that serves nothing (`https://foreign.test/`): for
    /// validators given its keys directly ([`jwks`](Self::jwks)).
    pub fn local(algorithm: Algorithm, strip_alg: bool) -> Self {
        let base = "https://foreign.test".to_owned();
        Self {
            iss: format!("{base}/"),
            base,
            ring: KeyRing::new(SigningKey::generate(algorithm).unwrap()),
            jwks_hits: Arc::new(AtomicUsize::new(0)),
            strip_alg,
        }
    }

    /// Its JWKS as it publishes it.
    pub fn jwks(&self) -> JwkSet {
        published(&self.ring, self.strip_alg)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/foreign/jwks", self.base)
    }

    /// Valid access-token claims for `aud`, five minutes long.
    pub fn claims(&self, aud: &str, scope: &str) -> Value {
        let now = now();
        json!({
            "iss": self.iss,
            "sub": "foreign-robot",
            "aud": aud,
            "exp": now + 300,
            "iat": now,
            "scope": scope,
            "client_id": aud,
        })
    }

    /// Signs `claims` with the active key, without `typ` (as an input JWT
    /// of a platform, or an access token of an issuer that does not type
    /// its access tokens).
    pub fn mint(&self, claims: &Value) -> String {
        self.ring.active().sign_jwt(None, claims).unwrap()
    }

    /// Signs `claims` with the active key, without `typ`: [`mint`](Self::mint),
    /// named for what a validator makes of it.
    pub fn mint_untyped(&self, claims: &Value) -> String {
        self.mint(claims)
    }

    /// Signs `claims` with the active key and `typ: at+jwt`.
    pub fn mint_at_jwt(&self, claims: &Value) -> String {
        self.ring.active().sign_jwt(Some("at+jwt"), claims).unwrap()
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
