//! In-process cost of one token request (parse, verify credentials, sign)
//! beside, in the same run, the raw signature it cannot avoid.
//!
//! `cargo bench --bench token_endpoint`

use std::convert::Infallible;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use tower::{Service, ServiceBuilder, service_fn};
use tower_m2m_auth::issuer::{Application, StoreVerifier, TokenEndpointLayer};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::store::{AppPassword, MemoryStore, ServiceAccount};

/// A message the size of a typical header.claims signing input.
fn signing_input() -> Vec<u8> {
    vec![b'e'; 420]
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();

    let mut group = c.benchmark_group("token_request");

    // The floor: one raw ES256 signature with the key parsed once.
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        pem::parse(&pem).unwrap().contents(),
    )
    .unwrap();
    let rng = SystemRandom::new();
    let message = signing_input();
    group.bench_function("raw_es256_sign", |b| {
        b.iter(|| pair.sign(&rng, std::hint::black_box(&message)).unwrap())
    });

    // What most code does: jsonwebtoken::encode, which parses the key per call.
    let encoding_key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let claims = serde_json::json!({"iss": "https://auth.example.com/application/o/app/", "sub": "x", "aud": "client", "exp": 2_000_000_000u64});
    group.bench_function("jsonwebtoken_encode_es256", |b| {
        b.iter(|| {
            jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &encoding_key).unwrap()
        })
    });

    // The whole request through the layer: form parse, credential check, claims, signature(s), JSON.
    let store = MemoryStore::new();
    let account = ServiceAccount::new("svc-bench");
    let (token, password) = AppPassword::generate(&account.id);
    store.insert_account(account);
    store.insert_app_password(password);
    let body = Bytes::from(format!(
        "grant_type=client_credentials&client_id=bench-client&username=svc-bench&password={}&scope=read",
        token.expose_secret()
    ));
    for (name, id_token) in [
        ("endpoint_access_token_only", false),
        ("endpoint_with_id_token", true),
    ] {
        let keys = KeyRing::new(SigningKey::from_pem(pem.as_bytes()).unwrap());
        let layer = TokenEndpointLayer::new(
            "https://auth.example.com",
            keys,
            StoreVerifier::new(store.clone()),
        )
        .unwrap()
        .application(Application::new("bench-client", "bench").with_allowed_scopes(["read"]))
        .id_token(id_token);
        let mut service = ServiceBuilder::new().layer(layer).service(service_fn(
            |_: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            },
        ));
        // Building the request is the caller's cost, not the layer's.
        let make_request = || {
            Request::post("/application/o/token/")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(body.clone()))
                .unwrap()
        };
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_batched(
                make_request,
                |request| {
                    let call = service.ready_oneshot_call(request);
                    async move {
                        let response = call.await.unwrap();
                        assert_eq!(response.status(), 200);
                        response.into_body().collect().await.unwrap().to_bytes()
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Calls an always-ready service without cloning it.
trait ReadyCall<R>: Service<R> {
    fn ready_oneshot_call(&mut self, request: R) -> Self::Future;
}

impl<S, R> ReadyCall<R> for S
where
    S: Service<R>,
{
    fn ready_oneshot_call(&mut self, request: R) -> Self::Future {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(
            self.poll_ready(&mut cx).is_ready(),
            "the endpoint is always ready"
        );
        self.call(request)
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
