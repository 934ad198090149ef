//! JWT authentication at the token endpoint: input JWTs from external
//! issuers, verified by certificates and JWKS, with policies. The rules are
//! tables run in process (`oneshot`), one row per rule; a JWKS URL is served
//! over real HTTP where fetching it is the point.

#![cfg(feature = "reqwest")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::foreign::now;
use common::jwks::{External, JwksSource, fast_policy};
use common::oneshot::FORM;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower_m2m_auth::issuer::Application;
use tower_m2m_auth::keys::fetch::ReqwestFetcher;
use tower_m2m_auth::keys::{
    KeyRing, RemoteJwks, SigningKey, TrustedIssuer, VerificationKey, VerificationKeys,
};
use tower_m2m_auth::policy::PolicyContext;
use tower_m2m_auth::store::{AccountAdmin, Binding, ExternalAccount};

const CI_CLIENT: &str = "ci-client";
const CI_SLUG: &str = "ci";
const CI_ISSUER: &str = "https://ci.example";
const CI_SUBJECT: &str = "repo:org/app:ref:refs/heads/main";

/// The claims of a typical CI OIDC token.
fn ci_claims() -> Value {
    let now = now();
    json!({
        "iss": CI_ISSUER,
        "sub": CI_SUBJECT,
        "aud": "https://auth.example.com",
        "exp": now + 300,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "repository": "org/app",
    })
}

fn ci_application(keys: VerificationKeys) -> Application {
    let remote = keys.has_remote();
    // CI tokens are addressed to the deployment's public name.
    let application = Application::new(CI_CLIENT, CI_SLUG)
        .with_verification_keys(keys)
        .with_allowed_scopes(["deploy"])
        .with_assertion_audiences(["https://auth.example.com"]);
    if remote {
        // A JWKS URL may sign for others too: pin this application's JWTs.
        application
            .with_policy(|context: &PolicyContext<'_>| context.claims["repository"] == "org/app")
    } else {
        application
    }
}

/// An endpoint whose `ci-client` application trusts `keys`, shaped by `configure`.
fn issuer(keys: VerificationKeys, configure: impl FnOnce(Application) -> Application) -> Endpoint {
    let application = configure(ci_application(keys));
    Endpoint::with(Algorithm::ES256, move |layer| {
        layer.application(application).unwrap()
    })
}

/// `keys` trusted for the CI issuer.
fn ci_keys(issuer: TrustedIssuer) -> VerificationKeys {
    VerificationKeys::new().with_issuer(issuer)
}

fn cert_keys(external: &External) -> VerificationKeys {
    ci_keys(TrustedIssuer::new(CI_ISSUER).with_key(certificate_key(external)))
}

fn certificate_key(external: &External) -> VerificationKey {
    VerificationKey::from_pem(external.certificate_pem().as_bytes()).unwrap()
}

/// RFC 7523 §2.2: the assertion at `client_id`, asking for `deploy`.
const ASSERTION: Post<'static> = Post::form(&[
    ("grant_type", "client_credentials"),
    ("client_id", CI_CLIENT),
    ("client_assertion_type", JWT_BEARER),
    ("client_assertion", "{jwt}"),
    ("scope", "deploy"),
]);

async fn exchange(endpoint: &Endpoint, jwt: &str) -> Answer {
    endpoint.post(&ASSERTION, &[("jwt", jwt)]).await
}

/// The verified claims of the `ci-client` access token in `answer`.
async fn ci_claims_of(endpoint: &Endpoint, answer: &Answer) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.text());
    endpoint.claims_at(&answer.json(), CI_CLIENT, CI_SLUG).await
}

/// Exchanges `jwt` and returns the verified claims of the access token.
async fn exchange_ok(endpoint: &Endpoint, jwt: &str) -> Value {
    let answer = exchange(endpoint, jwt).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["scope"], "deploy");
    ci_claims_of(endpoint, &answer).await
}

