//! Token introspection (RFC 7662) and revocation (RFC 7009), called in
//! process (`tower::ServiceExt::oneshot`): none of these rules is about the
//! wire. Who may introspect or revoke which token is a table of rows, each
//! named after its rule.

mod common;

use common::oneshot::FORM;
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
const INTROSPECT: &str = "/application/o/introspect/";
const REVOKE: &str = "/application/o/revoke/";
const APP: (&str, &str) = (CLIENT_ID, APP_SECRET);

/// The test application, another one, and one federated with the test
/// application, in process.
fn endpoint() -> Endpoint {
    Endpoint::with(Algorithm::ES256, |layer| {
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
}

/// A token response for the test account at the test application, scope
/// `read`.
async fn tokens(endpoint: &Endpoint) -> Value {
    let mut form = endpoint.password_form().to_vec();
    form.push(("scope", "read"));
    endpoint.token_json(&form).await
}

async fn access_token(endpoint: &Endpoint) -> String {
    tokens(endpoint).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// POSTs `token` to `path`, the client authenticating with HTTP Basic.
async fn call(endpoint: &Endpoint, path: &str, client: (&str, &str), token: &str) -> Answer {
    let form = [("token", token), ("token_type_hint", "access_token")];
    let post = Post::form(&form).basic(client.0, client.1);
    endpoint.send(post.request(path, &[])).await
}

/// POSTs `token` to `path`, the client authenticating as the service
/// account `username` with its app password, in the form.
async fn as_account(
    endpoint: &Endpoint,
    path: &str,
    username: &str,
    password: &str,
    token: &str,
) -> Answer {
    let form = [
        ("client_id", CLIENT_ID),
        ("username", username),
        ("password", password),
        ("token", token),
    ];
    endpoint.send(Post::form(&form).request(path, &[])).await
}

/// The introspection answer for `token`, asked by `client`: 200, `no-store`.
async fn introspect(endpoint: &Endpoint, client: (&str, &str), token: &str) -> Value {
    let answer = call(endpoint, INTROSPECT, client, token).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("cache-control"), "no-store");
    answer.json()
}

async fn active(endpoint: &Endpoint, token: &str) -> bool {
    introspect(endpoint, APP, token).await["active"]
        .as_bool()
        .unwrap()
}

async fn revoke(endpoint: &Endpoint, client: (&str, &str), token: &str) {
    let answer = call(endpoint, REVOKE, client, token).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

// ---- who may introspect or revoke which token: one row per rule -------------------

/// Which token a row asks about.
#[derive(Debug, Clone, Copy)]
enum Token {
    /// An access token of the test application, live.
    Live,
    NotAJwt,
    /// Signed with a key the issuer does not hold.
    Forged,
    /// Signed by the issuer, expired.
    Expired,
    /// The ID token issued beside a live access token: same issuer, key,
    /// audience and lifetime.
    Id,
}

/// Who calls, and how it authenticates.
#[derive(Debug, Clone, Copy)]
enum By {
    /// The test application, with its client secret (HTTP Basic).
    App,
    Other,
    Federated,
    /// The test application's client_id with the service account's app
    /// password, in the form.
    ServiceAccount,
    /// The test application with a wrong secret.
    WrongSecret,
    /// No client authentication.
    Nobody,
    /// Another service account bound to the test application, with its
    /// own app password.
    OtherAccount,
}

/// What the call answers.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Introspection: 200, active, of the test account.
    Active,
    /// Introspection: 200, `{"active": false}` and nothing else.
    Inactive,
    /// Revocation: 200.
    Revoked,
    /// This status and RFC 6749 error code.
    Error(u16, &'static str),
}

struct Row {
    rule: &'static str,
    path: &'static str,
    by: By,
    token: Token,
    want: Want,
    /// Whether the token is active for the test application afterwards
    /// (a `Live` token; `None` for the others).
    then_active: Option<bool>,
}

const ROWS: &[Row] = &[
    Row {
        rule: "client_authenticating_with_a_service_account_may_introspect",
        path: INTROSPECT,
        by: By::ServiceAccount,
        token: Token::Live,
        want: Want::Active,
        then_active: Some(true),
    },
    Row {
        rule: "introspection_with_a_wrong_client_secret_is_401_invalid_client",
        path: INTROSPECT,
        by: By::WrongSecret,
        token: Token::Live,
        want: Want::Error(401, "invalid_client"),
        then_active: Some(true),
    },
    Row {
        rule: "introspection_without_client_authentication_is_invalid_request",
        path: INTROSPECT,
        by: By::Nobody,
        token: Token::Live,
        want: Want::Error(400, "invalid_request"),
        then_active: Some(true),
    },
    Row {
        // CVE-2024-47077: a client of one application read another's tokens.
        rule: "another_application_cannot_introspect_the_token",
        path: INTROSPECT,
        by: By::Other,
        token: Token::Live,
        want: Want::Inactive,
        then_active: Some(true),
    },
    Row {
        rule: "federated_application_may_introspect_the_token",
        path: INTROSPECT,
        by: By::Federated,
        token: Token::Live,
        want: Want::Active,
        then_active: Some(true),
    },
    Row {
        rule: "unparseable_token_is_inactive",
        path: INTROSPECT,
        by: By::App,
        token: Token::NotAJwt,
        want: Want::Inactive,
        then_active: None,
    },
    Row {
        rule: "foreign_token_is_inactive",
        path: INTROSPECT,
        by: By::App,
        token: Token::Forged,
        want: Want::Inactive,
        then_active: None,
    },
    Row {
        rule: "expired_token_is_inactive",
        path: INTROSPECT,
        by: By::App,
        token: Token::Expired,
        want: Want::Inactive,
        then_active: None,
    },
    Row {
        // A resource server that introspects must not take it for one.
        rule: "id_token_is_not_an_active_access_token",
        path: INTROSPECT,
        by: By::App,
        token: Token::Id,
        want: Want::Inactive,
        then_active: None,
    },
    Row {
        rule: "revoked_token_is_inactive",
        path: REVOKE,
        by: By::App,
        token: Token::Live,
        want: Want::Revoked,
        then_active: Some(false),
    },
    Row {
        rule: "another_application_cannot_revoke_the_token",
        path: REVOKE,
        by: By::Other,
        token: Token::Live,
        want: Want::Revoked,
        then_active: Some(true),
    },
    Row {
        rule: "revoking_an_unknown_token_is_200",
        path: REVOKE,
        by: By::App,
        token: Token::NotAJwt,
        want: Want::Revoked,
        then_active: None,
    },
    Row {
        rule: "another_principal_of_the_application_cannot_introspect_the_token",
        path: INTROSPECT,
        by: By::OtherAccount,
        token: Token::Live,
        want: Want::Inactive,
        then_active: Some(true),
    },
    Row {
        rule: "another_principal_of_the_application_cannot_revoke_the_token",
        path: REVOKE,
        by: By::OtherAccount,
        token: Token::Live,
        want: Want::Revoked,
        then_active: Some(true),
    },
    Row {
        rule: "a_principal_may_revoke_its_own_token",
        path: REVOKE,
        by: By::ServiceAccount,
        token: Token::Live,
        want: Want::Revoked,
        then_active: Some(false),
    },
    Row {
        // RFC 7009 §2.1: the token was issued to another client.
        rule: "a_federated_application_cannot_revoke_the_token",
        path: REVOKE,
        by: By::Federated,
        token: Token::Live,
        want: Want::Revoked,
        then_active: Some(true),
    },
    Row {
        rule: "revocation_needs_an_authenticated_client",
        path: REVOKE,
        by: By::WrongSecret,
        token: Token::Live,
        want: Want::Error(401, "invalid_client"),
        then_active: Some(true),
    },
];

/// Claims the issuer would sign for the test application, expiring at `exp`.
fn claims(endpoint: &Endpoint, exp: u64) -> Value {
    json!({
        "iss": endpoint.issuer(), "aud": CLIENT_ID, "sub": "x", "jti": "j", "exp": exp,
        "client_id": CLIENT_ID,
    })
}

/// Runs `row` on an endpoint of its own; panics naming the rule.
async fn run(row: &'static Row) {
    let rule = row.rule;
    let endpoint = endpoint();
    let json = tokens(&endpoint).await;
    let live = json["access_token"].as_str().unwrap().to_owned();
    // A second live token: no row may touch it.
    let bystander = access_token(&endpoint).await;
    let now = jsonwebtoken::get_current_timestamp();
    let token = match row.token {
        Token::Live => live.clone(),
        Token::NotAJwt => "not-a-jwt".to_owned(),
        Token::Forged => SigningKey::generate(Algorithm::ES256)
            .unwrap()
            .sign_jwt(None, &claims(&endpoint, now + 300))
            .unwrap(),
        Token::Expired => endpoint
            .keys
            .active()
            .sign_jwt(None, &claims(&endpoint, now - 10))
            .unwrap(),
        Token::Id => json["id_token"].as_str().unwrap().to_owned(),
    };
    let answer = match row.by {
        By::App => call(&endpoint, row.path, APP, &token).await,
        By::Other => call(&endpoint, row.path, (OTHER_CLIENT, OTHER_SECRET), &token).await,
        By::Federated => {
            let client = (FEDERATED_CLIENT, FEDERATED_SECRET);
            call(&endpoint, row.path, client, &token).await
        }
        By::WrongSecret => call(&endpoint, row.path, (CLIENT_ID, "wrong-secret"), &token).await,
        By::ServiceAccount => {
            let password = endpoint.token.clone();
            as_account(&endpoint, row.path, USERNAME, &password, &token).await
        }
        By::OtherAccount => {
            let (_, password) = endpoint.add_account("svc-bob");
            as_account(&endpoint, row.path, "svc-bob", &password, &token).await
        }
        By::Nobody => {
            let form = form_encode(&[("token", &token)]);
            let post = Post::raw(&form, Some(FORM));
            endpoint.send(post.request(row.path, &[])).await
        }
    };
    let text = answer.text();
    match row.want {
        Want::Active | Want::Inactive | Want::Revoked => {
            assert_eq!(answer.status, 200, "{rule}: {text}");
            assert_eq!(answer.header("cache-control"), "no-store", "{rule}");
        }
        Want::Error(status, _) => assert_eq!(answer.status, status, "{rule}: {text}"),
    }
    match row.want {
        Want::Active => {
            let json = answer.json();
            assert_eq!(json["active"], true, "{rule}: {json}");
            assert_eq!(json["username"], USERNAME, "{rule}: {json}");
        }
        Want::Inactive => assert_eq!(answer.json(), json!({"active": false}), "{rule}"),
        Want::Revoked => {}
        Want::Error(status, code) => {
            assert_eq!(answer.error(), code, "{rule}");
            if status == 401 {
                assert!(answer.headers.contains_key("www-authenticate"), "{rule}");
            }
        }
    }
    if let Some(then_active) = row.then_active {
        assert_eq!(active(&endpoint, &live).await, then_active, "{rule}: after");
    }
    assert!(active(&endpoint, &bystander).await, "{rule}: the bystander");
}

#[tokio::test]
async fn introspection_and_revocation_rules() {
    check_rows(ROWS, run).await;
}

// ---- rules of their own ------------------------------------------------------------

#[tokio::test]
async fn only_the_trusting_side_sees_the_trusted_sides_tokens() {
    let endpoint = endpoint();
    // `federated-client` trusts the test application, not the reverse.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", FEDERATED_CLIENT),
        ("client_secret", FEDERATED_SECRET),
    ];
    let json = endpoint.token_json(&form).await;
    let federated = json["access_token"].as_str().unwrap().to_owned();
    let seen = |json: Value| json["active"].as_bool().unwrap();
    assert!(!seen(introspect(&endpoint, APP, &federated).await));
    revoke(&endpoint, APP, &federated).await;
    let own = (FEDERATED_CLIENT, FEDERATED_SECRET);
    assert!(
        seen(introspect(&endpoint, own, &federated).await),
        "revoked by the trusted side"
    );
    // The trusting side sees the trusted side's tokens.
    let live = access_token(&endpoint).await;
    assert!(seen(introspect(&endpoint, own, &live).await));
}

#[tokio::test]
async fn live_token_is_active_with_its_claims() {
    let endpoint = endpoint();
    let token = access_token(&endpoint).await;
    let answer = introspect(&endpoint, APP, &token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], CLIENT_ID);
    assert_eq!(answer["scope"], "read");
    assert_eq!(answer["username"], USERNAME);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["iss"], endpoint.issuer());
    assert!(answer["exp"].as_u64().is_some());
}

