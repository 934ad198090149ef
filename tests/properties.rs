//! Property tests: invariants sharper than a fuzz oracle, checked over
//! generated inputs through the public API, in process
//! (`tower::ServiceExt::oneshot`).
//!
//! - Scope clamping: a token's scopes are exactly the requested ones that
//!   the application and (for a service account) the account's binding
//!   allow; never one outside those lists.
//! - The verified-token cache: a cache hit and a cache miss reach the same
//!   decision as a layer without cache, for any token and at any time.
//! - Sign → publish (JWKS) → verify round-trips for every algorithm and
//!   rotation state of the `KeyRing`.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::jwk::JwkSet;
use proptest::prelude::*;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_m2m_auth::issuer::{Application, TokenEndpointLayer};
use tower_m2m_auth::keys::{Algorithm, KeyRing, KeySet, SigningKey};
use tower_m2m_auth::store::{AppPassword, Binding, MemoryStore, ServiceAccount};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};

const BASE: &str = "https://auth.example";
const CLIENT_ID: &str = "client";
const SECRET: &str = "client-secret-0123456789abcdef";
const USERNAME: &str = "svc";
const UNIVERSE: [&str; 6] = ["read", "write", "admin", "openid", "profile", "deploy"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A response with its body read.
async fn collect<B>(response: Response<B>) -> (StatusCode, Bytes)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

// ------------------------------------------------------------ scope clamping

fn ring() -> KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap()))
        .clone()
}

fn subset() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(UNIVERSE.to_vec(), 0..=UNIVERSE.len())
}

/// A requested `scope` value: known scopes, unknown ones, case variants and
/// stray whitespace, joined by one or more spaces.
fn requested() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        4 => proptest::sample::select(UNIVERSE.to_vec()).prop_map(str::to_owned),
        1 => "[a-zA-Z]{1,6}",
        1 => proptest::sample::select(vec!["READ", "read\t", "write,read", "\u{a0}read", "ope nid"])
            .prop_map(str::to_owned),
    ];
    (proptest::collection::vec((word, " {1,3}"), 0..8), " {0,2}").prop_map(|(words, lead)| {
        let mut out = lead;
        for (word, gap) in words {
            out.push_str(&word);
            out.push_str(&gap);
        }
        out
    })
}

/// The scopes the endpoint must grant: those requested (split on spaces,
/// RFC 6749 §3.3) that every list allows.
fn expected_grant(requested: &str, lists: &[&[&str]]) -> BTreeSet<String> {
    requested
        .split(' ')
        .filter(|s| !s.is_empty())
        .filter(|s| lists.iter().all(|list| list.contains(s)))
        .map(str::to_owned)
        .collect()
}

fn scope_set(scope: &str) -> BTreeSet<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Through the endpoint: a service account gets requested ∩ the
    /// application's ∩ its binding's scopes; the application's automatic
    /// account (its client secret) requested ∩ the application's. The
    /// token's `scope` claim says the same as the response.
    #[test]
    fn granted_scopes_never_leave_the_application_and_binding_lists(
        app_scopes in subset(),
        binding_scopes in subset(),
        requested in requested(),
        use_secret in any::<bool>(),
    ) {
        let store = MemoryStore::new();
        let account = ServiceAccount::new(USERNAME);
        let (password, app_password) = AppPassword::generate(&account.id);
        store.insert_account(account);
        store.insert_app_password(app_password);
        store.bind(USERNAME, Binding::new(CLIENT_ID, binding_scopes.clone()));
        let layer = TokenEndpointLayer::new(BASE, ring(), store)
            .unwrap()
            .application(
                Application::new(CLIENT_ID, "app")
                    .with_client_secret(SECRET)
                    .with_allowed_scopes(app_scopes.clone()),
            )
            .unwrap();
        let service = tower::Layer::layer(&layer, tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", CLIENT_ID.to_owned()),
            ("scope", requested.clone()),
        ];
        if use_secret {
            form.push(("client_secret", SECRET.to_owned()));
        } else {
            form.push(("username", USERNAME.to_owned()));
            form.push(("password", password.expose_secret().to_owned()));
        }
        let request = Request::post("/application/o/token/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(serde_urlencoded::to_string(&form).unwrap())))
            .unwrap();
        let (status, body) = runtime().block_on(async {
            collect(service.oneshot(request).await.unwrap()).await
        });
        prop_assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let json: Value = serde_json::from_slice(&body).unwrap();
        let granted = scope_set(json["scope"].as_str().unwrap());
        let expected = if use_secret {
            expected_grant(&requested, &[&app_scopes])
        } else {
            expected_grant(&requested, &[&app_scopes, &binding_scopes])
        };
        prop_assert_eq!(&granted, &expected);
        let token = json["access_token"].as_str().unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&[CLIENT_ID]);
        let claims = KeySet::from_jwks(&ring().jwks())
            .verify::<Value>(token, &validation)
            .unwrap()
            .claims;
        prop_assert_eq!(scope_set(claims["scope"].as_str().unwrap_or("")), granted);
    }
}