/// The error code of a refused exchange (400), which names no claim;
/// failures name the rule `name`.
async fn rejected(name: &str, endpoint: &Endpoint, jwt: &str) -> String {
    let answer = exchange(endpoint, jwt).await;
    let body = answer.text();
    assert_eq!(answer.status, 400, "{name}: not refused");
    let quiet = !body.contains("repository") && !body.contains("org/");
    assert!(quiet, "{name}: {body}");
    answer.error()
}

fn remote(url: &str) -> VerificationKeys {
    ci_keys(
        TrustedIssuer::new(CI_ISSUER).with_remote(RemoteJwks::with_policy(
            url,
            Arc::new(ReqwestFetcher::new()),
            fast_policy(),
        )),
    )
}

// ---- each static key source --------------------------------------------------------

/// A key source that must verify an input JWT of `algorithm` (with a `kid`
/// in its header when `kid`).
struct Source {
    name: &'static str,
    algorithm: Algorithm,
    keys: fn(&External) -> VerificationKeys,
    kid: bool,
}

const SOURCES: &[Source] = &[
    Source {
        name: "p256_certificate_verifies_input_jwt",
        algorithm: Algorithm::ES256,
        keys: cert_keys,
        kid: true,
    },
    Source {
        name: "rsa_certificate_verifies_input_jwt",
        algorithm: Algorithm::RS256,
        keys: cert_keys,
        kid: true,
    },
    Source {
        name: "ed25519_certificate_verifies_input_jwt",
        algorithm: Algorithm::EdDSA,
        keys: cert_keys,
        kid: true,
    },
    Source {
        name: "pem_public_key_verifies_input_jwt_without_kid",
        algorithm: Algorithm::ES256,
        keys: |external| {
            let pem = external.public_key_pem();
            let key = VerificationKey::from_pem(pem.as_bytes()).unwrap();
            ci_keys(TrustedIssuer::new(CI_ISSUER).with_key(key))
        },
        kid: false,
    },
    Source {
        name: "inline_jwks_verifies_input_jwt",
        algorithm: Algorithm::EdDSA,
        keys: |external| ci_keys(TrustedIssuer::new(CI_ISSUER).with_jwks(&external.jwks())),
        kid: true,
    },
];

#[tokio::test]
async fn key_sources() {
    for source in SOURCES {
        let external = External::new(source.algorithm);
        let endpoint = issuer((source.keys)(&external), |app| app);
        let jwt = match source.kid {
            true => external.mint(&ci_claims()),
            false => external.mint_without_kid(&ci_claims()),
        };
        let claims = exchange_ok(&endpoint, &jwt).await;
        let name = source.name;
        let username = format!("ci-{CI_SUBJECT}");
        assert_eq!(claims["preferred_username"], username, "{name}");
        assert_eq!(claims["act"], json!({"iss": CI_ISSUER, "sub": CI_SUBJECT}));
        assert_eq!(claims["aud"], CI_CLIENT, "{name}");
    }
}

// ---- claims --------------------------------------------------------------------------

/// Shapes the CI application of a row.
type Shape = fn(Application) -> Application;

/// A row: an input JWT with claims edited by the third column, at the CI
/// application shaped by the second, verified by its certificate: accepted
/// (`None`), or refused with this error code.
type ClaimRule = (&'static str, Shape, Edit, Option<&'static str>);

const ACCEPTED: Option<&str> = None;
/// RFC 7523 §3.2: a client assertion that is not valid.
const BAD_CLIENT: Option<&str> = Some("invalid_client");
/// A valid assertion whose grant is refused (a policy).
const REFUSED_GRANT: Option<&str> = Some("invalid_grant");

/// An edit of the CI claims.
type Edit = fn(&mut Value);

fn remove(claims: &mut Value, name: &str) {
    claims.as_object_mut().unwrap().remove(name);
}

/// `exp` and `iat` (`None`: no `iat`), seconds from now.
fn living(claims: &mut Value, iat: Option<i64>, exp: i64) {
    let at = |offset: i64| json!(now().checked_add_signed(offset).unwrap());
    claims["exp"] = at(exp);
    match iat {
        Some(iat) => claims["iat"] = at(iat),
        None => remove(claims, "iat"),
    }
}