#[tokio::test]
async fn revoked_token_cannot_be_traded_at_a_federated_application() {
    let endpoint = endpoint();
    let token = access_token(&endpoint).await;
    let trade = async |token: &str| {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", FEDERATED_CLIENT),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", token),
        ];
        endpoint.post_form(&form).await.status
    };
    // The account may get tokens at the federated application too.
    endpoint.store.bind(
        USERNAME,
        Binding::new(FEDERATED_CLIENT, Vec::<String>::new()),
    );
    assert_eq!(trade(&token).await, 200);
    revoke(&endpoint, APP, &token).await;
    assert_eq!(trade(&token).await, 400);
}

#[tokio::test]
async fn introspection_and_revocation_take_post_only_and_are_in_the_metadata() {
    let endpoint = endpoint();
    for path in [INTROSPECT, REVOKE] {
        let answer = endpoint.get(path).await;
        assert_eq!(answer.status, 405);
        assert_eq!(answer.header("allow"), "POST");
    }
    let metadata = endpoint
        .get(&format!(
            "/application/o/{SLUG}/.well-known/openid-configuration"
        ))
        .await
        .json();
    assert_eq!(metadata["introspection_endpoint"], endpoint.url(INTROSPECT));
    assert_eq!(metadata["revocation_endpoint"], endpoint.url(REVOKE));
}

