//! In-process cost of one token request (parse, verify credentials, sign)
//! beside, in the same run, the raw cryptography it cannot avoid.
//!
//! `cargo bench --bench token_endpoint`
//!
//! - `token_request`: static authentication (username + app password) vs one
//!   raw ES256 signature and one `jsonwebtoken::encode`.
//! - `jwt_assertion`: JWT authentication (an ES256 input JWT verified by a
//!   certificate key) vs one raw ES256 verify plus one raw ES256 sign.
//! - `exchange`: a token exchange (RFC 8693: client secret, an ES256 subject
//!   token of this issuer verified, a new token signed) vs its floor, one raw
//!   ES256 verify plus one raw ES256 sign in one iteration; and a
//!   client_credentials request with a resource indicator (RFC 8707) vs the
//!   same request without.
//! - `observability`: the static token request without metrics and spans
//!   (`instrument(false)`), with them and no recorder (the facade's no-op),
//!   with a Prometheus recorder, and with a Prometheus recorder plus a
//!   tracing subscriber that records every span (`tracing_subscriber::Registry`).
//! - `dpop_token_request`: the static token request with a DPoP proof (its
//!   check, its `jti` spent, the token bound) vs without, and vs the raw
//!   ES256 verify the proof adds.

#[path = "support/mod.rs"]
mod support;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use support::{DpopSigner, bench_request, bench_requests, endpoint, es256_pem, token_request};
use tower_m2m_auth::issuer::{Application, StoreVerifier, TokenEndpointLayer, TokenExchange};
use tower_m2m_auth::keys::{KeyRing, SigningKey, TrustedIssuer, VerificationKey, VerificationKeys};
use tower_m2m_auth::store::{AppPassword, Binding, MemoryStore, ServiceAccount};

/// A message the size of a typical header.claims signing input.
fn signing_input() -> Vec<u8> {
    vec![b'e'; 420]
}

fn es256_pair(pem: &str) -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        pem::parse(pem).unwrap().contents(),
    )
    .unwrap()
}

fn issuer_layer(
    pem: &str,
    store: &MemoryStore,
    application: Application,
    id_token: bool,
) -> TokenEndpointLayer<StoreVerifier<MemoryStore>> {
    let keys = KeyRing::new(SigningKey::from_pem(pem.as_bytes()).unwrap());
    TokenEndpointLayer::new("https://auth.example.com", keys, store.clone())
        .unwrap()
        .application(application)
        .unwrap()
        .id_token(id_token)
}

/// A store with one service account bound to the bench application, that
/// application, and the body of its static login request.
fn static_login() -> (MemoryStore, Application, Bytes) {
    let store = MemoryStore::new();
    let account = ServiceAccount::new("svc-bench");
    let (token, password) = AppPassword::generate(&account.id);
    store.insert_account(account);
    store.insert_app_password(password);
    store.bind("svc-bench", Binding::new("bench-client", ["read"]));
    let body = Bytes::from(format!(
        "grant_type=client_credentials&client_id=bench-client&username=svc-bench&password={}&scope=read",
        token.expose_secret()
    ));
    let application = Application::new("bench-client", "bench").with_allowed_scopes(["read"]);
    (store, application, body)
}

fn static_authentication(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pem = es256_pem();
    let mut group = c.benchmark_group("token_request");

    // The floor: one raw ES256 signature with the key parsed once.
    let pair = es256_pair(&pem);
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

    let (store, application, body) = static_login();
    for (name, id_token) in [
        ("endpoint_access_token_only", false),
        ("endpoint_with_id_token", true),
    ] {
        let mut service = endpoint(issuer_layer(&pem, &store, application.clone(), id_token));
        bench_request(&mut group, &runtime, name, &mut service, body.clone());
    }
    group.finish();
}