fn plain(app: Application) -> Application {
    app
}

fn leeway(app: Application) -> Application {
    app.with_assertion_leeway(Duration::from_secs(60))
}

fn capped(app: Application) -> Application {
    app.with_max_assertion_lifetime(Duration::from_secs(600))
}

fn audience(app: Application) -> Application {
    app.with_assertion_audiences(["https://auth.example.com"])
}

fn deployer_only(app: Application) -> Application {
    app.with_policy(|context: &PolicyContext<'_>| context.claims["repository"] == "org/deployer")
}

fn single_use(app: Application) -> Application {
    app.with_single_use_assertions(true)
}

// "longer than the cap": issued a while ago, so only a little of it is
// left, and still too long-lived.
#[rustfmt::skip]
const CLAIM_RULES: &[ClaimRule] = &[
    ("typical_ci_token_is_accepted", plain, |_| {}, ACCEPTED),
    ("rfc7523_3_expired_assertion_is_rejected", plain, |c| c["exp"] = json!(now() - 60), BAD_CLIENT),
    ("rfc7519_4_1_4_assertion_expiring_now_is_rejected", plain, |c| c["exp"] = json!(now()), BAD_CLIENT),
    ("rfc7523_3_assertion_without_exp_is_rejected", plain, |c| remove(c, "exp"), BAD_CLIENT),
    ("rfc7519_4_1_5_assertion_not_yet_valid_is_rejected", plain, |c| c["nbf"] = json!(now() + 120), BAD_CLIENT),
    ("rfc7523_3_assertion_issued_in_the_future_is_rejected", plain, |c| c["iat"] = json!(now() + 120), BAD_CLIENT),
    ("leeway_admits_small_clock_skew", leeway, |c| c["nbf"] = json!(now() + 30), ACCEPTED),
    ("rfc7519_2_fractional_numeric_dates_are_accepted", plain, |c| {
        c["exp"] = json!(now() as f64 + 300.5);
        c["iat"] = json!(now() as f64 - 0.25);
    }, ACCEPTED),
    ("assertion_living_exactly_the_cap_is_accepted", capped, |c| living(c, Some(0), 600), ACCEPTED),
    ("assertion_living_longer_than_the_cap_is_rejected", capped, |c| living(c, Some(-500), 101), BAD_CLIENT),
    ("assertion_without_iat_is_capped_from_now_within", capped, |c| living(c, None, 590), ACCEPTED),
    ("assertion_without_iat_is_capped_from_now_beyond", capped, |c| living(c, None, 700), BAD_CLIENT),
    ("assertion_valid_until_9999_is_rejected_by_default", plain, |c| {
        living(c, Some(0), 0);
        c["exp"] = json!(253_402_300_799_u64);
    }, BAD_CLIENT),
    ("default_cap_of_one_hour_is_accepted", plain, |c| living(c, Some(0), 3600), ACCEPTED),
    ("default_cap_of_one_hour_and_a_second_is_rejected", plain, |c| living(c, Some(0), 3601), BAD_CLIENT),
    ("rfc7523_3_required_audience_accepts_its_audience", audience, |_| {}, ACCEPTED),
    ("rfc7523_3_wrong_audience_is_rejected_when_an_audience_is_required", audience, |c| c["aud"] = json!("https://some-other-service"), BAD_CLIENT),
    ("rfc7523_3_missing_audience_is_rejected_when_an_audience_is_required", audience, |c| remove(c, "aud"), BAD_CLIENT),
    ("policy_denied_assertion_is_invalid_grant_without_saying_why", deployer_only, |_| {}, REFUSED_GRANT),
    ("policy_allowed_assertion_is_accepted", deployer_only, |c| c["repository"] = json!("org/deployer"), ACCEPTED),
    ("rfc7523_3_single_use_assertion_without_jti_is_rejected", single_use, |c| remove(c, "jti"), BAD_CLIENT),
];

/// A row's endpoint (its CI application shaped by `app`, trusting the
/// certificate of `external`) and input JWT (CI claims edited by `edit`).
fn row(external: &External, app: &Shape, edit: &Edit) -> (Endpoint, String) {
    let mut claims = ci_claims();
    edit(&mut claims);
    (issuer(cert_keys(external), app), external.mint(&claims))
}

#[tokio::test]
async fn claim_rules() {
    let external = External::new(Algorithm::ES256);
    for (name, app, edit, accepted) in CLAIM_RULES {
        let (endpoint, jwt) = row(&external, app, edit);
        match accepted {
            None => {
                let answer = exchange(&endpoint, &jwt).await;
                assert_eq!(
                    answer.status,
                    200,
                    "{name}: {}",
                    answer.header("www-authenticate")
                );
            }
            Some(code) => assert_eq!(rejected(name, &endpoint, &jwt).await, *code, "{name}"),
        }
    }
}

#[cfg(feature = "cel")]
#[tokio::test]
async fn cel_policy_checks_the_issuer() {
    use tower_m2m_auth::policy::CelPolicy;
    let external = External::new(Algorithm::ES256);
    let policy =
        CelPolicy::new(r#"claims.iss == "https://ci.example" && claims.repository == "org/app""#)
            .unwrap();
    // The key speaks for both issuers: the policy is what tells them apart.
    let keys = cert_keys(&external).with_issuer(
        TrustedIssuer::new("https://elsewhere.example").with_key(certificate_key(&external)),
    );
    let endpoint = issuer(keys, |app| app.with_policy(policy));
    exchange_ok(&endpoint, &external.mint(&ci_claims())).await;
    let mut claims = ci_claims();
    claims["iss"] = json!("https://elsewhere.example");
    let rejection = rejected("cel", &endpoint, &external.mint(&claims)).await;
    assert_eq!(rejection, "invalid_grant");
}

// ---- forged tokens -------------------------------------------------------------------

/// A row: a token the trusted certificate's issuer did not sign as it
/// stands, made from that issuer.
type Forgery = (&'static str, fn(&External) -> String);

/// HS256 over the CI claims with `secret` (a public key, as published).
fn hs256(secret: &str, kid: Option<&str>) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&header, &ci_claims(), &key).unwrap()
}

fn alg_none(signature: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&ci_claims()).unwrap());
    format!("{header}.{payload}.{signature}")
}

