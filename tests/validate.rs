//! `JwtValidateLayer`: its rules are a table, one row per rule, run in
//! process (`oneshot`) against an API behind the layer, trusting a foreign
//! issuer made in the test by its keys. What is about the wire runs over
//! real HTTP: JWKS URLs and discovery documents fetched from servers, the
//! token endpoint's published keys during rotation, and gRPC.

#![cfg(all(feature = "axum", feature = "reqwest"))]

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::foreign::{Foreign, now};
use common::{Answer, CLIENT_ID, Endpoint, SLUG, Server, USERNAME};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower_m2m_auth::keys::fetch::ReqwestFetcher;
use tower_m2m_auth::keys::{CachePolicy, KeyRing, RemoteJwks, SigningKey};
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

/// Our token endpoint served over HTTP, as an issuer known by its JWKS URL.
fn our_issuer(server: &Server) -> Issuer {
    Issuer::with_remote_jwks(
        server.issuer(),
        remote(server.url(&format!("/application/o/{SLUG}/jwks/"))),
    )
}

/// Our token endpoint in process, as an issuer known by its keys.
fn our_keys(endpoint: &Endpoint) -> Issuer {
    Issuer::with_jwks(endpoint.issuer(), &endpoint.keys.jwks())
}

/// A foreign issuer served over HTTP, known by its JWKS URL.
fn foreign_issuer(foreign: &Foreign) -> Issuer {
    Issuer::with_remote_jwks(&foreign.iss, remote(foreign.jwks_url()))
}

/// A foreign issuer known by its keys.
fn foreign_keys(foreign: &Foreign) -> Issuer {
    Issuer::with_jwks(&foreign.iss, &foreign.jwks())
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
fn downstream(layer: JwtValidateLayer) -> Router {
    Router::new()
        .route("/api/hello", get(hello))
        .route("/api/typed", get(typed))
        .route(
            "/api/write",
            post(|| async { "written" }).layer(RequireScopeLayer::new(["write"]).unwrap()),
        )
        .layer(layer)
}

/// `method path` at `api` in process, with this `Authorization` (if any).
async fn call(api: &Router, method: &str, path: &str, authorization: Option<&str>) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let request = request.body(Body::empty()).unwrap();
    Answer::of(api.clone().oneshot(request).await.unwrap()).await
}

/// `GET path` at `api` with `token` as bearer.
async fn with_token(api: &Router, path: &str, token: &str) -> Answer {
    call(api, "GET", path, Some(&format!("Bearer {token}"))).await
}

/// An access token of our token endpoint over HTTP, with `scope`.
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

/// A token response of our token endpoint in process, asking for `scope`.
async fn issue(endpoint: &Endpoint, scope: &str) -> Value {
    let mut form = endpoint.password_form().to_vec();
    form.push(("scope", scope));
    endpoint.token_json(&form).await
}

/// Asserts (for the rule `name`) a 401 `invalid_token` answer whose
/// description holds `description`, with an empty body, not echoing the token.
fn assert_invalid_token(name: &str, answer: &Answer, token: &str, description: &str) {
    let challenge = answer.header("www-authenticate");
    assert_eq!(answer.status, 401, "{name}: {challenge}");
    assert!(
        challenge.starts_with(r#"Bearer realm="api", error="invalid_token", error_description=""#),
        "{name}: {challenge}"
    );
    assert!(challenge.contains(description), "{name}: {challenge}");
    assert!(answer.body.is_empty(), "{name}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        signature.is_empty() || !challenge.contains(signature),
        "{name}"
    );
}

/// Asserts 401 `invalid_token` because the token is not an access token.
fn assert_not_an_access_token(answer: &Answer, token: &str) {
    assert_invalid_token("not an access token", answer, token, "typ at+jwt");
}

fn encode_unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    )
}

// ------------------------------------------------------------- the rules

