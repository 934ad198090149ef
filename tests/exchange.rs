//! Token exchange (RFC 8693) at the token endpoint: one row per rule, run in
//! process (`oneshot`). The exchanging application `orders-api` accepts the
//! access tokens of the test application and its own, and the input JWTs of
//! a CI issuer; `plain-client` accepts no exchange.

mod common;

use common::foreign::now;
use common::jwks::External;
use common::oneshot::FORM;
use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tower_m2m_auth::issuer::{Application, TokenExchange};
use tower_m2m_auth::keys::{TrustedIssuer, VerificationKey, VerificationKeys};
use tower_m2m_auth::store::{AccountAdmin, Binding};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const ORDERS: &str = "orders-api";
const ORDERS_SECRET: &str = "orders-secret-0123456789";
const PLAIN: &str = "plain-client";
const PLAIN_SECRET: &str = "plain-secret-0123456789";
const BILLING: &str = "https://billing.example/api";
const AUDIT: &str = "https://audit.example/api";
const CI: &str = "https://ci.example";
/// An application federated with `orders-api` (it trades its tokens).
const PARTNER: &str = "orders-partner";

/// The endpoint, and the CI issuer whose JWTs `orders-api` trusts.
struct Fixture {
    endpoint: Endpoint,
    ci: External,
}

fn fixture() -> Fixture {
    let ci = External::new(Algorithm::ES256);
    let key = VerificationKey::from_pem(ci.certificate_pem().as_bytes()).unwrap();
    let orders = Application::new(ORDERS, "orders")
        .with_client_secret(ORDERS_SECRET)
        .with_allowed_scopes(["read", "write"])
        .with_resources([BILLING, AUDIT, "billing"])
        .with_verification_keys(
            VerificationKeys::new().with_issuer(TrustedIssuer::new(CI).with_key(key)),
        )
        .with_token_exchange(
            TokenExchange::new()
                .accept_tokens_of(CLIENT_ID)
                .accept_tokens_of(ORDERS)
                .accept_trusted_jwts()
                .allow_actor(CI, "robot")
                .allow_actor(CI, "robot-2"),
        );
    let plain = Application::new(PLAIN, "plain")
        .with_client_secret(PLAIN_SECRET)
        .with_allowed_scopes(["read"]);
    let endpoint = Endpoint::with(Algorithm::ES256, |layer| {
        layer
            .application(orders)
            .unwrap()
            .application(plain)
            .unwrap()
            .application(
                Application::new(PARTNER, "partner")
                    .with_allowed_scopes(["read", "write"])
                    .with_federated_application(ORDERS),
            )
            .unwrap()
    });
    endpoint
        .store
        .bind(USERNAME, Binding::new(ORDERS, ["read", "write"]));
    endpoint
        .store
        .bind(USERNAME, Binding::new(PARTNER, ["read", "write"]));
    Fixture { endpoint, ci }
}

/// How a row gets its subject (or actor) token.
#[derive(Clone, Copy, Debug)]
enum Token {
    /// The test account's access token at the test application, with this scope.
    Web(&'static str),
    /// The ID token of the same request.
    WebId,
    /// `plain-client`'s access token (an application `orders-api` does not accept).
    Plain,
    /// A web token's claims signed by a key that is not the issuer's.
    Forged,
    /// A web token, revoked (RFC 7009) before the exchange.
    Revoked,
    /// A web token re-signed by the issuer to expire in this many seconds.
    Expiring(u64),
    /// A web token whose account was disabled since.
    OfDisabledAccount,
    /// A web token of an account not bound to `orders-api`.
    OfUnboundAccount,
    /// A CI JWT with this `sub` and optional `may_act` subject.
    Ci(&'static str, Option<&'static str>),
    /// A web token exchanged at `orders-api` with a CI actor `robot`.
    Delegated,
    /// Not a JWT.
    Garbage,
}

/// The form of a token request as `client_id` with `secret`.
fn client_form<'a>(client_id: &'a str, secret: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("scope", scope),
    ]
}