/// The CI token's signed part with the signature of another token.
fn bad_signature(external: &External) -> String {
    let jwt = external.mint(&ci_claims());
    let (signed, _) = jwt.rsplit_once('.').unwrap();
    let other = external.mint(&json!({"iss": CI_ISSUER, "sub": "x", "exp": now() + 300}));
    let (_, foreign_signature) = other.rsplit_once('.').unwrap();
    format!("{signed}.{foreign_signature}")
}

/// The CI token with other claims under its header and signature.
fn tampered(external: &External) -> String {
    let jwt = external.mint(&ci_claims());
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut claims = ci_claims();
    claims["repository"] = json!("org/evil");
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

fn stranger() -> External {
    External::new(Algorithm::ES256)
}

#[rustfmt::skip]
const FORGERIES: &[Forgery] = &[
    ("rfc7515_assertion_with_bad_signature_is_rejected", bad_signature),
    ("rfc7515_assertion_with_tampered_claims_is_rejected", tampered),
    ("assertion_signed_by_unknown_key_with_kid_is_rejected", |_| stranger().mint(&ci_claims())),
    ("assertion_signed_by_unknown_key_without_kid_is_rejected", |_| stranger().mint_without_kid(&ci_claims())),
    ("rfc7515_4_1_11_assertion_with_a_crit_header_is_rejected", |e| e.mint_with_crit(&ci_claims())),
    ("rfc8725_3_12_a_dpop_proof_is_no_assertion", |e| e.mint_typed("dpop+jwt", &ci_claims())),
    ("rfc8725_3_12_a_security_event_token_is_no_assertion", |e| e.mint_typed("secevent+jwt", &ci_claims())),
    ("rfc8725_3_12_a_logout_token_is_no_assertion", |e| e.mint_typed("application/logout+jwt", &ci_claims())),
    ("rfc8725_3_1_alg_none_assertion_is_rejected", |_| alg_none("")),
    ("rfc8725_3_1_alg_none_assertion_with_a_signature_is_rejected", |_| alg_none("AAAA")),
    ("rfc8725_2_1_hs256_signed_with_the_certificate_with_kid_is_rejected", |e| hs256(&e.certificate_pem(), Some(e.key.kid()))),
    ("rfc8725_2_1_hs256_signed_with_the_certificate_without_kid_is_rejected", |e| hs256(&e.certificate_pem(), None)),
    ("rfc8725_2_1_hs256_signed_with_the_public_key_with_kid_is_rejected", |e| hs256(&e.public_key_pem(), Some(e.key.kid()))),
    ("rfc8725_2_1_hs256_signed_with_the_public_key_without_kid_is_rejected", |e| hs256(&e.public_key_pem(), None)),
];

#[tokio::test]
async fn forgeries() {
    let external = External::new(Algorithm::ES256);
    let endpoint = issuer(cert_keys(&external), |app| app);
    for (name, forge) in FORGERIES {
        let rejection = rejected(name, &endpoint, &forge(&external)).await;
        // RFC 7523 §3.2: a client assertion that is not valid fails client
        // authentication.
        assert_eq!(rejection, "invalid_client", "{name}");
    }
}

// ---- where the assertion is sent -------------------------------------------------------

/// A request carrying the input JWT (`{jwt}`) somewhere, at an application
/// shaped by `app`: a token for `Ok(username)`, or `Err(error)` (400).
struct Placement {
    name: &'static str,
    app: Shape,
    post: Post<'static>,
    expect: Result<&'static str, &'static str>,
}

const JWT_USERNAME: &str = "ci-repo:org/app:ref:refs/heads/main";

const PLACEMENTS: &[Placement] = &[
    Placement {
        name: "rfc7523_2_2_input_jwt_as_client_assertion",
        app: |app| app,
        post: ASSERTION,
        expect: Ok(JWT_USERNAME),
    },
    Placement {
        name: "input_jwt_in_client_secret_with_assertion_type",
        app: |app| app,
        post: Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            ("client_assertion_type", JWT_BEARER),
            ("client_secret", "{jwt}"),
        ]),
        expect: Ok(JWT_USERNAME),
    },
    Placement {
        name: "input_jwt_in_client_secret_without_assertion_type",
        app: |app| app,
        post: Post::form(&[
            ("grant_type", "password"),
            ("client_id", CI_CLIENT),
            ("client_secret", "{jwt}"),
        ]),
        expect: Ok(JWT_USERNAME),
    },
    Placement {
        name: "input_jwt_as_http_basic_password",
        app: |app| app,
        post: Post::raw("grant_type=client_credentials", Some(FORM)).basic(CI_CLIENT, "{jwt}"),
        expect: Ok(JWT_USERNAME),
    },
    Placement {
        name: "rfc7521_4_2_wrong_client_assertion_type_is_invalid_grant",
        app: |app| app,
        post: Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", "{jwt}"),
        ]),
        expect: Err("invalid_grant"),
    },
    Placement {
        name: "rfc7521_4_2_client_assertion_without_type_is_invalid_request",
        app: |app| app,
        post: Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            ("client_assertion", "{jwt}"),
        ]),
        expect: Err("invalid_request"),
    },
    Placement {
        name: "assertion_for_an_application_that_trusts_no_keys_is_invalid_client",
        app: |app| app,
        post: Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", "{jwt}"),
        ]),
        expect: Err("invalid_client"),
    },
    Placement {
        name: "application_secret_with_dots_is_not_mistaken_for_a_jwt",
        app: |app| app.with_client_secret("part1.part2.part3"),
        post: Post::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            ("client_secret", "part1.part2.part3"),
        ]),
        expect: Ok("ak-ci-client_credentials"),
    },
];

