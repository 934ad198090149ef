//! `JwtValidateLayer` over real HTTP: a token endpoint issuing tokens, a
//! foreign issuer made in the test, and downstream servers wearing the layer.
//! One test per rule.

#![cfg(all(feature = "axum", feature = "reqwest"))]

mod common;
#[path = "common/foreign.rs"]
mod foreign;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{CLIENT_ID, Server, USERNAME};
use foreign::{Foreign, now};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_m2m_auth::keys::fetch::ReqwestFetcher;
use tower_m2m_auth::keys::{CachePolicy, RemoteJwks, SigningKey};
use tower_m2m_auth::validate::{
    AuthError, Claims, Issuer, JwtValidateLayer, RequireScopeLayer, VerifiedClaims,
};

// ---------------------------------------------------------------- fixtures

/// A fast cache policy, so that refreshes on unknown `kid` are quick to test.
fn policy() -> CachePolicy {
    let mut policy = CachePolicy::default();
    policy.unknown_kid_cooldown = Duration::from_millis(100);
    policy.failure_backoff = Duration::from_millis(100);
    policy
}

fn remote(url: String) -> RemoteJwks {
    RemoteJwks::with_policy(url, Arc::new(ReqwestFetcher::new()), policy())
}

/// Our token endpoint, as an issuer known by its JWKS URL.
fn our_issuer(server: &Server) -> Issuer {
    Issuer::with_remote_jwks(
        server.issuer(),
        remote(server.url(&format!("/application/o/{}/jwks/", common::SLUG))),
    )
}

fn foreign_issuer(foreign: &Foreign) -> Issuer {
    Issuer::with_remote_jwks(&foreign.iss, remote(foreign.jwks_url()))
}

#[derive(Deserialize)]
struct AccessToken {
    sub: String,
    scope: String,
}

async fn hello(claims: Option<VerifiedClaims>) -> String {
    match claims {
        Some(claims) => format!("hello {}", claims.subject().unwrap_or("?")),
        None => "hello anonymous".to_owned(),
    }
}

async fn typed(Claims(token): Claims<AccessToken>) -> String {
    format!("{} may {}", token.sub, token.scope)
}

/// A downstream API behind `layer`: `/api/hello` (any valid token),
/// `/api/typed` (claims as a type), `/api/write` (scope `write` required).
async fn downstream(layer: JwtValidateLayer) -> String {
    let app = Router::new()
        .route("/api/hello", get(hello))
        .route("/api/typed", get(typed))
        .route(
            "/api/write",
            post(|| async { "written" }).layer(RequireScopeLayer::new(["write"]).unwrap()),
        )
        .layer(layer);
    serve(app).await
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// An access token from our token endpoint, with `scope`.
async fn issue_token(server: &Server, scope: &str) -> String {
    let body = common::form_encode(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("username", USERNAME),
        ("password", &server.token),
        ("scope", scope),
    ]);
    let response = common::post_form(server, &body).await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    json["access_token"].as_str().unwrap().to_owned()
}

async fn call(url: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = common::http().get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

async fn with_token(url: &str, token: &str) -> reqwest::Response {
    call(url, Some(&format!("Bearer {token}"))).await
}

fn challenge(response: &reqwest::Response) -> String {
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts a 401 `invalid_token` answer, and that it does not echo the token.
async fn assert_invalid_token(response: reqwest::Response, token: &str) {
    assert_eq!(response.status(), 401);
    let challenge = challenge(&response);
    assert!(
        challenge.starts_with(r#"Bearer realm="api", error="invalid_token", error_description=""#),
        "{challenge}"
    );
    let body = response.text().await.unwrap();
    assert!(body.is_empty());
    let signature = token.rsplit('.').next().unwrap();
    assert!(signature.is_empty() || !challenge.contains(signature));
}

/// A downstream API trusting the foreign issuer, for audience `api`.
async fn foreign_downstream(foreign: &Foreign) -> String {
    downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(foreign))
            .audience("api"),
    )
    .await
}

fn encode_unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    )
}

// -------------------------------------------------------------- acceptance

