//! Who may get which token, on whose word, and for how long: application
//! bindings, federation that cannot outlive its account, and the
//! configurations the endpoint refuses to build.

#![cfg(feature = "reqwest")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use tower_m2m_auth::issuer::{Application, ConfigError, TokenEndpointLayer};
use tower_m2m_auth::keys::fetch::ReqwestFetcher;
use tower_m2m_auth::keys::{KeyRing, RemoteJwks, SigningKey, TrustedIssuer, VerificationKeys};
use tower_m2m_auth::store::{AccountAdmin, Binding, MemoryStore};

const OPS_CLIENT: &str = "ops-api";
const OPS_SLUG: &str = "ops";

fn ops_application() -> Application {
    Application::new(OPS_CLIENT, OPS_SLUG).with_allowed_scopes(["read", "admin"])
}

/// A password login at `client_id`.
async fn login(
    server: &Server,
    client_id: &str,
    username: &str,
    token: &str,
    scope: &str,
) -> reqwest::Response {
    post_form(
        server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("username", username),
            ("password", token),
            ("scope", scope),
        ]),
    )
    .await
}

async fn json_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn claims_of(
    server: &Server,
    jwks: &jsonwebtoken::jwk::JwkSet,
    token: &str,
    client_id: &str,
    slug: &str,
) -> Value {
    verify(
        jwks,
        token,
        client_id,
        &server.url(&format!("/application/o/{slug}/")),
    )
}

// ---- bindings -----------------------------------------------------------------------------

#[tokio::test]
async fn unbound_account_gets_no_token_at_another_application() {
    let server = start_with(Algorithm::ES256, |layer| {
        layer.application(ops_application()).unwrap()
    })
    .await;
    // metrics-bot is bound to the test application only.
    let (_, token) = server.add_account("metrics-bot");
    let response = login(&server, OPS_CLIENT, "metrics-bot", &token, "admin").await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_grant");
    // Where it is bound, it gets its token.
    let json = json_of(login(&server, CLIENT_ID, "metrics-bot", &token, "read").await).await;
    assert_eq!(json["scope"], "read");
}