#[tokio::test]
async fn placements() {
    let external = External::new(Algorithm::ES256);
    for rule in PLACEMENTS {
        let endpoint = issuer(cert_keys(&external), rule.app);
        let jwt = external.mint(&ci_claims());
        let answer = endpoint.post(&rule.post, &[("jwt", &jwt)]).await;
        let name = rule.name;
        match rule.expect {
            Ok(username) => {
                let claims = ci_claims_of(&endpoint, &answer).await;
                assert_eq!(claims["preferred_username"], username, "{name}");
            }
            Err(error) => {
                assert_eq!(answer.status, 400, "{name}");
                assert_eq!(answer.error(), error, "{name}");
            }
        }
    }
}

// ---- using one assertion twice ---------------------------------------------------------

/// The same input JWT, claims edited, exchanged twice at the CI application
/// shaped so: is the second exchange accepted? (The third row's JWT has
/// expired, but inside the leeway: its `jti` is remembered that long.)
#[rustfmt::skip]
const REUSE: &[ClaimRule] = &[
    ("reused_assertion_is_accepted_by_default", plain, |_| {}, ACCEPTED),
    ("rfc7523_3_replayed_jti_is_rejected_when_single_use", single_use, |_| {}, BAD_CLIENT),
    ("replayed_jti_is_rejected_within_the_leeway_after_exp", |app| leeway(single_use(app)), |c| c["exp"] = json!(now() - 10), BAD_CLIENT),
];

