//! The token endpoint. Its rules are tables, one row per rule, run in
//! process (`tower::ServiceExt::oneshot`) against a fresh endpoint per row;
//! what is about the wire (the oauth2 crate's client, streamed, announced
//! and slow bodies, streaming pass-through) runs over real HTTP at the end.

mod common;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::oneshot::FORM;
use common::*;
use jsonwebtoken::Algorithm;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tower_m2m_auth::issuer::SubjectMode;
use tower_m2m_auth::keys::SigningKey;
use tower_m2m_auth::store::{AppPassword, ServiceAccount, TokenDigest};

/// The placeholders of the tables: the test account's app password, and
/// `username:password` in base64 (authentik's client secret form).
fn vars(endpoint: &Endpoint) -> [(&'static str, String); 2] {
    [
        ("token", endpoint.token.clone()),
        (
            "token64",
            STANDARD.encode(format!("{USERNAME}:{}", endpoint.token)),
        ),
    ]
}

/// Posts `post` to a fresh endpoint (after `setup`), placeholders filled.
async fn run(post: &Post<'_>, setup: impl FnOnce(&Endpoint)) -> (Endpoint, Answer) {
    let endpoint = Endpoint::new();
    setup(&endpoint);
    let vars = vars(&endpoint);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answer = endpoint.post(post, &vars).await;
    (endpoint, answer)
}

// ---- refused requests ----------------------------------------------------------

/// A request the endpoint must refuse, and how (RFC 6749 §5.2).
struct Refused {
    name: &'static str,
    post: Post<'static>,
    status: u16,
    error: &'static str,
    /// The start of the `WWW-Authenticate` challenge, when one is due.
    challenge: Option<&'static str>,
}

const fn refused(name: &'static str, post: Post<'static>, error: &'static str) -> Refused {
    Refused {
        name,
        post,
        status: 400,
        error,
        challenge: None,
    }
}

const PASSWORD_FORM: &[(&str, &str)] = &[
    ("grant_type", "client_credentials"),
    ("client_id", CLIENT_ID),
    ("username", USERNAME),
    ("password", "{token}"),
];

const REFUSED: &[Refused] = &[
    refused(
        "rfc6749_4_4_2_missing_grant_type_is_invalid_request",
        Post::form(&[
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", "{token}"),
        ]),
        "invalid_request",
    ),
    refused(
        "rfc6749_3_1_empty_grant_type_counts_as_missing",
        Post::form(&[
            ("grant_type", ""),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", "{token}"),
        ]),
        "invalid_request",
    ),
    refused(
        "rfc6749_5_2_other_grant_type_is_unsupported_grant_type",
        Post::form(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", "{token}"),
        ]),
        "unsupported_grant_type",
    ),
    refused(
        "rfc6749_4_4_2_json_content_type_is_invalid_request",
        Post::raw(
            r#"{"grant_type":"client_credentials","client_id":"test-client"}"#,
            Some("application/json"),
        ),
        "invalid_request",
    ),
    refused(
        "rfc6749_4_4_2_missing_content_type_is_invalid_request",
        Post::form(PASSWORD_FORM).content_type(None),
        "invalid_request",
    ),
    refused(
        "rfc6749_3_2_duplicate_parameter_is_invalid_request",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", "{token}"),
            ("client_id", CLIENT_ID),
        ]),
        "invalid_request",
    ),
    refused(
        "rfc6749_appendix_b_malformed_form_body_is_invalid_request",
        Post::raw("grant_type=client_credentials&client_id=%FF%FE", Some(FORM)),
        "invalid_request",
    ),
    refused(
        "rfc6749_2_2_missing_client_id_is_invalid_request",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("username", USERNAME),
            ("password", "{token}"),
        ]),
        "invalid_request",
    ),
    refused(
        "username_without_password_is_invalid_request",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
        ]),
        "invalid_request",
    ),
    refused(
        "rfc6749_2_3_no_credentials_at_all_is_invalid_request",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
        ]),
        "invalid_request",
    ),
    refused(
        "rfc6749_5_2_unknown_client_id_is_invalid_client",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
            ("username", USERNAME),
            ("password", "{token}"),
        ]),
        "invalid_client",
    ),
    refused(
        "rfc6749_2_3_two_client_authentication_methods_are_invalid_request",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", APP_SECRET),
        ])
        .basic(CLIENT_ID, APP_SECRET),
        "invalid_request",
    ),
    refused(
        "client_secret_together_with_username_and_password_is_invalid_request",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", "{token}"),
            ("client_secret", APP_SECRET),
        ]),
        "invalid_request",
    ),
    refused(
        "rfc6749_5_2_wrong_app_password_is_invalid_grant_and_not_echoed",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", "{token}x"),
        ]),
        "invalid_grant",
    ),
    refused(
        "rfc6749_5_2_unknown_account_is_invalid_grant",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", "nobody"),
            ("password", "{token}"),
        ]),
        "invalid_grant",
    ),
    refused(
        "rfc6749_5_2_wrong_application_secret_is_invalid_client",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", "application-secret-wrong"),
        ]),
        "invalid_client",
    ),
    Refused {
        name: "rfc6749_5_2_failed_basic_authentication_is_401_with_www_authenticate",
        post: Post::raw("grant_type=client_credentials", Some(FORM))
            .basic(CLIENT_ID, "not-the-secret"),
        status: 401,
        error: "invalid_client",
        challenge: Some("Basic "),
    },
    Refused {
        name: "rfc6749_2_3_1_malformed_basic_header_is_401_invalid_client",
        post: Post::raw("grant_type=client_credentials", Some(FORM))
            .authorization("Basic !!!not-base64"),
        status: 401,
        error: "invalid_client",
        challenge: Some("Basic "),
    },
    refused(
        "rfc7523_3_2_client_assertion_without_configured_keys_is_invalid_client",
        Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", "a.b.c"),
        ]),
        "invalid_client",
    ),
];

