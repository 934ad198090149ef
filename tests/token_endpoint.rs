//! The token endpoint over real HTTP: one test per rule.

mod common;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use jsonwebtoken::Algorithm;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use tower_m2m_auth::issuer::SubjectMode;
use tower_m2m_auth::keys::SigningKey;
use tower_m2m_auth::store::{AppPassword, ServiceAccount, TokenDigest};

fn password_form(token: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("username", USERNAME),
        ("password", token),
    ]
}

async fn token_json(server: &Server, pairs: &[(&str, &str)]) -> serde_json::Value {
    let response = post_form(server, &form_encode(pairs)).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

// ---- success ---------------------------------------------------------------

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
async fn success_response_is_rfc6749_json_with_no_store_and_an_id_token() {
    let server = start().await;
    let response = post_form(&server, &form_encode(&password_form(&server.token))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 3600);
    assert_eq!(json["scope"], "");
    let id_claims = verify(
        &server.jwks().await,
        json["id_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert_eq!(id_claims["preferred_username"], USERNAME);
    assert!(id_claims.get("scope").is_none());
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
async fn base64_username_token_as_client_secret_in_body() {
    let server = start().await;
    let secret = STANDARD.encode(format!("{USERNAME}:{}", server.token));
    let json = token_json(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", &secret),
        ],
    )
    .await;
    let claims = verify(
        &server.jwks().await,
        json["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert_eq!(claims["preferred_username"], USERNAME);
}

#[tokio::test]
async fn application_secret_authenticates_as_automatic_service_account() {
    let server = start().await;
    let json = token_json(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", APP_SECRET),
        ],
    )
    .await;
    let claims = verify(
        &server.jwks().await,
        json["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert_eq!(claims["preferred_username"], "ak-test-client_credentials");
}

#[tokio::test]
async fn password_grant_is_treated_as_client_credentials() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form[0] = ("grant_type", "password");
    let json = token_json(&server, &form).await;
    let claims = verify(
        &server.jwks().await,
        json["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert_eq!(claims["preferred_username"], USERNAME);
}

#[tokio::test]
async fn unknown_scopes_are_dropped_never_granted() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form.push(("scope", "write admin read write"));
    let json = token_json(&server, &form).await;
    assert_eq!(json["scope"], "write read");
    let claims = verify(
        &server.jwks().await,
        json["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert_eq!(claims["scope"], "write read");
}

#[tokio::test]
async fn second_token_of_an_account_also_authenticates() {
    let server = start().await;
    let (token, password) = AppPassword::generate(&server.account.id);
    server.store.insert_app_password(password);
    use secrecy::ExposeSecret;
    token_json(&server, &password_form(token.expose_secret())).await;
    token_json(&server, &password_form(&server.token)).await;
}

#[tokio::test]
async fn hashed_subject_is_stable_and_reveals_no_account_data() {
    let server = start().await;
    let jwks = server.jwks().await;
    let mut subjects = Vec::new();
    for _ in 0..2 {
        let json = token_json(&server, &password_form(&server.token)).await;
        let claims = verify(
            &jwks,
            json["access_token"].as_str().unwrap(),
            CLIENT_ID,
            &server.issuer(),
        );
        subjects.push(claims["sub"].as_str().unwrap().to_owned());
    }
    assert_eq!(subjects[0], subjects[1]);
    assert_eq!(subjects[0].len(), 64);
    assert!(!subjects[0].contains(&server.account.id) && !subjects[0].contains(USERNAME));
}

#[tokio::test]
async fn username_subject_mode_puts_the_username_in_sub() {
    let server = start_with_application(
        Algorithm::ES256,
        application().with_subject_mode(SubjectMode::Username),
        |layer| layer,
    )
    .await;
    let json = token_json(&server, &password_form(&server.token)).await;
    let claims = verify(
        &server.jwks().await,
        json["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert_eq!(claims["sub"], USERNAME);
}

#[tokio::test]
async fn access_tokens_are_typed_at_jwt_and_id_tokens_jwt_by_default() {
    // RFC 9068 §2.1: what lets a resource server refuse an ID token.
    let server = start().await;
    let json = token_json(&server, &password_form(&server.token)).await;
    let typ = |token: &serde_json::Value| {
        jsonwebtoken::decode_header(token.as_str().unwrap())
            .unwrap()
            .typ
    };
    assert_eq!(typ(&json["access_token"]).as_deref(), Some("at+jwt"));
    assert_eq!(typ(&json["id_token"]).as_deref(), Some("JWT"));
}

#[tokio::test]
async fn at_jwt_typ_can_be_turned_off_for_clients_that_need_plain_jwts() {
    let server = start_with(Algorithm::ES256, |layer| layer.at_jwt_typ(false)).await;
    let json = token_json(&server, &password_form(&server.token)).await;
    let typ = |token: &serde_json::Value| {
        jsonwebtoken::decode_header(token.as_str().unwrap())
            .unwrap()
            .typ
    };
    assert_eq!(typ(&json["access_token"]), None);
    assert_eq!(typ(&json["id_token"]).as_deref(), Some("JWT"));
}

async fn signs_verifiably_with(algorithm: Algorithm) {
    let server = start_with(algorithm, |layer| layer).await;
    let json = token_json(&server, &password_form(&server.token)).await;
    let token = json["access_token"].as_str().unwrap();
    assert_eq!(jsonwebtoken::decode_header(token).unwrap().alg, algorithm);
    let claims = verify(&server.jwks().await, token, CLIENT_ID, &server.issuer());
    assert_eq!(claims["preferred_username"], USERNAME);
}

#[tokio::test]
async fn rs256_tokens_verify_against_the_jwks() {
    signs_verifiably_with(Algorithm::RS256).await;
}

#[tokio::test]
async fn eddsa_tokens_verify_against_the_jwks() {
    signs_verifiably_with(Algorithm::EdDSA).await;
}

#[tokio::test]
async fn es384_tokens_verify_against_the_jwks() {
    signs_verifiably_with(Algorithm::ES384).await;
}

#[tokio::test]
async fn hs256_tokens_verify_with_the_shared_secret_and_are_never_published() {
    let secret = [7u8; 32];
    let server = start_with(Algorithm::ES256, |layer| {
        layer
            .keys()
            .rotate(SigningKey::from_hmac_secret(&secret).unwrap());
        layer
    })
    .await;
    let json = token_json(&server, &password_form(&server.token)).await;
    let token = json["access_token"].as_str().unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.set_audience(&[CLIENT_ID]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(&secret),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["preferred_username"], USERNAME);
    // Only the (retired-from-signing) ES256 key is published, never the secret.
    let jwks = server.jwks().await;
    assert_eq!(jwks.keys.len(), 1);
    assert!(jwks.keys.iter().all(|k| !matches!(
        k.algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
    )));
}

#[tokio::test]
async fn key_rotation_keeps_tokens_in_flight_verifiable() {
    let server = start().await;
    let before = token_json(&server, &password_form(&server.token)).await;
    let old_kid = server.keys.active().kid().to_owned();
    server
        .keys
        .rotate(SigningKey::generate(Algorithm::ES256).unwrap());
    let after = token_json(&server, &password_form(&server.token)).await;
    let jwks = server.jwks().await;
    assert_eq!(jwks.keys.len(), 2);
    verify(
        &jwks,
        before["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
    let new_token = after["access_token"].as_str().unwrap();
    verify(&jwks, new_token, CLIENT_ID, &server.issuer());
    assert_ne!(
        jsonwebtoken::decode_header(new_token).unwrap().kid.unwrap(),
        old_kid
    );
    assert!(server.keys.retire(&old_kid));
    assert_eq!(server.jwks().await.keys.len(), 1);
}

#[tokio::test]
async fn discovery_and_jwks_are_published_at_authentik_paths() {
    let server = start().await;
    for path in [
        format!("/application/o/{SLUG}/.well-known/openid-configuration"),
        format!("/.well-known/oauth-authorization-server/application/o/{SLUG}/"),
    ] {
        let response = http().get(server.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let metadata: serde_json::Value = response.json().await.unwrap();
        assert_eq!(metadata["issuer"], server.issuer());
        assert_eq!(metadata["token_endpoint"], server.token_url());
        assert_eq!(
            metadata["jwks_uri"],
            server.url(&format!("/application/o/{SLUG}/jwks/"))
        );
        assert_eq!(
            metadata["grant_types_supported"],
            serde_json::json!(["client_credentials", "password"])
        );
        assert_eq!(
            metadata["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_post", "client_secret_basic"])
        );
        assert_eq!(
            metadata["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256"])
        );
    }
    // A validator that only knows the discovery document finds the keys.
    let metadata: serde_json::Value = http()
        .get(server.url(&format!(
            "/application/o/{SLUG}/.well-known/openid-configuration"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = http()
        .get(metadata["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let json = token_json(&server, &password_form(&server.token)).await;
    verify(
        &jwks,
        json["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
}

#[tokio::test]
async fn custom_paths_are_honoured() {
    let server = start_with(Algorithm::ES256, |layer| {
        layer
            .token_path("/oauth/token")
            .unwrap()
            .jwks_path("/oauth/{slug}/keys")
            .unwrap()
    })
    .await;
    let response = http()
        .post(server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&password_form(&server.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let keys = http()
        .get(server.url(&format!("/oauth/{SLUG}/keys")))
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200);
    // The default token path now belongs to the inner service.
    let inner = post_form(&server, &form_encode(&password_form(&server.token))).await;
    assert_eq!(inner.headers()["x-inner-uri"], "/application/o/token/");
}

// ---- errors ------------------------------------------------------------------

#[tokio::test]
async fn missing_grant_type_is_invalid_request() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form.remove(0);
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn empty_grant_type_counts_as_missing() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form[0] = ("grant_type", "");
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn other_grant_type_is_unsupported_grant_type() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form[0] = ("grant_type", "authorization_code");
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "unsupported_grant_type");
}

#[tokio::test]
async fn wrong_content_type_is_invalid_request() {
    let server = start().await;
    let response = http()
        .post(server.token_url())
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"grant_type": "client_credentials", "client_id": CLIENT_ID})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn missing_content_type_is_invalid_request() {
    let server = start().await;
    let response = http()
        .post(server.token_url())
        .body(form_encode(&password_form(&server.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn content_type_with_charset_is_accepted() {
    let server = start().await;
    let response = http()
        .post(server.token_url())
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(form_encode(&password_form(&server.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn duplicate_parameter_is_invalid_request() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form.push(("client_id", CLIENT_ID));
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn malformed_form_body_is_invalid_request() {
    let server = start().await;
    let response = post_form(&server, "grant_type=client_credentials&client_id=%FF%FE").await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn missing_client_id_is_invalid_request() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form.remove(1);
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn missing_password_is_invalid_request() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form.pop();
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn no_credentials_at_all_is_invalid_request() {
    let server = start().await;
    let response = post_form(
        &server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
        ]),
    )
    .await;
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn unknown_client_id_is_invalid_client() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form[1] = ("client_id", "nobody");
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_client");
}

#[tokio::test]
async fn two_client_authentication_methods_are_invalid_request() {
    let server = start().await;
    let basic = STANDARD.encode(format!("{CLIENT_ID}:{APP_SECRET}"));
    let response = http()
        .post(server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", APP_SECRET),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn client_secret_together_with_username_and_password_is_invalid_request() {
    let server = start().await;
    let mut form = password_form(&server.token);
    form.push(("client_secret", APP_SECRET));
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn wrong_app_password_is_invalid_grant_and_not_echoed() {
    let server = start().await;
    let wrong = format!("{}x", server.token);
    let response = post_form(&server, &form_encode(&password_form(&wrong))).await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(!body.contains(&wrong) && !body.contains(&server.token));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "invalid_grant");
}

#[tokio::test]
async fn unknown_account_is_invalid_grant() {
    let server = start().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("username", "nobody"),
        ("password", &server.token),
    ];
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn another_accounts_token_is_invalid_grant() {
    let server = start().await;
    let (_, other_token) = server.add_account("svc-other");
    let response = post_form(&server, &form_encode(&password_form(&other_token))).await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn disabled_account_is_invalid_grant() {
    let server = start().await;
    assert!(server.store.set_active(USERNAME, false));
    let response = post_form(&server, &form_encode(&password_form(&server.token))).await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn expired_app_password_is_invalid_grant() {
    let server = start().await;
    let token = "expired-token-0123456789abcdef";
    server.store.insert_app_password(
        AppPassword::new(&server.account.id, TokenDigest::of(token))
            .with_expires(SystemTime::now() - Duration::from_secs(1)),
    );
    let response = post_form(&server, &form_encode(&password_form(token))).await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn revoked_app_password_is_invalid_grant() {
    let server = start().await;
    assert!(
        server
            .store
            .remove_app_password(&TokenDigest::of(&server.token))
    );
    let response = post_form(&server, &form_encode(&password_form(&server.token))).await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn wrong_application_secret_is_invalid_grant() {
    let server = start().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", "application-secret-wrong"),
    ];
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn failed_basic_authentication_is_401_with_www_authenticate() {
    let server = start().await;
    let basic = STANDARD.encode(format!("{CLIENT_ID}:not-the-secret"));
    let response = http()
        .post(server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn malformed_basic_header_is_401_invalid_client() {
    let server = start().await;
    let response = http()
        .post(server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "Basic !!!not-base64")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(response).await, "invalid_client");
}

#[tokio::test]
async fn client_assertion_without_configured_keys_is_invalid_grant() {
    let server = start().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", "a.b.c"),
    ];
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn other_methods_on_token_path_get_405_with_allow_post() {
    let server = start().await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = http()
            .request(method.clone(), server.token_url())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
    }
}

#[tokio::test]
async fn post_to_jwks_gets_405_with_allow_get() {
    let server = start().await;
    let response = http()
        .post(server.url(&format!("/application/o/{SLUG}/jwks/")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = start_with(Algorithm::ES256, |layer| layer.body_limit(1024)).await;
    let padding = "x".repeat(2048);
    let mut form = password_form(&server.token);
    form.push(("padding", &padding));
    let response = post_form(&server, &form_encode(&form)).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "invalid_request");
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

#[tokio::test]
async fn declared_oversized_body_is_refused_without_reading_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Announce 10 MB, send only a few bytes: the answer must not wait for the rest.
    stream
        .write_all(
            b"POST /application/o/token/ HTTP/1.1\r\nhost: test\r\n\
              content-type: application/x-www-form-urlencoded\r\ncontent-length: 10000000\r\n\r\ngrant_type=",
        )
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("the server answers without waiting for the announced body")
        .unwrap();
    let head = String::from_utf8_lossy(&buffer[..read]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

#[tokio::test]
async fn body_timeout_answers_408_instead_of_waiting_forever() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_with(Algorithm::ES256, |layer| {
        layer.body_timeout(Duration::from_millis(200))
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /application/o/token/ HTTP/1.1\r\nhost: test\r\n\
              content-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\ngrant_type=",
        )
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("the endpoint gives up on the body")
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 408"));
}

// ---- pass-through ----------------------------------------------------------------

#[tokio::test]
async fn other_paths_reach_the_inner_service_unchanged() {
    let server = start().await;
    let response = http()
        .post(server.url("/api/things?x=1&y=2"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-inner-method"], "POST");
    assert_eq!(response.headers()["x-inner-uri"], "/api/things?x=1&y=2");
    assert_eq!(
        response.headers()["x-inner-content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        response.text().await.unwrap(),
        "grant_type=client_credentials&client_id=x"
    );

    // The token path with another prefix or suffix is not the token path.
    let response = http()
        .get(server.url("/application/o/token/extra"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-inner-uri"],
        "/application/o/token/extra"
    );
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

#[tokio::test]
async fn accounts_added_at_runtime_authenticate_immediately() {
    let server = start().await;
    let account = ServiceAccount::new("svc-late");
    let (token, password) = AppPassword::generate(&account.id);
    server.store.insert_account(account);
    server.store.insert_app_password(password);
    server.store.bind("svc-late", all_scopes());
    use secrecy::ExposeSecret;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("username", "svc-late"),
        ("password", token.expose_secret()),
    ];
    let json = token_json(&server, &form).await;
    let claims = verify(
        &server.jwks().await,
        json["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert_eq!(claims["preferred_username"], "svc-late");
}

#[tokio::test]
async fn huge_token_lifetime_saturates_instead_of_overflowing() {
    let server = start_with_application(
        Algorithm::ES256,
        application().with_token_lifetime(Duration::MAX),
        |layer| layer,
    )
    .await;
    let json = token_json(&server, &password_form(&server.token)).await;
    let claims = verify(
        &server.jwks().await,
        json["access_token"].as_str().unwrap(),
        CLIENT_ID,
        &server.issuer(),
    );
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
}

#[tokio::test]
async fn layer_reports_its_urls() {
    let server = start_with(Algorithm::ES256, |layer| {
        assert_eq!(
            layer.token_url().rsplit_once("/application").unwrap().1,
            "/o/token/"
        );
        assert!(
            layer
                .jwks_url(SLUG)
                .ends_with(&format!("/application/o/{SLUG}/jwks/"))
        );
        assert!(
            layer
                .discovery_url(SLUG)
                .ends_with("/.well-known/openid-configuration")
        );
        assert_eq!(
            layer.get_application(CLIENT_ID).unwrap().issuer(),
            format!(
                "{}/application/o/{SLUG}/",
                layer.token_url().trim_end_matches("/application/o/token/")
            )
        );
        layer
    })
    .await;
    assert_eq!(
        http()
            .get(server.url(&format!("/application/o/{SLUG}/jwks/")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
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
