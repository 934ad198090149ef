//! Fixtures and oracles shared by the fuzz targets.
//!
//! Every target drives a public entry point of `tower-m2m-auth` with real
//! keys configured (an ES256 key ring on the issuer, an ES256 key for the
//! trusted CI issuer's input JWTs), in process, on a single-threaded tokio
//! runtime. The oracles: no panic; every input finishes within
//! [`TIME_LIMIT`] (and libFuzzer's `-timeout` catches a synchronous hang);
//! every answer is well formed (RFC 6749 §5.2 JSON, an RFC 6750
//! `WWW-Authenticate` challenge, or a success whose token verifies); and no
//! answer echoes a secret.
//!
//! Fuzz inputs may hold placeholders that are replaced before use, so that
//! the fuzzer reaches the success paths without guessing secrets:
//! `$SECRET` (the application's client secret), `$PASSWORD` (the service
//! account's app password), `$BASIC` (`Basic` credentials of the
//! application), `$TOKEN` (an access token the endpoint minted; `$REVOCABLE`
//! another, for revocation), `$JWT` (a
//! valid input JWT of the CI issuer), `$NOW` / `$EXP` (now, now + 300 s in
//! seconds) and `$JTI` (a fresh `jti`).

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower::util::BoxCloneService;
use tower_m2m_auth::issuer::{Application, TokenEndpointLayer};
use tower_m2m_auth::keys::{
    Algorithm, KeyRing, KeySet, SigningKey, TrustedIssuer, VerificationKey, VerificationKeys,
};
use tower_m2m_auth::store::{AppPassword, Binding, MemoryStore, ServiceAccount};
use tower_m2m_auth::validate::{Issuer as ValidatedIssuer, JwtValidateLayer};

/// The placeholders, longest first where one is a prefix of another.
const PLACEHOLDERS: [&str; 10] = [
    "$SECRET",
    "$PASSWORD",
    "$BASIC",
    "$REVOCABLE",
    "$TOKEN",
    "$JWT",
    "$NOW",
    "$EXP",
    "$JTI",
    "$ISS",
];

/// The longest one input may take.
pub const TIME_LIMIT: Duration = Duration::from_secs(5);
/// The issuer's base URL.
pub const BASE: &str = "https://auth.example";
/// The application that service accounts log in at.
pub const CLIENT_ID: &str = "app";
/// Its slug.
pub const SLUG: &str = "app";
/// Its client secret.
pub const CLIENT_SECRET: &str = "app-client-secret-0123456789abcdef";
/// Its scopes.
pub const APP_SCOPES: [&str; 3] = ["read", "write", "openid"];
/// The service account bound to [`CLIENT_ID`].
pub const USERNAME: &str = "svc";
/// The scopes of its binding.
pub const BOUND_SCOPES: [&str; 2] = ["read", "openid"];
/// The application that trades CI input JWTs.
pub const CI_CLIENT: &str = "ci";
/// The CI platform's issuer (`iss` of input JWTs).
pub const CI_ISSUER: &str = "https://ci.example";
/// The audience input JWTs must name.
pub const CI_AUDIENCE: &str = "https://auth.example";
/// The token endpoint's paths.
pub const TOKEN_PATH: &str = "/application/o/token/";
/// Introspection.
pub const INTROSPECT_PATH: &str = "/application/o/introspect/";
/// Revocation.
pub const REVOKE_PATH: &str = "/application/o/revoke/";

/// The single-threaded runtime every target runs on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}

/// Runs `future` to completion; an input that takes longer than
/// [`TIME_LIMIT`] is a finding (a hang).
pub fn run<F: Future>(future: F) -> F::Output {
    runtime().block_on(async {
        tokio::time::timeout(TIME_LIMIT, future)
            .await
            .expect("hang: the input took longer than the time limit")
    })
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh `jti`.
pub fn fresh_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}-{}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The issuer's HTTP service: the token endpoint over an inner service
/// that answers `200 inner`.
pub type Service = BoxCloneService<Request<Full<Bytes>>, Response<Bytes>, Infallible>;