#[tokio::test]
async fn refused_requests() {
    for rule in REFUSED {
        let (_, answer) = run(&rule.post, |_| {}).await;
        let name = rule.name;
        assert_eq!(
            answer.status,
            rule.status,
            "{name}: {}",
            answer.header("www-authenticate")
        );
        assert_eq!(answer.error(), rule.error, "{name}");
        match rule.challenge {
            Some(start) => assert!(
                answer.header("www-authenticate").starts_with(start),
                "{name}: {:?}",
                answer.headers
            ),
            None => assert_eq!(answer.header("www-authenticate"), "", "{name}"),
        }
    }
}

// ---- accepted requests ---------------------------------------------------------

/// A request the endpoint must answer with a token for `username`.
struct Accepted {
    name: &'static str,
    post: Post<'static>,
    username: &'static str,
}

const ACCEPTED: &[Accepted] = &[
    Accepted {
        name: "rfc6749_4_4_username_and_app_password_in_the_body",
        post: Post::form(PASSWORD_FORM),
        username: USERNAME,
    },
    Accepted {
        name: "password_grant_is_treated_as_client_credentials",
        post: Post::form(&[
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", "{token}"),
        ]),
        username: USERNAME,
    },
    Accepted {
        name: "base64_username_token_as_client_secret_in_body",
        post: Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", "{token64}"),
        ]),
        username: USERNAME,
    },
    Accepted {
        name: "application_secret_authenticates_as_automatic_service_account",
        post: Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", APP_SECRET),
        ]),
        username: "ak-test-client_credentials",
    },
    Accepted {
        name: "rfc6749_2_3_1_application_secret_in_http_basic",
        post: Post::raw("grant_type=client_credentials", Some(FORM)).basic(CLIENT_ID, APP_SECRET),
        username: "ak-test-client_credentials",
    },
    Accepted {
        name: "content_type_with_charset_is_accepted",
        post: Post::form(PASSWORD_FORM)
            .content_type(Some("application/x-www-form-urlencoded; charset=UTF-8")),
        username: USERNAME,
    },
];