#[tokio::test]
async fn reuse() {
    let external = External::new(Algorithm::ES256);
    for (name, app, edit, again) in REUSE {
        let (endpoint, jwt) = row(&external, app, edit);
        exchange_ok(&endpoint, &jwt).await;
        match again {
            None => assert_eq!(exchange(&endpoint, &jwt).await.status, 200, "{name}"),
            Some(code) => assert_eq!(rejected(name, &endpoint, &jwt).await, *code, "{name}"),
        }
    }
}

// ---- accounts of JWT identities --------------------------------------------------------

#[tokio::test]
async fn input_jwt_cannot_take_over_an_existing_account() {
    let external = External::new(Algorithm::ES256);
    let endpoint = issuer(cert_keys(&external), |app| {
        app.with_subject_mode(tower_m2m_auth::issuer::SubjectMode::Id)
    });
    let mut claims = ci_claims();
    claims["preferred_username"] = json!(USERNAME);
    let jwt_claims = exchange_ok(&endpoint, &external.mint(&claims)).await;
    // The username is taken: the JWT's account gets a disambiguated one.
    let disambiguated =
        ExternalAccount::new(CI_ISSUER, CI_SUBJECT, USERNAME).disambiguated_username();
    assert_eq!(jwt_claims["preferred_username"], disambiguated);
    assert_ne!(
        jwt_claims["sub"], endpoint.account.id,
        "identity is (iss, sub), not the username"
    );
    assert_eq!(jwt_claims["act"]["sub"], CI_SUBJECT);

    // The same (iss, sub) is the same identity every time.
    let again = exchange_ok(&endpoint, &external.mint(&claims)).await;
    assert_eq!(again["sub"], jwt_claims["sub"]);
    assert_eq!(again["preferred_username"], disambiguated);

    // Both accounts exist; the existing one is unchanged and still logs in.
    let accounts = endpoint.store.list_service_accounts().await.unwrap();
    assert!(accounts.contains(&endpoint.account), "{accounts:?}");
    assert!(accounts.iter().any(|a| a.username == disambiguated));
    let answer = endpoint.post_form(&endpoint.password_form()).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn input_jwt_of_a_disabled_account_is_invalid_grant() {
    let external = External::new(Algorithm::ES256);
    let endpoint = issuer(cert_keys(&external), |app| app);
    let claims = exchange_ok(&endpoint, &external.mint(&ci_claims())).await;
    let username = claims["preferred_username"].as_str().unwrap().to_owned();
    assert_eq!(username, JWT_USERNAME);
    let store = &endpoint.store;
    assert!(store.set_account_active(&username, false).await.unwrap());
    let rejection = rejected("disabled", &endpoint, &external.mint(&ci_claims())).await;
    assert_eq!(rejection, "invalid_grant");
    assert!(store.set_account_active(&username, true).await.unwrap());
    exchange_ok(&endpoint, &external.mint(&ci_claims())).await;
}

#[tokio::test]
async fn discovery_advertises_private_key_jwt_for_applications_that_trust_jwts() {
    let external = External::new(Algorithm::ES256);
    let endpoint = issuer(cert_keys(&external), |app| app);
    let metadata = |slug: &str| {
        let path = format!("/application/o/{slug}/.well-known/openid-configuration");
        let endpoint = &endpoint;
        async move { endpoint.get(&path).await.json() }
    };
    let ci = metadata(CI_SLUG).await;
    assert_eq!(
        ci["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_post",
            "client_secret_basic",
            "private_key_jwt"
        ])
    );
    let algorithms = ci["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algorithms.contains(&json!("ES256")) && !algorithms.contains(&json!("HS256")));
    let plain = metadata(SLUG).await;
    assert!(
        plain
            .get("token_endpoint_auth_signing_alg_values_supported")
            .is_none()
    );
}

// ---- federation -------------------------------------------------------------------------

/// An endpoint where `ci-client` federates with the test application.
fn federating() -> Endpoint {
    Endpoint::with(Algorithm::ES256, |layer| {
        layer
            .application(Application::new(CI_CLIENT, CI_SLUG).with_federated_application(CLIENT_ID))
            .unwrap()
    })
}

#[tokio::test]
async fn access_token_of_a_federated_application_is_accepted() {
    let endpoint = federating();
    // A token for the test application, through its own credentials...
    let first = endpoint.token_json(&endpoint.password_form()).await;
    let upstream = first["access_token"].as_str().unwrap();
    // ...is traded for a token of the federated application, where the
    // account is bound too.
    endpoint
        .store
        .bind(USERNAME, Binding::new(CI_CLIENT, ["deploy"]));
    let without_scope = Post::form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "{client}"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", "{jwt}"),
    ]);
    let vars = [("client", CI_CLIENT), ("jwt", upstream)];
    let answer = endpoint.post(&without_scope, &vars).await;
    let claims = ci_claims_of(&endpoint, &answer).await;
    assert_eq!(claims["preferred_username"], USERNAME);
    assert_eq!(claims["act"]["iss"], endpoint.issuer());
    // A federated token stands for an account of this issuer: nothing new
    // is recorded for it.
    let accounts = endpoint.store.list_service_accounts().await.unwrap();
    assert_eq!(accounts, std::slice::from_ref(&endpoint.account));

    // Applications that do not federate refuse it.
    let vars = [("client", CLIENT_ID), ("jwt", upstream)];
    let answer = endpoint.post(&without_scope, &vars).await;
    assert_eq!(answer.error(), "invalid_client");
}