/// What the API answers.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 200 from the handler, which sees the foreign subject.
    Ok,
    /// 401 with a bare `Bearer realm="api"` challenge (RFC 6750 §3.1: no
    /// error code when the request has no token).
    NoToken,
    /// 401 `invalid_token`, its description holding this text.
    Invalid(&'static str),
    /// 403 `insufficient_scope` naming this scope.
    Scope(&'static str),
}

/// One rule: a foreign issuer of `algorithm` (its JWKS without `alg` when
/// `strip_alg`), the layer `layer` makes around the issuer known by its
/// keys, and the token `token` mints, sent as a bearer token.
struct Rule {
    name: &'static str,
    algorithm: Algorithm,
    strip_alg: bool,
    layer: fn(Issuer) -> JwtValidateLayer,
    token: fn(&Foreign) -> String,
    expect: Expect,
}

/// The layer of most rows: this issuer, audience `api`.
fn strict(issuer: Issuer) -> JwtValidateLayer {
    JwtValidateLayer::new().issuer(issuer).audience("api")
}

/// [`strict`], accepting untyped access tokens.
fn compat(issuer: Issuer) -> JwtValidateLayer {
    strict(issuer).allow_untyped_access_tokens(true)
}

const fn rule(name: &'static str, token: fn(&Foreign) -> String, expect: Expect) -> Rule {
    Rule {
        name,
        algorithm: Algorithm::ES256,
        strip_alg: false,
        layer: strict,
        token,
        expect,
    }
}

const fn with_layer(
    name: &'static str,
    layer: fn(Issuer) -> JwtValidateLayer,
    token: fn(&Foreign) -> String,
    expect: Expect,
) -> Rule {
    Rule {
        layer,
        ..rule(name, token, expect)
    }
}

/// An `at+jwt` access token for `api` with scope `read`, claims edited.
fn at(foreign: &Foreign, edit: Edit) -> String {
    let mut claims = foreign.claims("api", "read");
    edit(&mut claims);
    foreign.mint_at_jwt(&claims)
}

fn valid(foreign: &Foreign) -> String {
    at(foreign, |_| {})
}

/// A token of `typ` (none when `None`) with claims edited.
fn typed_as(foreign: &Foreign, typ: Option<&str>, edit: Edit) -> String {
    let mut claims = foreign.claims("api", "read");
    edit(&mut claims);
    foreign.ring.active().sign_jwt(typ, &claims).unwrap()
}

fn remove(claims: &mut Value, name: &str) {
    claims.as_object_mut().unwrap().remove(name);
}

/// An ID token's claims: no `client_id`, `scope` or `scp`; an `azp`.
fn id_token_claims(claims: &mut Value) {
    remove(claims, "client_id");
    remove(claims, "scope");
    claims["azp"] = json!("api");
}

/// HS256 over valid claims with `secret`, the `kid` of the issuer's key.
fn hs256(foreign: &Foreign, secret: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some(foreign.ring.active().kid().to_owned());
    header.typ = Some("at+jwt".into());
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&header, &foreign.claims("api", "read"), &key).unwrap()
}

fn public_jwk(foreign: &Foreign) -> Vec<u8> {
    serde_json::to_vec(foreign.ring.active().public_jwk().unwrap()).unwrap()
}

/// Another issuer, typing its access tokens, known by its keys.
const OTHER_ISS: &str = "https://other.test/";
static OTHER: LazyLock<KeyRing> =
    LazyLock::new(|| KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap()));

fn other_issuer() -> Issuer {
    Issuer::with_jwks(OTHER_ISS, &OTHER.jwks())
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

/// `json` (an object) with a member `note` whose string holds byte 0x86
/// when `broken`.
fn json_bytes(json: &Value, broken: bool) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(json).unwrap();
    if broken {
        bytes.pop();
        bytes.extend_from_slice(b",\"note\":\"\x86\"}");
    }
    bytes
}