// ------------------------------------------------- cache hit vs. cache miss

const VALIDATED_ISS: &str = "https://auth.example/application/o/app/";

/// The signing keys of the cache property: the trusted one, and a stranger
/// under the same `kid`.
fn cache_keys() -> &'static (SigningKey, SigningKey) {
    static KEYS: OnceLock<(SigningKey, SigningKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let trusted = SigningKey::generate(Algorithm::ES256).unwrap();
        let stranger = SigningKey::generate(Algorithm::ES256)
            .unwrap()
            .with_kid(trusted.kid());
        (trusted, stranger)
    })
}

/// A token to validate: claims around the current time, right or wrong
/// issuer, audience, type and signer.
#[derive(Debug, Clone)]
struct TokenShape {
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    right_iss: bool,
    right_aud: bool,
    typ: Option<&'static str>,
    access_claim: bool,
    scope: Option<&'static str>,
    trusted_signer: bool,
}

fn token_shape() -> impl Strategy<Value = TokenShape> {
    let offset = || proptest::option::weighted(0.9, -90i64..90);
    (
        offset(),
        proptest::option::weighted(0.3, -90i64..90),
        offset(),
        proptest::bool::weighted(0.9),
        proptest::bool::weighted(0.9),
        proptest::sample::select(vec![
            Some("at+jwt"),
            Some("at+jwt"),
            Some("JWT"),
            None,
            Some("logout+jwt"),
        ]),
        any::<bool>(),
        proptest::sample::select(vec![None, Some("read"), Some("write"), Some("read write")]),
        proptest::bool::weighted(0.9),
    )
        .prop_map(
            |(exp, nbf, iat, right_iss, right_aud, typ, access_claim, scope, trusted_signer)| {
                TokenShape {
                    exp,
                    nbf,
                    iat,
                    right_iss,
                    right_aud,
                    typ,
                    access_claim,
                    scope,
                    trusted_signer,
                }
            },
        )
}

impl TokenShape {
    fn mint(&self) -> String {
        let now = now() as i64;
        let mut claims = json!({
            "iss": if self.right_iss { VALIDATED_ISS } else { "https://other.example/" },
            "aud": if self.right_aud { "api" } else { "elsewhere" },
            "sub": "svc",
        });
        for (name, offset) in [("exp", self.exp), ("nbf", self.nbf), ("iat", self.iat)] {
            if let Some(offset) = offset {
                claims[name] = json!(now + offset);
            }
        }
        if self.access_claim {
            claims["client_id"] = json!("client");
        }
        if let Some(scope) = self.scope {
            claims["scope"] = json!(scope);
        }
        let (trusted, stranger) = cache_keys();
        let signer = if self.trusted_signer {
            trusted
        } else {
            stranger
        };
        signer.sign_jwt(self.typ, &claims).unwrap()
    }
}

fn validating_layer(cache: bool, leeway: u64, untyped: bool, scope: bool) -> JwtValidateLayer {
    let (trusted, _) = cache_keys();
    let jwks = JwkSet {
        keys: vec![trusted.public_jwk().unwrap().clone()],
    };
    let mut layer = JwtValidateLayer::new()
        .issuer(Issuer::with_jwks(VALIDATED_ISS, &jwks))
        .audience("api")
        .leeway(Duration::from_secs(leeway))
        .allow_untyped_access_tokens(untyped)
        .token_cache(if cache { 100 } else { 0 });
    if scope {
        layer = layer.require_scopes(["read"]).unwrap();
    }
    layer
}

