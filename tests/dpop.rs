//! DPoP (RFC 9449): each §4.3 proof rule, refused at the token endpoint and
//! at the validator (one named row per rule), each §7.1 answer, downgrades
//! refused, nonces, `require_dpop`, replay across two instances sharing
//! Redis, and a client nobody here wrote (`requests_oauth2client`) over HTTP.

mod common;
#[path = "dpop/support.rs"]
mod support;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use jsonwebtoken::Algorithm;
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt as _, service_fn};
use tower_m2m_auth::keys::dpop::DpopNonces;
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer, VerifiedClaims};

use common::{APP_SECRET, Answer, CLIENT_ID, Endpoint, Post, application, check_rows};
use support::{DpopKey, PROOF_RULES, now, proof_headers};

const TOKEN_PATH: &str = "/application/o/token/";

/// A token request with the test account's password and these `DPoP`
/// header values.
fn token_request(endpoint: &Endpoint, proofs: &[String]) -> Request<Body> {
    let form = endpoint.password_form();
    let mut request = Post::form(&form).request(TOKEN_PATH, &[]);
    for proof in proofs {
        request.headers_mut().append("dpop", proof.parse().unwrap());
    }
    request
}

/// The `error_description` of an error answer.
fn description(answer: &Answer) -> String {
    answer.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// ---- the token endpoint --------------------------------------------------------

#[tokio::test]
async fn token_endpoint_refuses_each_broken_proof_with_invalid_dpop_proof() {
    check_rows(PROOF_RULES, |(rule, breaker, wanted)| async move {
        let endpoint = Endpoint::new();
        let key = DpopKey::new();
        let proofs = proof_headers(&key, "POST", &endpoint.token_url(), None, *breaker);
        let answer = endpoint.send(token_request(&endpoint, &proofs)).await;
        assert_eq!(answer.status, 400, "{rule}: {}", answer.text());
        assert_eq!(answer.json()["error"], "invalid_dpop_proof", "{rule}");
        assert_eq!(description(&answer), *wanted, "{rule}");
    })
    .await;
}

#[tokio::test]
async fn a_valid_proof_gets_a_dpop_bound_token() {
    let endpoint = Endpoint::new();
    let key = DpopKey::new();
    // Query and fragment are ignored, scheme and host compared normalized.
    let htu = endpoint.token_url().replace("http://", "HTTP://") + "?x=1";
    let proof = key.proof("POST", &htu, None);
    let answer = endpoint.send(token_request(&endpoint, &[proof])).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["token_type"], "DPoP");
    let claims = endpoint.claims(&json).await;
    assert_eq!(claims["cnf"], json!({"jkt": key.thumbprint()}));

    // Introspection reports the binding.
    let token = json["access_token"].as_str().unwrap();
    let form = [("token", token)];
    let post = Post::form(&form).basic(CLIENT_ID, APP_SECRET);
    let answer = endpoint
        .send(post.request("/application/o/introspect/", &[]))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["cnf"]["jkt"], key.thumbprint());
    // It is used with the DPoP scheme, not as a bearer token (RFC 9449 §6).
    assert_eq!(answer.json()["token_type"], "DPoP");
}

#[tokio::test]
async fn without_a_proof_the_token_is_a_bearer_token() {
    let endpoint = Endpoint::new();
    let answer = endpoint.send(token_request(&endpoint, &[])).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["token_type"], "Bearer");
    assert!(endpoint.claims(&answer.json()).await.get("cnf").is_none());
}

#[tokio::test]
async fn a_proof_is_spent_by_its_first_token_request() {
    let endpoint = Endpoint::new();
    let proof = DpopKey::new().proof("POST", &endpoint.token_url(), None);
    let first = endpoint
        .send(token_request(&endpoint, std::slice::from_ref(&proof)))
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let again = endpoint.send(token_request(&endpoint, &[proof])).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"], "invalid_dpop_proof");
    assert_eq!(description(&again), "the DPoP proof was used before");
}