#[tokio::test]
async fn accepted_requests() {
    for rule in ACCEPTED {
        let (endpoint, answer) = run(&rule.post, |_| {}).await;
        assert_token_for(rule.name, &endpoint, &answer, rule.username).await;
    }
}

/// Asserts (for the rule `name`) that `answer` holds a token of the test
/// application for `username`, verified by the endpoint's published keys.
async fn assert_token_for(name: &str, endpoint: &Endpoint, answer: &Answer, username: &str) {
    let challenge = answer.header("www-authenticate");
    assert_eq!(answer.status, 200, "{name}: {challenge}");
    let claims = endpoint.claims(&answer.json()).await;
    assert_eq!(claims["preferred_username"], username, "{name}");
}

// ---- account states --------------------------------------------------------------

/// A change to the store, then the test account's username and the
/// password (returned by `setup`) at the test application.
struct AccountState {
    name: &'static str,
    setup: fn(&Endpoint) -> (String, String),
    accepted: bool,
}

const ACCOUNT_STATES: &[AccountState] = &[
    AccountState {
        name: "another_accounts_token_is_invalid_grant",
        setup: |endpoint| {
            let (_, other) = endpoint.add_account("svc-other");
            (USERNAME.to_owned(), other)
        },
        accepted: false,
    },
    AccountState {
        name: "disabled_account_is_invalid_grant",
        setup: |endpoint| {
            assert!(endpoint.store.set_active(USERNAME, false));
            (USERNAME.to_owned(), endpoint.token.clone())
        },
        accepted: false,
    },
    AccountState {
        name: "expired_app_password_is_invalid_grant",
        setup: |endpoint| {
            let token = "expired-token-0123456789abcdef";
            endpoint.store.insert_app_password(
                AppPassword::new(&endpoint.account.id, TokenDigest::of(token))
                    .with_expires(SystemTime::now() - Duration::from_secs(1)),
            );
            (USERNAME.to_owned(), token.to_owned())
        },
        accepted: false,
    },
    AccountState {
        name: "revoked_app_password_is_invalid_grant",
        setup: |endpoint| {
            let digest = TokenDigest::of(&endpoint.token);
            assert!(endpoint.store.remove_app_password(&digest));
            (USERNAME.to_owned(), endpoint.token.clone())
        },
        accepted: false,
    },
    AccountState {
        name: "unbound_account_is_invalid_grant",
        setup: |endpoint| {
            let (_, token) = endpoint.add_unbound_account("svc-unbound");
            ("svc-unbound".to_owned(), token)
        },
        accepted: false,
    },
    AccountState {
        name: "second_token_of_an_account_also_authenticates",
        setup: |endpoint| {
            let (token, password) = AppPassword::generate(&endpoint.account.id);
            endpoint.store.insert_app_password(password);
            (USERNAME.to_owned(), token.expose_secret().to_owned())
        },
        accepted: true,
    },
    AccountState {
        name: "accounts_added_at_runtime_authenticate_immediately",
        setup: |endpoint| {
            let account = ServiceAccount::new("svc-late");
            let (token, password) = AppPassword::generate(&account.id);
            endpoint.store.insert_account(account);
            endpoint.store.insert_app_password(password);
            endpoint.store.bind("svc-late", all_scopes());
            ("svc-late".to_owned(), token.expose_secret().to_owned())
        },
        accepted: true,
    },
];

#[tokio::test]
async fn account_states() {
    for rule in ACCOUNT_STATES {
        let endpoint = Endpoint::new();
        let (username, password) = (rule.setup)(&endpoint);
        let post = Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", "{username}"),
            ("password", "{password}"),
        ]);
        let vars = [("username", username.as_str()), ("password", &password)];
        let answer = endpoint.post(&post, &vars).await;
        let name = rule.name;
        if rule.accepted {
            assert_token_for(name, &endpoint, &answer, &username).await;
            // The account's first token still works too.
            let first = endpoint.post_form(&endpoint.password_form()).await;
            assert_eq!(first.status, 200, "{name}");
        } else {
            assert_eq!(answer.status, 400, "{name}");
            assert_eq!(answer.error(), "invalid_grant", "{name}");
        }
    }
}