#[tokio::test]
async fn token_from_our_token_endpoint_is_accepted() {
    let server = common::start().await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(our_issuer(&server))
            .audience(CLIENT_ID),
    )
    .await;
    let token = issue_token(&server, "read").await;
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().starts_with("hello "));
}

#[tokio::test]
async fn issuer_url_alone_is_enough_with_openid_discovery() {
    let server = common::start().await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(Issuer::discover(server.issuer()))
            .audience(CLIENT_ID),
    )
    .await;
    let token = issue_token(&server, "read").await;
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn token_from_a_configured_foreign_issuer_is_accepted() {
    let server = common::start().await;
    let foreign = Foreign::start(Algorithm::RS256).await;
    // Both issuers at once, each with its own audience, chosen by `iss`.
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(our_issuer(&server).audience(CLIENT_ID))
            .issuer(foreign_issuer(&foreign).audience("api")),
    )
    .await;
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello foreign-robot");

    let ours = issue_token(&server, "read").await;
    assert_eq!(
        with_token(&format!("{api}/api/hello"), &ours)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn foreign_issuer_found_by_discovery_is_accepted() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(Issuer::discover(&foreign.iss))
            .audience("api"),
    )
    .await;
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    assert_eq!(
        with_token(&format!("{api}/api/hello"), &token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn discovery_document_naming_another_issuer_is_refused() {
    // The metadata at `<iss>/.well-known/openid-configuration` must name
    // `iss` itself (OpenID Connect Discovery §4.3): here it names `<iss>/`.
    let foreign = Foreign::start(Algorithm::ES256).await;
    let iss = foreign.iss.trim_end_matches('/').to_owned();
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(Issuer::discover(&iss))
            .audience("api"),
    )
    .await;
    let mut claims = foreign.claims("api", "read");
    claims["iss"] = json!(iss);
    let token = foreign.mint_at_jwt(&claims);
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert_eq!(
        response.status(),
        503,
        "fail closed: no keys were ever found"
    );
    assert_eq!(foreign.jwks_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn eddsa_key_without_alg_is_accepted() {
    let foreign = Foreign::start_with(Algorithm::EdDSA, true).await;
    let api = foreign_downstream(&foreign).await;
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    assert_eq!(
        with_token(&format!("{api}/api/hello"), &token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn typed_claims_reach_the_handler() {
    let server = common::start().await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(our_issuer(&server))
            .audience(CLIENT_ID),
    )
    .await;
    let token = issue_token(&server, "read write").await;
    let response = with_token(&format!("{api}/api/typed"), &token).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.text().await.unwrap().ends_with(" may read write"),
        "the sub and scope claims are the handler's"
    );
}

#[tokio::test]
async fn repeated_token_is_served_from_the_cache() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    for _ in 0..20 {
        assert_eq!(
            with_token(&format!("{api}/api/hello"), &token)
                .await
                .status(),
            200
        );
    }
    assert_eq!(foreign.jwks_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cached_token_is_refused_once_it_expires() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(&foreign))
            .audience("api")
            .leeway(Duration::ZERO),
    )
    .await;
    let mut claims = foreign.claims("api", "read");
    claims["exp"] = json!(now() + 2);
    let token = foreign.mint_at_jwt(&claims);
    let url = format!("{api}/api/hello");
    assert_eq!(with_token(&url, &token).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_invalid_token(with_token(&url, &token).await, &token).await;
}

// --------------------------------------------------------------- rejection

#[tokio::test]
async fn missing_authorization_header_is_rejected_without_error_code() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let response = call(&format!("{api}/api/hello"), None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(challenge(&response), r#"Bearer realm="api""#);
}

#[tokio::test]
async fn wrong_scheme_is_rejected_as_no_token() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    for value in ["Basic dXNlcjpwYXNz".to_owned(), format!("Token {token}")] {
        let response = call(&format!("{api}/api/hello"), Some(&value)).await;
        assert_eq!(response.status(), 401);
        assert_eq!(challenge(&response), r#"Bearer realm="api""#);
    }
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    let response = call(
        &format!("{api}/api/hello"),
        Some(&format!("bEaReR {token}")),
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let mut claims = foreign.claims("api", "read");
    claims["exp"] = json!(now() - 120);
    let token = foreign.mint_at_jwt(&claims);
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert!(challenge(&response).contains("the token has expired"));
    assert_invalid_token(response, &token).await;
}

#[tokio::test]
async fn token_not_valid_yet_is_rejected() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let mut claims = foreign.claims("api", "read");
    claims["nbf"] = json!(now() + 120);
    let token = foreign.mint_at_jwt(&claims);
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert!(challenge(&response).contains("not valid yet"));
    assert_invalid_token(response, &token).await;
}

#[tokio::test]
async fn wrong_issuer_is_rejected() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let mut claims = foreign.claims("api", "read");
    claims["iss"] = json!("https://someone-else.example/");
    let token = foreign.mint_at_jwt(&claims);
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert!(challenge(&response).contains("issuer is not accepted"));
    assert_invalid_token(response, &token).await;
}

#[tokio::test]
async fn missing_issuer_is_rejected() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let mut claims = foreign.claims("api", "read");
    claims.as_object_mut().unwrap().remove("iss");
    let token = foreign.mint_at_jwt(&claims);
    assert_invalid_token(
        with_token(&format!("{api}/api/hello"), &token).await,
        &token,
    )
    .await;
}

#[tokio::test]
async fn token_claiming_another_configured_issuer_is_rejected() {
    // The foreign issuer signs a token that names *our* issuer: it must be
    // checked with our keys only, and fail.
    let server = common::start().await;
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(our_issuer(&server))
            .issuer(foreign_issuer(&foreign))
            .audience(CLIENT_ID),
    )
    .await;
    let mut claims = foreign.claims(CLIENT_ID, "read");
    claims["iss"] = json!(server.issuer());
    let token = foreign.mint_at_jwt(&claims);
    assert_invalid_token(
        with_token(&format!("{api}/api/hello"), &token).await,
        &token,
    )
    .await;
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let token = foreign.mint_at_jwt(&foreign.claims("another-api", "read"));
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert!(challenge(&response).contains("audience is not accepted"));
    assert_invalid_token(response, &token).await;
}

#[tokio::test]
async fn missing_audience_is_rejected() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let mut claims = foreign.claims("api", "read");
    claims.as_object_mut().unwrap().remove("aud");
    let token = foreign.mint_at_jwt(&claims);
    assert_invalid_token(
        with_token(&format!("{api}/api/hello"), &token).await,
        &token,
    )
    .await;
}