/// The issuer under test and what it was configured with.
pub struct Issuer {
    /// The endpoint (and its inner service).
    pub service: Service,
    /// Its signing keys.
    pub ring: KeyRing,
    /// The service account's app password.
    pub password: String,
    /// The key the CI issuer signs input JWTs with (trusted by [`CI_CLIENT`]).
    pub ci_key: SigningKey,
    /// A key nobody trusts.
    pub stranger: SigningKey,
    /// An access token the endpoint minted for the service account.
    pub access_token: String,
    /// Another one, for revocation (`$REVOCABLE`).
    pub revocable: String,
}

thread_local! {
    static ISSUER: RefCell<Option<&'static Issuer>> = const { RefCell::new(None) };
}

/// The issuer, built once per process.
pub fn issuer() -> &'static Issuer {
    ISSUER.with(|cell| {
        *cell
            .borrow_mut()
            .get_or_insert_with(|| Box::leak(Box::new(build_issuer())))
    })
}

fn build_issuer() -> Issuer {
    let store = MemoryStore::new();
    let account = ServiceAccount::new(USERNAME);
    let (password, app_password) = AppPassword::generate(&account.id);
    store.insert_account(account);
    store.insert_app_password(app_password);
    store.bind(USERNAME, Binding::new(CLIENT_ID, BOUND_SCOPES));

    // A rotated ring: an old key still published, the active one signing.
    let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap())
        .with_published(SigningKey::generate(Algorithm::EdDSA).unwrap());
    let ci_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let stranger = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(ci_key.kid());
    let ci_public = VerificationKey::from_jwk(ci_key.public_jwk().unwrap()).unwrap();

    let layer = TokenEndpointLayer::new(BASE, ring.clone(), store)
        .unwrap()
        .application(
            Application::new(CLIENT_ID, SLUG)
                .with_client_secret(CLIENT_SECRET)
                .with_allowed_scopes(APP_SCOPES),
        )
        .unwrap()
        .application(
            Application::new(CI_CLIENT, "ci")
                .with_allowed_scopes(["deploy"])
                .with_verification_keys(
                    VerificationKeys::new()
                        .with_issuer(TrustedIssuer::new(CI_ISSUER).with_key(ci_public)),
                )
                .with_assertion_audiences([CI_AUDIENCE])
                .with_single_use_assertions(true),
        )
        .unwrap()
        .body_timeout(Duration::from_secs(1));
    let inner = tower::service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
    });
    let endpoint = tower::Layer::layer(&layer, inner);
    let service = BoxCloneService::new(endpoint.and_then(collect));
    let password = password.expose_secret().to_owned();
    let access_token = run(mint(&service, &password));
    let revocable = run(mint(&service, &password));
    Issuer {
        service,
        ring,
        password,
        ci_key,
        stranger,
        access_token,
        revocable,
    }
}

/// A response with its body read.
async fn collect<B>(response: Response<B>) -> Result<Response<Bytes>, Infallible>
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the body reads").to_bytes();
    Ok(Response::from_parts(parts, body))
}

async fn mint(service: &Service, password: &str) -> String {
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("username", USERNAME),
        ("password", password),
        ("scope", "read"),
    ]);
    let request = Request::post(TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200, "the fixture's login works");
    let json: Value = serde_json::from_slice(response.body()).unwrap();
    json["access_token"].as_str().unwrap().to_owned()
}

