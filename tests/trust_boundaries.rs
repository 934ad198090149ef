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

#[test]
fn two_applications_never_share_a_name() {
    // Their automatic accounts would both be `ak-demo-client_credentials`:
    // one `sub` in the Username mode, one `preferred_username` in all.
    let named = |client_id: &str| Application::new(client_id, client_id).with_name("demo");
    assert!(matches!(
        layer().applications([named("x"), named("y")]),
        Err(ConfigError::DuplicateName(name)) if name == "demo"
    ));
    let one = layer().application(named("x")).unwrap();
    assert!(matches!(
        one.application(named("y")),
        Err(ConfigError::DuplicateName(_))
    ));
}

#[test]
fn an_application_name_with_control_characters_is_refused() {
    for name in ["", "demo\n", "de\u{1b}[2Kmo"] {
        let application = Application::new("x", "x").with_name(name);
        assert!(
            matches!(
                layer().application(application),
                Err(ConfigError::Application { .. })
            ),
            "{name:?}"
        );
    }
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

// ---- what each kind of principal may do, at each endpoint: one row per cell -----------
//
// In process (`oneshot`). The test application trusts a CI issuer's input
// JWTs; `partner` federates with it (it trades the test application's
// tokens); `exchanger` accepts its tokens in token exchange. The test
// account and `svc-bob` are bound to the test application, the test
// account to `partner` and `exchanger` too.

mod principals {
    use super::common::jwks::External;
    use super::common::*;
    use jsonwebtoken::Algorithm;
    use serde_json::{Value, json};
    use tower_m2m_auth::issuer::{Application, TokenExchange};
    use tower_m2m_auth::keys::{TrustedIssuer, VerificationKey, VerificationKeys};
    use tower_m2m_auth::store::Binding;

    const CI: &str = "https://ci.example";
    const PARTNER: (&str, &str) = ("partner", "partner-secret-0123456789");
    const EXCHANGER: (&str, &str) = ("exchanger", "exchanger-secret-0123456789");
    const APP: (&str, &str) = (CLIENT_ID, APP_SECRET);
    const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

    /// The kind of principal a token was minted for, and how.
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        /// The test account, by its app password.
        Bound,
        /// The test application's automatic account, by its client secret.
        Automatic,
        /// A JWT identity, by a CI input JWT.
        JwtIdentity,
        /// The test account's token, traded at `partner`.
        Federated,
        /// The test account's token, exchanged at `exchanger`.
        Exchanged,
    }

    /// Who calls.
    #[derive(Debug, Clone, Copy)]
    enum By {
        /// The same credential that got the token.
        Itself,
        /// `svc-bob`, another principal of the test application.
        Bob,
        /// An application's own secret.
        Secret((&'static str, &'static str)),
    }

    #[derive(Debug, Clone, Copy)]
    enum Action {
        Introspect(By),
        /// Revoke, then ask the token's own application whether it is live.
        Revoke(By),
        /// Trade the token at `partner` (as a client assertion).
        Trade,
        /// Exchange it at `exchanger` (as a subject token).
        Exchange,
    }

    /// Introspection: active or not; revocation: whether the token is
    /// still live after it; a trade or an exchange: granted or not.
    type Row = (&'static str, Kind, Action, bool);

    use Action::*;
    use By::*;
    use Kind::*;

    #[rustfmt::skip]
    const ROWS: &[Row] = &[
        // A bound account.
        ("a_bound_account_sees_its_own_token", Bound, Introspect(Itself), true),
        ("another_principal_does_not_see_a_bound_accounts_token", Bound, Introspect(Bob), false),
        ("the_application_secret_sees_a_bound_accounts_token", Bound, Introspect(Secret(APP)), true),
        ("a_bound_accounts_token_is_not_revoked_by_another_principal", Bound, Revoke(Bob), true),
        ("a_bound_account_revokes_its_own_token", Bound, Revoke(Itself), false),
        ("a_federated_application_does_not_revoke_a_bound_accounts_token", Bound, Revoke(Secret(PARTNER)), true),
        ("the_trusting_side_sees_a_bound_accounts_token", Bound, Introspect(Secret(PARTNER)), true),
        ("an_application_that_only_exchanges_does_not_see_the_token", Bound, Introspect(Secret(EXCHANGER)), false),
        ("a_bound_accounts_token_is_traded_where_it_is_bound", Bound, Trade, true),
        ("a_bound_accounts_token_is_exchanged_where_it_is_bound", Bound, Exchange, true),
        // The application's automatic account.
        ("the_automatic_account_sees_its_token", Automatic, Introspect(Itself), true),
        ("another_principal_does_not_see_the_automatic_accounts_token", Automatic, Introspect(Bob), false),
        ("the_automatic_accounts_token_is_not_revoked_by_another_principal", Automatic, Revoke(Bob), true),
        ("the_automatic_accounts_token_is_never_traded", Automatic, Trade, false),
        ("the_automatic_accounts_token_is_never_exchanged_elsewhere", Automatic, Exchange, false),
        // A JWT identity.
        ("a_jwt_identity_sees_its_own_token", JwtIdentity, Introspect(Itself), true),
        ("another_principal_does_not_see_a_jwt_identitys_token", JwtIdentity, Introspect(Bob), false),
        ("the_application_secret_sees_a_jwt_identitys_token", JwtIdentity, Introspect(Secret(APP)), true),
        ("a_jwt_identity_revokes_its_own_token", JwtIdentity, Revoke(Itself), false),
        ("a_jwt_identitys_token_is_not_revoked_by_another_principal", JwtIdentity, Revoke(Bob), true),
        ("a_jwt_identitys_token_is_never_traded", JwtIdentity, Trade, false),
        ("a_jwt_identitys_token_is_never_exchanged_elsewhere", JwtIdentity, Exchange, false),
        // A federated token (partner's, traded from the test application's).
        ("the_trusted_side_does_not_see_the_trusting_sides_token", Federated, Introspect(Secret(APP)), false),
        ("a_principal_of_the_trusted_side_does_not_see_it", Federated, Introspect(Bob), false),
        ("the_trusting_side_sees_its_traded_token", Federated, Introspect(Secret(PARTNER)), true),
        ("the_trusted_side_does_not_revoke_the_trusting_sides_token", Federated, Revoke(Secret(APP)), true),
        ("the_trusting_side_revokes_its_traded_token", Federated, Revoke(Secret(PARTNER)), false),
        // An exchanged token (exchanger's).
        ("the_subjects_application_does_not_see_an_exchanged_token", Exchanged, Introspect(Secret(APP)), false),
        ("the_exchanging_application_sees_its_token", Exchanged, Introspect(Secret(EXCHANGER)), true),
        ("the_subjects_application_does_not_revoke_an_exchanged_token", Exchanged, Revoke(Secret(APP)), true),
    ];

    struct Fixture {
        endpoint: Endpoint,
        ci: External,
        bob: String,
    }

    fn fixture() -> Fixture {
        let ci = External::new(Algorithm::ES256);
        let key = VerificationKey::from_pem(ci.certificate_pem().as_bytes()).unwrap();
        let test = application().with_verification_keys(
            VerificationKeys::new().with_issuer(TrustedIssuer::new(CI).with_key(key)),
        );
        let endpoint = Endpoint::with_application(Algorithm::ES256, test, |layer| {
            layer
                .application(
                    Application::new(PARTNER.0, "partner")
                        .with_client_secret(PARTNER.1)
                        .with_allowed_scopes(["read"])
                        .with_federated_application(CLIENT_ID),
                )
                .unwrap()
                .application(
                    Application::new(EXCHANGER.0, "exchanger")
                        .with_client_secret(EXCHANGER.1)
                        .with_allowed_scopes(["read"])
                        .with_token_exchange(TokenExchange::new().accept_tokens_of(CLIENT_ID)),
                )
                .unwrap()
        });
        for client_id in [PARTNER.0, EXCHANGER.0] {
            endpoint
                .store
                .bind(USERNAME, Binding::new(client_id, ["read"]));
        }
        let (_, bob) = endpoint.add_account("svc-bob");
        Fixture { endpoint, ci, bob }
    }

    impl Fixture {
        /// A CI input JWT addressed to the token endpoint.
        fn ci_jwt(&self) -> String {
            let now = jsonwebtoken::get_current_timestamp();
            self.ci.mint(&json!({
                "iss": CI, "sub": "robot", "aud": self.endpoint.token_url(),
                "exp": now + 300, "iat": now,
            }))
        }

        /// The client authentication fields of `by`, for a token of `kind`.
        fn credentials(&self, by: By, kind: Kind, jwt: &str) -> Vec<(String, String)> {
            let pairs: Vec<(&str, &str)> = match (by, kind) {
                (Bob, _) => vec![
                    ("client_id", CLIENT_ID),
                    ("username", "svc-bob"),
                    ("password", &self.bob),
                ],
                (Secret((client_id, secret)), _) => {
                    vec![("client_id", client_id), ("client_secret", secret)]
                }
                (Itself, Bound) => vec![
                    ("client_id", CLIENT_ID),
                    ("username", USERNAME),
                    ("password", &self.endpoint.token),
                ],
                (Itself, Automatic) => {
                    vec![("client_id", CLIENT_ID), ("client_secret", APP_SECRET)]
                }
                (Itself, JwtIdentity) => vec![
                    ("client_id", CLIENT_ID),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", jwt),
                ],
                (Itself, kind) => panic!("no row asks {kind:?} itself"),
            };
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        }

        async fn post(&self, path: &str, fields: &[(String, String)]) -> Answer {
            let pairs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            self.endpoint
                .send(Post::form(&pairs).request(path, &[]))
                .await
        }

        async fn token(&self, kind: Kind, jwt: &str) -> String {
            let grant = ("grant_type".to_owned(), "client_credentials".to_owned());
            let access = |answer: Answer| {
                assert_eq!(answer.status, 200, "{kind:?}: {}", answer.text());
                answer.json()["access_token"].as_str().unwrap().to_owned()
            };
            let own = |kind| {
                let mut fields = self.credentials(Itself, kind, jwt);
                fields.push(grant.clone());
                fields
            };
            match kind {
                Bound | Automatic | JwtIdentity => {
                    access(self.post("/application/o/token/", &own(kind)).await)
                }
                Federated | Exchanged => {
                    let bound = access(self.post("/application/o/token/", &own(Bound)).await);
                    access(self.use_token(kind, &bound).await)
                }
            }
        }

        /// Trades (`Federated`) or exchanges (`Exchanged`) `token`.
        async fn use_token(&self, how: Kind, token: &str) -> Answer {
            let fields: Vec<(&str, &str)> = match how {
                Federated => vec![
                    ("grant_type", "client_credentials"),
                    ("client_id", PARTNER.0),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", token),
                ],
                _ => vec![
                    ("grant_type", EXCHANGE),
                    ("client_id", EXCHANGER.0),
                    ("client_secret", EXCHANGER.1),
                    ("subject_token", token),
                    ("subject_token_type", ACCESS),
                ],
            };
            self.endpoint.post_form(&fields).await
        }

        /// Whether the token's own application sees `token` as active.
        async fn live(&self, kind: Kind, token: &str) -> bool {
            let owner = match kind {
                Federated => PARTNER,
                Exchanged => EXCHANGER,
                _ => APP,
            };
            let mut fields = self.credentials(Secret(owner), kind, "");
            fields.push(("token".to_owned(), token.to_owned()));
            let answer = self.post("/application/o/introspect/", &fields).await;
            answer.json()["active"].as_bool().unwrap()
        }
    }

    async fn run(row: &'static Row) {
        let (rule, kind, action, expected) = *row;
        let fixture = fixture();
        let jwt = fixture.ci_jwt();
        let token = fixture.token(kind, &jwt).await;
        let outcome = match action {
            Introspect(by) | Revoke(by) => {
                let path = match action {
                    Introspect(_) => "/application/o/introspect/",
                    _ => "/application/o/revoke/",
                };
                let mut fields = fixture.credentials(by, kind, &jwt);
                fields.push(("token".to_owned(), token.clone()));
                let answer = fixture.post(path, &fields).await;
                assert_eq!(answer.status, 200, "{rule}: {}", answer.text());
                match action {
                    Introspect(_) => {
                        let json: Value = answer.json();
                        let active = json["active"].as_bool().unwrap();
                        if !active {
                            assert_eq!(json, json!({"active": false}), "{rule}: says more");
                        }
                        active
                    }
                    _ => fixture.live(kind, &token).await,
                }
            }
            Trade => fixture.use_token(Federated, &token).await.status == 200,
            Exchange => fixture.use_token(Exchanged, &token).await.status == 200,
        };
        assert_eq!(outcome, expected, "{rule}");
    }

    #[tokio::test]
    async fn each_kind_of_principal_may_do_what_its_row_says() {
        check_rows(ROWS, run).await;
    }
}