#[tokio::test]
async fn require_dpop_refuses_a_request_without_a_proof() {
    let endpoint =
        Endpoint::with_application(Algorithm::ES256, application().require_dpop(), |l| l);
    let answer = endpoint.send(token_request(&endpoint, &[])).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["error"], "invalid_dpop_proof");
    assert_eq!(description(&answer), "the request has no DPoP proof");
    let proof = DpopKey::new().proof("POST", &endpoint.token_url(), None);
    let answer = endpoint.send(token_request(&endpoint, &[proof])).await;
    assert_eq!(answer.json()["token_type"], "DPoP");
}

#[tokio::test]
async fn metadata_lists_the_dpop_algorithms() {
    let endpoint = Endpoint::new();
    let answer = endpoint
        .get(&format!(
            "/application/o/{}/.well-known/openid-configuration",
            common::SLUG
        ))
        .await;
    let algs = &answer.json()["dpop_signing_alg_values_supported"];
    assert!(algs.as_array().unwrap().contains(&json!("ES256")), "{algs}");
    assert!(
        !algs.as_array().unwrap().contains(&json!("HS256")),
        "{algs}"
    );
}

#[tokio::test]
async fn server_nonces_are_required_then_accepted() {
    let nonces = DpopNonces::new(&[7; 32], Duration::from_secs(300)).unwrap();
    let endpoint = Endpoint::with(Algorithm::ES256, |layer| layer.dpop_nonces(nonces));
    let key = DpopKey::new();
    let htu = endpoint.token_url();

    // No nonce: use_dpop_nonce, with one to use.
    let answer = endpoint
        .send(token_request(&endpoint, &[key.proof("POST", &htu, None)]))
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"], "use_dpop_nonce");
    let nonce = answer.header("dpop-nonce").to_owned();
    assert!(!nonce.is_empty());

    // A forged nonce: the same.
    let (header, mut claims) = key.parts("POST", &htu, None);
    claims["nonce"] = format!("{}A", &nonce[..nonce.len() - 1]).into();
    let answer = endpoint
        .send(token_request(&endpoint, &[key.sign(&header, &claims)]))
        .await;
    assert_eq!(
        answer.json()["error"],
        "use_dpop_nonce",
        "{}",
        answer.text()
    );

    // The server's nonce: a bound token, and a fresh nonce.
    let (header, mut claims) = key.parts("POST", &htu, None);
    claims["nonce"] = nonce.into();
    let answer = endpoint
        .send(token_request(&endpoint, &[key.sign(&header, &claims)]))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["token_type"], "DPoP");
    assert!(!answer.header("dpop-nonce").is_empty());
}

/// Where `ops` takes a token of the demo account for a new one (the form
/// that `fields` makes of it), a DPoP-bound token is refused with `error`
/// and an unbound token of the same account passes: a bound token never
/// gets an unbound bearer successor.
async fn only_unbound_tokens_get_successors(
    ops: tower_m2m_auth::issuer::Application,
    fields: impl Fn(&str) -> Vec<(&'static str, String)>,
    error: &str,
) {
    let endpoint = Endpoint::with(Algorithm::ES256, |layer| layer.application(ops).unwrap());
    endpoint.store.bind(
        common::USERNAME,
        tower_m2m_auth::store::Binding::new("ops-client", ["read"]),
    );
    let proof = DpopKey::new().proof("POST", &endpoint.token_url(), None);
    for (proofs, refused) in [(vec![proof], true), (vec![], false)] {
        let token = endpoint
            .send(token_request(&endpoint, &proofs))
            .await
            .json();
        let form = fields(token["access_token"].as_str().unwrap());
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = endpoint.post_form(&form).await;
        if refused {
            assert_eq!(answer.status, 400, "{}", answer.text());
            assert_eq!(answer.json()["error"], error);
        } else {
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
    }
}

#[tokio::test]
async fn a_bound_token_is_no_subject_token_of_an_exchange() {
    use tower_m2m_auth::issuer::{Application, TokenExchange};
    const OPS_SECRET: &str = "ops-client-secret-0123456789abcdef";
    let ops = Application::new("ops-client", "ops")
        .with_client_secret(OPS_SECRET)
        .with_allowed_scopes(["read"])
        .with_token_exchange(TokenExchange::new().accept_tokens_of(CLIENT_ID));
    let exchange = |token: &str| {
        vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            ("client_id", "ops-client".to_owned()),
            ("client_secret", OPS_SECRET.to_owned()),
            ("subject_token", token.to_owned()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_owned(),
            ),
        ]
    };
    only_unbound_tokens_get_successors(ops, exchange, "invalid_request").await;
}

#[tokio::test]
async fn a_bound_token_cannot_be_traded_for_an_unbound_one() {
    use tower_m2m_auth::issuer::Application;
    let ops = Application::new("ops-client", "ops")
        .with_allowed_scopes(["read"])
        .with_federated_application(CLIENT_ID);
    let trade = |token: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", "ops-client".to_owned()),
            ("client_assertion_type", common::JWT_BEARER.to_owned()),
            ("client_assertion", token.to_owned()),
            ("scope", "read".to_owned()),
        ]
    };
    only_unbound_tokens_get_successors(ops, trade, "invalid_client").await;
}