#[tokio::test]
async fn no_configured_audience_rejects_every_token() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(JwtValidateLayer::new().issuer(foreign_issuer(&foreign))).await;
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    assert_invalid_token(
        with_token(&format!("{api}/api/hello"), &token).await,
        &token,
    )
    .await;
}

#[tokio::test]
async fn bad_signature_is_rejected() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    // Same header and signature, other claims (another subject).
    let mut claims = foreign.claims("api", "read");
    claims["sub"] = json!("admin");
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let response = with_token(&format!("{api}/api/hello"), &forged).await;
    assert!(challenge(&response).contains("signature is invalid"));
    assert_invalid_token(response, &forged).await;
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = foreign_downstream(&foreign).await;
    let kid = foreign.ring.active().kid().to_owned();
    let token = format!(
        "{}.",
        encode_unsigned(
            &json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
            &foreign.claims("api", "read"),
        )
    );
    assert_invalid_token(
        with_token(&format!("{api}/api/hello"), &token).await,
        &token,
    )
    .await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_rejected() {
    // The classic key confusion: an HMAC "signature" whose secret is the
    // issuer's public key, as published.
    let foreign = Foreign::start(Algorithm::RS256).await;
    let api = foreign_downstream(&foreign).await;
    let public_jwk = serde_json::to_vec(foreign.ring.active().public_jwk().unwrap()).unwrap();
    let kid = foreign.ring.active().kid().to_owned();
    let claims = foreign.claims("api", "read");
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some(kid);
    header.typ = Some("at+jwt".into());
    for secret in [public_jwk, foreign.jwks_url().into_bytes()] {
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        let response = with_token(&format!("{api}/api/hello"), &token).await;
        assert_invalid_token(response, &token).await;
    }
    // Even with HS256 in the allow-list, an RSA key never acts as a secret.
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(&foreign))
            .audience("api")
            .algorithms(&[Algorithm::RS256, Algorithm::HS256])
            .unwrap(),
    )
    .await;
    let secret = serde_json::to_vec(foreign.ring.active().public_jwk().unwrap()).unwrap();
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert_invalid_token(
        with_token(&format!("{api}/api/hello"), &token).await,
        &token,
    )
    .await;
}

