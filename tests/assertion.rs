//! JWT authentication at the token endpoint: input JWTs from external
//! issuers, verified by certificates and JWKS, with policies. Over real HTTP.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::jwks::{External, JwksSource};
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower_m2m_auth::issuer::Application;
use tower_m2m_auth::keys::fetch::ReqwestFetcher;
use tower_m2m_auth::keys::{
    CachePolicy, KeyRing, RemoteJwks, SigningKey, TrustedIssuer, VerificationKey, VerificationKeys,
};
use tower_m2m_auth::store::{AccountAdmin, Binding, ExternalAccount};

const CI_CLIENT: &str = "ci-client";
const CI_SLUG: &str = "ci";
const CI_ISSUER: &str = "https://ci.example";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a typical CI OIDC token.
fn ci_claims() -> Value {
    let now = now();
    json!({
        "iss": CI_ISSUER,
        "sub": "repo:org/app:ref:refs/heads/main",
        "aud": "https://auth.example.com",
        "exp": now + 300,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "repository": "org/app",
    })
}

fn ci_application(keys: VerificationKeys) -> Application {
    let remote = keys.has_remote();
    let application = Application::new(CI_CLIENT, CI_SLUG)
        .with_verification_keys(keys)
        .with_allowed_scopes(["deploy"]);
    if remote {
        // A JWKS URL may sign for others too: pin this application's JWTs.
        application.with_policy(|context: &tower_m2m_auth::policy::PolicyContext<'_>| {
            context.claims["repository"] == "org/app"
        })
    } else {
        application
    }
}

/// An issuer whose `ci-client` application trusts `keys`, shaped by `configure`.
async fn issuer(
    keys: VerificationKeys,
    configure: impl FnOnce(Application) -> Application,
) -> Server {
    let application = configure(ci_application(keys));
    start_with(Algorithm::ES256, move |layer| {
        layer.application(application).unwrap()
    })
    .await
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

async fn assert_with(server: &Server, pairs: &[(&str, &str)]) -> reqwest::Response {
    post_form(server, &form_encode(pairs)).await
}

async fn exchange(server: &Server, jwt: &str) -> reqwest::Response {
    post_assertion(server, CI_CLIENT, jwt, "deploy").await
}

/// Exchanges `jwt` and returns the verified claims of the access token.
async fn exchange_ok(server: &Server, jwt: &str) -> Value {
    let response = exchange(server, jwt).await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["scope"], "deploy");
    verify(
        &server.jwks().await,
        json["access_token"].as_str().unwrap(),
        CI_CLIENT,
        &server.url(&format!("/application/o/{CI_SLUG}/")),
    )
}

async fn rejected(server: &Server, jwt: &str) -> String {
    let response = exchange(server, jwt).await;
    assert_eq!(response.status(), 400);
    error_code(response).await
}

fn fast_policy() -> CachePolicy {
    let mut policy = CachePolicy::default();
    policy.unknown_kid_cooldown = Duration::from_millis(200);
    policy.failure_backoff = Duration::from_millis(50);
    policy.min_ttl = Duration::ZERO;
    policy
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

// ---- success through each key source -------------------------------------------

#[tokio::test]
async fn p256_certificate_verifies_input_jwt() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let claims = exchange_ok(&server, &external.mint(&ci_claims())).await;
    assert_eq!(
        claims["preferred_username"],
        "ci-repo:org/app:ref:refs/heads/main"
    );
    assert_eq!(
        claims["act"],
        json!({"iss": CI_ISSUER, "sub": "repo:org/app:ref:refs/heads/main"})
    );
    assert_eq!(claims["aud"], CI_CLIENT);
}

#[tokio::test]
async fn rsa_certificate_verifies_input_jwt() {
    let external = External::new(Algorithm::RS256);
    let server = issuer(cert_keys(&external), |app| app).await;
    exchange_ok(&server, &external.mint(&ci_claims())).await;
}