impl Fixture {
    /// The test account's token response at the test application.
    async fn web(&self, scope: &str) -> Value {
        let mut form = self.endpoint.password_form().to_vec();
        form.push(("scope", scope));
        self.endpoint.token_json(&form).await
    }

    async fn token(&self, token: Token) -> String {
        let access = |json: Value| json["access_token"].as_str().unwrap().to_owned();
        match token {
            Token::Web(scope) => access(self.web(scope).await),
            Token::WebId => self.web("read").await["id_token"]
                .as_str()
                .unwrap()
                .to_owned(),
            Token::Plain => access(
                self.endpoint
                    .token_json(&client_form(PLAIN, PLAIN_SECRET, "read"))
                    .await,
            ),
            Token::Forged => {
                External::new(Algorithm::ES256).mint(&unverified(&access(self.web("read").await)))
            }
            Token::Revoked => {
                let token = access(self.web("read").await);
                let mut form = self.endpoint.password_form().to_vec();
                form.retain(|(name, _)| *name != "grant_type");
                form.push(("token", &token));
                let post = Post::form(&form);
                let answer = self
                    .endpoint
                    .post_to("/application/o/revoke/", &post, &[])
                    .await;
                assert_eq!(answer.status, 200);
                token
            }
            Token::Expiring(secs) => {
                let mut claims = unverified(&access(self.web("read write").await));
                claims["exp"] = json!(now() + secs);
                self.endpoint
                    .keys
                    .active()
                    .sign_jwt(Some("at+jwt"), &claims)
                    .unwrap()
            }
            Token::OfDisabledAccount | Token::OfUnboundAccount => {
                let (account, password) = self.endpoint.add_account("svc-other");
                let disabled = matches!(token, Token::OfDisabledAccount);
                if disabled {
                    self.endpoint
                        .store
                        .bind("svc-other", Binding::new(ORDERS, ["read"]));
                }
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("username", account.username.as_str()),
                    ("password", &password),
                    ("scope", "read"),
                ];
                let token = access(self.endpoint.token_json(&form).await);
                if disabled {
                    self.endpoint
                        .store
                        .set_account_active("svc-other", false)
                        .await
                        .unwrap();
                }
                token
            }
            Token::Ci(sub, may_act) => {
                let mut claims = json!({
                    "iss": CI, "sub": sub, "exp": now() + 300, "iat": now(), "scope": "read write",
                    "aud": self.endpoint.token_url(),
                });
                if let Some(actor) = may_act {
                    claims["may_act"] = json!({"iss": CI, "sub": actor});
                }
                self.ci.mint(&claims)
            }
            Token::Delegated => {
                let subject = access(self.web("read write").await);
                let actor = self.ci_jwt("robot");
                let answer = self
                    .exchange(&subject, ACCESS, Some((&actor, JWT)), &[])
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.text());
                access(answer.json())
            }
            Token::Garbage => "not-a-jwt".to_owned(),
        }
    }

    fn ci_jwt(&self, sub: &str) -> String {
        self.ci.mint(&json!({
            "iss": CI, "sub": sub, "exp": now() + 300, "iat": now(),
            "aud": self.endpoint.token_url(),
        }))
    }

    /// An exchange at `orders-api` (its own secret) of `subject`.
    async fn exchange(
        &self,
        subject: &str,
        subject_type: &str,
        actor: Option<(&str, &str)>,
        extra: &[(&str, &str)],
    ) -> Answer {
        self.exchange_as(ORDERS, ORDERS_SECRET, subject, subject_type, actor, extra)
            .await
    }

    async fn exchange_as(
        &self,
        client_id: &str,
        secret: &str,
        subject: &str,
        subject_type: &str,
        actor: Option<(&str, &str)>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("client_id", client_id),
            ("client_secret", secret),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
        ];
        if let Some((token, kind)) = actor {
            form.push(("actor_token", token));
            form.push(("actor_token_type", kind));
        }
        form.extend_from_slice(extra);
        let mut secrets = vec![("subject", subject), ("secret", secret)];
        if let Some((token, _)) = actor {
            secrets.push(("actor", token));
        }
        self.endpoint.post(&Post::form(&form), &secrets).await
    }
}

