//! Per-request cost of `JwtValidateLayer` beside, in the same run, one raw
//! `jsonwebtoken::decode` with a prepared key: for a token seen for the first
//! time (cache off: every request pays the signature check) and for a cached
//! token.
//!
//! Group `dpop`: a DPoP-bound token with its proof (RFC 9449 §7), through
//! the layer (token cache off: both signatures checked, the proof's `jti`
//! spent in memory) beside the two raw verifies with prepared keys.
//!
//! `cargo bench --bench validate`

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tower::{Service, ServiceExt, service_fn};
use tower_layer::Layer;
use tower_m2m_auth::keys::dpop::{DpopRequest, DpopRules};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};

#[allow(dead_code)]
mod support;

const ISS: &str = "https://auth.example.com/application/o/bench/";
const AUD: &str = "bench-client";

/// What a handler typically wants out of a token.
#[derive(Deserialize)]
#[allow(dead_code)]
struct AccessToken {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    scope: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims shaped like the token endpoint's access tokens.
fn claims() -> serde_json::Value {
    let now = now();
    serde_json::json!({
        "iss": ISS,
        "sub": "6d1b4f0c3b6e4d1f9b0e8e6a7c5d4b3a2f1e0d9c8b7a69584736251403f2e1d0",
        "aud": AUD,
        "exp": now + 3600,
        "iat": now,
        "auth_time": now,
        "jti": "aW4tdGhlLWJlbmNoLXRoaXMtaXMtYS10b2tlbi1pZC0x",
        "client_id": AUD,
        "azp": AUD,
        "scope": "read write",
        "preferred_username": "svc-bench",
    })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("validate");
    for algorithm in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let name = format!("{algorithm:?}").to_lowercase();
        let ring = KeyRing::new(SigningKey::generate(algorithm).unwrap());
        let token = ring.active().sign_jwt(Some("at+jwt"), &claims()).unwrap();

        // The floor: jsonwebtoken::decode with a key parsed once.
        let key = DecodingKey::from_jwk(ring.active().public_jwk().unwrap()).unwrap();
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        group.bench_function(format!("{name}/raw_jsonwebtoken_decode"), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<AccessToken>(std::hint::black_box(&token), &key, &validation)
                    .unwrap()
            })
        });

        let authorization = HeaderValue::try_from(format!("Bearer {token}")).unwrap();
        for (case, service) in services(&ring) {
            // Warm up (fills the cache when there is one) and check.
            let response = runtime
                .block_on(service.clone().oneshot(request(&authorization)))
                .unwrap();
            assert_eq!(response.status(), 200);
            group.bench_function(format!("{name}/{case}"), |b| {
                b.to_async(&runtime).iter(|| {
                    let request = request(&authorization);
                    let mut service = service.clone();
                    async move {
                        let response = service.ready().await.unwrap().call(request).await.unwrap();
                        debug_assert_eq!(response.status(), 200);
                        response
                    }
                })
            });
        }
    }
    group.finish();
}

/// The layer trusting `ring` around an inner service that answers 200: with
/// the token cache off (`layer_new_token`) and on (`layer_cached_token`).
#[allow(clippy::type_complexity)]
fn services(
    ring: &KeyRing,
) -> [(
    &'static str,
    impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone,
); 2] {
    // The origin DPoP proofs name (`http://api.example/`, below).
    let layer = JwtValidateLayer::new()
        .issuer(Issuer::with_jwks(ISS, &ring.jwks()))
        .audience(AUD)
        .dpop_origin("http://api.example")
        .unwrap();
    let inner = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    [
        ("layer_new_token", layer.clone().token_cache(0).layer(inner)),
        ("layer_cached_token", layer.layer(inner)),
    ]
}

fn request(authorization: &HeaderValue) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::default());
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, authorization.clone());
    request
}

/// A DPoP-bound ES256 token with a fresh ES256 proof per request, through
/// the layer, against the floor: the token's `decode` and the proof's raw
/// signature check, keys prepared.
fn dpop(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("dpop");
    let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let (client, client_key) = support::DpopSigner::new();
    let jkt = tower_m2m_auth::keys::dpop::jwk_thumbprint(client_key.public_jwk().unwrap());
    let mut claims = claims();
    claims["cnf"] = serde_json::json!({ "jkt": jkt });
    let token = ring.active().sign_jwt(Some("at+jwt"), &claims).unwrap();
    let htu = "http://api.example/orders";

    let token_key = DecodingKey::from_jwk(ring.active().public_jwk().unwrap()).unwrap();
    let proof_key = DecodingKey::from_jwk(client_key.public_jwk().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    group.bench_function("raw_token_and_proof_verify", |b| {
        b.iter_batched(
            || client.proof("GET", htu, Some(&token)),
            |proof| {
                jsonwebtoken::decode::<AccessToken>(&token, &token_key, &validation).unwrap();
                let (message, signature) = proof.rsplit_once('.').unwrap();
                assert!(
                    jsonwebtoken::crypto::verify(
                        signature,
                        message.as_bytes(),
                        &proof_key,
                        Algorithm::ES256
                    )
                    .unwrap()
                );
            },
            criterion::BatchSize::SmallInput,
        )
    });

    // The proof alone: its raw signature check vs every rule of §4.3.
    group.bench_function("raw_proof_verify", |b| {
        b.iter_batched(
            || client.proof("GET", htu, Some(&token)),
            |proof| {
                let (message, signature) = proof.rsplit_once('.').unwrap();
                jsonwebtoken::crypto::verify(
                    signature,
                    message.as_bytes(),
                    &proof_key,
                    Algorithm::ES256,
                )
                .unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let rules = DpopRules::new();
    group.bench_function("proof_check", |b| {
        b.iter_batched(
            || client.proof("GET", htu, Some(&token)),
            |proof| {
                let request = DpopRequest {
                    method: "GET",
                    htu,
                    access_token: Some(&token),
                    nonces: None,
                };
                rules.check(&proof, &request, now()).unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });

    let authorization = HeaderValue::try_from(format!("DPoP {token}")).unwrap();
    let make_request = || {
        let mut request = request(&authorization);
        let headers = request.headers_mut();
        headers.insert(http::header::HOST, HeaderValue::from_static("api.example"));
        let proof = client.proof("GET", "http://api.example/", Some(&token));
        headers.insert("dpop", HeaderValue::try_from(proof).unwrap());
        request
    };
    for (case, service) in services(&ring) {
        let response = runtime
            .block_on(service.clone().oneshot(make_request()))
            .unwrap();
        assert_eq!(response.status(), 200);
        group.bench_function(case, |b| {
            b.to_async(&runtime).iter_batched(
                make_request,
                |request| {
                    let mut service = service.clone();
                    async move {
                        let response = service.ready().await.unwrap().call(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                        response
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench, dpop);
criterion_main!(benches);