fn jwt_authentication(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let issuer_pem = es256_pem();
    let external = SigningKey::generate(Algorithm::ES256).unwrap();
    // Valid for 50 minutes from now: within the applications' default
    // lifetime cap of one hour, and longer than a run.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let input_jwt = external
        .sign_jwt(
            Some("JWT"),
            &serde_json::json!({
                "iss": "https://ci.example", "sub": "repo:org/app:ref:refs/heads/main",
                "aud": "https://auth.example.com", "exp": now + 3000, "iat": now,
                "jti": "0123456789abcdef", "repository": "org/app",
            }),
        )
        .unwrap();
    let mut group = c.benchmark_group("jwt_assertion");

    // The floor: one raw ES256 verify of the input JWT plus one raw ES256 sign.
    let (message, signature) = input_jwt.rsplit_once('.').unwrap();
    let signature =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
            .unwrap();
    let external_pair = es256_pair(&external.to_pkcs8_pem().unwrap());
    let public = UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_FIXED,
        external_pair.public_key().as_ref().to_vec(),
    );
    group.bench_function("raw_es256_verify", |b| {
        b.iter(|| public.verify(message.as_bytes(), &signature).unwrap())
    });
    let pair = es256_pair(&issuer_pem);
    let rng = SystemRandom::new();
    let output = signing_input();
    group.bench_function("raw_es256_sign", |b| {
        b.iter(|| pair.sign(&rng, std::hint::black_box(&output)).unwrap())
    });

    let keys = VerificationKeys::new().with_issuer(
        TrustedIssuer::new("https://ci.example")
            .with_key(VerificationKey::from_jwk(external.public_jwk().unwrap()).unwrap()),
    );
    let application = Application::new("ci-client", "ci")
        .with_verification_keys(keys)
        .with_allowed_scopes(["deploy"])
        .with_assertion_audiences(["https://auth.example.com"])
        .with_policy(|context: &tower_m2m_auth::policy::PolicyContext<'_>| {
            context.claims["repository"] == "org/app"
        });
    let body = Bytes::from(format!(
        "grant_type=client_credentials&client_id=ci-client&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={input_jwt}&scope=deploy"
    ));
    let store = MemoryStore::new();
    for (name, id_token) in [
        ("endpoint_access_token_only", false),
        ("endpoint_with_id_token", true),
    ] {
        let mut service = endpoint(issuer_layer(
            &issuer_pem,
            &store,
            application.clone(),
            id_token,
        ));
        bench_request(&mut group, &runtime, name, &mut service, body.clone());
    }
    group.finish();
}

