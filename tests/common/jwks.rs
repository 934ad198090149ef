//! External issuers for tests: keys generated here, JWKS served over real
//! HTTP by a source whose keys, availability and hit count the test controls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tower_m2m_auth::keys::{CachePolicy, KeyRing, SigningKey};

/// A JWKS endpoint on 127.0.0.1.
#[derive(Clone)]
pub struct JwksSource {
    pub jwks: Arc<ArcSwap<JwkSet>>,
    pub up: Arc<AtomicBool>,
    pub hits: Arc<AtomicUsize>,
    /// Milliseconds each answer is held back (a slow source).
    pub delay_ms: Arc<AtomicU64>,
    pub cache_control: &'static str,
    pub url: String,
}

impl JwksSource {
    /// Serves `jwks` (when `up`) with this `Cache-Control`.
    pub async fn start(jwks: JwkSet, up: bool, cache_control: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let source = JwksSource {
            jwks: Arc::new(ArcSwap::from_pointee(jwks)),
            up: Arc::new(AtomicBool::new(up)),
            hits: Arc::new(AtomicUsize::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            cache_control,
            url: format!("http://{}/jwks", listener.local_addr().unwrap()),
        };
        let app = Router::new()
            .route("/jwks", get(serve))
            .with_state(source.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        source
    }

    pub fn set(&self, jwks: JwkSet) {
        self.jwks.store(Arc::new(jwks));
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve(State(source): State<JwksSource>) -> axum::response::Response {
    source.hits.fetch_add(1, Ordering::SeqCst);
    let delay = source.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if !source.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (
        [("cache-control", source.cache_control)],
        axum::Json((**source.jwks.load()).clone()),
    )
        .into_response()
}

/// A foreign issuer (a CI platform, a cluster): one private key, minting
/// JWTs with `jsonwebtoken`.
pub struct External {
    pub key: SigningKey,
    pub pem: String,
    encoding: EncodingKey,
}

impl External {
    pub fn new(algorithm: Algorithm) -> Self {
        let key = SigningKey::generate(algorithm).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let encoding = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            other => panic!("no test issuer for {other:?}"),
        }
        .unwrap();
        Self { key, pem, encoding }
    }

    /// An application at `client_id` that trusts this issuer as
    /// `https://ci.example` and takes each assertion once.
    pub fn ci_application(&self, client_id: &str) -> tower_m2m_auth::issuer::Application {
        use tower_m2m_auth::keys::{TrustedIssuer, VerificationKey, VerificationKeys};
        tower_m2m_auth::issuer::Application::new(client_id, "ci")
            .with_verification_keys(VerificationKeys::new().with_issuer(
                TrustedIssuer::new("https://ci.example").with_key(
                    VerificationKey::from_pem(self.certificate_pem().as_bytes()).unwrap(),
                ),
            ))
            .with_single_use_assertions(true)
            // Its tokens carry no `aud`: the audience rule has tests of its
            // own (tests/assertion.rs).
            .danger_accept_any_assertion_audience()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// A JWT with `claims`, its `kid` in the header.
    pub fn mint(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.algorithm());
        header.kid = Some(self.key.kid().to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// A JWT with `claims` and a `crit` header naming an extension
    /// (RFC 7515 §4.1.11), its `kid` in the header.
    pub fn mint_with_crit(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.algorithm());
        header.kid = Some(self.key.kid().to_owned());
        header.crit = Some(vec!["x-restricted".to_owned()]);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// A JWT with `claims` and this `typ` header, its `kid` in the header.
    pub fn mint_typed(&self, typ: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.algorithm());
        header.kid = Some(self.key.kid().to_owned());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// A JWT without `kid`.
    pub fn mint_without_kid(&self, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(self.algorithm()), claims, &self.encoding).unwrap()
    }

    /// Its public key as a JWK set.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.key.public_jwk().unwrap().clone()],
        }
    }

    /// A self-signed X.509 certificate of its key, in PEM (made with rcgen).
    pub fn certificate_pem(&self) -> String {
        let key_pair = rcgen::KeyPair::from_pem(&self.pem).unwrap();
        rcgen::CertificateParams::new(vec!["issuer.test".to_owned()])
            .unwrap()
            .self_signed(&key_pair)
            .unwrap()
            .pem()
    }

    /// The public key as a PEM `PUBLIC KEY`.
    pub fn public_key_pem(&self) -> String {
        let key_pair = rcgen::KeyPair::from_pem(&self.pem).unwrap();
        key_pair.public_key_pem()
    }
}

/// A key ring's JWKS (for sources that rotate).
pub fn ring_jwks(ring: &KeyRing) -> JwkSet {
    ring.jwks()
}

/// Serves `metadata` at the OpenID location and `jwks` at `/jwks` on
/// 127.0.0.1; returns the issuer URL (the server's root).
pub async fn serve_documents(metadata: impl Fn(&str) -> Vec<u8>, jwks: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let metadata = metadata(&issuer);
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { metadata }),
        )
        .route("/jwks", get(move || async move { jwks }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

/// A cache policy that refreshes quickly: a 200 ms unknown-`kid` cooldown,
/// a 50 ms failure backoff, no minimum TTL.
pub fn fast_policy() -> CachePolicy {
    let mut policy = CachePolicy::default();
    policy.unknown_kid_cooldown = std::time::Duration::from_millis(200);
    policy.failure_backoff = std::time::Duration::from_millis(50);
    policy.min_ttl = std::time::Duration::ZERO;
    policy
}