// ---- methods ---------------------------------------------------------------------

/// RFC 9110 §15.5.6: a method the resource does not allow is 405 with `Allow`.
const METHODS: &[(&str, &str, &str, &str)] = &[
    (
        "get_on_token_path_is_405_allow_post",
        "GET",
        "/application/o/token/",
        "POST",
    ),
    (
        "put_on_token_path_is_405_allow_post",
        "PUT",
        "/application/o/token/",
        "POST",
    ),
    (
        "delete_on_token_path_is_405_allow_post",
        "DELETE",
        "/application/o/token/",
        "POST",
    ),
    (
        "post_to_jwks_is_405_allow_get_head",
        "POST",
        "/application/o/test-app/jwks/",
        "GET, HEAD",
    ),
];

#[tokio::test]
async fn methods_not_allowed() {
    let endpoint = Endpoint::new();
    for (name, method, path, allow) in METHODS {
        let request = Request::builder().method(*method).uri(*path);
        let answer = endpoint.send(request.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, 405, "{name}");
        assert_eq!(answer.header("allow"), *allow, "{name}");
    }
}

// ---- what a token says -------------------------------------------------------------

#[tokio::test]
async fn success_response_is_rfc6749_json_with_no_store_and_an_id_token() {
    let endpoint = Endpoint::new();
    let answer = endpoint.post_form(&endpoint.password_form()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), "application/json");
    assert_eq!(answer.header("cache-control"), "no-store");
    assert_eq!(answer.header("pragma"), "no-cache");
    let json = answer.json();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 3600);
    assert_eq!(json["scope"], "");
    let id_claims = verify(
        &endpoint.jwks().await,
        json["id_token"].as_str().unwrap(),
        CLIENT_ID,
        &endpoint.issuer(),
    );
    assert_eq!(id_claims["preferred_username"], USERNAME);
    assert!(id_claims.get("scope").is_none());
}

#[tokio::test]
async fn unknown_scopes_are_dropped_never_granted() {
    let endpoint = Endpoint::new();
    let mut form = endpoint.password_form().to_vec();
    form.push(("scope", "write admin read write"));
    let json = endpoint.token_json(&form).await;
    assert_eq!(json["scope"], "write read");
    assert_eq!(endpoint.claims(&json).await["scope"], "write read");
}

#[tokio::test]
async fn hashed_subject_is_stable_and_reveals_no_account_data() {
    let endpoint = Endpoint::new();
    let mut subjects = Vec::new();
    for _ in 0..2 {
        let json = endpoint.token_json(&endpoint.password_form()).await;
        let claims = endpoint.claims(&json).await;
        subjects.push(claims["sub"].as_str().unwrap().to_owned());
    }
    assert_eq!(subjects[0], subjects[1]);
    assert_eq!(subjects[0].len(), 64);
    assert!(!subjects[0].contains(&endpoint.account.id) && !subjects[0].contains(USERNAME));
}

/// The claims of a token of an endpoint whose application is `application`.
async fn claims_with(application: tower_m2m_auth::issuer::Application) -> Value {
    let endpoint = Endpoint::with_application(Algorithm::ES256, application, |layer| layer);
    let json = endpoint.token_json(&endpoint.password_form()).await;
    endpoint.claims(&json).await
}

#[tokio::test]
async fn username_subject_mode_puts_the_username_in_sub() {
    let claims = claims_with(application().with_subject_mode(SubjectMode::Username)).await;
    assert_eq!(claims["sub"], USERNAME);
}

