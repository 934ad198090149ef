//! A remote JWKS over real HTTP: caching, refresh on unknown kid (rate
//! limited), last good copy while the source is down, fail closed without one.

#![cfg(feature = "reqwest")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::jwks::{JwksSource, serve_documents};
use jsonwebtoken::Algorithm;
use tower_m2m_auth::keys::fetch::{FetchError, ReqwestFetcher};
use tower_m2m_auth::keys::{CachePolicy, KeyRing, RemoteJwks, SigningKey};

/// A JWKS source on 127.0.0.1 serving `ring`'s keys, and its URL.
async fn start_source(
    ring: &KeyRing,
    up: bool,
    cache_control: &'static str,
) -> (JwksSource, String) {
    let source = JwksSource::start(ring.jwks(), up, cache_control).await;
    let url = source.url.clone();
    (source, url)
}

fn policy() -> CachePolicy {
    let mut policy = CachePolicy::default();
    policy.unknown_kid_cooldown = Duration::from_millis(300);
    policy.failure_backoff = Duration::from_millis(100);
    policy.min_ttl = Duration::ZERO;
    policy
}

fn remote(url: &str) -> RemoteJwks {
    RemoteJwks::with_policy(url, Arc::new(ReqwestFetcher::new()), policy())
}

fn ring() -> KeyRing {
    KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap())
}

#[tokio::test]
async fn keys_are_fetched_once_and_cached() {
    let ring = ring();
    let (source, url) = start_source(&ring, true, "max-age=600").await;
    let remote = remote(&url);
    for _ in 0..5 {
        let keys = remote.keys().await.unwrap();
        assert!(keys.contains_kid(ring.active().kid()));
    }
    assert_eq!(source.hits(), 1);
}

#[tokio::test]
async fn rotation_at_the_source_is_picked_up_on_unknown_kid() {
    let ring = ring();
    let (source, url) = start_source(&ring, true, "max-age=600").await;
    let remote = remote(&url);
    remote.keys().await.unwrap();
    ring.rotate(SigningKey::generate(Algorithm::ES256).unwrap());
    source.set(ring.jwks());
    let new_kid = ring.active().kid().to_owned();
    assert!(
        !remote.keys().await.unwrap().contains_kid(&new_kid),
        "still cached"
    );
    tokio::time::sleep(Duration::from_millis(350)).await; // past the cooldown since the first fetch
    let keys = remote.refresh_for_unknown_kid(&new_kid).await.unwrap();
    assert!(keys.contains_kid(&new_kid));
    assert_eq!(source.hits(), 2);
}

#[tokio::test]
async fn unknown_kid_refreshes_are_rate_limited() {
    let ring = ring();
    let (source, url) = start_source(&ring, true, "max-age=600").await;
    let remote = remote(&url);
    remote.keys().await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    for i in 0..50 {
        let keys = remote
            .refresh_for_unknown_kid(&format!("bogus-{i}"))
            .await
            .unwrap();
        assert!(!keys.contains_kid(&format!("bogus-{i}")));
    }
    // One refresh for the whole flood, on top of the first fetch.
    assert_eq!(source.hits(), 2);
}

