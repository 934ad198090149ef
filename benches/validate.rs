//! Per-request cost of `JwtValidateLayer` beside, in the same run, one raw
//! `jsonwebtoken::decode` with a prepared key: for a token seen for the first
//! time (cache off: every request pays the signature check) and for a cached
//! token.
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
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};

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

/// Claims shaped like the token endpoint's access tokens.
fn claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
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
        let layer = JwtValidateLayer::new()
            .issuer(Issuer::with_jwks(ISS, &ring.jwks()))
            .audience(AUD);
        for (case, layer) in [
            ("layer_new_token", layer.clone().token_cache(0)),
            ("layer_cached_token", layer),
        ] {
            let service = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }));
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

fn request(authorization: &HeaderValue) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::default());
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, authorization.clone());
    request
}

criterion_group!(benches, bench);
criterion_main!(benches);