#[tokio::test]
async fn ed25519_certificate_verifies_input_jwt() {
    let external = External::new(Algorithm::EdDSA);
    let server = issuer(cert_keys(&external), |app| app).await;
    exchange_ok(&server, &external.mint(&ci_claims())).await;
}

#[tokio::test]
async fn pem_public_key_verifies_input_jwt_without_kid() {
    let external = External::new(Algorithm::ES256);
    let keys = ci_keys(
        TrustedIssuer::new(CI_ISSUER)
            .with_key(VerificationKey::from_pem(external.public_key_pem().as_bytes()).unwrap()),
    );
    let server = issuer(keys, |app| app).await;
    exchange_ok(&server, &external.mint_without_kid(&ci_claims())).await;
}

#[tokio::test]
async fn inline_jwks_verifies_input_jwt() {
    let external = External::new(Algorithm::EdDSA);
    let server = issuer(
        ci_keys(TrustedIssuer::new(CI_ISSUER).with_jwks(&external.jwks())),
        |app| app,
    )
    .await;
    exchange_ok(&server, &external.mint(&ci_claims())).await;
}

#[tokio::test]
async fn jwks_url_verifies_input_jwt() {
    let external = External::new(Algorithm::RS256);
    let source = JwksSource::start(external.jwks(), true, "max-age=600").await;
    let server = issuer(remote(&source.url), |app| app).await;
    exchange_ok(&server, &external.mint(&ci_claims())).await;
    exchange_ok(&server, &external.mint(&ci_claims())).await;
    assert_eq!(source.hits(), 1, "the JWKS is cached");
}

#[tokio::test]
async fn input_jwt_in_client_secret_with_assertion_type() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let jwt = external.mint(&ci_claims());
    let response = assert_with(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            ("client_assertion_type", JWT_BEARER),
            ("client_secret", &jwt),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn input_jwt_in_client_secret_without_assertion_type() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let jwt = external.mint(&ci_claims());
    let response = assert_with(
        &server,
        &[
            ("grant_type", "password"),
            ("client_id", CI_CLIENT),
            ("client_secret", &jwt),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn input_jwt_as_http_basic_password() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let jwt = external.mint(&ci_claims());
    let response = http()
        .post(server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{CI_CLIENT}:{jwt}"))),
        )
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn input_jwt_cannot_take_over_an_existing_account() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| {
        app.with_subject_mode(tower_m2m_auth::issuer::SubjectMode::Id)
    })
    .await;
    let mut claims = ci_claims();
    claims["preferred_username"] = json!(USERNAME);
    let jwt_claims = exchange_ok(&server, &external.mint(&claims)).await;
    // The username is taken: the JWT's account gets a disambiguated one.
    let disambiguated =
        ExternalAccount::new(CI_ISSUER, "repo:org/app:ref:refs/heads/main", USERNAME)
            .disambiguated_username();
    assert_eq!(jwt_claims["preferred_username"], disambiguated);
    assert_ne!(
        jwt_claims["sub"], server.account.id,
        "identity is (iss, sub), not the username"
    );
    assert_eq!(jwt_claims["act"]["sub"], "repo:org/app:ref:refs/heads/main");

    // The same (iss, sub) is the same identity every time.
    let again = exchange_ok(&server, &external.mint(&claims)).await;
    assert_eq!(again["sub"], jwt_claims["sub"]);
    assert_eq!(again["preferred_username"], disambiguated);

    // Both accounts exist; the existing one is unchanged and still logs in.
    let accounts = server.store.list_service_accounts().await.unwrap();
    assert!(accounts.contains(&server.account), "{accounts:?}");
    assert!(accounts.iter().any(|a| a.username == disambiguated));
    let response = post_form(
        &server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", &server.token),
        ]),
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn input_jwt_of_a_disabled_account_is_invalid_grant() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let claims = exchange_ok(&server, &external.mint(&ci_claims())).await;
    let username = claims["preferred_username"].as_str().unwrap().to_owned();
    assert_eq!(username, "ci-repo:org/app:ref:refs/heads/main");
    assert!(
        server
            .store
            .set_account_active(&username, false)
            .await
            .unwrap()
    );
    assert_eq!(
        rejected(&server, &external.mint(&ci_claims())).await,
        "invalid_grant"
    );
    assert!(
        server
            .store
            .set_account_active(&username, true)
            .await
            .unwrap()
    );
    exchange_ok(&server, &external.mint(&ci_claims())).await;
}