// ---- the validator -------------------------------------------------------------

const ISS: &str = "https://auth.example.com/application/o/app/";
const API: &str = "http://api.example/orders";

/// A validator around a handler that answers the bound key's thumbprint.
struct Api {
    ring: KeyRing,
    layer: JwtValidateLayer,
}

impl Api {
    fn new() -> Self {
        let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
        let layer = JwtValidateLayer::new()
            .issuer(Issuer::with_jwks(ISS, &ring.jwks()))
            .audience("api")
            .dpop_origin("http://api.example")
            .unwrap();
        Self { ring, layer }
    }

    /// An access token, bound to `key` if given.
    fn token(&self, key: Option<&DpopKey>) -> String {
        let mut claims =
            json!({"iss": ISS, "aud": "api", "sub": "svc", "exp": now() + 600, "scope": "read"});
        if let Some(key) = key {
            claims["cnf"] = json!({"jkt": key.thumbprint()});
        }
        self.ring
            .active()
            .sign_jwt(Some("at+jwt"), &claims)
            .unwrap()
    }

    /// `GET /orders` on host `api.example` with this `Authorization` and
    /// these `DPoP` headers.
    async fn get(&self, authorization: &str, proofs: &[String]) -> Answer {
        self.get_at("api.example", authorization, proofs).await
    }

    /// [`get`](Self::get), with this `Host` header.
    async fn get_at(&self, host: &str, authorization: &str, proofs: &[String]) -> Answer {
        let service = ServiceBuilder::new()
            .layer(self.layer.clone())
            .service(service_fn(|request: Request<Body>| async move {
                let claims = request.extensions().get::<VerifiedClaims>().unwrap();
                let jkt = claims.dpop_thumbprint().unwrap_or("none").to_owned();
                Ok::<_, Infallible>(axum::response::Response::new(Body::from(jkt)))
            }));
        let mut request = Request::get("/orders").header("host", host);
        if !authorization.is_empty() {
            request = request.header("authorization", authorization);
        }
        for proof in proofs {
            request = request.header("dpop", proof);
        }
        Answer::of(
            service
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap(),
        )
        .await
    }
}

/// The §7.1 challenge for `error` (with its description).
fn dpop_challenge(error: &str, description: &str) -> String {
    format!(
        r#"DPoP realm="api", error="{error}", error_description="{description}", algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#
    )
}

/// A row at the validator: a bound token with the row's proof is refused
/// with `invalid_dpop_proof` and the row's rule.
async fn refused_by_the_validator(row: &'static (&'static str, support::Breaker, &'static str)) {
    let (rule, breaker, wanted) = row;
    let api = Api::new();
    let key = DpopKey::new();
    let token = api.token(Some(&key));
    let proofs = proof_headers(&key, "GET", API, Some(&token), *breaker);
    let answer = api.get(&format!("DPoP {token}"), &proofs).await;
    assert_eq!(answer.status, 401, "{rule}");
    assert_eq!(
        answer.header("www-authenticate"),
        dpop_challenge("invalid_dpop_proof", wanted),
        "{rule}"
    );
}