/// A token signed over raw bytes, its header or claims not UTF-8 as asked.
fn raw_token(foreign: &Foreign, broken_header: bool, broken_claims: bool) -> String {
    let key = foreign.ring.active();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid()});
    let claims = foreign.claims("api", "read");
    let header = json_bytes(&header, broken_header);
    sign_raw(&key, &header, &json_bytes(&claims, broken_claims))
}

const RULES: &[Rule] = &[
    with_layer(
        // Signed by the foreign issuer, naming another configured issuer: it
        // is checked with that issuer's keys only, and fails.
        "rfc8725_3_8_token_claiming_another_configured_issuer_is_rejected",
        |issuer| strict(issuer).issuer(other_issuer()),
        |f| at(f, |c| c["iss"] = json!(OTHER_ISS)),
        Expect::Invalid(""),
    ),
    with_layer(
        "no_configured_audience_rejects_every_token",
        |issuer| JwtValidateLayer::new().issuer(issuer),
        valid,
        Expect::Invalid(""),
    ),
    rule(
        // Same header and signature, other claims (another subject).
        "rfc7515_bad_signature_is_rejected",
        |f| {
            let token = valid(f);
            let parts: Vec<&str> = token.split('.').collect();
            let mut claims = f.claims("api", "read");
            claims["sub"] = json!("admin");
            let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
            format!("{}.{claims}.{}", parts[0], parts[2])
        },
        Expect::Invalid("signature is invalid"),
    ),
    rule(
        "rfc8725_3_1_alg_none_is_rejected",
        |f| {
            let kid = f.ring.active().kid().to_owned();
            let header = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
            format!("{}.", encode_unsigned(&header, &f.claims("api", "read")))
        },
        Expect::Invalid(""),
    ),
    Rule {
        // The classic key confusion: an HMAC "signature" whose secret is the
        // issuer's public key, as published.
        name: "rfc8725_2_1_hs256_signed_with_the_public_jwk_is_rejected",
        algorithm: Algorithm::RS256,
        ..rule("", |f| hs256(f, &public_jwk(f)), Expect::Invalid(""))
    },
    Rule {
        name: "rfc8725_2_1_hs256_signed_with_the_jwks_url_is_rejected",
        algorithm: Algorithm::RS256,
        ..rule(
            "",
            |f| hs256(f, f.jwks_url().as_bytes()),
            Expect::Invalid(""),
        )
    },
    Rule {
        name: "rfc8725_2_1_an_rsa_key_never_acts_as_a_secret_even_with_hs256_allowed",
        algorithm: Algorithm::RS256,
        layer: |issuer| {
            strict(issuer)
                .algorithms(&[Algorithm::RS256, Algorithm::HS256])
                .unwrap()
        },
        ..rule("", |f| hs256(f, &public_jwk(f)), Expect::Invalid(""))
    },
    Rule {
        name: "rfc7517_eddsa_key_without_alg_is_accepted",
        algorithm: Algorithm::EdDSA,
        strip_alg: true,
        ..rule("", valid, Expect::Ok)
    },
    rule(
        "rfc7519_7_2_token_whose_claims_are_not_utf8_is_refused",
        |f| raw_token(f, false, true),
        Expect::Invalid(""),
    ),
    rule(
        "rfc7519_7_2_token_whose_header_is_not_utf8_is_refused",
        |f| raw_token(f, true, false),
        Expect::Invalid(""),
    ),
    rule(
        "token_signed_over_raw_utf8_bytes_is_accepted",
        |f| raw_token(f, false, false),
        Expect::Ok,
    ),
    with_layer(
        "rfc6750_3_1_layer_wide_required_scope_is_enforced",
        |issuer| strict(issuer).require_scopes(["admin"]).unwrap(),
        valid,
        Expect::Scope("admin"),
    ),
    with_layer(
        "layer_wide_required_scope_counts_scp_as_an_array",
        |issuer| strict(issuer).require_scopes(["admin"]).unwrap(),
        |f| at(f, |c| c["scp"] = json!(["admin"])),
        Expect::Ok,
    ),
    with_layer(
        // authentik's access tokens: `scope` and `azp`, no `client_id`.
        "authentik_access_token_is_accepted_with_the_switch",
        compat,
        |f| {
            typed_as(f, None, |c| {
                remove(c, "client_id");
                c["azp"] = json!("api");
            })
        },
        Expect::Ok,
    ),
    with_layer(
        // An ID token of an authentik-style issuer: an `azp` does not count.
        "untyped_token_without_an_access_token_claim_is_refused_with_the_switch",
        compat,
        |f| typed_as(f, None, id_token_claims),
        Expect::Invalid("typ at+jwt"),
    ),
    with_layer(
        "typ_jwt_token_without_an_access_token_claim_is_refused_with_the_switch",
        compat,
        |f| typed_as(f, Some("JWT"), id_token_claims),
        Expect::Invalid("typ at+jwt"),
    ),
    with_layer(
        "untyped_access_tokens_can_be_allowed_for_one_issuer",
        |issuer| strict(issuer.allow_untyped_access_tokens(true)).issuer(other_issuer()),
        |f| typed_as(f, None, |_| {}),
        Expect::Ok,
    ),
    with_layer(
        "untyped_access_tokens_allowed_for_one_issuer_stay_refused_for_another",
        |issuer| strict(issuer.allow_untyped_access_tokens(true)).issuer(other_issuer()),
        |f| {
            let mut claims = f.claims("api", "read");
            claims["iss"] = json!(OTHER_ISS);
            OTHER.active().sign_jwt(None, &claims).unwrap()
        },
        Expect::Invalid("typ at+jwt"),
    ),
    with_layer(
        "the_issuers_own_untyped_false_wins_over_the_layers_true",
        |issuer| compat(issuer.allow_untyped_access_tokens(false)),
        |f| typed_as(f, None, |_| {}),
        Expect::Invalid("typ at+jwt"),
    ),
];