/// A form body.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Issuer {
    /// A valid input JWT of the CI issuer.
    pub fn ci_jwt(&self) -> String {
        let now = now();
        self.ci_key
            .sign_jwt(
                Some("JWT"),
                &json!({
                    "iss": CI_ISSUER, "sub": "repo:org/app", "aud": CI_AUDIENCE,
                    "iat": now, "exp": now + 300, "jti": fresh_jti(),
                }),
            )
            .unwrap()
    }

    /// `input` with its placeholders replaced.
    pub fn expand(&self, input: &[u8]) -> Vec<u8> {
        if !input.contains(&b'$') {
            return input.to_vec();
        }
        let mut out = input.to_vec();
        for placeholder in PLACEHOLDERS {
            if contains(&out, placeholder.as_bytes()) {
                let value = self.placeholder(placeholder);
                out = replace(&out, placeholder.as_bytes(), value.as_bytes());
            }
        }
        out
    }

    /// The value of a placeholder, made only when the input has it.
    fn placeholder(&self, name: &str) -> String {
        match name {
            "$SECRET" => CLIENT_SECRET.to_owned(),
            "$PASSWORD" => self.password.clone(),
            "$BASIC" => format!(
                "Basic {}",
                STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
            ),
            "$REVOCABLE" => self.revocable.clone(),
            "$TOKEN" => self.access_token.clone(),
            "$JWT" => self.ci_jwt(),
            "$NOW" => now().to_string(),
            "$EXP" => (now() + 300).to_string(),
            "$JTI" => fresh_jti(),
            "$ISS" => CI_ISSUER.to_owned(),
            _ => String::new(),
        }
    }

    /// Secrets that no answer may contain.
    pub fn secrets(&self) -> [&[u8]; 2] {
        [CLIENT_SECRET.as_bytes(), self.password.as_bytes()]
    }
}

/// `haystack` with every `from` replaced by `to`.
pub fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Sends `request` to the issuer and checks the answer with the oracles.
pub async fn send_to_issuer(issuer: &Issuer, request: Request<Full<Bytes>>) -> Response<Bytes> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let used_basic = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().get(..6))
        .is_some_and(|s| s.eq_ignore_ascii_case(b"basic "));
    let response = issuer.service.clone().oneshot(request).await.unwrap();
    debug("issuer", &response);
    check_issuer_response(issuer, &method, &path, used_basic, &response);
    response
}