/// The claims of a JWT, unverified (to compare with).
fn unverified(token: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap()
}

/// The verified claims of an access token that `orders-api` minted.
async fn orders_claims(endpoint: &Endpoint, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwks = endpoint.jwks().await;
    let key = DecodingKey::from_jwk(jwks.find(&header.kid.unwrap()).unwrap()).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.validate_aud = false;
    validation.set_issuer(&[endpoint.url("/application/o/orders/")]);
    let claims: Value = jsonwebtoken::decode(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["client_id"], ORDERS);
    claims
}

/// What a row expects: an error code, or a token whose claims pass a check
/// (given the response, the new token's claims and the subject token's).
enum Expect {
    Error(&'static str),
    Issued(fn(&Value, &Value, &Value)),
}

struct Row {
    rule: &'static str,
    subject: Token,
    subject_type: &'static str,
    actor: Option<(Token, &'static str)>,
    extra: &'static [(&'static str, &'static str)],
    expect: Expect,
}

const fn row(
    rule: &'static str,
    subject: Token,
    subject_type: &'static str,
    expect: Expect,
) -> Row {
    Row {
        rule,
        subject,
        subject_type,
        actor: None,
        extra: &[],
        expect,
    }
}

const fn with(row: Row, extra: &'static [(&'static str, &'static str)]) -> Row {
    Row { extra, ..row }
}

const fn acting(row: Row, actor: Token, kind: &'static str) -> Row {
    Row {
        actor: Some((actor, kind)),
        ..row
    }
}

use Expect::{Error, Issued};
use Token::*;

static RULES: &[Row] = &[
    // Acceptable subject tokens and their types.
    row(
        "access_token_of_an_accepted_application_is_exchanged",
        Web("read write"),
        ACCESS,
        Issued(|json, claims, subject| {
            assert_eq!(json["issued_token_type"], ACCESS);
            assert_eq!(json["token_type"], "Bearer");
            assert!(
                json.get("id_token").is_none(),
                "an exchange answers one token"
            );
            assert_eq!(claims["sub"], subject["sub"]);
            assert_eq!(claims["preferred_username"], USERNAME);
            assert_eq!(claims["aud"], ORDERS);
            assert_eq!(claims["scope"], "read write");
            assert!(claims.get("act").is_none(), "no actor, no act");
        }),
    ),
    row(
        "own_access_token_is_accepted_as_jwt_type",
        Web("read"),
        JWT,
        Issued(|_, claims, _| {
            assert_eq!(claims["scope"], "read");
        }),
    ),
    row(
        "trusted_input_jwt_is_accepted_as_jwt_type",
        Ci("deploy-bot", None),
        JWT,
        Issued(|_, claims, _| {
            assert_eq!(claims["scope"], "read write");
            assert!(claims.get("act").is_none());
        }),
    ),
    row(
        "input_jwt_is_not_an_access_token_type",
        Ci("deploy-bot", None),
        ACCESS,
        Error("invalid_request"),
    ),
    row(
        "unsupported_subject_token_type_is_invalid_request",
        Web("read"),
        "urn:ietf:params:oauth:token-type:saml2",
        Error("invalid_request"),
    ),
    row(
        "id_token_is_refused",
        WebId,
        ACCESS,
        Error("invalid_request"),
    ),
    row(
        "token_of_an_application_not_accepted_is_refused",
        Plain,
        ACCESS,
        Error("invalid_request"),
    ),
    row(
        "forged_subject_token_is_refused",
        Forged,
        ACCESS,
        Error("invalid_request"),
    ),
    row(
        "garbage_subject_token_is_refused",
        Garbage,
        ACCESS,
        Error("invalid_request"),
    ),
    row(
        "revoked_subject_token_is_refused",
        Revoked,
        ACCESS,
        Error("invalid_request"),
    ),
    row(
        "subject_of_a_disabled_account_is_refused",
        OfDisabledAccount,
        ACCESS,
        Error("invalid_request"),
    ),
    row(
        "subject_account_not_bound_here_is_refused",
        OfUnboundAccount,
        ACCESS,
        Error("invalid_request"),
    ),
    // Scope narrowing.
    with(
        row(
            "requested_scope_is_narrowed_to_the_subject_tokens",
            Web("read"),
            ACCESS,
            Issued(|json, claims, _| {
                assert_eq!(claims["scope"], "read");
                assert_eq!(json["scope"], "read");
            }),
        ),
        &[("scope", "read write")],
    ),
    with(
        row(
            "scope_may_narrow_further",
            Web("read write"),
            ACCESS,
            Issued(|_, claims, _| {
                assert_eq!(claims["scope"], "write");
            }),
        ),
        &[("scope", "write admin")],
    ),
    // exp bound.
    row(
        "exp_is_never_later_than_the_subject_tokens",
        Expiring(120),
        ACCESS,
        Issued(|json, claims, subject| {
            assert_eq!(claims["exp"], subject["exp"]);
            assert!(json["expires_in"].as_u64().unwrap() <= 120);
        }),
    ),
    // Audience and resource.
    with(
        row(
            "allowed_audience_is_the_aud",
            Web("read"),
            ACCESS,
            Issued(|_, claims, _| {
                assert_eq!(claims["aud"], "billing");
            }),
        ),
        &[("audience", "billing")],
    ),
    with(
        row(
            "allowed_resource_is_the_aud",
            Web("read"),
            ACCESS,
            Issued(|_, claims, _| {
                assert_eq!(claims["aud"], BILLING);
            }),
        ),
        &[("resource", BILLING)],
    ),
    with(
        row(
            "unknown_audience_is_invalid_target",
            Web("read"),
            ACCESS,
            Error("invalid_target"),
        ),
        &[("audience", "payroll")],
    ),
    with(
        row(
            "unknown_resource_is_invalid_target",
            Web("read"),
            ACCESS,
            Error("invalid_target"),
        ),
        &[("resource", "https://payroll.example/")],
    ),
    // Requested token type.
    with(
        row(
            "requested_jwt_type_is_issued",
            Web("read"),
            ACCESS,
            Issued(|json, _, _| {
                assert_eq!(json["issued_token_type"], JWT);
            }),
        ),
        &[("requested_token_type", JWT)],
    ),
    with(
        row(
            "unsupported_requested_token_type_is_invalid_request",
            Web("read"),
            ACCESS,
            Error("invalid_request"),
        ),
        &[(
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:refresh_token",
        )],
    ),
    // Delegation: actors and act.
    acting(
        row(
            "actor_allowed_by_the_rules_is_the_act",
            Web("read"),
            ACCESS,
            Issued(|_, claims, subject| {
                assert_eq!(claims["sub"], subject["sub"]);
                assert_eq!(claims["act"], json!({"iss": CI, "sub": "robot"}));
            }),
        ),
        Ci("robot", None),
        JWT,
    ),
    acting(
        row(
            "actor_not_allowed_is_refused",
            Web("read"),
            ACCESS,
            Error("invalid_request"),
        ),
        Ci("intruder", None),
        JWT,
    ),
    acting(
        row(
            "may_act_admits_its_actor",
            Ci("deploy-bot", Some("helper")),
            JWT,
            Issued(|_, claims, _| {
                assert_eq!(claims["act"], json!({"iss": CI, "sub": "helper"}));
            }),
        ),
        Ci("helper", None),
        JWT,
    ),
    acting(
        row(
            "may_act_refuses_other_actors_even_allowed_ones",
            Ci("deploy-bot", Some("helper")),
            JWT,
            Error("invalid_request"),
        ),
        Ci("robot", None),
        JWT,
    ),
    acting(
        row(
            "act_nests_the_subject_tokens_act",
            Delegated,
            ACCESS,
            Issued(|_, claims, _| {
                assert_eq!(
                    claims["act"],
                    json!({"iss": CI, "sub": "robot-2", "act": {"iss": CI, "sub": "robot"}})
                );
            }),
        ),
        Ci("robot-2", None),
        JWT,
    ),
    row(
        "act_of_the_subject_is_kept_without_actor",
        Delegated,
        ACCESS,
        Issued(|_, claims, _| {
            assert_eq!(claims["act"], json!({"iss": CI, "sub": "robot"}));
        }),
    ),
    acting(
        row(
            "forged_actor_token_is_refused",
            Web("read"),
            ACCESS,
            Error("invalid_request"),
        ),
        Forged,
        ACCESS,
    ),
    acting(
        row(
            "actor_exp_bounds_the_token_too",
            Web("read"),
            ACCESS,
            Issued(|json, _, _| {
                assert!(json["expires_in"].as_u64().unwrap() <= 300);
            }),
        ),
        Ci("robot", None),
        JWT,
    ),
];

#[tokio::test]
async fn each_rfc8693_rule_holds() {
    check_rows(RULES, |row| async move {
        let fixture = fixture();
        let subject = fixture.token(row.subject).await;
        let actor = match row.actor {
            Some((token, kind)) => Some((fixture.token(token).await, kind)),
            None => None,
        };
        let actor = actor.as_ref().map(|(token, kind)| (token.as_str(), *kind));
        let answer = fixture
            .exchange(&subject, row.subject_type, actor, row.extra)
            .await;
        match &row.expect {
            Error(code) => {
                assert_eq!(answer.status, 400, "{}: {}", row.rule, answer.text());
                assert_eq!(answer.error(), *code, "{}", row.rule);
            }
            Issued(check) => {
                assert_eq!(answer.status, 200, "{}: {}", row.rule, answer.text());
                let json = answer.json();
                let claims =
                    orders_claims(&fixture.endpoint, json["access_token"].as_str().unwrap()).await;
                check(&json, &claims, &unverified(&subject));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn application_without_exchange_rules_is_unauthorized_client() {
    let fixture = fixture();
    let subject = fixture.token(Web("read")).await;
    let answer = fixture
        .exchange_as(PLAIN, PLAIN_SECRET, &subject, ACCESS, None, &[])
        .await;
    assert_eq!(answer.error(), "unauthorized_client");
}

#[tokio::test]
async fn client_must_still_authenticate() {
    let fixture = fixture();
    let subject = fixture.token(Web("read")).await;
    let answer = fixture
        .exchange_as(ORDERS, "wrong-secret", &subject, ACCESS, None, &[])
        .await;
    assert_eq!(answer.error(), "invalid_client");
}

#[tokio::test]
async fn missing_parameters_are_invalid_request() {
    let fixture = fixture();
    let subject = fixture.token(Web("read")).await;
    let base = [
        ("grant_type", EXCHANGE),
        ("client_id", ORDERS),
        ("client_secret", ORDERS_SECRET),
    ];
    let cases: [&[(&str, &str)]; 4] = [
        &[("subject_token_type", ACCESS)],
        &[("subject_token", &subject)],
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS),
            ("actor_token", &subject),
        ],
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS),
            ("actor_token_type", ACCESS),
        ],
    ];
    for case in cases {
        let mut form = base.to_vec();
        form.extend_from_slice(case);
        let answer = fixture.endpoint.post_form(&form).await;
        assert_eq!(answer.error(), "invalid_request", "{case:?}");
    }
    let repeated = [
        ("grant_type", EXCHANGE),
        ("client_id", ORDERS),
        ("client_secret", ORDERS_SECRET),
        ("subject_token", &subject),
        ("subject_token", &subject),
        ("subject_token_type", ACCESS),
    ];
    assert_eq!(
        fixture.endpoint.post_form(&repeated).await.error(),
        "invalid_request"
    );
}

#[tokio::test]
async fn exchanged_token_is_introspected_as_the_exchanging_applications() {
    let fixture = fixture();
    let subject = fixture.token(Web("read")).await;
    let answer = fixture
        .exchange(&subject, ACCESS, None, &[("resource", BILLING)])
        .await;
    let token = answer.json()["access_token"].as_str().unwrap().to_owned();
    let form = [
        ("client_id", ORDERS),
        ("client_secret", ORDERS_SECRET),
        ("token", token.as_str()),
    ];
    let post = Post::form(&form);
    let json = fixture
        .endpoint
        .post_to("/application/o/introspect/", &post, &[])
        .await
        .json();
    assert_eq!(json["active"], true);
    assert_eq!(json["aud"], BILLING);
}

#[tokio::test]
async fn metadata_lists_the_exchange_grant_where_it_is_accepted() {
    let fixture = fixture();
    let grants = |json: Value| json["grant_types_supported"].clone();
    let orders = fixture
        .endpoint
        .get("/application/o/orders/.well-known/openid-configuration")
        .await;
    assert!(
        grants(orders.json())
            .as_array()
            .unwrap()
            .contains(&json!(EXCHANGE))
    );
    let plain = fixture
        .endpoint
        .get("/application/o/plain/.well-known/openid-configuration")
        .await;
    assert!(
        !grants(plain.json())
            .as_array()
            .unwrap()
            .contains(&json!(EXCHANGE))
    );
}

/// An endpoint built with `application` alone, or why not.
fn built(application: Application) -> Result<(), tower_m2m_auth::issuer::ConfigError> {
    let (store, _, _) = account_store();
    let signing = tower_m2m_auth::keys::SigningKey::generate(Algorithm::ES256).unwrap();
    let keys = tower_m2m_auth::keys::KeyRing::new(signing);
    tower_m2m_auth::issuer::TokenEndpointLayer::new("http://127.0.0.1", keys, store)
        .unwrap()
        .application(application)
        .map(drop)
}

#[test]
fn exchange_rules_that_cannot_apply_are_refused_when_built() {
    let unknown = TokenExchange::new().accept_tokens_of("nobody");
    assert!(matches!(
        built(Application::new("a", "a").with_token_exchange(unknown)),
        Err(tower_m2m_auth::issuer::ConfigError::UnknownExchangeApplication { accepted, .. }) if accepted == "nobody"
    ));
    // Trusted JWTs, but no trusted issuer.
    let jwts = TokenExchange::new().accept_trusted_jwts();
    assert!(built(Application::new("a", "a").with_token_exchange(jwts)).is_err());
    let own = TokenExchange::new().accept_tokens_of("a");
    assert!(built(Application::new("a", "a").with_token_exchange(own)).is_ok());
}

// ---- trust boundaries of exchange and delegation -----------------------------------

const OTHER_CI: &str = "https://other-ci.example";

/// An application that trusts the input JWTs of CI (and of another CI
/// issuer), under the policy "admin only from the main branch", and
/// accepts them in exchange; actors allowed by its rules: CI's `robot`.
fn gated() -> (Endpoint, External, External) {
    let ci = External::new(Algorithm::ES256);
    let other = External::new(Algorithm::ES256);
    let key = |external: &External| {
        VerificationKey::from_pem(external.certificate_pem().as_bytes()).unwrap()
    };
    let gated = Application::new("gated", "gated")
        .with_client_secret("gated-secret-0123456789")
        .with_allowed_scopes(["read", "admin"])
        .with_verification_keys(
            VerificationKeys::new()
                .with_issuer(TrustedIssuer::new(CI).with_key(key(&ci)))
                .with_issuer(TrustedIssuer::new(OTHER_CI).with_key(key(&other))),
        )
        .with_policy(|context: &tower_m2m_auth::policy::PolicyContext<'_>| {
            !context.scopes.iter().any(|scope| scope == "admin")
                || context.claims["ref"] == "refs/heads/main"
        })
        .with_token_exchange(
            TokenExchange::new()
                .accept_trusted_jwts()
                .allow_actor(CI, "robot"),
        );
    let endpoint = Endpoint::with(Algorithm::ES256, |layer| layer.application(gated).unwrap());
    (endpoint, ci, other)
}

/// A CI JWT for the gated application, of `branch`, with `extra` claims.
fn branch_jwt(ci: &External, endpoint: &Endpoint, sub: &str, branch: &str, extra: Value) -> String {
    let mut claims = json!({
        "iss": CI, "sub": sub, "aud": endpoint.token_url(), "exp": now() + 300, "iat": now(),
        "ref": format!("refs/heads/{branch}"),
    });
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    ci.mint(&claims)
}

/// A request at the gated application authenticated by `client` (an input
/// JWT as `client_assertion`), with `more` fields.
async fn as_jwt_client(endpoint: &Endpoint, client: &str, more: &[(&str, &str)]) -> Answer {
    let mut form = vec![
        ("client_id", "gated"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", client),
    ];
    form.extend_from_slice(more);
    endpoint
        .post(&Post::form(&form), &[("client", client)])
        .await
}

#[tokio::test]
async fn policies_see_the_scopes_of_a_token_exchange() {
    let (endpoint, ci, _) = gated();
    let feature = branch_jwt(&ci, &endpoint, "deploy-bot", "feature", json!({}));
    let main = branch_jwt(&ci, &endpoint, "deploy-bot", "main", json!({}));
    let grant = |scope| [("grant_type", "client_credentials"), ("scope", scope)];
    // The control: client credentials, admin from a feature branch.
    let answer = as_jwt_client(&endpoint, &feature, &grant("admin")).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let exchange = |subject: &'static str, scope: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", JWT),
        ];
        form.extend(scope.map(|scope| ("scope", scope)));
        form
    };
    // The same JWT as client and subject, asking for admin.
    let feature: &'static str = Box::leak(feature.into_boxed_str());
    let main: &'static str = Box::leak(main.into_boxed_str());
    let answer = as_jwt_client(&endpoint, feature, &exchange(feature, Some("admin"))).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    // The main branch gets admin there, the feature branch read.
    let json = as_jwt_client(&endpoint, main, &exchange(main, Some("admin")))
        .await
        .json();
    assert_eq!(json["scope"], "admin", "{json}");
    let json = as_jwt_client(&endpoint, feature, &exchange(feature, Some("read")))
        .await
        .json();
    assert_eq!(json["scope"], "read", "{json}");
}

#[tokio::test]
async fn policies_see_the_scopes_a_subject_jwt_would_give() {
    let (endpoint, ci, _) = gated();
    // No scope asked: the subject's own (admin) are the ones about to be granted.
    let subject = branch_jwt(
        &ci,
        &endpoint,
        "deploy-bot",
        "feature",
        json!({"scope": "admin"}),
    );
    let answer = gated_exchange(&endpoint, &subject, None).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.error(), "invalid_request");
    // The same from the main branch is granted.
    let subject = branch_jwt(
        &ci,
        &endpoint,
        "deploy-bot",
        "main",
        json!({"scope": "admin"}),
    );
    let answer = gated_exchange(&endpoint, &subject, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["scope"], "admin");
}