#[tokio::test]
async fn source_down_after_a_good_fetch_serves_the_last_good_copy() {
    let ring = ring();
    let (source, url) = start_source(&ring, true, "max-age=0").await;
    let remote = remote(&url);
    remote.keys().await.unwrap();
    source.set_up(false);
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..3 {
        let keys = remote.keys().await.unwrap();
        assert!(keys.contains_kid(ring.active().kid()));
    }
    // The refresh runs in the background.
    for _ in 0..100 {
        if source.hits() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(source.hits() >= 2, "a refresh was attempted");
    // Back up: the next refresh after the backoff succeeds.
    source.set_up(true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    remote.keys().await.unwrap();
}

#[tokio::test]
async fn source_down_from_the_start_fails_closed() {
    let ring = ring();
    let (_source, url) = start_source(&ring, false, "max-age=600").await;
    let remote = remote(&url);
    let error = remote.keys().await.unwrap_err();
    assert!(matches!(error, FetchError::Status(503)), "{error}");
}

#[tokio::test]
async fn a_document_that_is_not_a_jwks_is_a_clear_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    let app = Router::new().route(
        "/certs",
        get(|| async { axum::Json(serde_json::json!({"abc": "-----BEGIN CERTIFICATE-----"})) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let error = remote(&url).keys().await.unwrap_err();
    assert!(matches!(error, FetchError::NotAJwks), "{error}");
}

#[tokio::test]
async fn plain_http_to_a_non_loopback_host_is_refused() {
    let remote = remote("http://keys.example.com/jwks");
    let error = remote.keys().await.unwrap_err();
    assert!(error.to_string().contains("not allowed"), "{error}");
}

#[tokio::test]
async fn oversized_jwks_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/big", listener.local_addr().unwrap());
    let app = Router::new().route("/big", get(|| async { "x".repeat(64 * 1024) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let remote = RemoteJwks::with_policy(
        &url,
        Arc::new(ReqwestFetcher::new().max_size(1024)),
        policy(),
    );
    let error = remote.keys().await.unwrap_err();
    assert!(error.to_string().contains("larger than"), "{error}");
}

#[tokio::test]
async fn a_slow_source_delays_no_token_whose_key_is_cached() {
    let ring = ring();
    let (source, url) = start_source(&ring, true, "max-age=0").await;
    let remote = remote(&url);
    remote.keys().await.unwrap();
    // The copy is stale at once; the source now takes a minute to answer.
    source
        .delay_ms
        .store(60_000, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..50 {
        let keys = tokio::time::timeout(Duration::from_secs(5), remote.keys())
            .await
            .expect("a stale copy is served while the refresh waits on the source")
            .unwrap();
        assert!(keys.contains_kid(ring.active().kid()));
    }
    // One refresh is in flight, not one per request.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(source.hits(), 2);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_one_fetch_per_cooldown() {
    let ring = ring();
    let (source, url) = start_source(&ring, true, "max-age=600").await;
    let mut policy = policy();
    policy.unknown_kid_cooldown = Duration::from_secs(3);
    let remote = RemoteJwks::with_policy(&url, Arc::new(ReqwestFetcher::new()), policy);
    remote.keys().await.unwrap();
    // Within the cooldown of the first fetch, no refresh at all...
    let keys = remote.refresh_for_unknown_kid("bogus").await.unwrap();
    assert!(!keys.contains_kid("bogus"));
    assert_eq!(source.hits(), 1);
    // ...after it, one for the whole flood (which takes far less than 3 s).
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let flood: Vec<_> = (0..2_000)
        .map(|i| {
            let remote = remote.clone();
            tokio::spawn(async move {
                let keys = remote
                    .refresh_for_unknown_kid(&format!("bogus-{i}"))
                    .await
                    .unwrap();
                assert!(!keys.contains_kid(&format!("bogus-{i}")));
            })
        })
        .collect();
    for task in flood {
        task.await.unwrap();
    }
    assert_eq!(source.hits(), 2, "the first fetch and one refresh");
}

// Found by the `jwks_document` fuzz target: a `max-age` past what an
// `Instant` can hold, with no upper bound on the TTL, panicked on adding it
// to the clock; bounds given in the wrong order panicked in `clamp`.

#[tokio::test]
async fn huge_max_age_without_an_upper_bound_is_cached_not_a_panic() {
    let ring = ring();
    let (source, url) = start_source(&ring, true, "max-age=18446744073709551615").await;
    let mut policy = policy();
    policy.max_ttl = Duration::MAX;
    let remote = RemoteJwks::with_policy(url, Arc::new(ReqwestFetcher::new()), policy);
    for _ in 0..3 {
        let keys = remote.keys().await.unwrap();
        assert!(keys.contains_kid(ring.active().kid()));
    }
    assert_eq!(source.hits(), 1, "cached, not refetched");
}

#[tokio::test]
async fn ttl_bounds_in_the_wrong_order_do_not_panic() {
    let ring = ring();
    let (source, url) = start_source(&ring, true, "max-age=600").await;
    let mut policy = policy();
    policy.min_ttl = Duration::from_secs(86_400);
    policy.max_ttl = Duration::from_secs(30);
    let remote = RemoteJwks::with_policy(url, Arc::new(ReqwestFetcher::new()), policy);
    for _ in 0..3 {
        let keys = remote.keys().await.unwrap();
        assert!(keys.contains_kid(ring.active().kid()));
    }
    assert_eq!(source.hits(), 1, "min_ttl wins: cached");
}

// Found by the `discovery_document` fuzz target: a document with a byte
// that is not UTF-8 inside a member the parser ignores was accepted, though
// it is not JSON (RFC 8259 §8.1). Both remote documents are refused now.

/// `json` (an object) with a member `note` whose string holds byte 0x86.
fn with_invalid_utf8(json: &serde_json::Value) -> Vec<u8> {
    let mut body = serde_json::to_vec(json).unwrap();
    body.pop();
    body.extend_from_slice(b",\"note\":\"\x86\"}");
    body
}

#[tokio::test]
async fn a_jwks_that_is_not_utf8_is_not_a_jwks() {
    let ring = ring();
    let jwks = with_invalid_utf8(&serde_json::to_value(ring.jwks()).unwrap());
    let issuer = serve_documents(|_| Vec::new(), jwks).await;
    let error = remote(&format!("{issuer}/jwks")).keys().await.unwrap_err();
    assert!(matches!(error, FetchError::NotAJwks), "{error}");
}

#[tokio::test]
async fn discovery_metadata_that_is_not_utf8_is_refused() {
    let ring = ring();
    let jwks = serde_json::to_vec(&ring.jwks()).unwrap();
    let issuer = serve_documents(
        |issuer| {
            with_invalid_utf8(&serde_json::json!({
                "issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
            }))
        },
        jwks,
    )
    .await;
    let discovered = RemoteJwks::discover(&issuer, Arc::new(ReqwestFetcher::new()));
    let error = discovered.keys().await.unwrap_err();
    assert!(matches!(error, FetchError::Discovery(_)), "{error}");
}

#[tokio::test]
async fn valid_discovery_metadata_still_leads_to_the_keys() {
    let ring = ring();
    let jwks = serde_json::to_vec(&ring.jwks()).unwrap();
    let issuer = serve_documents(
        |issuer| {
            serde_json::to_vec(&serde_json::json!({
                "issuer": issuer, "jwks_uri": format!("{issuer}/jwks"), "note": "é",
            }))
            .unwrap()
        },
        jwks,
    )
    .await;
    let discovered = RemoteJwks::discover(&issuer, Arc::new(ReqwestFetcher::new()));
    let keys = discovered.keys().await.unwrap();
    assert!(keys.contains_kid(ring.active().kid()));
}