/// The oracle of an issuer's answer.
pub fn check_issuer_response(
    issuer: &Issuer,
    method: &Method,
    path: &str,
    used_basic: bool,
    response: &Response<Bytes>,
) {
    let body = response.body();
    for secret in issuer.secrets() {
        assert!(
            !contains(body, secret),
            "the answer echoes a secret: {response:?}"
        );
    }
    let form_route = [TOKEN_PATH, INTROSPECT_PATH, REVOKE_PATH].contains(&path);
    if form_route && method != Method::POST {
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "POST");
        return;
    }
    if !form_route {
        if response.status() == StatusCode::OK && body.as_ref() == b"inner" {
            return; // passed through to the inner service
        }
        // An endpoint document (JWKS, metadata), or 405.
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(response.headers()["allow"], "GET, HEAD");
        } else {
            assert_eq!(response.status(), StatusCode::OK, "{response:?}");
            assert_eq!(response.headers()["content-type"], "application/json");
            if *method != Method::HEAD {
                let _: Value = serde_json::from_slice(body).expect("a JSON document");
            }
        }
        return;
    }
    if response.status() != StatusCode::OK {
        check_oauth_error(response, used_basic);
        return;
    }
    assert_no_store(response);
    let json: Value = serde_json::from_slice(body).expect("a JSON success");
    match path {
        TOKEN_PATH => check_token_response(issuer, &json),
        INTROSPECT_PATH => assert!(json["active"].is_boolean(), "{json}"),
        _ => assert_eq!(json, json!({}), "a revocation answers {{}}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_store(response: &Response<Bytes>) {
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
}

/// RFC 6749 §5.2: a JSON object with a registered `error` code and an
/// `error_description` of the allowed characters; 401 with a Basic
/// challenge when the client used HTTP Basic.
pub fn check_oauth_error(response: &Response<Bytes>, used_basic: bool) {
    const CODES: [&str; 7] = [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "temporarily_unavailable",
    ];
    let status = response.status();
    assert!(
        [400, 401, 408, 413, 429].contains(&status.as_u16()),
        "unexpected status {status}: {response:?}"
    );
    assert_no_store(response);
    let json: Value = serde_json::from_slice(response.body()).expect("a JSON error");
    let code = json["error"].as_str().expect("an error code");
    assert!(CODES.contains(&code), "unregistered error code {code}");
    let description = json["error_description"].as_str().expect("a description");
    assert!(
        description
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
        "error_description has characters RFC 6749 §5.2 forbids: {description:?}"
    );
    if status == StatusCode::UNAUTHORIZED {
        assert!(used_basic, "401 only for HTTP Basic clients");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Basic "), "{challenge}");
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert!(response.headers().contains_key("retry-after"));
    }
}

/// A token response (RFC 6749 §5.1) whose access token verifies with the
/// issuer's keys and whose scopes are within the application's and, for
/// the service account, its binding's.
pub fn check_token_response(issuer: &Issuer, json: &Value) {
    assert_eq!(json["token_type"], "Bearer", "{json}");
    assert!(json["expires_in"].as_u64().is_some_and(|e| e > 0), "{json}");
    let token = json["access_token"].as_str().expect("an access token");
    let claims = verify_minted(issuer, token);
    let client_id = claims["client_id"].as_str().expect("client_id");
    let granted: Vec<&str> = json["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    let allowed: &[&str] = match client_id {
        CLIENT_ID if claims["preferred_username"] == USERNAME => &BOUND_SCOPES,
        CLIENT_ID => &APP_SCOPES,
        CI_CLIENT => &["deploy"],
        other => panic!("a token for an unknown client {other}"),
    };
    for scope in granted {
        assert!(
            allowed.contains(&scope),
            "scope {scope} granted beyond {allowed:?}"
        );
    }
    if let Some(id_token) = json["id_token"].as_str() {
        verify_minted(issuer, id_token);
    }
}

/// Verifies a token the issuer minted and returns its claims.
pub fn verify_minted(issuer: &Issuer, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("a JWS");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[
        format!("{BASE}/application/o/{SLUG}/"),
        format!("{BASE}/application/o/ci/"),
    ]);
    validation.set_audience(&[CLIENT_ID, CI_CLIENT]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    KeySet::from_jwks(&issuer.ring.jwks())
        .verify::<Value>(token, &validation)
        .expect("the minted token verifies with the published keys")
        .claims
}

/// A downstream service behind `JwtValidateLayer` that trusts the
/// issuer's published keys for application [`CLIENT_ID`], with or without
/// the verified-token cache.
pub fn downstream(issuer: &Issuer, cache: bool) -> Service {
    let layer = JwtValidateLayer::new()
        .issuer(
            ValidatedIssuer::with_jwks(
                format!("{BASE}/application/o/{SLUG}/"),
                &issuer.ring.jwks(),
            )
            .audience(CLIENT_ID),
        )
        .token_cache(if cache { 1_000 } else { 0 });
    downstream_with(layer)
}

/// The downstream services of [`downstream`], cache on and off, built once
/// per process (the cached one keeps its cache across inputs).
pub fn downstreams() -> (Service, Service) {
    thread_local! {
        static DOWNSTREAMS: (Service, Service) = (downstream(issuer(), true), downstream(issuer(), false));
    }
    DOWNSTREAMS.with(Clone::clone)
}

/// A downstream service behind `layer`, answering `200 ok`.
pub fn downstream_with(layer: JwtValidateLayer) -> Service {
    let inner = tower::service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let service = tower::Layer::layer(&layer, inner);
    BoxCloneService::new(service.and_then(collect))
}

/// A GET to the downstream service with these `Authorization` values.
pub async fn send_downstream(service: &Service, authorization: &[HeaderValue]) -> Response<Bytes> {
    let mut request = Request::get("/api").body(Full::default()).unwrap();
    for value in authorization {
        request
            .headers_mut()
            .append(http::header::AUTHORIZATION, value.clone());
    }
    let response = service.clone().oneshot(request).await.unwrap();
    debug("downstream", &response);
    check_bearer_response(&response);
    response
}

/// RFC 6750 §3: a refusal carries a well-formed `Bearer` (or RFC 9449 §7.1
/// `DPoP`) challenge (or, for 503, `Retry-After`).
pub fn check_bearer_response(response: &Response<Bytes>) {
    match response.status().as_u16() {
        200 => assert_eq!(response.body().as_ref(), b"ok"),
        503 => assert!(response.headers().contains_key("retry-after")),
        400 | 401 | 403 => {
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .expect("an ASCII challenge");
            check_bearer_challenge(challenge, response.status());
        }
        other => panic!("unexpected status {other}: {response:?}"),
    }
}

fn check_bearer_challenge(challenge: &str, status: StatusCode) {
    // A `DPoP`-scheme request (RFC 9449 §7.1) gets a `DPoP` challenge.
    let (params, dpop) = match challenge.strip_prefix("DPoP ") {
        Some(params) => (params, true),
        None => (
            challenge
                .strip_prefix("Bearer ")
                .unwrap_or_else(|| panic!("not a Bearer or DPoP challenge: {challenge}")),
            false,
        ),
    };
    let mut error = None;
    let mut rest = params;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("name=\"value\"");
        let end = after.find('"').expect("a closing quote");
        let value = &after[..end];
        assert!(
            value
                .bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
            "{challenge}"
        );
        if name == "error" {
            error = Some(value.to_owned());
        }
        rest = after[end + 1..].trim_start_matches(", ");
    }
    let expected = match status.as_u16() {
        400 => Some("invalid_request"),
        403 => Some("insufficient_scope"),
        _ => None,
    };
    match (error.as_deref(), expected) {
        (Some(code), Some(expected)) => assert_eq!(code, expected, "{challenge}"),
        (Some("invalid_dpop_proof"), None) if dpop => {}
        (Some(code), None) => assert_eq!(code, "invalid_token", "{challenge}"),
        (None, Some(_)) => panic!("{status} without an error code: {challenge}"),
        (None, None) => {}
    }
}