fn observability(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pem = es256_pem();
    let (store, application, body) = static_login();
    let layer = |instrument: bool| {
        issuer_layer(&pem, &store, application.clone(), false).instrument(instrument)
    };
    let mut off = endpoint(layer(false));
    let mut on = endpoint(layer(true));
    // The example server's recorder, set for this thread only.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                tower_m2m_auth::observe::REQUEST_DURATION.into(),
            ),
            &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.01, 0.1, 1.0],
        )
        .unwrap()
        .build_recorder();
    let spans = tracing::Dispatch::new(tracing_subscriber::registry());

    let mut group = c.benchmark_group("observability");
    bench_request(
        &mut group,
        &runtime,
        "uninstrumented",
        &mut off,
        body.clone(),
    );
    bench_request(&mut group, &runtime, "noop_recorder", &mut on, body.clone());
    metrics::with_local_recorder(&prometheus, || {
        bench_request(&mut group, &runtime, "prometheus", &mut on, body.clone());
        tracing::dispatcher::with_default(&spans, || {
            let name = "prometheus_and_span_subscriber";
            bench_request(&mut group, &runtime, name, &mut on, body.clone());
        });
    });
    group.finish();

    // On a shared machine the load drifts between criterion's runs of the
    // variants above, more than the overhead measured. So also: short rounds
    // in which every variant runs the same number of requests back to back,
    // the order rotating; the ratio to the uninstrumented layer per round,
    // and its median over the rounds. The uninstrumented layer is also timed
    // twice per round (`control`), which shows the method's own spread.
    if !std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        const ROUNDS: usize = 2000;
        const PER_ROUND: usize = 50;
        const VARIANTS: usize = 5;
        let mut times: Vec<[f64; VARIANTS]> = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let mut row = [0f64; VARIANTS];
            for step in 0..VARIANTS {
                let variant = (round + step) % VARIANTS;
                let run = |service: &mut _| time_requests(&runtime, service, &body, PER_ROUND);
                row[variant] = match variant {
                    0 => run(&mut off),
                    1 => run(&mut off),
                    2 => run(&mut on),
                    3 => metrics::with_local_recorder(&prometheus, || run(&mut on)),
                    _ => metrics::with_local_recorder(&prometheus, || {
                        tracing::dispatcher::with_default(&spans, || run(&mut on))
                    }),
                };
            }
            times.push(row);
        }
        let names = [
            "control (uninstrumented again)",
            "noop_recorder",
            "prometheus",
            "prometheus_and_span_subscriber",
        ];
        for (variant, name) in names.iter().enumerate().map(|(i, n)| (i + 1, n)) {
            let mut ratios: Vec<f64> = times.iter().map(|row| row[variant] / row[0]).collect();
            ratios.sort_by(f64::total_cmp);
            println!(
                "observability/interleaved {name} / uninstrumented: median {:.3}x (quartiles {:.3}x to {:.3}x; {ROUNDS} rounds of {PER_ROUND} requests)",
                ratios[ROUNDS / 2],
                ratios[ROUNDS / 4],
                ratios[3 * ROUNDS / 4]
            );
        }
    }
    // The recorder did record: the comparison is not with a silent one.
    let page = prometheus.handle().render();
    assert!(page.contains("tower_m2m_auth_tokens_issued_total{application=\"bench-client\""));
}

/// Seconds that `count` token requests through `service` take.
fn time_requests<S, B>(
    runtime: &tokio::runtime::Runtime,
    service: &mut S,
    body: &Bytes,
    count: usize,
) -> f64
where
    S: tower::Service<http::Request<http_body_util::Full<Bytes>>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt as _;
    let requests: Vec<_> = (0..count)
        .map(|_| {
            http::Request::post("/application/o/token/")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(http_body_util::Full::new(body.clone()))
                .unwrap()
        })
        .collect();
    let start = std::time::Instant::now();
    runtime.block_on(async {
        for request in requests {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(service.poll_ready(&mut cx).is_ready());
            let response = service.call(request).await.unwrap();
            assert_eq!(response.status(), 200);
            std::hint::black_box(response.into_body().collect().await.unwrap());
        }
    });
    start.elapsed().as_secs_f64()
}

/// One CEL policy over a typical CI token's claims, as the endpoint runs it:
/// a fresh [`PolicyContext`](tower_m2m_auth::policy::PolicyContext) per
/// request (the claims converted once for all policies), beside a closure
/// policy doing the same check in Rust.
#[cfg(feature = "cel")]
fn cel_policy(c: &mut Criterion) {
    use tower_m2m_auth::policy::{CelPolicy, Policies, Policy, PolicyContext};
    let claims = serde_json::json!({
        "iss": "https://token.actions.githubusercontent.com",
        "sub": "repo:my-org/my-repo:ref:refs/heads/main",
        "aud": "https://auth.example.com",
        "repository": "my-org/my-repo",
        "repository_owner": "my-org",
        "ref": "refs/heads/main",
        "workflow": "deploy",
        "event_name": "push",
        "jti": "7b9e2a10-0b6c-4a4f-9f1e-6f9d2b1f0c55",
        "exp": 1_800_000_000u64,
        "iat": 1_799_999_700u64,
    });
    let scopes = vec!["read".to_owned()];
    const EXPRESSION: &str = r#"claims.iss == "https://token.actions.githubusercontent.com" && claims.sub.startsWith("repo:my-org/")"#;
    let cel = CelPolicy::new(EXPRESSION).unwrap();
    let mut group = c.benchmark_group("cel_policy");
    group.bench_function("one_cel_policy", |b| {
        b.iter(|| {
            let context = PolicyContext::new(&claims, "ci", "client_credentials", &scopes);
            cel.evaluate(std::hint::black_box(&context)).unwrap()
        })
    });
    let mut three = Policies::new();
    for _ in 0..3 {
        three.push(CelPolicy::new(EXPRESSION).unwrap());
    }
    group.bench_function("three_cel_policies", |b| {
        b.iter(|| {
            let context = PolicyContext::new(&claims, "ci", "client_credentials", &scopes);
            three.evaluate(std::hint::black_box(&context)).unwrap()
        })
    });
    let closure = |context: &PolicyContext<'_>| {
        context.claims["iss"] == "https://token.actions.githubusercontent.com"
            && context.claims["sub"]
                .as_str()
                .is_some_and(|sub| sub.starts_with("repo:my-org/"))
    };
    group.bench_function("closure_policy", |b| {
        b.iter(|| {
            let context = PolicyContext::new(&claims, "ci", "client_credentials", &scopes);
            closure.evaluate(std::hint::black_box(&context)).unwrap()
        })
    });
    group.finish();
}