// ------------------------------------------------------- HS256 signing keys

#[tokio::test]
async fn hs256_tokens_are_introspected_and_revoked() {
    // The secret is never published, so the JWKS cannot verify these
    // tokens; the issuer verifies them with its own secret.
    let endpoint = Endpoint::with(Algorithm::HS256, |layer| layer);
    let token = access_token(&endpoint).await;
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().alg,
        Algorithm::HS256
    );
    assert!(endpoint.jwks().await.keys.is_empty());
    let other = access_token(&endpoint).await;
    let answer = introspect(&endpoint, APP, &token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["username"], USERNAME);

    revoke(&endpoint, APP, &token).await;
    assert_eq!(
        introspect(&endpoint, APP, &token).await,
        json!({"active": false})
    );
    assert!(active(&endpoint, &other).await);
}

#[tokio::test]
async fn hs256_tokens_of_a_rotated_out_secret_stay_introspectable() {
    let endpoint = Endpoint::with(Algorithm::HS256, |layer| layer);
    let token = access_token(&endpoint).await;
    endpoint
        .keys
        .rotate(SigningKey::generate(Algorithm::HS256).unwrap());
    assert!(active(&endpoint, &token).await);
    revoke(&endpoint, APP, &token).await;
    assert!(!active(&endpoint, &token).await);
}