/// Asserts that `answer` (to `token`) is what the rule `name` expects.
fn check(name: &str, answer: &Answer, token: &str, expect: Expect) {
    let challenge = answer.header("www-authenticate");
    match expect {
        Expect::Ok => {
            assert_eq!(answer.status, 200, "{name}: {challenge}");
            assert_eq!(answer.text(), "hello foreign-robot", "{name}");
        }
        Expect::NoToken => {
            assert_eq!(answer.status, 401, "{name}");
            assert_eq!(challenge, r#"Bearer realm="api""#, "{name}");
        }
        Expect::Invalid(description) => assert_invalid_token(name, answer, token, description),
        Expect::Scope(scope) => {
            assert_eq!(answer.status, 403, "{name}");
            let end = format!(r#"scope="{scope}""#);
            assert!(challenge.ends_with(&end), "{name}: {challenge}");
        }
    }
}

#[tokio::test]
async fn rules() {
    let mut issuers: HashMap<(String, bool), Foreign> = HashMap::new();
    for rule in RULES {
        let key = (format!("{:?}", rule.algorithm), rule.strip_alg);
        let foreign = issuers
            .entry(key)
            .or_insert_with(|| Foreign::local(rule.algorithm, rule.strip_alg));
        let api = downstream((rule.layer)(foreign_keys(foreign)));
        let token = (rule.token)(foreign);
        let answer = with_token(&api, "/api/hello", &token).await;
        check(rule.name, &answer, &token, rule.expect);
    }
}

/// RFC 6750 §2.1, §3.1: an `Authorization` header (`{token}`: a valid
/// token; no header when empty) and what the API answers.
#[rustfmt::skip]
const AUTHORIZATION: &[(&str, &str, Expect)] = &[
    ("valid_access_token_is_accepted", "Bearer {token}", Expect::Ok),
    ("rfc6750_3_1_missing_authorization_header_is_401_without_error_code", "", Expect::NoToken),
    ("rfc6750_2_1_basic_scheme_is_no_bearer_token", "Basic dXNlcjpwYXNz", Expect::NoToken),
    ("rfc6750_2_1_other_scheme_is_no_bearer_token", "Token {token}", Expect::NoToken),
    ("rfc6750_2_1_bearer_scheme_is_case_insensitive", "bEaReR {token}", Expect::Ok),
];

#[tokio::test]
async fn authorization_headers() {
    let foreign = Foreign::local(Algorithm::ES256, false);
    let api = downstream(strict(foreign_keys(&foreign)));
    let token = valid(&foreign);
    for (name, header, expect) in AUTHORIZATION {
        let header = common::oneshot::fill(header, &[("token", &token)]);
        let header = Some(header.as_str()).filter(|value| !value.is_empty());
        let answer = call(&api, "GET", "/api/hello", header).await;
        check(name, &answer, &token, *expect);
    }
}

/// An edit of a token's claims.
type Edit = fn(&mut Value);

/// A valid access token with its claims edited, at the strict layer.
#[rustfmt::skip]
const CLAIMS: &[(&str, Edit, Expect)] = &[
    ("rfc7519_4_1_4_expired_token_is_rejected", |c| c["exp"] = json!(now() - 120), Expect::Invalid("the token has expired")),
    ("rfc7519_4_1_5_token_not_valid_yet_is_rejected", |c| c["nbf"] = json!(now() + 120), Expect::Invalid("not valid yet")),
    ("rfc9068_4_wrong_issuer_is_rejected", |c| c["iss"] = json!("https://someone-else.example/"), Expect::Invalid("issuer is not accepted")),
    ("rfc9068_4_missing_issuer_is_rejected", |c| remove(c, "iss"), Expect::Invalid("")),
    ("rfc9068_4_wrong_audience_is_rejected", |c| c["aud"] = json!("another-api"), Expect::Invalid("audience is not accepted")),
    ("rfc9068_4_missing_audience_is_rejected", |c| remove(c, "aud"), Expect::Invalid("")),
];

#[tokio::test]
async fn claims() {
    let foreign = Foreign::local(Algorithm::ES256, false);
    let api = downstream(strict(foreign_keys(&foreign)));
    for (name, edit, expect) in CLAIMS {
        let token = at(&foreign, *edit);
        let answer = with_token(&api, "/api/hello", &token).await;
        check(name, &answer, &token, *expect);
    }
}

/// RFC 9068 §2.1, §4: access tokens are typed `at+jwt`. A token with
/// access-token claims and this `typ` (none: `None`), at a layer with
/// `allow_untyped_access_tokens` off or on: does it pass?
#[rustfmt::skip]
const TYPES: &[(&str, bool, Option<&str>, bool)] = &[
    ("rfc9068_4_untyped_access_token_is_refused_by_default", false, None, false),
    ("rfc9068_4_typ_jwt_access_token_is_refused_by_default", false, Some("JWT"), false),
    ("rfc9068_4_at_jwt_access_token_is_accepted", false, Some("at+jwt"), true),
    ("untyped_access_token_is_accepted_with_the_switch", true, None, true),
    ("typ_jwt_access_token_is_accepted_with_the_switch", true, Some("JWT"), true),
    ("logout_token_is_refused_even_with_the_switch", true, Some("logout+jwt"), false),
    ("secevent_token_is_refused_even_with_the_switch", true, Some("secevent+jwt"), false),
    ("dpop_proof_is_refused_even_with_the_switch", true, Some("dpop+jwt"), false),
    ("empty_typ_is_refused_even_with_the_switch", true, Some(""), false),
    ("rfc9068_4_application_at_jwt_passes", true, Some("application/at+jwt"), true),
    ("rfc9068_4_typ_is_case_insensitive", true, Some("AT+JWT"), true),
];

#[tokio::test]
async fn token_types() {
    let foreign = Foreign::local(Algorithm::ES256, false);
    for (name, switch, typ, passes) in TYPES {
        let api = downstream(strict(foreign_keys(&foreign)).allow_untyped_access_tokens(*switch));
        let token = typed_as(&foreign, *typ, |_| {});
        let answer = with_token(&api, "/api/hello", &token).await;
        let expect = match passes {
            true => Expect::Ok,
            false => Expect::Invalid("typ at+jwt"),
        };
        check(name, &answer, &token, expect);
    }
}

// ------------------------------------------------- our issuer, in process

#[tokio::test]
async fn typed_claims_reach_the_handler() {
    let endpoint = Endpoint::new();
    let api = downstream(strict(our_keys(&endpoint)).audience(CLIENT_ID));
    let json = issue(&endpoint, "read write").await;
    let token = json["access_token"].as_str().unwrap();
    let answer = with_token(&api, "/api/typed", token).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.text().ends_with(" may read write"),
        "the sub and scope claims are the handler's"
    );
}

#[tokio::test]
async fn token_from_a_configured_foreign_issuer_is_accepted() {
    let endpoint = Endpoint::new();
    let foreign = Foreign::local(Algorithm::RS256, false);
    // Both issuers at once, each with its own audience, chosen by `iss`.
    let api = downstream(
        JwtValidateLayer::new()
            .issuer(our_keys(&endpoint).audience(CLIENT_ID))
            .issuer(foreign_keys(&foreign).audience("api")),
    );
    let token = foreign.mint_at_jwt(&foreign.claims("api", "read"));
    let answer = with_token(&api, "/api/hello", &token).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "hello foreign-robot");
    let ours = issue(&endpoint, "read").await;
    let answer = with_token(&api, "/api/hello", ours["access_token"].as_str().unwrap()).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn insufficient_scope_is_rejected_with_the_required_scope() {
    let endpoint = Endpoint::new();
    let api = downstream(strict(our_keys(&endpoint)).audience(CLIENT_ID));
    let read_only = issue(&endpoint, "read").await;
    let read_only = format!("Bearer {}", read_only["access_token"].as_str().unwrap());
    let answer = call(&api, "POST", "/api/write", Some(&read_only)).await;
    assert_eq!(answer.status, 403);
    assert_eq!(
        answer.header("www-authenticate"),
        r#"Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="write""#
    );
    // The same router serves other routes to the same token.
    let answer = call(&api, "GET", "/api/hello", Some(&read_only)).await;
    assert_eq!(answer.status, 200);
    let writer = issue(&endpoint, "read write").await;
    let writer = format!("Bearer {}", writer["access_token"].as_str().unwrap());
    assert_eq!(
        call(&api, "POST", "/api/write", Some(&writer)).await.status,
        200
    );
}

/// RFC 9068 §2.1: the ID token of a token response is not an access token,
/// whether the endpoint types its access tokens (`at_jwt_typ`) and the
/// validator is strict, or neither (authentik's pairing).
#[tokio::test]
async fn id_token_from_our_token_endpoint_is_not_an_access_token() {
    for typed in [true, false] {
        let endpoint = Endpoint::with(Algorithm::ES256, |layer| layer.at_jwt_typ(typed));
        let api = downstream(
            strict(our_keys(&endpoint))
                .audience(CLIENT_ID)
                .allow_untyped_access_tokens(!typed),
        );
        let json = issue(&endpoint, "read").await;
        let (access_token, id_token) = (
            json["access_token"].as_str().unwrap(),
            json["id_token"].as_str().unwrap(),
        );
        let typ = jsonwebtoken::decode_header(access_token).unwrap().typ;
        assert_eq!(typ.is_some(), typed);
        // Same issuer, same key, same audience, unexpired: only the type differs.
        assert_not_an_access_token(&with_token(&api, "/api/hello", id_token).await, id_token);
        assert_eq!(
            with_token(&api, "/api/hello", access_token).await.status,
            200
        );
    }
}

// ------------------------------------------------- a foreign issuer, in process

#[tokio::test]
async fn cached_token_is_refused_once_it_expires() {
    let foreign = Foreign::local(Algorithm::ES256, false);
    let api = downstream(strict(foreign_keys(&foreign)).leeway(Duration::ZERO));
    let token = at(&foreign, |c| c["exp"] = json!(now() + 2));
    assert_eq!(with_token(&api, "/api/hello", &token).await.status, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let answer = with_token(&api, "/api/hello", &token).await;
    assert_invalid_token("expired in the cache", &answer, &token, "expired");
}

#[tokio::test]
async fn optional_mode_lets_requests_without_a_token_through() {
    let foreign = Foreign::local(Algorithm::ES256, false);
    let api = downstream(strict(foreign_keys(&foreign)).allow_missing_token(true));
    let answer = call(&api, "GET", "/api/hello", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "hello anonymous");
    let answer = with_token(&api, "/api/hello", &valid(&foreign)).await;
    assert_eq!(answer.text(), "hello foreign-robot");
    // A token that is present but invalid is still refused.
    let expired = at(&foreign, |c| c["exp"] = json!(now() - 120));
    let answer = with_token(&api, "/api/hello", &expired).await;
    assert_invalid_token("optional mode", &answer, &expired, "expired");
    // And handlers that need claims say so.
    assert_eq!(call(&api, "GET", "/api/typed", None).await.status, 401);
}

#[tokio::test]
async fn rejection_response_is_pluggable_and_carries_the_error() {
    let foreign = Foreign::local(Algorithm::ES256, false);
    let layer =
        strict(foreign_keys(&foreign)).with_rejection(|error: &AuthError, _: &http::HeaderMap| {
            axum::response::Response::builder()
                .status(error.status())
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    json!({"error": error.error_code(), "message": error.to_string()}).to_string(),
                ))
                .unwrap()
        });
    // A layer further out sees the typed error in the response extensions.
    let api = Router::new().route("/api/hello", get(hello)).layer(layer);
    let api = api.layer(axum::middleware::map_response(
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
    let token = at(&foreign, |c| c["exp"] = json!(now() - 120));
    let answer = with_token(&api, "/api/hello", &token).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("x-auth-error"), "InvalidToken(Expired)");
    assert_eq!(
        answer.json(),
        json!({"error": "invalid_token", "message": "the token has expired"})
    );
}

#[tokio::test]
async fn unreachable_jwks_fails_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let foreign = Foreign::local(Algorithm::ES256, false);
    let api = downstream(strict(Issuer::with_remote_jwks(&foreign.iss, remote(dead))));
    let answer = with_token(&api, "/api/hello", &valid(&foreign)).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("www-authenticate"), "");
}