#[tokio::test]
async fn validator_refuses_each_broken_proof_with_a_dpop_challenge() {
    check_rows(PROOF_RULES, refused_by_the_validator).await;
}

/// The validator's own rules: the proof is of this token, by its key, once.
const BINDING_RULES: &[(&str, support::Breaker, &str)] = &[
    (
        "proof_without_ath_is_refused",
        |_, _, claims| {
            claims.as_object_mut().unwrap().remove("ath");
            None
        },
        "the DPoP proof's ath does not match the access token",
    ),
    (
        "ath_of_another_token_is_refused",
        |_, _, claims| {
            claims["ath"] = tower_m2m_auth::keys::dpop::token_hash("another").into();
            None
        },
        "the DPoP proof's ath does not match the access token",
    ),
    (
        "proof_by_another_key_is_refused",
        |_, _, claims| {
            let other = DpopKey::new();
            let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": other.jwk()});
            Some(vec![other.sign(&header, claims)])
        },
        "the DPoP proof's key is not the key the access token is bound to",
    ),
    (
        "request_without_a_proof_is_refused",
        |_, _, _| Some(vec![]),
        "the request has no DPoP proof",
    ),
];

#[tokio::test]
async fn validator_refuses_a_proof_not_bound_to_the_token() {
    check_rows(BINDING_RULES, refused_by_the_validator).await;
}

#[tokio::test]
async fn a_bound_token_with_its_proof_passes_once_per_proof() {
    let api = Api::new();
    let key = DpopKey::new();
    let token = api.token(Some(&key));
    let proof = key.proof("GET", API, Some(&token));
    let answer = api
        .get(&format!("DPoP {token}"), std::slice::from_ref(&proof))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.headers);
    assert_eq!(answer.text(), key.thumbprint(), "the handler sees cnf.jkt");
    // A fresh proof: passes again (the token is cached now).
    let fresh = key.proof("GET", API, Some(&token));
    assert_eq!(
        api.get(&format!("DPoP {token}"), &[fresh]).await.status,
        200
    );
    // The same proof again: a replay.
    let answer = api.get(&format!("DPoP {token}"), &[proof]).await;
    assert_eq!(
        answer.header("www-authenticate"),
        dpop_challenge("invalid_dpop_proof", "the DPoP proof was used before")
    );
}

#[tokio::test]
async fn bearer_use_of_a_bound_token_is_refused() {
    let api = Api::new();
    let key = DpopKey::new();
    let token = api.token(Some(&key));
    let wanted = dpop_challenge(
        "invalid_token",
        "the token is DPoP-bound: present it with the DPoP scheme and a proof",
    );
    // Before and after the token is in the verified-token cache.
    let answer = api.get(&format!("Bearer {token}"), &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("www-authenticate"), wanted);
    let proof = key.proof("GET", API, Some(&token));
    assert_eq!(
        api.get(&format!("DPoP {token}"), &[proof]).await.status,
        200
    );
    let proof = key.proof("GET", API, Some(&token));
    let answer = api.get(&format!("Bearer {token}"), &[proof]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("www-authenticate"), wanted);
}

#[tokio::test]
async fn dpop_use_of_an_unbound_token_is_refused() {
    let api = Api::new();
    let key = DpopKey::new();
    let token = api.token(None);
    let proof = key.proof("GET", API, Some(&token));
    let answer = api.get(&format!("DPoP {token}"), &[proof]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.header("www-authenticate"),
        dpop_challenge(
            "invalid_token",
            "the token is not DPoP-bound: present it with the Bearer scheme"
        )
    );
    // The same token as a bearer token passes.
    assert_eq!(api.get(&format!("Bearer {token}"), &[]).await.status, 200);
}