#[tokio::test]
async fn federated_token_signed_by_a_foreign_key_is_rejected() {
    let endpoint = federating();
    let forger = External::new(Algorithm::ES256);
    let forged = forger.mint(&json!({
        "iss": endpoint.issuer(), "aud": CLIENT_ID, "sub": "x", "exp": now() + 300,
    }));
    assert_eq!(
        rejected("forged", &endpoint, &forged).await,
        "invalid_client"
    );
}

// ---- a JWKS URL, fetched over real HTTP ---------------------------------------------------

#[tokio::test]
async fn jwks_url_verifies_input_jwt() {
    let external = External::new(Algorithm::RS256);
    let source = JwksSource::start(external.jwks(), true, "max-age=600").await;
    let endpoint = issuer(remote(&source.url), |app| app);
    exchange_ok(&endpoint, &external.mint(&ci_claims())).await;
    exchange_ok(&endpoint, &external.mint(&ci_claims())).await;
    assert_eq!(source.hits(), 1, "the JWKS is cached");
}

/// Signs the CI claims with the ring's active key.
fn sign(ring: &KeyRing) -> String {
    ring.active().sign_jwt(None, &ci_claims()).unwrap()
}

/// Rotates `ring` at `source`, and waits past the refresh cooldown.
async fn rotate_at(ring: &KeyRing, source: &JwksSource) {
    ring.rotate(SigningKey::generate(Algorithm::ES256).unwrap());
    source.set(ring.jwks());
    tokio::time::sleep(Duration::from_millis(250)).await;
}