// ------------------------------------ JWKS URLs and discovery over real HTTP

#[tokio::test]
async fn token_from_our_token_endpoint_is_accepted_by_its_jwks_url() {
    let server = common::start().await;
    let api = downstream(strict(our_issuer(&server)).audience(CLIENT_ID));
    let token = issue_token(&server, "read").await;
    let answer = with_token(&api, "/api/hello", &token).await;
    assert_eq!(answer.status, 200);
    assert!(answer.text().starts_with("hello "));
}

#[tokio::test]
async fn issuer_url_alone_is_enough_with_openid_discovery() {
    let server = common::start().await;
    let api = downstream(strict(Issuer::discover(server.issuer())).audience(CLIENT_ID));
    let token = issue_token(&server, "read").await;
    assert_eq!(with_token(&api, "/api/hello", &token).await.status, 200);
}

#[tokio::test]
async fn foreign_issuer_found_by_discovery_is_accepted() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(strict(Issuer::discover(&foreign.iss)));
    assert_eq!(
        with_token(&api, "/api/hello", &valid(&foreign))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn discovery_document_naming_another_issuer_is_refused() {
    // The metadata at `<iss>/.well-known/openid-configuration` must name
    // `iss` itself (OpenID Connect Discovery §4.3): here it names `<iss>/`.
    let foreign = Foreign::start(Algorithm::ES256).await;
    let iss = foreign.iss.trim_end_matches('/').to_owned();
    let api = downstream(strict(Issuer::discover(&iss)));
    let mut claims = foreign.claims("api", "read");
    claims["iss"] = json!(iss);
    let token = foreign.mint_at_jwt(&claims);
    let answer = with_token(&api, "/api/hello", &token).await;
    assert_eq!(answer.status, 503, "fail closed: no keys were ever found");
    assert_eq!(foreign.jwks_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn repeated_token_is_served_from_the_cache() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let api = downstream(strict(foreign_issuer(&foreign)));
    let token = valid(&foreign);
    for _ in 0..20 {
        assert_eq!(with_token(&api, "/api/hello", &token).await.status, 200);
    }
    assert_eq!(foreign.jwks_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unknown_kid_is_rejected_after_one_refresh() {
    let foreign = Foreign::start(Algorithm::ES256).await;
    let mut policy = policy();
    policy.unknown_kid_cooldown = Duration::from_secs(1);
    let jwks = RemoteJwks::with_policy(foreign.jwks_url(), Arc::new(ReqwestFetcher::new()), policy);
    let api = downstream(strict(Issuer::with_remote_jwks(&foreign.iss, jwks)));
    assert_eq!(
        with_token(&api, "/api/hello", &valid(&foreign))
            .await
            .status,
        200
    );
    assert_eq!(foreign.jwks_hits.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the cooldown

    let stranger = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid("unknown-kid");
    let token = stranger
        .sign_jwt(Some("at+jwt"), &foreign.claims("api", "read"))
        .unwrap();
    let answer = with_token(&api, "/api/hello", &token).await;
    assert_invalid_token("unknown kid", &answer, &token, "key is unknown");
    assert_eq!(
        foreign.jwks_hits.load(Ordering::SeqCst),
        2,
        "one refresh for the unknown kid"
    );
    // A flood of unknown kids within the cooldown causes no further fetch.
    for _ in 0..10 {
        assert_eq!(with_token(&api, "/api/hello", &token).await.status, 401);
    }
    assert_eq!(foreign.jwks_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn key_rotation_at_the_issuer_causes_no_failed_requests() {
    let server = Arc::new(common::start().await);
    let api = downstream(strict(our_issuer(&server)).audience(CLIENT_ID));
    let before = issue_token(&server, "read").await;
    assert_eq!(with_token(&api, "/api/hello", &before).await.status, 200);

    // Clients keep calling with fresh tokens while the issuer rotates.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (stop, api, server) = (stop.clone(), api.clone(), server.clone());
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let token = issue_token(&server, "read").await;
                match with_token(&api, "/api/hello", &token).await.status {
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
    assert_eq!(with_token(&api, "/api/hello", &before).await.status, 200);
}

// --------------------------------------------------------- gRPC, over HTTP/2

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

    /// A token of our endpoint in process, with `scope`.
    async fn token(endpoint: &Endpoint, scope: &str) -> String {
        let json = issue(endpoint, scope).await;
        json["access_token"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn grpc_call_without_token_is_unauthenticated_and_succeeds_with_one() {
        let endpoint = Endpoint::new();
        let url = health_server(
            JwtValidateLayer::new()
                .issuer(our_keys(&endpoint))
                .audience(CLIENT_ID),
        )
        .await;
        let mut client = client(url).await;

        let status = client.check(check(None)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "no bearer token");

        let status = client.check(check(Some("not.a.token"))).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);

        let token = token(&endpoint, "read").await;
        let response = client.check(check(Some(&token))).await.unwrap();
        assert_eq!(
            response.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    #[tokio::test]
    async fn grpc_call_without_required_scope_is_permission_denied() {
        let endpoint = Endpoint::new();
        let url = health_server(
            JwtValidateLayer::new()
                .issuer(our_keys(&endpoint))
                .audience(CLIENT_ID)
                .require_scopes(["write"])
                .unwrap(),
        )
        .await;
        let mut client = client(url).await;
        let token = token(&endpoint, "read").await;
        let status = client.check(check(Some(&token))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
}