#[tokio::test]
async fn unknown_kid_is_rejected_after_one_refresh() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let mut policy = policy();
    policy.unknown_kid_cooldown = Duration::from_secs(1);
    let jwks = RemoteJwks::with_policy(foreign.jwks_url(), Arc::new(ReqwestFetcher::new()), policy);
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(Issuer::with_remote_jwks(&foreign.iss, jwks))
            .audience("api"),
    )
    .await;
    let url = format!("{api}/api/hello");
    let good = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    assert_eq!(with_token(&url, &good).await.status(), 200);
    assert_eq!(foreign.jwks_hits.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the cooldown

    let stranger = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid("unknown-kid");
    let token = stranger
        .sign_jwt(Some("at+jwt"), &foreign.claims("api", "read"))
        .unwrap();
    let response = with_token(&url, &token).await;
    assert!(challenge(&response).contains("key is unknown"));
    assert_invalid_token(response, &token).await;
    assert_eq!(
        foreign.jwks_hits.load(Ordering::SeqCst),
        2,
        "one refresh for the unknown kid"
    );
    // A flood of unknown kids within the cooldown causes no further fetch.
    let client = common::http();
    for _ in 0..10 {
        let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 401);
    }
    assert_eq!(foreign.jwks_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn insufficient_scope_is_rejected_with_the_required_scope() {
    let server = common::start().await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(our_issuer(&server))
            .audience(CLIENT_ID),
    )
    .await;
    let url = format!("{api}/api/write");
    let read_only = issue_token(&server, "read").await;
    let response = common::http()
        .post(&url)
        .bearer_auth(&read_only)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge(&response),
        r#"Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="write""#
    );
    // The same router serves other routes to the same token.
    assert_eq!(
        with_token(&format!("{api}/api/hello"), &read_only)
            .await
            .status(),
        200
    );
    let writer = issue_token(&server, "read write").await;
    let response = common::http()
        .post(&url)
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn layer_wide_required_scope_is_enforced() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(&foreign))
            .audience("api")
            .require_scopes(["admin"])
            .unwrap(),
    )
    .await;
    let url = format!("{api}/api/hello");
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    let response = with_token(&url, &token).await;
    assert_eq!(response.status(), 403);
    assert!(challenge(&response).ends_with(r#"scope="admin""#));
    // `scp` as an array counts too.
    let mut claims = foreign.claims("api", "read");
    claims["scp"] = json!(["admin"]);
    assert_eq!(
        with_token(&url, &foreign.mint_at_jwt(&claims))
            .await
            .status(),
        200
    );
}

// ------------------------------------------- access tokens, not ID tokens

/// A token response of our token endpoint: (access token, id_token).
async fn issue_tokens(server: &Server) -> (String, String) {
    let body = common::form_encode(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("username", USERNAME),
        ("password", &server.token),
        ("scope", "read"),
    ]);
    let response = common::post_form(server, &body).await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    let token = |name: &str| json[name].as_str().unwrap().to_owned();
    (token("access_token"), token("id_token"))
}

/// Asserts 401 `invalid_token` because the token is not an access token.
async fn assert_not_an_access_token(response: reqwest::Response, token: &str) {
    assert!(
        challenge(&response).contains("typ at+jwt"),
        "{}",
        challenge(&response)
    );
    assert_invalid_token(response, token).await;
}

#[tokio::test]
async fn id_token_from_our_token_endpoint_is_not_an_access_token() {
    // Same issuer, same key, same audience, unexpired: only the type differs.
    let server = common::start().await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(our_issuer(&server))
            .audience(CLIENT_ID),
    )
    .await;
    let url = format!("{api}/api/hello");
    let (access_token, id_token) = issue_tokens(&server).await;
    assert_not_an_access_token(with_token(&url, &id_token).await, &id_token).await;
    assert_eq!(with_token(&url, &access_token).await.status(), 200);
}