#[tokio::test]
async fn policies_see_the_scopes_of_an_actor_jwt() {
    let (endpoint, ci, _) = gated();
    let subject = branch_jwt(&ci, &endpoint, "deploy-bot", "main", json!({}));
    let actor = |branch| branch_jwt(&ci, &endpoint, "robot", branch, json!({}));
    let form = |actor: &str| {
        form_encode(&[
            ("grant_type", EXCHANGE),
            ("client_id", "gated"),
            ("client_secret", "gated-secret-0123456789"),
            ("subject_token", subject.as_str()),
            ("subject_token_type", JWT),
            ("actor_token", actor),
            ("actor_token_type", JWT),
            ("scope", "admin"),
        ])
    };
    let feature = form(&actor("feature"));
    let answer = endpoint
        .send(Post::raw(&feature, Some(FORM)).request("/application/o/token/", &[]))
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let main = form(&actor("main"));
    let answer = endpoint
        .send(Post::raw(&main, Some(FORM)).request("/application/o/token/", &[]))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["scope"], "admin");
}

/// An exchange at the gated application (its own secret) of `subject`,
/// with `actor` if any.
async fn gated_exchange(endpoint: &Endpoint, subject: &str, actor: Option<&str>) -> Answer {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("client_id", "gated"),
        ("client_secret", "gated-secret-0123456789"),
        ("subject_token", subject),
        ("subject_token_type", JWT),
    ];
    if let Some(actor) = actor {
        form.push(("actor_token", actor));
        form.push(("actor_token_type", JWT));
    }
    endpoint.post(&Post::form(&form), &[]).await
}