// ---- rejections --------------------------------------------------------------------

#[tokio::test]
async fn expired_assertion_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let mut claims = ci_claims();
    claims["exp"] = json!(now() - 60);
    assert_eq!(
        rejected(&server, &external.mint(&claims)).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn assertion_expiring_now_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let mut claims = ci_claims();
    claims["exp"] = json!(now());
    assert_eq!(
        rejected(&server, &external.mint(&claims)).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn assertion_without_exp_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let mut claims = ci_claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        rejected(&server, &external.mint(&claims)).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn assertion_not_yet_valid_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let mut claims = ci_claims();
    claims["nbf"] = json!(now() + 120);
    assert_eq!(
        rejected(&server, &external.mint(&claims)).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn assertion_issued_in_the_future_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let mut claims = ci_claims();
    claims["iat"] = json!(now() + 120);
    assert_eq!(
        rejected(&server, &external.mint(&claims)).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn leeway_admits_small_clock_skew() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| {
        app.with_assertion_leeway(Duration::from_secs(60))
    })
    .await;
    let mut claims = ci_claims();
    claims["nbf"] = json!(now() + 30);
    exchange_ok(&server, &external.mint(&claims)).await;
}

#[tokio::test]
async fn assertion_with_bad_signature_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let jwt = external.mint(&ci_claims());
    let (signed, _) = jwt.rsplit_once('.').unwrap();
    let other = external.mint(&json!({"iss": CI_ISSUER, "sub": "x", "exp": now() + 300}));
    let (_, foreign_signature) = other.rsplit_once('.').unwrap();
    assert_eq!(
        rejected(&server, &format!("{signed}.{foreign_signature}")).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn assertion_with_tampered_claims_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let jwt = external.mint(&ci_claims());
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut claims = ci_claims();
    claims["repository"] = json!("org/evil");
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    assert_eq!(
        rejected(&server, &format!("{}.{payload}.{}", parts[0], parts[2])).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn assertion_signed_by_unknown_key_is_rejected() {
    let trusted = External::new(Algorithm::ES256);
    let stranger = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&trusted), |app| app).await;
    assert_eq!(
        rejected(&server, &stranger.mint(&ci_claims())).await,
        "invalid_grant"
    );
    assert_eq!(
        rejected(&server, &stranger.mint_without_kid(&ci_claims())).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn alg_none_assertion_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&ci_claims()).unwrap());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.AAAA"),
    ] {
        assert_eq!(rejected(&server, &token).await, "invalid_grant");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let certificate = external.certificate_pem();
    let server = issuer(cert_keys(&external), |app| app).await;
    for secret in [certificate.clone(), external.public_key_pem()] {
        for kid in [Some(external.key.kid().to_owned()), None] {
            let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
            header.kid = kid;
            let token = jsonwebtoken::encode(
                &header,
                &ci_claims(),
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap();
            assert_eq!(rejected(&server, &token).await, "invalid_grant");
        }
    }
}

#[tokio::test]
async fn wrong_client_assertion_type_is_invalid_grant() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let jwt = external.mint(&ci_claims());
    let response = assert_with(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", &jwt),
        ],
    )
    .await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn client_assertion_without_type_is_invalid_request() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let jwt = external.mint(&ci_claims());
    let response = assert_with(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            ("client_assertion", &jwt),
        ],
    )
    .await;
    assert_eq!(error_code(response).await, "invalid_request");
}

