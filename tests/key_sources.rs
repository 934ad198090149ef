//! One key source for both sides: a `TrustedIssuer` (static keys and remote
//! JWKS, by URL or by discovery) verifies input JWTs for the token endpoint
//! (`VerificationKeys`) and access tokens behind `JwtValidateLayer`
//! (`Issuer::trusting`) with one routine. Remote sources over real HTTP.

#![cfg(feature = "reqwest")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::jwks::{JwksSource, serve_documents};
use http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_m2m_auth::keys::fetch::{FetchError, ReqwestFetcher};
use tower_m2m_auth::keys::{
    CachePolicy, JwtError, KeyRing, RemoteJwks, SigningKey, TrustedIssuer, VerificationKeys,
};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};

const ISS: &str = "https://ci.example";
const AUDIENCE: &str = "api";

fn ring() -> KeyRing {
    KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap())
}

/// Every unknown `kid` refetches at once; a failure waits 100 ms.
fn policy() -> CachePolicy {
    let mut policy = CachePolicy::default();
    policy.unknown_kid_cooldown = Duration::ZERO;
    policy.failure_backoff = Duration::from_millis(100);
    policy
}

fn remote(url: &str) -> RemoteJwks {
    RemoteJwks::with_policy(url, Arc::new(ReqwestFetcher::new()), policy())
}

/// An access token of `iss` for the API, signed by `ring`'s active key.
fn token(ring: &KeyRing, iss: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let claims = json!({
        "iss": iss, "sub": "deployer", "aud": AUDIENCE, "exp": exp, "scope": "read",
    });
    ring.active().sign_jwt(Some("at+jwt"), &claims).unwrap()
}

/// The token endpoint's side: input JWTs verified by `VerificationKeys`.
async fn endpoint_side(keys: &VerificationKeys, token: &str) -> Result<Value, JwtError> {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[AUDIENCE]);
    keys.verify::<Value>(token, &validation)
        .await
        .map(|data| data.claims)
}