#[tokio::test]
async fn hs256_tokens_of_another_secret_or_a_public_key_are_inactive() {
    // HS256 in the introspection allow-list opens no key confusion: an
    // HMAC "signature" keyed with the published public key, or with a
    // secret that is not the ring's, verifies nothing.
    let endpoint = Endpoint::with(Algorithm::ES256, |layer| {
        // A second key in the ring, whose secret is the ring's own.
        let _ = layer
            .keys()
            .clone()
            .with_published(SigningKey::generate(Algorithm::HS256).unwrap());
        layer
    });
    let now = jsonwebtoken::get_current_timestamp();
    let claims = claims(&endpoint, now + 300);
    let jwks = endpoint.jwks().await;
    let public_jwk = serde_json::to_vec(&jwks.keys[0]).unwrap();
    let hmac = |kid: Option<String>| {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = kid;
        let key = jsonwebtoken::EncodingKey::from_secret(&public_jwk);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let confused = hmac(jwks.keys[0].common.key_id.clone());
    // Without a `kid`, every key of the ring is tried: still nothing.
    let kidless = hmac(None);
    let stranger = SigningKey::generate(Algorithm::HS256)
        .unwrap()
        .sign_jwt(Some("at+jwt"), &claims)
        .unwrap();
    for token in [confused, kidless, stranger] {
        assert_eq!(
            introspect(&endpoint, APP, &token).await,
            json!({"active": false})
        );
    }
}