#[tokio::test]
async fn policy_denied_assertion_is_invalid_grant_without_saying_why() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| {
        app.with_policy(|context: &tower_m2m_auth::policy::PolicyContext<'_>| {
            context.claims["repository"] == "org/deployer"
        })
    })
    .await;
    let response = exchange(&server, &external.mint(&ci_claims())).await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("repository") && !body.contains("org/"),
        "{body}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "invalid_grant"
    );

    let mut claims = ci_claims();
    claims["repository"] = json!("org/deployer");
    exchange_ok(&server, &external.mint(&claims)).await;
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
    let server = issuer(keys, |app| app.with_policy(policy)).await;
    exchange_ok(&server, &external.mint(&ci_claims())).await;
    let mut claims = ci_claims();
    claims["iss"] = json!("https://elsewhere.example");
    assert_eq!(
        rejected(&server, &external.mint(&claims)).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn wrong_audience_is_rejected_when_an_audience_is_required() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| {
        app.with_assertion_audiences(["https://auth.example.com"])
    })
    .await;
    exchange_ok(&server, &external.mint(&ci_claims())).await;
    let mut claims = ci_claims();
    claims["aud"] = json!("https://some-other-service");
    assert_eq!(
        rejected(&server, &external.mint(&claims)).await,
        "invalid_grant"
    );
    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        rejected(&server, &external.mint(&claims)).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn replayed_jti_is_rejected_when_single_use() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| {
        app.with_single_use_assertions(true)
    })
    .await;
    let jwt = external.mint(&ci_claims());
    exchange_ok(&server, &jwt).await;
    assert_eq!(rejected(&server, &jwt).await, "invalid_grant");
    let mut claims = ci_claims();
    claims.as_object_mut().unwrap().remove("jti");
    assert_eq!(
        rejected(&server, &external.mint(&claims)).await,
        "invalid_grant"
    );
}

#[tokio::test]
async fn reused_assertion_is_accepted_by_default() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let jwt = external.mint(&ci_claims());
    exchange_ok(&server, &jwt).await;
    exchange_ok(&server, &jwt).await;
}

#[tokio::test]
async fn assertion_for_an_application_that_trusts_no_keys_is_invalid_grant() {
    let external = External::new(Algorithm::ES256);
    let server = start().await;
    let response = assert_with(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &external.mint(&ci_claims())),
        ],
    )
    .await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

// ---- JWKS URL behaviour ---------------------------------------------------------------

#[tokio::test]
async fn jwks_key_rotation_at_the_source_is_picked_up_on_unknown_kid() {
    let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let source = JwksSource::start(ring.jwks(), true, "max-age=600").await;
    let server = issuer(remote(&source.url), |app| app).await;
    let sign = |ring: &KeyRing| ring.active().sign_jwt(None, &ci_claims()).unwrap();
    exchange_ok(&server, &sign(&ring)).await;

    ring.rotate(SigningKey::generate(Algorithm::ES256).unwrap());
    source.set(ring.jwks());
    tokio::time::sleep(Duration::from_millis(250)).await; // past the refresh cooldown
    exchange_ok(&server, &sign(&ring)).await;
    assert_eq!(source.hits(), 2);
}