async fn decide(layer: &JwtValidateLayer, token: &str) -> (StatusCode, Option<String>) {
    let service = tower::Layer::layer(
        layer,
        tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }),
    );
    let request = Request::get("/api")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), challenge)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// For any token, leeway and layer settings, a layer with the cache
    /// decides as one without it: on the first sight of the token (miss)
    /// and on the next (hit).
    #[test]
    fn cache_hit_and_miss_decide_as_no_cache(
        shape in token_shape(),
        leeway in proptest::sample::select(vec![0u64, 1, 30]),
        untyped in any::<bool>(),
        scope in proptest::bool::weighted(0.3),
    ) {
        let token = shape.mint();
        let cached = validating_layer(true, leeway, untyped, scope);
        let uncached = validating_layer(false, leeway, untyped, scope);
        runtime().block_on(async {
            let plain = decide(&uncached, &token).await;
            let miss = decide(&cached, &token).await;
            assert_eq!(miss, plain, "cache miss vs. no cache for {shape:?}");
            let hit = decide(&cached, &token).await;
            assert_eq!(hit, plain, "cache hit vs. no cache for {shape:?}");
        });
    }
}

proptest! {
    // Each case waits once for the clock to pass a second boundary, for a
    // whole batch of tokens: the wait, not the tokens, is what costs.
    #![proptest_config(ProptestConfig::with_cases(2))]

    /// After the clock has moved on past a second boundary, a cached entry
    /// (still valid, or expired across the wait) decides as no cache.
    #[test]
    fn cache_entries_across_a_wait_decide_as_no_cache(
        batch in proptest::collection::vec(
            (
                token_shape(),
                proptest::sample::select(vec![0u64, 1, 30]),
                any::<bool>(),
                proptest::bool::weighted(0.3),
                any::<bool>(),
            ),
            8..24,
        ),
    ) {
        let cases: Vec<_> = batch
            .into_iter()
            .map(|(mut shape, leeway, untyped, scope, near_expiry)| {
                if near_expiry {
                    // Expires across the wait: entries that expire in the cache.
                    shape.exp = Some(1 - leeway as i64);
                }
                let token = shape.mint();
                let cached = validating_layer(true, leeway, untyped, scope);
                let uncached = validating_layer(false, leeway, untyped, scope);
                (shape, token, cached, uncached)
            })
            .collect();
        runtime().block_on(async {
            for (shape, token, cached, uncached) in &cases {
                let plain = decide(uncached, token).await;
                let miss = decide(cached, token).await;
                assert_eq!(miss, plain, "cache miss vs. no cache for {shape:?}");
            }
            tokio::time::sleep(Duration::from_millis(2_100)).await;
            for (shape, token, cached, uncached) in &cases {
                let hit = decide(cached, token).await;
                let plain = decide(uncached, token).await;
                assert_eq!(hit, plain, "cache hit vs. no cache for {shape:?}");
            }
        });
    }
}

// --------------------------------------------- sign → publish → verify

const ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::HS256,
];

/// A fresh signing key of `algorithm` with a unique `kid`. Asymmetric key
/// material comes from a pool generated once (RSA generation is slow).
fn key(algorithm: Algorithm, serial: usize) -> SigningKey {
    static POOL: OnceLock<Vec<(Algorithm, Vec<String>)>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        ALGORITHMS
            .iter()
            .filter(|a| **a != Algorithm::HS256)
            .map(|&a| {
                let pems = (0..2)
                    .map(|_| SigningKey::generate(a).unwrap().to_pkcs8_pem().unwrap())
                    .collect();
                (a, pems)
            })
            .collect()
    });
    let kid = format!("k{serial}-{algorithm:?}");
    if algorithm == Algorithm::HS256 {
        return SigningKey::generate(Algorithm::HS256)
            .unwrap()
            .with_kid(kid);
    }
    let (_, pems) = pool.iter().find(|(a, _)| *a == algorithm).unwrap();
    SigningKey::from_pem(pems[serial % pems.len()].as_bytes())
        .unwrap()
        .with_kid(kid)
}