/// A compact JWS built from fuzzed parts. The text input is
/// `MODE\nHEADER\nCLAIMS\nSIGNATURE`: `v` signs with the trusted key, `u`
/// with an untrusted key under the trusted `kid`, `h` with HS256 keyed by
/// the trusted public key's JWK (key confusion), `r` takes the signature
/// from the last line (base64url, as given).
pub struct FuzzedJws {
    /// The compact JWS.
    pub token: String,
    /// Whether the trusted key signed it.
    pub trusted_signature: bool,
    /// The claims as sent (after placeholders).
    pub claims: Vec<u8>,
    /// The second character of the mode line, for the target's own use.
    pub variant: u8,
}

impl FuzzedJws {
    /// Builds a JWS from `data`, signing `v` inputs with `trusted` and `u`
    /// inputs with `untrusted`.
    pub fn build(
        issuer: &Issuer,
        data: &[u8],
        trusted: &SigningKey,
        untrusted: &SigningKey,
    ) -> Option<Self> {
        let mut parts = data.splitn(4, |b| *b == b'\n');
        let mode = parts.next()?;
        let header = issuer.expand(parts.next()?);
        let claims = issuer.expand(parts.next().unwrap_or_default());
        let signature = parts.next().unwrap_or_default();
        let mut token = URL_SAFE_NO_PAD.encode(&header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let (signature, trusted_signature) = match mode.first() {
            Some(b'v') => (sign(trusted, token.as_bytes()), true),
            Some(b'u') => (sign(untrusted, token.as_bytes()), false),
            Some(b'h') => {
                let secret = serde_json::to_vec(trusted.public_jwk()?).ok()?;
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
                let tag = aws_lc_rs::hmac::sign(&key, token.as_bytes());
                (URL_SAFE_NO_PAD.encode(tag.as_ref()), false)
            }
            _ => (String::from_utf8_lossy(signature).into_owned(), false),
        };
        token.push('.');
        token.push_str(&signature);
        Some(Self {
            token,
            trusted_signature,
            claims,
            variant: mode.get(1).copied().unwrap_or(b'a'),
        })
    }
}

/// The base64url signature of `signing_input` by `key` (a JWS's third
/// part), taken from a token the key signs over the same header and claims.
fn sign(key: &SigningKey, signing_input: &[u8]) -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    enum Pair {
        Ecdsa(EcdsaKeyPair),
        Ed25519(Ed25519KeyPair),
    }
    thread_local! {
        // Parsed once per key, not per input; known by its public JWK (two
        // keys may share a `kid`: the stranger poses as the trusted key).
        static PAIRS: RefCell<Vec<(String, std::rc::Rc<Pair>)>> = const { RefCell::new(Vec::new()) };
    }
    let identity = serde_json::to_string(key.public_jwk().expect("an asymmetric key")).unwrap();
    let pair = PAIRS.with(|pairs| {
        let mut pairs = pairs.borrow_mut();
        if let Some((_, pair)) = pairs.iter().find(|(known, _)| *known == identity) {
            return pair.clone();
        }
        // `SigningKey` signs claims it serializes itself; to sign arbitrary
        // bytes, rebuild the key as an aws-lc-rs key pair from its PKCS#8 form.
        let pem = key.to_pkcs8_pem().expect("an asymmetric key");
        let der = pem::parse(pem).expect("PEM").into_contents();
        let pair = std::rc::Rc::new(match key.algorithm() {
            Algorithm::ES256 => Pair::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap(),
            ),
            Algorithm::EdDSA => Pair::Ed25519(Ed25519KeyPair::from_pkcs8(&der).unwrap()),
            other => panic!("the fuzz keys are ES256 or EdDSA, not {other:?}"),
        });
        pairs.push((identity, pair.clone()));
        pair
    });
    match &*pair {
        Pair::Ecdsa(pair) => {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            URL_SAFE_NO_PAD.encode(pair.sign(&rng, signing_input).unwrap().as_ref())
        }
        Pair::Ed25519(pair) => URL_SAFE_NO_PAD.encode(pair.sign(signing_input).as_ref()),
    }
}

