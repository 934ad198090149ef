//! Resource indicators (RFC 8707) at the token endpoint, for
//! client_credentials: the rules as rows in process (`oneshot`), then the
//! wire: the `oauth2` crate's client asks for a resource, and two APIs
//! behind `JwtValidateLayer` each accept only tokens minted for them.

#![cfg(feature = "reqwest")]

mod common;

use axum::Router;
use axum::routing::get;
use common::*;
use jsonwebtoken::Algorithm;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use serde_json::{Value, json};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};

const ORDERS: &str = "https://orders.example/api";
const BILLING: &str = "https://billing.example/api";

fn resource_application() -> tower_m2m_auth::issuer::Application {
    application().with_resources([ORDERS, BILLING, "reports"])
}

/// What a row expects: an error code, or this `aud` on the access token.
enum Expect {
    Error(&'static str),
    Aud(fn() -> Value),
}

struct Row {
    rule: &'static str,
    params: &'static [(&'static str, &'static str)],
    expect: Expect,
}

use Expect::{Aud, Error};

static RULES: &[Row] = &[
    Row {
        rule: "no_resource_keeps_the_client_id_as_aud",
        params: &[],
        expect: Aud(|| json!(CLIENT_ID)),
    },
    Row {
        rule: "allowed_resource_is_the_aud",
        params: &[("resource", ORDERS)],
        expect: Aud(|| json!(ORDERS)),
    },
    Row {
        rule: "allowed_audience_is_the_aud",
        params: &[("audience", "reports")],
        expect: Aud(|| json!("reports")),
    },
    Row {
        rule: "several_resources_are_an_aud_array_in_request_order",
        params: &[("resource", BILLING), ("resource", ORDERS)],
        expect: Aud(|| json!([BILLING, ORDERS])),
    },
    Row {
        rule: "a_resource_named_twice_is_one_aud",
        params: &[("resource", ORDERS), ("resource", ORDERS)],
        expect: Aud(|| json!(ORDERS)),
    },
    Row {
        rule: "unknown_resource_is_invalid_target",
        params: &[("resource", "https://payroll.example/api")],
        expect: Error("invalid_target"),
    },
    Row {
        rule: "one_unknown_among_allowed_is_invalid_target",
        params: &[
            ("resource", ORDERS),
            ("resource", "https://payroll.example/api"),
        ],
        expect: Error("invalid_target"),
    },
    Row {
        rule: "relative_resource_is_invalid_target",
        params: &[("resource", "/orders")],
        expect: Error("invalid_target"),
    },
    Row {
        rule: "resource_with_a_fragment_is_invalid_target",
        params: &[("resource", "https://orders.example/api#x")],
        expect: Error("invalid_target"),
    },
    Row {
        rule: "a_listed_name_that_is_no_uri_is_no_resource",
        params: &[("resource", "reports")],
        expect: Error("invalid_target"),
    },
];

#[tokio::test]
async fn each_resource_rule_holds() {
    check_rows(RULES, |row| async move {
        let endpoint = Endpoint::with_application(Algorithm::ES256, resource_application(), |l| l);
        let mut form = endpoint.password_form().to_vec();
        form.push(("scope", "read"));
        form.extend_from_slice(row.params);
        let answer = endpoint.post_form(&form).await;
        match &row.expect {
            Error(code) => {
                assert_eq!(answer.status, 400, "{}: {}", row.rule, answer.text());
                assert_eq!(answer.error(), *code, "{}", row.rule);
            }
            Aud(aud) => {
                assert_eq!(answer.status, 200, "{}: {}", row.rule, answer.text());
                let json = answer.json();
                let token = json["access_token"].as_str().unwrap();
                let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap();
                assert_eq!(claims["aud"], aud(), "{}", row.rule);
                assert_eq!(claims["client_id"], CLIENT_ID, "{}", row.rule);
                // The ID token is the client's, whatever the access token is for.
                let id_token = json["id_token"].as_str().unwrap();
                let id: Value = jsonwebtoken::dangerous::insecure_decode_claims(id_token).unwrap();
                assert_eq!(id["aud"], CLIENT_ID, "{}", row.rule);
            }
        }
    })
    .await;
}

#[tokio::test]
async fn application_without_resources_refuses_every_resource() {
    let endpoint = Endpoint::new();
    let mut form = endpoint.password_form().to_vec();
    form.push(("resource", ORDERS));
    assert_eq!(endpoint.post_form(&form).await.error(), "invalid_target");
}

/// An API host on 127.0.0.1: `/orders` accepts only tokens for [`ORDERS`],
/// `/billing` only tokens for [`BILLING`]; both trust the server's JWKS.
async fn apis(server: &Server) -> String {
    let issuer = || {
        Issuer::with_jwks_url(
            server.issuer(),
            server.url(&format!("/application/o/{SLUG}/jwks/")),
        )
    };
    let api = |audience: &str| JwtValidateLayer::new().issuer(issuer()).audience(audience);
    let app = Router::new()
        .route("/orders", get(|| async { "orders" }).layer(api(ORDERS)))
        .route("/billing", get(|| async { "billing" }).layer(api(BILLING)));
    serve(|_| app).await
}

/// A token from the `oauth2` crate's client (HTTP Basic with the
/// application's secret), with these `resource` parameters.
async fn oauth2_token(server: &Server, resources: &[&str]) -> String {
    let client = BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(APP_SECRET.into()))
        .set_token_uri(TokenUrl::new(server.token_url()).unwrap());
    let mut request = client
        .exchange_client_credentials()
        .add_scope(Scope::new("read".into()));
    for resource in resources {
        request = request.add_extra_param("resource", *resource);
    }
    let response = request.request_async(&oauth2_http()).await.unwrap();
    response.access_token().secret().clone()
}

async fn status(url: String, token: &str) -> u16 {
    http()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn each_api_accepts_only_tokens_minted_for_it_over_http() {
    let server = start_with_application(Algorithm::ES256, resource_application(), |l| l).await;
    let apis = apis(&server).await;
    let orders = oauth2_token(&server, &[ORDERS]).await;
    assert_eq!(status(format!("{apis}/orders"), &orders).await, 200);
    assert_eq!(status(format!("{apis}/billing"), &orders).await, 401);
    let both = oauth2_token(&server, &[ORDERS, BILLING]).await;
    assert_eq!(status(format!("{apis}/orders"), &both).await, 200);
    assert_eq!(status(format!("{apis}/billing"), &both).await, 200);
    let plain = oauth2_token(&server, &[]).await;
    assert_eq!(status(format!("{apis}/orders"), &plain).await, 401);
}

#[tokio::test]
async fn oauth2_client_sees_invalid_target() {
    let server = start_with_application(Algorithm::ES256, resource_application(), |l| l).await;
    let client = BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(APP_SECRET.into()))
        .set_token_uri(TokenUrl::new(server.token_url()).unwrap());
    let error = client
        .exchange_client_credentials()
        .add_extra_param("resource", "https://payroll.example/api")
        .request_async(&oauth2_http())
        .await
        .unwrap_err();
    // The basic client knows RFC 6749's codes only: invalid_target arrives
    // as an extension code, intact.
    assert!(format!("{error:?}").contains("invalid_target"), "{error:?}");
}