#[tokio::test]
async fn jwks_source_down_after_a_good_fetch_keeps_working() {
    let external = External::new(Algorithm::ES256);
    let source = JwksSource::start(external.jwks(), true, "max-age=0").await;
    let server = issuer(remote(&source.url), |app| app).await;
    exchange_ok(&server, &external.mint(&ci_claims())).await;
    source.set_up(false);
    for _ in 0..3 {
        exchange_ok(&server, &external.mint(&ci_claims())).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(source.hits() >= 2, "refreshes were attempted");
}

#[tokio::test]
async fn jwks_source_down_from_the_start_fails_closed() {
    let external = External::new(Algorithm::ES256);
    let source = JwksSource::start(external.jwks(), false, "max-age=600").await;
    let server = issuer(remote(&source.url), |app| app).await;
    let response = exchange(&server, &external.mint(&ci_claims())).await;
    assert_eq!(response.status(), 503);
    assert_eq!(error_code(response).await, "temporarily_unavailable");
}

// ---- federation -------------------------------------------------------------------------

#[tokio::test]
async fn access_token_of_a_federated_application_is_accepted() {
    let server = start_with(Algorithm::ES256, |layer| {
        layer
            .application(Application::new(CI_CLIENT, CI_SLUG).with_federated_application(CLIENT_ID))
            .unwrap()
    })
    .await;
    // A token for the test application, through its own credentials...
    let response = post_form(
        &server,
        &form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", USERNAME),
            ("password", &server.token),
        ]),
    )
    .await;
    let first: Value = response.json().await.unwrap();
    let upstream = first["access_token"].as_str().unwrap();
    // ...is traded for a token of the federated application, where the
    // account is bound too.
    server
        .store
        .bind(USERNAME, Binding::new(CI_CLIENT, ["deploy"]));
    let claims = exchange_ok_without_scope(&server, upstream).await;
    assert_eq!(claims["preferred_username"], USERNAME);
    assert_eq!(claims["act"]["iss"], server.issuer());
    // A federated token stands for an account of this issuer: nothing new
    // is recorded for it.
    let accounts = server.store.list_service_accounts().await.unwrap();
    assert_eq!(accounts, std::slice::from_ref(&server.account));

    // Applications that do not federate refuse it.
    let response = assert_with(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", upstream),
        ],
    )
    .await;
    assert_eq!(error_code(response).await, "invalid_grant");
}

#[tokio::test]
async fn federated_token_signed_by_a_foreign_key_is_rejected() {
    let server = start_with(Algorithm::ES256, |layer| {
        layer
            .application(Application::new(CI_CLIENT, CI_SLUG).with_federated_application(CLIENT_ID))
            .unwrap()
    })
    .await;
    let forger = External::new(Algorithm::ES256);
    let forged = forger.mint(&json!({
        "iss": server.issuer(), "aud": CLIENT_ID, "sub": "x", "exp": now() + 300,
    }));
    assert_eq!(rejected(&server, &forged).await, "invalid_grant");
}

async fn exchange_ok_without_scope(server: &Server, jwt: &str) -> Value {
    let response = assert_with(
        server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", jwt),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    verify(
        &server.jwks().await,
        json["access_token"].as_str().unwrap(),
        CI_CLIENT,
        &server.url(&format!("/application/o/{CI_SLUG}/")),
    )
}

