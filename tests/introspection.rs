//! Token introspection (RFC 7662) and revocation (RFC 7009) over real HTTP.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower_m2m_auth::issuer::Application;
use tower_m2m_auth::keys::SigningKey;
use tower_m2m_auth::store::Binding;

const OTHER_CLIENT: &str = "other-client";
const OTHER_SECRET: &str = "other-application-secret-0123";
const FEDERATED_CLIENT: &str = "federated-client";
const FEDERATED_SECRET: &str = "federated-application-secret-0";

async fn server() -> Server {
    start_with(Algorithm::ES256, |layer| {
        layer
            .application(Application::new(OTHER_CLIENT, "other").with_client_secret(OTHER_SECRET))
            .unwrap()
            .application(
                Application::new(FEDERATED_CLIENT, "federated")
                    .with_client_secret(FEDERATED_SECRET)
                    .with_federated_application(CLIENT_ID),
            )
            .unwrap()
    })
    .await
}

async fn access_token(server: &Server) -> String {
    let response = post_form(
        server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", &server.token),
            ("scope", "read"),
        ]),
    )
    .await;
    let json: Value = response.json().await.unwrap();
    json["access_token"].as_str().unwrap().to_owned()
}

/// POSTs `token` to `path`, the client authenticating with HTTP Basic.
async fn call(server: &Server, path: &str, client: (&str, &str), token: &str) -> reqwest::Response {
    http()
        .post(server.url(path))
        .basic_auth(client.0, Some(client.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[
            ("token", token),
            ("token_type_hint", "access_token"),
        ]))
        .send()
        .await
        .unwrap()
}

async fn introspect(server: &Server, client: (&str, &str), token: &str) -> Value {
    let response = call(server, "/application/o/introspect/", client, token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn revoke(server: &Server, client: (&str, &str), token: &str) {
    let response = call(server, "/application/o/revoke/", client, token).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn live_token_is_active_with_its_claims() {
    let server = server().await;
    let token = access_token(&server).await;
    let answer = introspect(&server, (CLIENT_ID, APP_SECRET), &token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], CLIENT_ID);
    assert_eq!(answer["scope"], "read");
    assert_eq!(answer["username"], USERNAME);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["iss"], server.issuer());
    assert!(answer["exp"].as_u64().is_some());
}

#[tokio::test]
async fn client_authenticating_with_a_service_account_may_introspect() {
    let server = server().await;
    let token = access_token(&server).await;
    let response = http()
        .post(server.url("/application/o/introspect/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", &server.token),
            ("token", &token),
        ]))
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["active"], true);
}

#[tokio::test]
async fn unauthenticated_introspection_is_401_invalid_client() {
    let server = server().await;
    let token = access_token(&server).await;
    let response = call(
        &server,
        "/application/o/introspect/",
        (CLIENT_ID, "wrong-secret"),
        &token,
    )
    .await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(response).await, "invalid_client");
    let response = http()
        .post(server.url("/application/o/introspect/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[("token", &token)]))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn another_application_cannot_introspect_the_token() {
    // CVE-2024-47077: a client of one application read another's tokens.
    let server = server().await;
    let token = access_token(&server).await;
    let answer = introspect(&server, (OTHER_CLIENT, OTHER_SECRET), &token).await;
    assert_eq!(answer, json!({"active": false}));
}

#[tokio::test]
async fn federated_application_may_introspect_the_token() {
    let server = server().await;
    let token = access_token(&server).await;
    let answer = introspect(&server, (FEDERATED_CLIENT, FEDERATED_SECRET), &token).await;
    assert_eq!(answer["active"], true);
}

#[tokio::test]
async fn unparseable_foreign_and_expired_tokens_are_inactive() {
    let server = server().await;
    let client = (CLIENT_ID, APP_SECRET);
    assert_eq!(
        introspect(&server, client, "not-a-jwt").await,
        json!({"active": false})
    );

    let forger = SigningKey::generate(Algorithm::ES256).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": server.issuer(), "aud": CLIENT_ID, "sub": "x", "jti": "j", "exp": now + 300,
        "client_id": CLIENT_ID,
    });
    let forged = forger.sign_jwt(None, &claims).unwrap();
    assert_eq!(
        introspect(&server, client, &forged).await,
        json!({"active": false})
    );

    let expired_claims = json!({
        "iss": server.issuer(), "aud": CLIENT_ID, "sub": "x", "jti": "j", "exp": now - 10,
        "client_id": CLIENT_ID,
    });
    let expired = server
        .keys
        .active()
        .sign_jwt(None, &expired_claims)
        .unwrap();
    assert_eq!(
        introspect(&server, client, &expired).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn revoked_token_is_inactive() {
    let server = server().await;
    let token = access_token(&server).await;
    let other = access_token(&server).await;
    revoke(&server, (CLIENT_ID, APP_SECRET), &token).await;
    assert_eq!(
        introspect(&server, (CLIENT_ID, APP_SECRET), &token).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&server, (CLIENT_ID, APP_SECRET), &other).await["active"],
        true
    );
}

#[tokio::test]
async fn another_application_cannot_revoke_the_token() {
    let server = server().await;
    let token = access_token(&server).await;
    revoke(&server, (OTHER_CLIENT, OTHER_SECRET), &token).await;
    assert_eq!(
        introspect(&server, (CLIENT_ID, APP_SECRET), &token).await["active"],
        true
    );
}