/// Asserts that `bytes` are a JSON text by RFC 8259's grammar: UTF-8, and
/// well-formed. (Not "parses as `serde_json::Value`": the grammar allows an
/// unpaired surrogate escape such as `"\udadd"`, RFC 8259 §8.2, which
/// `Value` refuses.)
pub fn assert_json(bytes: &[u8], what: &str) {
    let text =
        std::str::from_utf8(bytes).unwrap_or_else(|_| panic!("accepted {what} is not UTF-8"));
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .unwrap_or_else(|error| panic!("accepted {what} is not JSON: {error}"));
}

/// A header value from fuzzed bytes, if it is one.
pub fn header_value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

/// Adds `name: value` when both are valid.
pub fn add_header(headers: &mut HeaderMap, name: &[u8], value: &[u8]) {
    if let (Ok(name), Some(value)) = (HeaderName::from_bytes(name), header_value(value)) {
        headers.append(name, value);
    }
}

/// With `FUZZ_DEBUG` set, prints each answer (to see what seeds reach).
fn debug(side: &str, response: &Response<Bytes>) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some()) {
        eprintln!(
            "{side}: {} {:?} {}",
            response.status(),
            response.headers().get("www-authenticate"),
            String::from_utf8_lossy(&response.body()[..response.body().len().min(120)])
        );
    }
}