#[tokio::test]
async fn huge_token_lifetime_saturates_instead_of_overflowing() {
    let claims = claims_with(application().with_token_lifetime(Duration::MAX)).await;
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
}

/// RFC 9068 §2.1: `typ` of the access token and the ID token, with `at_jwt_typ(on)`.
const TYPES: &[(&str, bool, Option<&str>)] = &[
    (
        "rfc9068_2_1_access_tokens_are_typed_at_jwt_by_default",
        true,
        Some("at+jwt"),
    ),
    (
        "at_jwt_typ_can_be_turned_off_for_clients_that_need_plain_jwts",
        false,
        None,
    ),
];

#[tokio::test]
async fn token_types() {
    for (name, on, access) in TYPES {
        let endpoint = Endpoint::with(Algorithm::ES256, |layer| layer.at_jwt_typ(*on));
        let json = endpoint.token_json(&endpoint.password_form()).await;
        let typ = |token: &Value| {
            jsonwebtoken::decode_header(token.as_str().unwrap())
                .unwrap()
                .typ
        };
        assert_eq!(typ(&json["access_token"]).as_deref(), *access, "{name}");
        assert_eq!(typ(&json["id_token"]).as_deref(), Some("JWT"), "{name}");
    }
}

#[tokio::test]
async fn tokens_of_each_algorithm_verify_against_the_jwks() {
    for algorithm in [Algorithm::RS256, Algorithm::EdDSA, Algorithm::ES384] {
        let endpoint = Endpoint::with(algorithm, |layer| layer);
        let json = endpoint.token_json(&endpoint.password_form()).await;
        let token = json["access_token"].as_str().unwrap();
        assert_eq!(jsonwebtoken::decode_header(token).unwrap().alg, algorithm);
        let claims = endpoint.claims(&json).await;
        assert_eq!(claims["preferred_username"], USERNAME, "{algorithm:?}");
    }
}

#[tokio::test]
async fn hs256_tokens_verify_with_the_shared_secret_and_are_never_published() {
    let secret = [7u8; 32];
    let endpoint = Endpoint::with(Algorithm::ES256, |layer| {
        layer
            .keys()
            .rotate(SigningKey::from_hmac_secret(&secret).unwrap());
        layer
    });
    let json = endpoint.token_json(&endpoint.password_form()).await;
    let token = json["access_token"].as_str().unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.set_audience(&[CLIENT_ID]);
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(&secret),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["preferred_username"], USERNAME);
    // Only the (retired-from-signing) ES256 key is published, never the secret.
    let jwks = endpoint.jwks().await;
    assert_eq!(jwks.keys.len(), 1);
    assert!(jwks.keys.iter().all(|k| !matches!(
        k.algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
    )));
}

#[tokio::test]
async fn key_rotation_keeps_tokens_in_flight_verifiable() {
    let endpoint = Endpoint::new();
    let before = endpoint.token_json(&endpoint.password_form()).await;
    let old_kid = endpoint.keys.active().kid().to_owned();
    endpoint
        .keys
        .rotate(SigningKey::generate(Algorithm::ES256).unwrap());
    let after = endpoint.token_json(&endpoint.password_form()).await;
    assert_eq!(endpoint.jwks().await.keys.len(), 2);
    endpoint.claims(&before).await;
    endpoint.claims(&after).await;
    let new_token = after["access_token"].as_str().unwrap();
    assert_ne!(
        jsonwebtoken::decode_header(new_token).unwrap().kid.unwrap(),
        old_kid
    );
    assert!(endpoint.keys.retire(&old_kid));
    assert_eq!(endpoint.jwks().await.keys.len(), 1);
}

// ---- published documents and paths ---------------------------------------------------