fn exchange_and_resources(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pem = es256_pem();
    let (store, application, login) = static_login();
    store.bind("svc-bench", Binding::new("exchanger", ["read"]));
    let resource = "https://api.example.com/";
    let exchanger = Application::new("exchanger", "exchanger")
        .with_client_secret("exchanger-secret")
        .with_allowed_scopes(["read"])
        .with_resources([resource])
        .with_token_exchange(TokenExchange::new().accept_tokens_of("bench-client"));
    let layer = issuer_layer(&pem, &store, application.with_resources([resource]), false)
        .application(exchanger)
        .unwrap();
    let mut service = endpoint(layer);

    // A subject token, minted by the endpoint itself.
    let subject = runtime.block_on(async {
        let request = http::Request::post("/application/o/token/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(login.clone()))
            .unwrap();
        let response = tower::ServiceExt::oneshot(&mut service, request)
            .await
            .unwrap();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        json["access_token"].as_str().unwrap().to_owned()
    });

    let mut group = c.benchmark_group("exchange");
    // The floor: verifying the subject token and signing the new one, raw.
    let (message, signature) = subject.rsplit_once('.').unwrap();
    let signature =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
            .unwrap();
    let pair = es256_pair(&pem);
    let public = UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_FIXED,
        pair.public_key().as_ref().to_vec(),
    );
    let rng = SystemRandom::new();
    let output = signing_input();
    group.bench_function("raw_es256_verify_plus_sign", |b| {
        b.iter(|| {
            public.verify(message.as_bytes(), &signature).unwrap();
            pair.sign(&rng, std::hint::black_box(&output)).unwrap()
        })
    });
    // What the keys module pays for the verify: jsonwebtoken's `decode`
    // (header and claims parsed, the public key parsed per call), then the sign.
    let decoding = jsonwebtoken::DecodingKey::from_ec_der(pair.public_key().as_ref());
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.validate_aud = false;
    group.bench_function("jsonwebtoken_decode_plus_raw_sign", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(&subject, &decoding, &validation).unwrap();
            pair.sign(&rng, std::hint::black_box(&output)).unwrap()
        })
    });
    let exchange = Bytes::from(format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&client_id=exchanger\
         &client_secret=exchanger-secret&subject_token={subject}\
         &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
         &resource=https%3A%2F%2Fapi.example.com%2F"
    ));
    bench_request(
        &mut group,
        &runtime,
        "endpoint_exchange",
        &mut service,
        exchange.clone(),
    );
    bench_request(
        &mut group,
        &runtime,
        "client_credentials",
        &mut service,
        login.clone(),
    );
    let with_resource = Bytes::from(format!(
        "{}&resource=https%3A%2F%2Fapi.example.com%2F",
        String::from_utf8_lossy(&login)
    ));
    bench_request(
        &mut group,
        &runtime,
        "client_credentials_with_resource",
        &mut service,
        with_resource.clone(),
    );
    group.finish();

    // As for `observability`: the load drifts between criterion's runs more
    // than the margin measured, so also short interleaved rounds (order
    // rotating) and the median of the per-round ratios.
    if !std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        const ROUNDS: usize = 1000;
        const PER_ROUND: usize = 20;
        let floor = || {
            let start = std::time::Instant::now();
            for _ in 0..PER_ROUND {
                public.verify(message.as_bytes(), &signature).unwrap();
                std::hint::black_box(pair.sign(&rng, std::hint::black_box(&output)).unwrap());
            }
            start.elapsed().as_secs_f64()
        };
        let mut rows: Vec<[f64; 4]> = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let mut row = [0f64; 4];
            for step in 0..4 {
                let variant = (round + step) % 4;
                let run = |service: &mut _, body| time_requests(&runtime, service, body, PER_ROUND);
                row[variant] = match variant {
                    0 => floor(),
                    1 => run(&mut service, &exchange),
                    2 => run(&mut service, &login),
                    _ => run(&mut service, &with_resource),
                };
            }
            rows.push(row);
        }
        let median = |(over, under): (usize, usize)| {
            let mut ratios: Vec<f64> = rows.iter().map(|row| row[over] / row[under]).collect();
            ratios.sort_by(f64::total_cmp);
            (
                ratios[ROUNDS / 4],
                ratios[ROUNDS / 2],
                ratios[3 * ROUNDS / 4],
            )
        };
        for (name, pair) in [
            ("endpoint_exchange / raw_es256_verify_plus_sign", (1, 0)),
            (
                "client_credentials_with_resource / client_credentials",
                (3, 2),
            ),
        ] {
            let (low, mid, high) = median(pair);
            println!(
                "exchange/interleaved {name}: median {mid:.3}x (quartiles {low:.3}x to {high:.3}x; {ROUNDS} rounds of {PER_ROUND})"
            );
        }
    }
}