#[tokio::test]
async fn discovery_advertises_private_key_jwt_for_applications_that_trust_jwts() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let metadata = |slug: &str| {
        let url = server.url(&format!(
            "/application/o/{slug}/.well-known/openid-configuration"
        ));
        async move {
            http()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
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

#[tokio::test]
async fn fractional_numeric_dates_are_accepted() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let mut claims = ci_claims();
    claims["exp"] = json!(now() as f64 + 300.5);
    claims["iat"] = json!(now() as f64 - 0.25);
    exchange_ok(&server, &external.mint(&claims)).await;
}

#[tokio::test]
async fn application_secret_with_dots_is_not_mistaken_for_a_jwt() {
    let external = External::new(Algorithm::ES256);
    let secret = "part1.part2.part3";
    let server = issuer(cert_keys(&external), |app| app.with_client_secret(secret)).await;
    let response = assert_with(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            ("client_secret", secret),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    let claims =
        jsonwebtoken::dangerous::insecure_decode::<Value>(json["access_token"].as_str().unwrap())
            .unwrap()
            .claims;
    assert_eq!(claims["preferred_username"], "ak-ci-client_credentials");
}

#[tokio::test]
async fn rotation_is_picked_up_even_when_a_certificate_is_also_trusted() {
    // A kid-less certificate key beside a JWKS URL must not hide an unknown kid.
    let certificate_issuer = External::new(Algorithm::ES256);
    let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let source = JwksSource::start(ring.jwks(), true, "max-age=600").await;
    let keys = remote(&source.url)
        .with_issuer(TrustedIssuer::new(CI_ISSUER).with_key(certificate_key(&certificate_issuer)));
    let server = issuer(keys, |app| app).await;
    exchange_ok(
        &server,
        &ring.active().sign_jwt(None, &ci_claims()).unwrap(),
    )
    .await;
    ring.rotate(SigningKey::generate(Algorithm::ES256).unwrap());
    source.set(ring.jwks());
    tokio::time::sleep(Duration::from_millis(250)).await;
    exchange_ok(
        &server,
        &ring.active().sign_jwt(None, &ci_claims()).unwrap(),
    )
    .await;
    exchange_ok(&server, &certificate_issuer.mint(&ci_claims())).await;
}

#[tokio::test]
async fn replayed_jti_is_rejected_within_the_leeway_after_exp() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| {
        app.with_single_use_assertions(true)
            .with_assertion_leeway(Duration::from_secs(60))
    })
    .await;
    let mut claims = ci_claims();
    claims["exp"] = json!(now() - 10); // expired, but inside the leeway
    let jwt = external.mint(&claims);
    exchange_ok(&server, &jwt).await;
    assert_eq!(rejected(&server, &jwt).await, "invalid_grant");
}

// ---- lifetime cap -------------------------------------------------------------------------

/// Claims valid from `iat` (if any) until `exp`.
fn claims_living(iat: Option<u64>, exp: u64) -> Value {
    let mut claims = ci_claims();
    claims["exp"] = json!(exp);
    match iat {
        Some(iat) => claims["iat"] = json!(iat),
        None => drop(claims.as_object_mut().unwrap().remove("iat")),
    }
    claims
}

#[tokio::test]
async fn assertion_living_exactly_the_cap_is_accepted() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| {
        app.with_max_assertion_lifetime(Duration::from_secs(600))
    })
    .await;
    let now = now();
    exchange_ok(
        &server,
        &external.mint(&claims_living(Some(now), now + 600)),
    )
    .await;
}

#[tokio::test]
async fn assertion_living_longer_than_the_cap_is_rejected() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| {
        app.with_max_assertion_lifetime(Duration::from_secs(600))
    })
    .await;
    let now = now();
    // Issued a while ago, so only a little of it is left: still too long-lived.
    let jwt = external.mint(&claims_living(Some(now - 500), now + 101));
    assert_eq!(rejected(&server, &jwt).await, "invalid_grant");
}

#[tokio::test]
async fn assertion_without_iat_is_capped_from_now() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| {
        app.with_max_assertion_lifetime(Duration::from_secs(600))
    })
    .await;
    let now = now();
    exchange_ok(&server, &external.mint(&claims_living(None, now + 590))).await;
    let jwt = external.mint(&claims_living(None, now + 700));
    assert_eq!(rejected(&server, &jwt).await, "invalid_grant");
}

#[tokio::test]
async fn assertion_valid_until_9999_is_rejected_by_default() {
    let external = External::new(Algorithm::ES256);
    let server = issuer(cert_keys(&external), |app| app).await;
    let now = now();
    let jwt = external.mint(&claims_living(Some(now), 253_402_300_799));
    assert_eq!(rejected(&server, &jwt).await, "invalid_grant");
    // The default is one hour.
    let jwt = external.mint(&claims_living(Some(now), now + 3600));
    exchange_ok(&server, &jwt).await;
    let jwt = external.mint(&claims_living(Some(now), now + 3601));
    assert_eq!(rejected(&server, &jwt).await, "invalid_grant");
}