#[tokio::test]
async fn id_token_is_refused_even_where_untyped_access_tokens_are_allowed() {
    // The compatibility pairing: an endpoint minting plain-JWT access tokens
    // (as authentik does), a validator allowing them. The ID token of the
    // same response, which has no access-token claim, still does not pass.
    let server = common::start_with(Algorithm::ES256, |layer| layer.at_jwt_typ(false)).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(our_issuer(&server))
            .audience(CLIENT_ID)
            .allow_untyped_access_tokens(true),
    )
    .await;
    let url = format!("{api}/api/hello");
    let (access_token, id_token) = issue_tokens(&server).await;
    assert_eq!(
        jsonwebtoken::decode_header(&access_token).unwrap().typ,
        None
    );
    assert_eq!(with_token(&url, &access_token).await.status(), 200);
    assert_not_an_access_token(with_token(&url, &id_token).await, &id_token).await;
}

#[tokio::test]
async fn untyped_access_token_is_refused_by_default_and_accepted_with_the_switch() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let claims = foreign.claims("api", "read");
    let untyped = foreign.mint_untyped(&claims);
    let typ_jwt = foreign
        .ring
        .active()
        .sign_jwt(Some("JWT"), &claims)
        .unwrap();

    let strict = foreign_downstream(&foreign).await;
    let url = format!("{strict}/api/hello");
    // Strict by default: access-token claims do not make up for the type.
    assert_not_an_access_token(with_token(&url, &untyped).await, &untyped).await;
    assert_not_an_access_token(with_token(&url, &typ_jwt).await, &typ_jwt).await;
    assert_eq!(
        with_token(&url, &foreign.mint_at_jwt(&claims))
            .await
            .status(),
        200
    );

    let compat = downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(&foreign))
            .audience("api")
            .allow_untyped_access_tokens(true),
    )
    .await;
    let url = format!("{compat}/api/hello");
    assert_eq!(with_token(&url, &untyped).await.status(), 200);
    assert_eq!(with_token(&url, &typ_jwt).await.status(), 200);
    // authentik's access tokens: `scope` and `azp`, no `client_id`.
    let mut authentik = claims.clone();
    authentik.as_object_mut().unwrap().remove("client_id");
    authentik["azp"] = json!("api");
    let token = foreign.mint_untyped(&authentik);
    assert_eq!(with_token(&url, &token).await.status(), 200);
}

#[tokio::test]
async fn untyped_token_without_an_access_token_claim_is_refused_with_the_switch() {
    // An ID token of an authentik-style issuer: no `typ`, no `client_id`,
    // `scope` or `scp` (an `azp` does not count: ID tokens may carry one).
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(&foreign))
            .audience("api")
            .allow_untyped_access_tokens(true),
    )
    .await;
    let url = format!("{api}/api/hello");
    let mut id_token = foreign.claims("api", "read");
    let object = id_token.as_object_mut().unwrap();
    object.remove("client_id");
    object.remove("scope");
    object.insert("azp".into(), json!("api"));
    for token in [
        foreign.mint_untyped(&id_token),
        foreign
            .ring
            .active()
            .sign_jwt(Some("JWT"), &id_token)
            .unwrap(),
    ] {
        assert_not_an_access_token(with_token(&url, &token).await, &token).await;
    }
}

#[tokio::test]
async fn other_token_types_are_refused_even_with_the_switch() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(&foreign))
            .audience("api")
            .allow_untyped_access_tokens(true),
    )
    .await;
    let url = format!("{api}/api/hello");
    let claims = foreign.claims("api", "read");
    for typ in ["logout+jwt", "secevent+jwt", "dpop+jwt", ""] {
        let token = foreign.ring.active().sign_jwt(Some(typ), &claims).unwrap();
        assert_not_an_access_token(with_token(&url, &token).await, &token).await;
    }
    // RFC 9068 §4: the media type form, in any case, is an access token.
    for typ in ["application/at+jwt", "AT+JWT"] {
        let token = foreign.ring.active().sign_jwt(Some(typ), &claims).unwrap();
        assert_eq!(with_token(&url, &token).await.status(), 200, "{typ}");
    }
}