#[derive(Debug, Clone)]
enum RingOp {
    /// Makes a new key of this algorithm active.
    Rotate(usize),
    /// Publishes a new key of this algorithm ahead of its rotation.
    Publish(usize),
    /// Retires the key at this position of the ring (not the active one).
    Retire(usize),
    /// Signs a token with the active key.
    Sign,
}

fn ring_op() -> impl Strategy<Value = RingOp> {
    prop_oneof![
        1 => (0..ALGORITHMS.len()).prop_map(RingOp::Rotate),
        1 => (0..ALGORITHMS.len()).prop_map(RingOp::Publish),
        1 => (0usize..6).prop_map(RingOp::Retire),
        2 => Just(RingOp::Sign),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// After any sequence of rotations, publications and retirements, every
    /// token signed by a key still in the ring verifies: through the
    /// published JWKS document (asymmetric keys; as a validator reads it,
    /// and through `JwtValidateLayer`) and through the ring's own
    /// verification keys (every key, HS256 included); a retired key's
    /// tokens verify nowhere; the JWKS holds exactly the ring's asymmetric
    /// keys, never a secret.
    #[test]
    fn sign_publish_verify_round_trips_in_every_rotation_state(
        first in 0..ALGORITHMS.len(),
        ops in proptest::collection::vec(ring_op(), 1..12),
    ) {
        let mut serial = 0;
        let ring = KeyRing::new(key(ALGORITHMS[first], serial));
        let mut tokens: Vec<(String, String, Algorithm)> = Vec::new();
        let rt = runtime();
        for op in ops {
            serial += 1;
            match op {
                RingOp::Rotate(a) => ring.rotate(key(ALGORITHMS[a], serial)),
                RingOp::Publish(a) => {
                    // `with_published` takes the ring by value; clones share it.
                    let _ = ring.clone().with_published(key(ALGORITHMS[a], serial));
                }
                RingOp::Retire(i) => {
                    let kids = ring.kids();
                    let kid = &kids[i % kids.len()];
                    let active = ring.active().kid().to_owned();
                    prop_assert_eq!(ring.retire(kid), *kid != active);
                }
                RingOp::Sign => {
                    let active = ring.active();
                    let claims = json!({
                        "iss": VALIDATED_ISS, "aud": "api", "sub": "svc",
                        "exp": now() + 600, "client_id": "client",
                    });
                    let token = active.sign_jwt(Some("at+jwt"), &claims).unwrap();
                    tokens.push((token, active.kid().to_owned(), active.algorithm()));
                }
            }
            let kids = ring.kids();
            // Published as a validator receives it: the JWKS document.
            let published: JwkSet = serde_json::from_slice(&ring.jwks_json()).unwrap();
            let published_kids: BTreeSet<String> = published
                .keys
                .iter()
                .map(|jwk| jwk.common.key_id.clone().unwrap())
                .collect();
            let asymmetric_kids: BTreeSet<String> = kids
                .iter()
                .filter(|kid| !kid.ends_with("HS256"))
                .cloned()
                .collect();
            prop_assert_eq!(&published_kids, &asymmetric_kids);
            let from_document = KeySet::from_jwks(&published);
            let own = ring.verification_keys();
            let layer = JwtValidateLayer::new()
                .issuer(Issuer::with_jwks(VALIDATED_ISS, &published))
                .audience("api")
                .token_cache(0);
            for (token, kid, algorithm) in &tokens {
                let in_ring = kids.contains(kid);
                let mut validation = jsonwebtoken::Validation::new(*algorithm);
                validation.set_audience(&["api"]);
                let public = *algorithm != Algorithm::HS256;
                prop_assert_eq!(
                    from_document.verify::<Value>(token, &validation).is_ok(),
                    in_ring && public,
                    "published JWKS, {} {:?}", kid, algorithm
                );
                prop_assert_eq!(
                    own.verify::<Value>(token, &validation).is_ok(),
                    in_ring,
                    "the ring's own keys, {} {:?}", kid, algorithm
                );
                let (status, _) = rt.block_on(decide(&layer, token));
                prop_assert_eq!(status == StatusCode::OK, in_ring && public, "layer, {}", kid);
            }
        }
    }
}