#[tokio::test]
async fn an_invalid_token_with_the_dpop_scheme_gets_a_dpop_challenge() {
    let api = Api::new();
    let key = DpopKey::new();
    let token = Api::new().token(Some(&key));
    let proof = key.proof("GET", API, Some(&token));
    let answer = api.get(&format!("DPoP {token}"), &[proof]).await;
    assert_eq!(answer.status, 401);
    assert!(
        answer
            .header("www-authenticate")
            .starts_with(r#"DPoP realm="api", error="invalid_token""#),
        "{}",
        answer.header("www-authenticate")
    );
}

#[tokio::test]
async fn a_request_without_a_token_gets_a_bearer_and_a_dpop_challenge() {
    let answer = Api::new().get("", &[]).await;
    assert_eq!(answer.status, 401);
    let challenges: Vec<&str> = answer
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        challenges,
        [
            r#"Bearer realm="api""#,
            r#"DPoP realm="api", algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#
        ]
    );
}

#[tokio::test]
async fn validator_nonces_are_required_then_accepted() {
    let mut api = Api::new();
    let nonces = DpopNonces::new(&[3; 32], Duration::from_secs(60)).unwrap();
    api.layer = api.layer.dpop_nonces(nonces);
    let key = DpopKey::new();
    let token = api.token(Some(&key));
    let authorization = format!("DPoP {token}");

    let proof = key.proof("GET", API, Some(&token));
    let answer = api.get(&authorization, &[proof]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.header("www-authenticate"),
        dpop_challenge(
            "use_dpop_nonce",
            "the DPoP proof must carry the nonce of the DPoP-Nonce header"
        )
    );
    let nonce = answer.header("dpop-nonce").to_owned();
    assert!(!nonce.is_empty());

    let (header, mut claims) = key.parts("GET", API, Some(&token));
    claims["nonce"] = nonce.into();
    let answer = api.get(&authorization, &[key.sign(&header, &claims)]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.headers);
}

#[tokio::test]
async fn the_expected_htu_comes_from_configuration_never_from_the_host_header() {
    // A proof made for another host's API, sent here with that host's name.
    let key = DpopKey::new();
    let mut api = Api::new();
    let token = api.token(Some(&key));
    let authorization = format!("DPoP {token}");
    let elsewhere = || key.proof("GET", "http://billing.example/orders", Some(&token));
    async fn forged(api: &Api, authorization: &str, proof: String) -> Answer {
        api.get_at("billing.example", authorization, &[proof]).await
    }
    assert_eq!(
        forged(&api, &authorization, elsewhere()).await.status,
        401,
        "with a configured origin"
    );
    // Without an origin, a DPoP request is refused whatever its Host...
    let ring = api.ring.clone();
    api.layer = JwtValidateLayer::new()
        .issuer(Issuer::with_jwks(ISS, &ring.jwks()))
        .audience("api");
    let answer = forged(&api, &authorization, elsewhere()).await;
    assert_eq!(answer.status, 401, "without an origin");
    let proof = key.proof("GET", API, Some(&token));
    assert_eq!(
        api.get(&format!("DPoP {token}"), &[proof]).await.status,
        401
    );
    // ...unless the layer is told to trust the request's (the old default).
    api.layer = api.layer.clone().danger_dpop_origin_from_request();
    let answer = forged(&api, &authorization, elsewhere()).await;
    assert_eq!(answer.status, 200, "the danger switch");
}

#[tokio::test]
async fn dpop_origin_names_the_external_url_behind_a_proxy() {
    let mut api = Api::new();
    api.layer = api
        .layer
        .dpop_origin("https://API.example.com:443/")
        .unwrap();
    let key = DpopKey::new();
    let token = api.token(Some(&key));
    let outside = key.proof("GET", "https://api.example.com/orders", Some(&token));
    assert_eq!(
        api.get(&format!("DPoP {token}"), &[outside]).await.status,
        200
    );
    let inside = key.proof("GET", API, Some(&token));
    assert_eq!(
        api.get(&format!("DPoP {token}"), &[inside]).await.status,
        401
    );
    assert!(
        JwtValidateLayer::new()
            .dpop_origin("https://a.example/path")
            .is_err()
    );
}