#[tokio::test]
async fn untyped_access_tokens_can_be_allowed_for_one_issuer_only() {
    // An authentik-style issuer beside one that types its access tokens.
    let plain = Foreign::start(Algorithm::ES256).await;
    let typed = Foreign::start(Algorithm::ES256).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(&plain).allow_untyped_access_tokens(true))
            .issuer(Issuer::with_jwks(&typed.iss, &typed.ring.jwks()))
            .audience("api"),
    )
    .await;
    let url = format!("{api}/api/hello");
    let token = plain.mint_untyped(&plain.claims("api", "read"));
    assert_eq!(with_token(&url, &token).await.status(), 200);
    let token = typed.mint_untyped(&typed.claims("api", "read"));
    assert_not_an_access_token(with_token(&url, &token).await, &token).await;
    // And the issuer's own `false` wins over the layer's `true`.
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(&plain).allow_untyped_access_tokens(false))
            .audience("api")
            .allow_untyped_access_tokens(true),
    )
    .await;
    let token = plain.mint_untyped(&plain.claims("api", "read"));
    let url = format!("{api}/api/hello");
    assert_not_an_access_token(with_token(&url, &token).await, &token).await;
}

#[tokio::test]
async fn unreachable_jwks_fails_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(Issuer::with_remote_jwks(&foreign.iss, remote(dead)))
            .audience("api"),
    )
    .await;
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("www-authenticate").is_none());
}

// ------------------------------------------------------------ optional mode

#[tokio::test]
async fn optional_mode_lets_requests_without_a_token_through() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(foreign_issuer(&foreign))
            .audience("api")
            .allow_missing_token(true),
    )
    .await;
    let url = format!("{api}/api/hello");
    let response = call(&url, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello anonymous");

    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    let response = with_token(&url, &token).await;
    assert_eq!(response.text().await.unwrap(), "hello foreign-robot");

    // A token that is present but invalid is still refused.
    let expired = {
        let mut claims = foreign.claims("api", "read");
        claims["exp"] = json!(now() - 120);
        foreign.mint_at_jwt(&claims)
    };
    assert_invalid_token(with_token(&url, &expired).await, &expired).await;
    // And handlers that need claims say so.
    assert_eq!(call(&format!("{api}/api/typed"), None).await.status(), 401);
}

// ---------------------------------------------------------- custom response

#[tokio::test]
async fn rejection_response_is_pluggable_and_carries_the_error() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let layer = JwtValidateLayer::new()
        .issuer(foreign_issuer(&foreign))
        .audience("api")
        .with_rejection(|error: &AuthError, _: &http::HeaderMap| {
            axum::response::Response::builder()
                .status(error.status())
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    json!({"error": error.error_code(), "message": error.to_string()}).to_string(),
                ))
                .unwrap()
        });
    // A layer further out sees the typed error in the response extensions.
    let app = Router::new()
        .route("/api/hello", get(hello))
        .layer(layer)
        .layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                if let Some(error) = response.extensions().get::<AuthError>() {
                    let kind = format!("{error:?}");
                    response
                        .headers_mut()
                        .insert("x-auth-error", kind.parse().unwrap());
                }
                response
            },
        ));
    let api = serve(app).await;
    let mut claims = foreign.claims("api", "read");
    claims["exp"] = json!(now() - 120);
    let token = foreign.mint_at_jwt(&claims);
    let response = with_token(&format!("{api}/api/hello"), &token).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-auth-error"], "InvalidToken(Expired)");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "invalid_token", "message": "the token has expired"})
    );
}

// ----------------------------------------------------------------- rotation