/// The validator's side: the status of an API request with `token`.
async fn validator_side(issuer: Issuer, token: &str) -> StatusCode {
    let api = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(JwtValidateLayer::new().issuer(issuer.audience(AUDIENCE)));
    let request = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    api.oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn one_trusted_issuer_mixes_static_and_remote_keys_on_both_sides() {
    let fixed = ring();
    let published = ring();
    let source = JwksSource::start(published.jwks(), true, "max-age=600").await;
    let trusted = TrustedIssuer::new(ISS)
        .with_jwks(&fixed.jwks())
        .with_remote(remote(&source.url));
    let keys = VerificationKeys::new().with_issuer(trusted.clone());
    for signer in [&fixed, &published] {
        let token = token(signer, ISS);
        assert_eq!(
            endpoint_side(&keys, &token).await.unwrap()["sub"],
            "deployer"
        );
        let status = validator_side(Issuer::trusting(trusted.clone()), &token).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn rotation_at_the_source_is_picked_up_by_the_one_refresh_on_both_sides() {
    let published = ring();
    let source = JwksSource::start(published.jwks(), true, "max-age=600").await;
    let trusted = TrustedIssuer::new(ISS).with_remote(remote(&source.url));
    let keys = VerificationKeys::new().with_issuer(trusted.clone());
    // Both sides hold the same cache: warm it.
    endpoint_side(&keys, &token(&published, ISS)).await.unwrap();
    assert_eq!(source.hits(), 1);

    published.rotate(SigningKey::generate(Algorithm::ES256).unwrap());
    source.set(published.jwks());
    let status = validator_side(Issuer::trusting(trusted.clone()), &token(&published, ISS)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the validator refreshed on the unknown kid"
    );
    assert_eq!(source.hits(), 2);

    published.rotate(SigningKey::generate(Algorithm::ES256).unwrap());
    source.set(published.jwks());
    let claims = endpoint_side(&keys, &token(&published, ISS)).await.unwrap();
    assert_eq!(
        claims["iss"], ISS,
        "the endpoint side refreshed on the unknown kid"
    );
    assert_eq!(source.hits(), 3);
}

#[tokio::test]
async fn a_source_down_from_the_start_fails_closed_on_both_sides() {
    let published = ring();
    let source = JwksSource::start(published.jwks(), false, "max-age=600").await;
    let trusted = TrustedIssuer::new(ISS).with_remote(remote(&source.url));
    let keys = VerificationKeys::new().with_issuer(trusted.clone());
    let token = token(&published, ISS);
    assert_eq!(
        endpoint_side(&keys, &token).await.unwrap_err(),
        JwtError::KeysUnavailable
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = validator_side(Issuer::trusting(trusted), &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_static_key_verifies_while_the_remote_source_is_down() {
    let fixed = ring();
    let source = JwksSource::start(ring().jwks(), false, "max-age=600").await;
    let trusted = TrustedIssuer::new(ISS)
        .with_jwks(&fixed.jwks())
        .with_remote(remote(&source.url));
    let keys = VerificationKeys::new().with_issuer(trusted.clone());
    let token = token(&fixed, ISS);
    endpoint_side(&keys, &token).await.unwrap();
    let status = validator_side(Issuer::trusting(trusted), &token).await;
    assert_eq!(status, StatusCode::OK);
}

/// Serves OpenID metadata naming `named` (the server's own URL when
/// `None`) and `ring`'s JWKS; returns the server's URL.
async fn discoverable(ring: &KeyRing, named: Option<&str>) -> String {
    let named = named.map(str::to_owned);
    let metadata = move |url: &str| {
        let issuer = named.clone().unwrap_or_else(|| url.to_owned());
        serde_json::to_vec(&json!({"issuer": issuer, "jwks_uri": format!("{url}/jwks")})).unwrap()
    };
    serve_documents(metadata, serde_json::to_vec(&ring.jwks()).unwrap()).await
}

#[tokio::test]
async fn a_source_discovered_for_one_issuer_vouches_for_no_other() {
    let published = ring();
    let url = discoverable(&published, None).await;
    let fetcher = Arc::new(ReqwestFetcher::new());
    let discovered = RemoteJwks::discover(&url, fetcher.clone());
    assert_eq!(discovered.issuer(), Some(url.as_str()));

    // Its own issuer: trusted, and the JWKS URL is known once discovered.
    let own = VerificationKeys::new().with_discovery(discovered.clone());
    endpoint_side(&own, &token(&published, &url)).await.unwrap();
    assert_eq!(discovered.jwks_uri(), Some(format!("{url}/jwks").as_str()));

    // Another issuer: the source is refused, on both sides.
    let other = TrustedIssuer::new(ISS).with_remote(discovered.clone());
    assert!(other.is_empty());
    let keys = VerificationKeys::new().with_issuer(other);
    let token = token(&published, ISS);
    assert!(endpoint_side(&keys, &token).await.is_err());
    let status = validator_side(Issuer::with_remote_jwks(ISS, discovered), &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A JWKS URL has no issuer of its own to be "discovered" for.
    let by_url = RemoteJwks::new(format!("{url}/jwks"), fetcher);
    assert_eq!(by_url.issuer(), None);
    assert!(TrustedIssuer::discovered(by_url).is_empty());
}

#[tokio::test]
async fn a_failed_discovery_backs_off_like_a_failed_fetch() {
    let url = discoverable(&ring(), Some("https://someone-else.example")).await;
    let discovered =
        RemoteJwks::discover_with_policy(&url, Arc::new(ReqwestFetcher::new()), policy());
    let error = discovered.keys().await.unwrap_err();
    assert!(matches!(error, FetchError::Discovery(_)), "{error}");
    assert_eq!(discovered.jwks_uri(), None);
    let error = discovered.keys().await.unwrap_err();
    assert!(matches!(error, FetchError::Backoff), "{error}");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let error = discovered.keys().await.unwrap_err();
    assert!(
        matches!(error, FetchError::Discovery(_)),
        "retried: {error}"
    );
}

#[test]
fn discovery_is_counted_with_the_jwks_fetches() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A thread-local recorder: the runtime runs every task on this thread.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let fetcher = Arc::new(ReqwestFetcher::new());
            let refused = discoverable(&ring(), Some("https://someone-else.example")).await;
            RemoteJwks::discover(&refused, fetcher.clone())
                .keys()
                .await
                .unwrap_err();
            let honest = discoverable(&ring(), None).await;
            RemoteJwks::discover(&honest, fetcher).keys().await.unwrap();
        })
    });
    let page = metrics.render();
    for outcome in ["discovery_failed", "ok"] {
        let line = format!("tower_m2m_auth_jwks_fetches_total{{outcome=\"{outcome}\"}} 1");
        assert!(page.contains(&line), "{line} in\n{page}");
    }
}