#[tokio::test]
async fn revoking_an_unknown_token_is_200() {
    let server = server().await;
    revoke(&server, (CLIENT_ID, APP_SECRET), "not-a-token").await;
}

#[tokio::test]
async fn revocation_needs_an_authenticated_client() {
    let server = server().await;
    let token = access_token(&server).await;
    let response = call(
        &server,
        "/application/o/revoke/",
        (CLIENT_ID, "wrong"),
        &token,
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "invalid_client");
    assert_eq!(
        introspect(&server, (CLIENT_ID, APP_SECRET), &token).await["active"],
        true
    );
}

#[tokio::test]
async fn revoked_token_cannot_be_traded_at_a_federated_application() {
    let server = server().await;
    let token = access_token(&server).await;
    let trade = |token: String| {
        let server = &server;
        async move {
            post_form(
                server,
                &form_encode(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", FEDERATED_CLIENT),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &token),
                ]),
            )
            .await
            .status()
        }
    };
    // The account may get tokens at the federated application too.
    server.store.bind(
        USERNAME,
        Binding::new(FEDERATED_CLIENT, Vec::<String>::new()),
    );
    assert_eq!(trade(token.clone()).await, 200);
    revoke(&server, (CLIENT_ID, APP_SECRET), &token).await;
    assert_eq!(trade(token).await, 400);
}

#[tokio::test]
async fn introspection_and_revocation_take_post_only_and_are_in_the_metadata() {
    let server = server().await;
    for path in ["/application/o/introspect/", "/application/o/revoke/"] {
        let response = http().get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
    }
    let metadata: Value = http()
        .get(server.url(&format!(
            "/application/o/{SLUG}/.well-known/openid-configuration"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["introspection_endpoint"],
        server.url("/application/o/introspect/")
    );
    assert_eq!(
        metadata["revocation_endpoint"],
        server.url("/application/o/revoke/")
    );
}

#[tokio::test]
async fn id_token_is_not_an_active_access_token() {
    // Same issuer, key, audience and lifetime as the access token beside it:
    // a resource server that introspects must not take it for one.
    let server = server().await;
    let response = post_form(
        &server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", &server.token),
            ("scope", "read"),
        ]),
    )
    .await;
    let json: Value = response.json().await.unwrap();
    let id_token = json["id_token"].as_str().unwrap();
    let client = (CLIENT_ID, APP_SECRET);
    assert_eq!(
        introspect(&server, client, id_token).await,
        json!({"active": false})
    );
    let access_token = json["access_token"].as_str().unwrap();
    assert_eq!(
        introspect(&server, client, access_token).await["active"],
        true
    );
}

// ------------------------------------------------------- HS256 signing keys

#[tokio::test]
async fn hs256_tokens_are_introspected_and_revoked() {
    // The secret is never published, so the JWKS cannot verify these
    // tokens; the issuer verifies them with its own secret.
    let server = start_with(Algorithm::HS256, |layer| layer).await;
    let token = access_token(&server).await;
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().alg,
        Algorithm::HS256
    );
    assert!(server.jwks().await.keys.is_empty());
    let client = (CLIENT_ID, APP_SECRET);
    let other = access_token(&server).await;
    let answer = introspect(&server, client, &token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["username"], USERNAME);

    revoke(&server, client, &token).await;
    assert_eq!(
        introspect(&server, client, &token).await,
        json!({"active": false})
    );
    assert_eq!(introspect(&server, client, &other).await["active"], true);
}

#[tokio::test]
async fn hs256_tokens_of_a_rotated_out_secret_stay_introspectable() {
    let server = start_with(Algorithm::HS256, |layer| layer).await;
    let token = access_token(&server).await;
    server
        .keys
        .rotate(SigningKey::generate(Algorithm::HS256).unwrap());
    let client = (CLIENT_ID, APP_SECRET);
    assert_eq!(introspect(&server, client, &token).await["active"], true);
    revoke(&server, client, &token).await;
    assert_eq!(introspect(&server, client, &token).await["active"], false);
}

#[tokio::test]
async fn hs256_tokens_of_another_secret_or_a_public_key_are_inactive() {
    // HS256 in the introspection allow-list opens no key confusion: an
    // HMAC "signature" keyed with the published public key, or with a
    // secret that is not the ring's, verifies nothing.
    let server = start_with(Algorithm::ES256, |layer| {
        // A second key in the ring, whose secret is the ring's own.
        let _ = layer
            .keys()
            .clone()
            .with_published(SigningKey::generate(Algorithm::HS256).unwrap());
        layer
    })
    .await;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": server.issuer(), "aud": CLIENT_ID, "sub": "x", "jti": "j", "exp": now + 300,
        "client_id": CLIENT_ID,
    });
    let jwks = server.jwks().await;
    let public_jwk = serde_json::to_vec(&jwks.keys[0]).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = jwks.keys[0].common.key_id.clone();
    let confused = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_jwk),
    )
    .unwrap();
    // Without a `kid`, every key of the ring is tried: still nothing.
    let kidless = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_jwk),
    )
    .unwrap();
    let stranger = SigningKey::generate(Algorithm::HS256)
        .unwrap()
        .sign_jwt(Some("at+jwt"), &claims)
        .unwrap();
    let client = (CLIENT_ID, APP_SECRET);
    for token in [confused, kidless, stranger] {
        assert_eq!(
            introspect(&server, client, &token).await,
            json!({"active": false})
        );
    }
}