#[tokio::test]
async fn may_act_without_iss_names_an_actor_of_the_subjects_issuer() {
    let (endpoint, ci, other) = gated();
    let subject = branch_jwt(
        &ci,
        &endpoint,
        "deploy-bot",
        "main",
        json!({"may_act": {"sub": "helper"}}),
    );
    // `helper` of another issuer is another identity (RFC 8693 §4.1).
    let mut claims = json!({
        "iss": OTHER_CI, "sub": "helper", "aud": endpoint.token_url(), "exp": now() + 300,
        "iat": now(), "ref": "refs/heads/main",
    });
    let stranger = other.mint(&claims);
    let answer = gated_exchange(&endpoint, &subject, Some(&stranger)).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.error(), "invalid_request");
    // `helper` of the subject's own issuer may act.
    claims["iss"] = json!(CI);
    let helper = ci.mint(&claims);
    let answer = gated_exchange(&endpoint, &subject, Some(&helper)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test]
async fn an_act_this_server_did_not_verify_is_never_copied() {
    let (endpoint, ci, _) = gated();
    for act in [
        json!("not-an-object"),
        json!({"iss": CI, "sub": "admin-bot"}),
    ] {
        let subject = branch_jwt(&ci, &endpoint, "deploy-bot", "main", json!({ "act": act }));
        let answer = gated_exchange(&endpoint, &subject, None).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let claims = unverified(answer.json()["access_token"].as_str().unwrap());
        assert!(claims.get("act").is_none(), "{act}: {claims}");
        // With an actor, the act is the actor alone.
        let robot = branch_jwt(&ci, &endpoint, "robot", "main", json!({}));
        let answer = gated_exchange(&endpoint, &subject, Some(&robot)).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let claims = unverified(answer.json()["access_token"].as_str().unwrap());
        assert_eq!(claims["act"], json!({"iss": CI, "sub": "robot"}), "{act}");
    }
}

#[tokio::test]
async fn a_federation_trade_of_a_delegated_token_keeps_the_actor_chain() {
    let fixture = fixture();
    let delegated = fixture.token(Token::Delegated).await;
    let before = unverified(&delegated);
    assert_eq!(before["act"], json!({"iss": CI, "sub": "robot"}));
    // `orders-partner` federates with orders-api: it trades the token.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", PARTNER),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", delegated.as_str()),
    ];
    let json = fixture.endpoint.token_json(&form).await;
    let claims = unverified(json["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], PARTNER);
    assert_eq!(
        claims["act"],
        json!({
            "iss": fixture.endpoint.url("/application/o/orders/"),
            "sub": before["sub"],
            "act": {"iss": CI, "sub": "robot"},
        }),
        "{claims}"
    );
}