#[tokio::test]
async fn discovery_and_jwks_are_published_at_authentik_paths() {
    let endpoint = Endpoint::new();
    let jwks_uri = endpoint.url(&format!("/application/o/{SLUG}/jwks/"));
    for path in [
        format!("/application/o/{SLUG}/.well-known/openid-configuration"),
        format!("/.well-known/oauth-authorization-server/application/o/{SLUG}/"),
    ] {
        let answer = endpoint.get(&path).await;
        assert_eq!(answer.status, 200, "{path}");
        let metadata = answer.json();
        assert_eq!(metadata["issuer"], endpoint.issuer());
        assert_eq!(metadata["token_endpoint"], endpoint.token_url());
        assert_eq!(metadata["jwks_uri"], jwks_uri);
        assert_eq!(
            metadata["grant_types_supported"],
            json!(["client_credentials", "password"])
        );
        assert_eq!(
            metadata["token_endpoint_auth_methods_supported"],
            json!(["client_secret_post", "client_secret_basic"])
        );
        assert_eq!(
            metadata["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
    }
    // A validator that only knows the discovery document finds the keys.
    let jwks_path = jwks_uri.strip_prefix(&endpoint.base).unwrap();
    let jwks = serde_json::from_slice(&endpoint.get(jwks_path).await.body).unwrap();
    let json = endpoint.token_json(&endpoint.password_form()).await;
    verify(
        &jwks,
        json["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &endpoint.issuer(),
    );
}

#[tokio::test]
async fn custom_paths_are_honoured() {
    let endpoint = Endpoint::with(Algorithm::ES256, |layer| {
        layer
            .token_path("/oauth/token")
            .unwrap()
            .jwks_path("/oauth/{slug}/keys")
            .unwrap()
    });
    let token = endpoint.token.clone();
    let vars = [("token", token.as_str())];
    let post = Post::form(PASSWORD_FORM);
    assert_eq!(
        endpoint.post_to("/oauth/token", &post, &vars).await.status,
        200
    );
    assert_eq!(
        endpoint.get(&format!("/oauth/{SLUG}/keys")).await.status,
        200
    );
    // The default token path now belongs to the inner service (which echoes).
    let inner = endpoint.post_form(&endpoint.password_form()).await;
    assert_eq!(inner.header("x-inner-uri"), "/application/o/token/");
}

#[tokio::test]
async fn layer_reports_its_urls() {
    Endpoint::with(Algorithm::ES256, |layer| {
        let base = "http://192.0.2.1:80";
        assert_eq!(layer.token_url(), format!("{base}/application/o/token/"));
        assert_eq!(
            layer.jwks_url(SLUG),
            format!("{base}/application/o/{SLUG}/jwks/")
        );
        assert_eq!(
            layer.discovery_url(SLUG),
            format!("{base}/application/o/{SLUG}/.well-known/openid-configuration")
        );
        assert_eq!(
            layer.get_application(CLIENT_ID).unwrap().issuer(),
            format!("{base}/application/o/{SLUG}/")
        );
        layer
    });
}

#[tokio::test]
async fn oversized_body_is_413() {
    let endpoint = Endpoint::with(Algorithm::ES256, |layer| layer.body_limit(1024));
    let padding = "x".repeat(2048);
    let mut form = endpoint.password_form().to_vec();
    form.push(("padding", &padding));
    let answer = endpoint.post_form(&form).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error(), "invalid_request");
}

#[tokio::test]
async fn other_paths_reach_the_inner_service_unchanged() {
    let endpoint = Endpoint::new();
    let body = "grant_type=client_credentials&client_id=x";
    let request = Request::post("/api/things?x=1&y=2").header("content-type", FORM);
    let answer = endpoint.send(request.body(Body::from(body)).unwrap()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-inner-method"), "POST");
    assert_eq!(answer.header("x-inner-uri"), "/api/things?x=1&y=2");
    assert_eq!(answer.header("x-inner-content-type"), FORM);
    assert_eq!(answer.text(), body);
    // The token path with another prefix or suffix is not the token path.
    let answer = endpoint.get("/application/o/token/extra").await;
    assert_eq!(answer.header("x-inner-uri"), "/application/o/token/extra");
}

// ---- over real HTTP: the wire ----------------------------------------------------------

#[tokio::test]
async fn oauth2_client_gets_token_with_username_and_app_password() {
    let server = start().await;
    let client = BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_token_uri(TokenUrl::new(server.token_url()).unwrap());
    let response = client
        .exchange_client_credentials()
        .add_extra_param("username", USERNAME)
        .add_extra_param("password", server.token.clone())
        .add_scope(Scope::new("read".into()))
        .request_async(&oauth2_http())
        .await
        .unwrap();
    assert_eq!(response.token_type().as_ref(), "bearer");
    assert_eq!(response.expires_in(), Some(Duration::from_secs(3600)));
    assert_eq!(response.scopes().unwrap()[0].as_str(), "read");

    let claims = verify(
        &server.jwks().await,
        response.access_token().secret(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert_eq!(claims["iss"], server.issuer());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["azp"], CLIENT_ID);
    assert_eq!(claims["client_id"], CLIENT_ID);
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["preferred_username"], USERNAME);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 40);
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    assert_eq!(claims["auth_time"], claims["iat"]);
}

#[tokio::test]
async fn base64_username_token_as_client_secret_in_http_basic() {
    let server = start().await;
    let secret = STANDARD.encode(format!("{USERNAME}:{}", server.token));
    // The oauth2 crate sends a client secret with HTTP Basic (client_secret_basic).
    let client = BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(secret))
        .set_token_uri(TokenUrl::new(server.token_url()).unwrap());
    let response = client
        .exchange_client_credentials()
        .request_async(&oauth2_http())
        .await
        .unwrap();
    let claims = verify(
        &server.jwks().await,
        response.access_token().secret(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert_eq!(claims["preferred_username"], USERNAME);
}

#[tokio::test]
async fn oversized_chunked_body_is_413() {
    let server = start_with(Algorithm::ES256, |layer| layer.body_limit(1024)).await;
    let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 256])));
    let response = http()
        .post(server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

/// Announces a token request body of `length` bytes on a raw connection to
/// `server`, sends only a few, and returns the head of the answer, which
/// must come within 5 s (`why`).
async fn announce_body(server: &Server, length: u32, why: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /application/o/token/ HTTP/1.1\r\nhost: test\r\n\
         content-type: {FORM}\r\ncontent-length: {length}\r\n\r\ngrant_type="
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect(why)
        .unwrap();
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

#[tokio::test]
async fn declared_oversized_body_is_refused_without_reading_it() {
    // Announce 10 MB, send only a few bytes: the answer must not wait for the rest.
    let why = "the server answers without waiting for the announced body";
    let head = announce_body(&start().await, 10_000_000, why).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

#[tokio::test]
async fn body_timeout_answers_408_instead_of_waiting_forever() {
    let timeout = Duration::from_millis(200);
    let server = start_with(Algorithm::ES256, |layer| layer.body_timeout(timeout)).await;
    let head = announce_body(&server, 100, "the endpoint gives up on the body").await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

#[tokio::test]
async fn streaming_bodies_pass_through_untouched() {
    let server = start().await;
    let chunks: Vec<bytes::Bytes> = (0..200u32)
        .map(|i| bytes::Bytes::from(format!("chunk-{i:04}-").repeat(100)))
        .collect();
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let response = http()
        .put(server.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-inner-method"], "PUT");
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), expected.len());
    assert_eq!(&echoed[..], &expected[..]);
}

#[test]
fn a_key_published_twice_appears_once() {
    let ring = tower_m2m_auth::keys::KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let other = SigningKey::generate(Algorithm::ES256).unwrap();
    let pem = other.to_pkcs8_pem().unwrap();
    let ring = ring
        .with_published(SigningKey::from_pem(pem.as_bytes()).unwrap())
        .with_published(SigningKey::from_pem(pem.as_bytes()).unwrap());
    assert_eq!(ring.jwks().keys.len(), 2);
    assert_eq!(ring.kids().len(), 2);
}