#[tokio::test]
async fn key_rotation_at_the_issuer_causes_no_failed_requests() {
    let server = common::start().await;
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(our_issuer(&server))
            .audience(CLIENT_ID),
    )
    .await;
    let url = format!("{api}/api/hello");
    let before = issue_token(&server, "read").await;
    assert_eq!(with_token(&url, &before).await.status(), 200);

    // Clients keep calling with fresh tokens while the issuer rotates.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (stop, url) = (stop.clone(), url.clone());
        let server_token = server.token.clone();
        let token_url = server.token_url();
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let body = common::form_encode(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("username", USERNAME),
                    ("password", &server_token),
                ]);
                let response = common::http()
                    .post(&token_url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let json: Value = response.json().await.unwrap();
                let token = json["access_token"].as_str().unwrap();
                match with_token(&url, token).await.status().as_u16() {
                    200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
            .keys
            .rotate(SigningKey::generate(Algorithm::ES256).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, 0);
    for client in clients {
        let (o, f) = client.await.unwrap();
        ok += o;
        failed += f;
    }
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > 10, "{ok}");
    // Tokens minted before the rotation stay valid: the old key is still published.
    assert_eq!(with_token(&url, &before).await.status(), 200);
}

// --------------------------------------------------------------------- gRPC

mod grpc {
    use super::*;
    use tonic::Code;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    async fn health_server(layer: JwtValidateLayer) -> String {
        let (_reporter, service) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .layer(layer)
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap()
        });
        format!("http://{addr}")
    }

    async fn client(url: String) -> HealthClient<tonic::transport::Channel> {
        let channel = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
    }

    fn check(token: Option<&str>) -> tonic::Request<HealthCheckRequest> {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    #[tokio::test]
    async fn grpc_call_without_token_is_unauthenticated_and_succeeds_with_one() {
        let server = common::start().await;
        let url = health_server(
            JwtValidateLayer::new()
                .issuer(our_issuer(&server))
                .audience(CLIENT_ID),
        )
        .await;
        let mut client = client(url).await;

        let status = client.check(check(None)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "no bearer token");

        let status = client.check(check(Some("not.a.token"))).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);

        let token = issue_token(&server, "read").await;
        let response = client.check(check(Some(&token))).await.unwrap();
        assert_eq!(
            response.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    #[tokio::test]
    async fn grpc_call_without_required_scope_is_permission_denied() {
        let server = common::start().await;
        let url = health_server(
            JwtValidateLayer::new()
                .issuer(our_issuer(&server))
                .audience(CLIENT_ID)
                .require_scopes(["write"])
                .unwrap(),
        )
        .await;
        let mut client = client(url).await;
        let token = issue_token(&server, "read").await;
        let status = client.check(check(Some(&token))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
}

// Found after the `discovery_document` finding, with a `bearer_token` input
// signed by the trusted key: a token whose claims (or header) held a byte
// that is not UTF-8 inside a member the parser ignores passed, though its
// claims set is not JSON (RFC 7519 §7.2), and `VerifiedClaims::json` handed
// those bytes on.

/// A compact JWS over raw `header` and `payload` bytes, signed by `key`
/// (ES256): what an issuer with a broken JSON encoder would send.
fn sign_raw(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let der = pem::parse(key.to_pkcs8_pem().unwrap())
        .unwrap()
        .into_contents();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), token.as_bytes())
        .unwrap();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
    token
}

/// `json` (an object) with a member `note` whose string holds byte 0x86.
fn with_invalid_utf8(json: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(json).unwrap();
    bytes.pop();
    bytes.extend_from_slice(b",\"note\":\"\x86\"}");
    bytes
}

#[tokio::test]
async fn token_whose_claims_or_header_are_not_utf8_is_refused() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = format!("{}/api/hello", foreign_downstream(&foreign).await);
    let key = foreign.ring.active();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid()});
    let claims = foreign.claims("api", "read");

    let good = sign_raw(
        &key,
        &serde_json::to_vec(&header).unwrap(),
        &serde_json::to_vec(&claims).unwrap(),
    );
    assert_eq!(with_token(&api, &good).await.status(), 200);

    let bad_claims = sign_raw(
        &key,
        &serde_json::to_vec(&header).unwrap(),
        &with_invalid_utf8(&claims),
    );
    assert_invalid_token(with_token(&api, &bad_claims).await, &bad_claims).await;

    let bad_header = sign_raw(
        &key,
        &with_invalid_utf8(&header),
        &serde_json::to_vec(&claims).unwrap(),
    );
    assert_invalid_token(with_token(&api, &bad_header).await, &bad_header).await;
}