#[tokio::test]
async fn jwks_key_rotation_at_the_source_is_picked_up_on_unknown_kid() {
    let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let source = JwksSource::start(ring.jwks(), true, "max-age=600").await;
    let endpoint = issuer(remote(&source.url), |app| app);
    exchange_ok(&endpoint, &sign(&ring)).await;
    rotate_at(&ring, &source).await;
    exchange_ok(&endpoint, &sign(&ring)).await;
    assert_eq!(source.hits(), 2);
}

#[tokio::test]
async fn rotation_is_picked_up_even_when_a_certificate_is_also_trusted() {
    // A kid-less certificate key beside a JWKS URL must not hide an unknown kid.
    let certificate_issuer = External::new(Algorithm::ES256);
    let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let source = JwksSource::start(ring.jwks(), true, "max-age=600").await;
    let keys = remote(&source.url)
        .with_issuer(TrustedIssuer::new(CI_ISSUER).with_key(certificate_key(&certificate_issuer)));
    let endpoint = issuer(keys, |app| app);
    exchange_ok(&endpoint, &sign(&ring)).await;
    rotate_at(&ring, &source).await;
    exchange_ok(&endpoint, &sign(&ring)).await;
    exchange_ok(&endpoint, &certificate_issuer.mint(&ci_claims())).await;
}

#[tokio::test]
async fn jwks_source_down_after_a_good_fetch_keeps_working() {
    let external = External::new(Algorithm::ES256);
    let source = JwksSource::start(external.jwks(), true, "max-age=0").await;
    let endpoint = issuer(remote(&source.url), |app| app);
    exchange_ok(&endpoint, &external.mint(&ci_claims())).await;
    source.set_up(false);
    for _ in 0..3 {
        exchange_ok(&endpoint, &external.mint(&ci_claims())).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(source.hits() >= 2, "refreshes were attempted");
}

#[tokio::test]
async fn jwks_source_down_from_the_start_fails_closed() {
    let external = External::new(Algorithm::ES256);
    let source = JwksSource::start(external.jwks(), false, "max-age=600").await;
    let endpoint = issuer(remote(&source.url), |app| app);
    let answer = exchange(&endpoint, &external.mint(&ci_claims())).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.error(), "temporarily_unavailable");
}

// ---- the audience of an input JWT (RFC 7523 §3) ----------------------------------------

#[tokio::test]
async fn rfc7523_3_an_input_jwt_must_name_this_server_as_its_audience() {
    let external = External::new(Algorithm::ES256);
    // Static keys, no assertion audiences configured.
    let application = Application::new(CI_CLIENT, CI_SLUG)
        .with_verification_keys(cert_keys(&external))
        .with_allowed_scopes(["deploy"]);
    let endpoint = Endpoint::with(Algorithm::ES256, move |layer| {
        layer.application(application).unwrap()
    });
    let token_url = endpoint.token_url();
    let issuer = endpoint.url("/application/o/ci/");
    let with_aud = |aud: Option<Value>| {
        let mut claims = ci_claims();
        match aud {
            Some(aud) => claims["aud"] = aud,
            None => remove(&mut claims, "aud"),
        }
        external.mint(&claims)
    };
    for (name, aud) in [
        (
            "another_relying_party",
            Some(json!("https://another-rp.example")),
        ),
        ("no_audience", None),
        (
            "several_none_of_them_this_server",
            Some(json!(["https://a.example", "https://b.example"])),
        ),
    ] {
        let answer = exchange(&endpoint, &with_aud(aud)).await;
        assert_eq!(answer.status, 400, "{name}: {}", answer.text());
    }
    for (name, aud) in [
        ("the_token_endpoint", json!(token_url)),
        ("the_issuer", json!(issuer)),
        (
            "one_of_several",
            json!(["https://another-rp.example", token_url]),
        ),
    ] {
        let answer = exchange(&endpoint, &with_aud(Some(aud))).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.text());
    }
}