#[tokio::test]
async fn account_bound_nowhere_gets_no_token() {
    let server = start().await;
    let (_, token) = server.add_unbound_account("loose");
    let response = login(&server, CLIENT_ID, "loose", &token, "read").await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn binding_narrows_the_scopes() {
    let server = start_with(Algorithm::ES256, |layer| {
        layer.application(ops_application()).unwrap()
    })
    .await;
    let (_, token) = server.add_unbound_account("reader");
    server
        .store
        .bind("reader", Binding::new(OPS_CLIENT, ["read"]));
    let json = json_of(login(&server, OPS_CLIENT, "reader", &token, "read admin").await).await;
    assert_eq!(json["scope"], "read");
}

#[tokio::test]
async fn unbinding_refuses_the_next_request() {
    let server = start_with(Algorithm::ES256, |layer| {
        layer.application(ops_application()).unwrap()
    })
    .await;
    let (_, token) = server.add_unbound_account("ops-bot");
    server
        .store
        .bind("ops-bot", Binding::new(OPS_CLIENT, ["admin"]));
    json_of(login(&server, OPS_CLIENT, "ops-bot", &token, "admin").await).await;
    assert!(
        server
            .store
            .unbind_account("ops-bot", OPS_CLIENT)
            .await
            .unwrap()
    );
    let response = login(&server, OPS_CLIENT, "ops-bot", &token, "admin").await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn any_account_switch_lets_unbound_accounts_in() {
    let server = start_with(Algorithm::ES256, |layer| {
        layer
            .application(ops_application().danger_allow_any_account())
            .unwrap()
    })
    .await;
    let (_, token) = server.add_unbound_account("anyone");
    let json = json_of(login(&server, OPS_CLIENT, "anyone", &token, "read admin").await).await;
    assert_eq!(json["scope"], "read admin");
}

#[tokio::test]
async fn base64_secret_form_is_bound_too() {
    use base64::Engine as _;
    let server = start_with(Algorithm::ES256, |layer| {
        layer.application(ops_application()).unwrap()
    })
    .await;
    let (_, token) = server.add_account("bound-here-only");
    let secret =
        base64::engine::general_purpose::STANDARD.encode(format!("bound-here-only:{token}"));
    let response = post_form(
        &server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", OPS_CLIENT),
            ("client_secret", &secret),
        ]),
    )
    .await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

// ---- federation ---------------------------------------------------------------------------

/// The test application, and `ops-api` that accepts its tokens; the test
/// account is bound at both.
async fn federating() -> Server {
    let server = start_with(Algorithm::ES256, |layer| {
        layer
            .application(ops_application().with_federated_application(CLIENT_ID))
            .unwrap()
    })
    .await;
    server
        .store
        .bind(USERNAME, Binding::new(OPS_CLIENT, ["read", "admin"]));
    server
}

async fn first_tokens(server: &Server, scope: &str) -> Value {
    json_of(login(server, CLIENT_ID, USERNAME, &server.token, scope).await).await
}

#[tokio::test]
async fn disabled_account_cannot_trade_its_tokens() {
    let server = federating().await;
    let first = first_tokens(&server, "read").await;
    let access = first["access_token"].as_str().unwrap();
    // Trading works while the account is active...
    json_of(post_assertion(&server, OPS_CLIENT, access, "read").await).await;
    // ...and not a moment after it is disabled.
    assert!(
        server
            .store
            .set_account_active(USERNAME, false)
            .await
            .unwrap()
    );
    let response = post_assertion(&server, OPS_CLIENT, access, "read").await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn traded_token_never_outlives_the_input() {
    const SHORT_CLIENT: &str = "short-lived";
    let server = start_with(Algorithm::ES256, |layer| {
        layer
            .application(
                Application::new(SHORT_CLIENT, "short")
                    .with_allowed_scopes(["read"])
                    .with_token_lifetime(Duration::from_secs(60)),
            )
            .unwrap()
            .application(
                ops_application()
                    .with_federated_application(SHORT_CLIENT)
                    .with_token_lifetime(Duration::from_secs(86_400)),
            )
            .unwrap()
    })
    .await;
    server
        .store
        .bind(USERNAME, Binding::new(SHORT_CLIENT, ["read"]));
    server
        .store
        .bind(USERNAME, Binding::new(OPS_CLIENT, ["read"]));
    let first = json_of(login(&server, SHORT_CLIENT, USERNAME, &server.token, "read").await).await;
    let access = first["access_token"].as_str().unwrap();
    let jwks = server.jwks().await;
    let input = claims_of(&server, &jwks, access, SHORT_CLIENT, "short");
    let traded = json_of(post_assertion(&server, OPS_CLIENT, access, "read").await).await;
    let output = claims_of(
        &server,
        &jwks,
        traded["access_token"].as_str().unwrap(),
        OPS_CLIENT,
        OPS_SLUG,
    );
    assert!(output["exp"].as_u64().unwrap() <= input["exp"].as_u64().unwrap());
    assert!(traded["expires_in"].as_u64().unwrap() <= 60);
    assert_eq!(output["preferred_username"], USERNAME);
}

#[tokio::test]
async fn traded_token_carries_no_scope_the_input_lacked() {
    let server = federating().await;
    let first = first_tokens(&server, "read").await;
    let traded = json_of(
        post_assertion(
            &server,
            OPS_CLIENT,
            first["access_token"].as_str().unwrap(),
            "read admin",
        )
        .await,
    )
    .await;
    assert_eq!(traded["scope"], "read");
}

#[tokio::test]
async fn id_token_is_never_traded() {
    let server = federating().await;
    let first = first_tokens(&server, "read").await;
    let id_token = first["id_token"].as_str().unwrap();
    let response = post_assertion(&server, OPS_CLIENT, id_token, "read").await;
    assert_eq!(response.status(), 400);
    // A client assertion that is not valid (RFC 7523 §3.2).
    assert_eq!(error_code(response).await, "invalid_client");
}

#[tokio::test]
async fn account_not_bound_at_the_target_cannot_trade() {
    let server = start_with(Algorithm::ES256, |layer| {
        layer
            .application(ops_application().with_federated_application(CLIENT_ID))
            .unwrap()
    })
    .await;
    let first = first_tokens(&server, "read").await;
    let response = post_assertion(
        &server,
        OPS_CLIENT,
        first["access_token"].as_str().unwrap(),
        "read",
    )
    .await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn automatic_account_stays_at_its_own_application() {
    let server = federating().await;
    let response = post_form(
        &server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", APP_SECRET),
        ]),
    )
    .await;
    let automatic = json_of(response).await;
    let response = post_assertion(
        &server,
        OPS_CLIENT,
        automatic["access_token"].as_str().unwrap(),
        "",
    )
    .await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

// ---- configurations refused at build time -------------------------------------------------

fn layer() -> TokenEndpointLayer<tower_m2m_auth::issuer::StoreVerifier<MemoryStore>> {
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    TokenEndpointLayer::new("https://auth.example.com", keys, MemoryStore::new()).unwrap()
}

#[test]
fn federation_cycle_is_refused() {
    let a = Application::new("a", "a").with_federated_application("b");
    let b = Application::new("b", "b").with_federated_application("c");
    let c = Application::new("c", "c").with_federated_application("a");
    match layer().applications([a, b, c]) {
        Err(ConfigError::FederationCycle(cycle)) => assert_eq!(cycle.len(), 3),
        other => panic!("expected a cycle error, got {other:?}"),
    }
}

#[test]
fn self_federation_is_refused() {
    let a = Application::new("a", "a").with_federated_application("a");
    assert!(matches!(layer().application(a), Err(ConfigError::SelfFederation(id)) if id == "a"));
}

#[test]
fn federation_with_an_unknown_application_is_refused() {
    let a = Application::new("a", "a").with_federated_application("nobody");
    assert!(matches!(
        layer().application(a),
        Err(ConfigError::UnknownFederatedApplication { federated, .. }) if federated == "nobody"
    ));
}

#[test]
fn federation_in_any_order_is_accepted_when_acyclic() {
    let a = Application::new("a", "a").with_federated_application("b");
    let b = Application::new("b", "b");
    let layer = layer().applications([a, b]).unwrap();
    assert!(layer.get_application("a").is_some());
}

#[test]
fn duplicate_client_id_and_slug_are_refused() {
    let layer = layer().application(Application::new("a", "a")).unwrap();
    assert!(matches!(
        layer.clone().application(Application::new("a", "other")),
        Err(ConfigError::DuplicateClientId(_))
    ));
    assert!(matches!(
        layer.application(Application::new("other", "a")),
        Err(ConfigError::DuplicateSlug(_))
    ));
}

fn remote_keys() -> VerificationKeys {
    VerificationKeys::new().with_issuer(
        TrustedIssuer::new("https://token.actions.githubusercontent.com").with_remote(
            RemoteJwks::new(
                "https://token.actions.githubusercontent.com/.well-known/jwks",
                Arc::new(ReqwestFetcher::new()),
            ),
        ),
    )
}

#[test]
fn unpinned_remote_jwks_is_refused() {
    let app = Application::new("ci", "ci").with_verification_keys(remote_keys());
    assert!(matches!(layer().application(app), Err(ConfigError::UnpinnedJwks(id)) if id == "ci"));
}

#[test]
fn remote_jwks_pinned_by_policy_or_audience_or_opt_in_is_accepted() {
    let by_policy = Application::new("p", "p")
        .with_verification_keys(remote_keys())
        .with_policy(|c: &tower_m2m_auth::policy::PolicyContext<'_>| {
            c.claims["repository"] == "org/app"
        });
    let by_audience = Application::new("a", "a")
        .with_verification_keys(remote_keys())
        .with_assertion_audiences(["https://auth.example.com"]);
    let opted_in = Application::new("o", "o")
        .with_verification_keys(remote_keys())
        .danger_accept_unpinned_jwks();
    let layer = layer()
        .applications([by_policy, by_audience, opted_in])
        .unwrap();
    assert!(layer.get_application("p").is_some());
}

#[test]
fn issuer_paths_may_be_set_after_applications() {
    let layer = layer()
        .application(Application::new("a", "a"))
        .unwrap()
        .issuer_path("/o/{slug}/")
        .unwrap();
    assert_eq!(
        layer.get_application("a").unwrap().issuer(),
        "https://auth.example.com/o/a/"
    );
}

// ---- the server's own issuers are federation's, never a trusted issuer's --------------

#[test]
fn trusting_one_of_the_servers_own_issuers_is_refused_when_built() {
    let own = SigningKey::generate(Algorithm::ES256).unwrap();
    let public =
        tower_m2m_auth::keys::VerificationKey::from_jwk(own.public_jwk().unwrap()).unwrap();
    let ring = KeyRing::new(own);
    let a = || Application::new("a", "a");
    for issuer in [
        "https://auth.example.com/application/o/a/",
        "https://auth.example.com/application/o/a",
    ] {
        let b = || {
            Application::new("b", "b").with_verification_keys(
                VerificationKeys::new()
                    .with_issuer(TrustedIssuer::new(issuer).with_key(public.clone())),
            )
        };
        let layer = || {
            TokenEndpointLayer::new("https://auth.example.com", ring.clone(), MemoryStore::new())
                .unwrap()
        };
        // In either order, and together.
        let refused = [
            layer()
                .application(a())
                .and_then(|l| l.application(b()))
                .err(),
            layer()
                .application(b())
                .and_then(|l| l.application(a()))
                .err(),
            layer().applications([b(), a()]).err(),
        ];
        for error in refused {
            let error = error.unwrap_or_else(|| panic!("{issuer}: built"));
            assert!(
                error.to_string().contains("federated_application"),
                "{error}"
            );
        }
    }
    // Another server's issuer at the same path is fine.
    let other =
        Application::new("b", "b").with_verification_keys(VerificationKeys::new().with_issuer(
            TrustedIssuer::new("https://other.example.com/application/o/a/").with_key(public),
        ));
    let _built = TokenEndpointLayer::new("https://auth.example.com", ring, MemoryStore::new())
        .unwrap()
        .applications([a(), other])
        .unwrap();
}