// ---- several instances, and a client nobody here wrote -------------------------

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_proof_spent_on_one_instance_is_refused_by_another_sharing_redis() {
    use tower_m2m_auth::store::RedisStore;
    let url = std::env::var("TOWER_M2M_AUTH_REDIS_URL").expect(
        "set TOWER_M2M_AUTH_REDIS_URL for the Redis tests (.ci/run starts a server and sets it)",
    );
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let redis = || async {
        RedisStore::connect(&url)
            .await
            .unwrap()
            .with_prefix(&prefix)
    };
    // Two token endpoints at the same URL, each with its own connection.
    let (a, b) = (redis().await, redis().await);
    let one = Endpoint::with(Algorithm::ES256, |layer| layer.replay_cache(a));
    let two = Endpoint::with(Algorithm::ES256, |layer| layer.replay_cache(b));
    let key = DpopKey::new();
    let proof = key.proof("POST", &one.token_url(), None);
    let answer = one
        .send(token_request(&one, std::slice::from_ref(&proof)))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = two.send(token_request(&two, &[proof])).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(description(&answer), "the DPoP proof was used before");

    // Two validators.
    let first = Api::new();
    let mut second = Api {
        ring: first.ring.clone(),
        layer: first.layer.clone(),
    };
    let first = Api {
        layer: first.layer.dpop_replay_cache(redis().await),
        ..first
    };
    second.layer = second.layer.dpop_replay_cache(redis().await);
    let token = first.token(Some(&key));
    let proof = key.proof("GET", API, Some(&token));
    let authorization = format!("DPoP {token}");
    assert_eq!(
        first
            .get(&authorization, std::slice::from_ref(&proof))
            .await
            .status,
        200
    );
    let answer = second.get(&authorization, &[proof]).await;
    assert_eq!(
        answer.header("www-authenticate"),
        dpop_challenge("invalid_dpop_proof", "the DPoP proof was used before")
    );
}

/// `requests_oauth2client` gets a bound token from the endpoint (an
/// application that requires DPoP, server nonces required: the client must
/// take the nonce from the `use_dpop_nonce` answer) and calls an API behind
/// `JwtValidateLayer` (which requires nonces too) with it, all over HTTP on
/// 127.0.0.1. Skipped only when `python3` is missing; `.ci/run` installs the
/// package.
#[cfg(feature = "axum")]
#[tokio::test]
async fn requests_oauth2client_gets_a_bound_token_and_calls_the_api() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("python3 is missing: skipping the DPoP interop test");
        return;
    }
    let server =
        common::start_with_application(Algorithm::ES256, application().require_dpop(), |layer| {
            // Server nonces too: the client must answer use_dpop_nonce.
            layer.dpop_nonces(DpopNonces::new(&[9; 32], Duration::from_secs(60)).unwrap())
        })
        .await;
    let layer = JwtValidateLayer::new()
        .issuer(Issuer::with_jwks(server.issuer(), &server.keys.jwks()))
        .audience(CLIENT_ID)
        .dpop_nonces(DpopNonces::new(&[5; 32], Duration::from_secs(60)).unwrap());
    let api = |base: &str| {
        axum::Router::new()
            .route(
                "/orders",
                axum::routing::get(|claims: VerifiedClaims| async move {
                    claims.dpop_thumbprint().unwrap_or("unbound").to_owned()
                }),
            )
            .layer(layer.dpop_origin(base).unwrap())
    };
    let api_url = format!("{}/orders", common::serve(api).await);

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/interop/dpop_client.py"
    );
    let output = tokio::process::Command::new("python3")
        .args([script, &server.token_url(), CLIENT_ID, APP_SECRET, &api_url])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["token_type"], "DPoP", "{result}");
    assert_eq!(result["statuses"], json!([200, 200]), "{result}");
    assert_eq!(
        result["body"].as_str().unwrap().len(),
        43,
        "a jkt: {result}"
    );
    assert_eq!(result["downgrade_status"], 401, "{result}");
    assert!(
        result["downgrade_challenge"]
            .as_str()
            .unwrap()
            .starts_with(r#"DPoP realm="api", error="invalid_token""#),
        "{result}"
    );
}