#[cfg(not(feature = "cel"))]
fn cel_policy(_: &mut Criterion) {}

/// The static token request with a fresh DPoP proof per request vs without
/// one, and the floor the proof adds: one raw ES256 verify.
fn dpop_token_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pem = es256_pem();
    let mut group = c.benchmark_group("dpop_token_request");
    let (client, client_key) = DpopSigner::new();
    let htu = "https://auth.example.com/application/o/token/";

    let proof_key = UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_FIXED,
        es256_pair(&client_key.to_pkcs8_pem().unwrap())
            .public_key()
            .as_ref()
            .to_vec(),
    );
    group.bench_function("raw_es256_verify", |b| {
        b.iter_batched(
            || {
                let proof = client.proof("POST", htu, None);
                let (message, signature) = proof.rsplit_once('.').unwrap();
                let signature = base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    signature,
                )
                .unwrap();
                (message.to_owned(), signature)
            },
            |(message, signature)| proof_key.verify(message.as_bytes(), &signature).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });

    let (store, application, body) = static_login();
    let mut service = endpoint(issuer_layer(&pem, &store, application, false));
    bench_request(
        &mut group,
        &runtime,
        "endpoint_without_proof",
        &mut service,
        body.clone(),
    );
    bench_requests(
        &mut group,
        &runtime,
        "endpoint_with_proof",
        &mut service,
        || {
            let mut request = token_request(body.clone());
            let proof = client.proof("POST", htu, None);
            request
                .headers_mut()
                .insert("dpop", http::HeaderValue::try_from(proof).unwrap());
            request
        },
    );
    group.finish();
}

criterion_group!(
    benches,
    static_authentication,
    jwt_authentication,
    observability,
    cel_policy,
    exchange_and_resources,
    dpop_token_request
);
criterion_main!(benches);
