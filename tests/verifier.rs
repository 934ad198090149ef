//! The credential verifier is a pluggable `tower::Service`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use common::jwks::External;
use common::{CLIENT_ID, SLUG, Verifier, application, error_code, form_encode, http};
use jsonwebtoken::Algorithm;
use secrecy::ExposeSecret;
use tower::service_fn;
use tower_m2m_auth::issuer::{
    Application, ClientAuthentication, Credentials, ExternalIdentity, Principal,
    TokenEndpointLayer, VerifyError,
};
use tower_m2m_auth::keys::{KeyRing, SigningKey, TrustedIssuer, VerificationKey, VerificationKeys};
use tower_m2m_auth::store::{Binding, MemoryStore, ServiceAccount, StoreError};

/// Serves the endpoint with `verifier` and one `application`, and returns
/// the base URL.
async fn serve(verifier: impl Verifier, store: MemoryStore, application: Application) -> String {
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    common::serve(|base| {
        let layer = TokenEndpointLayer::new(base, keys, store)
            .unwrap()
            .verifier(verifier)
            .application(application)
            .unwrap();
        Router::new()
            .route("/", get(|| async { "inner" }))
            .layer(layer)
    })
    .await
}

/// Posts a `client_credentials` request of the test application with
/// `credentials`.
async fn post_token(base: &str, credentials: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
    ];
    form.extend_from_slice(credentials);
    http()
        .post(format!("{base}/application/o/token/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&form))
        .send()
        .await
        .unwrap()
}

/// The claims of the access token in a successful token response.
async fn access_token_claims(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(response.status(), 200);
    let json: serde_json::Value = response.json().await.unwrap();
    let token = json["access_token"].as_str().unwrap();
    jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .unwrap()
        .claims
}

async fn request_token(base: &str, secret: &str) -> reqwest::Response {
    post_token(base, &[("client_secret", secret)]).await
}

#[tokio::test]
async fn custom_verifier_decides_who_the_client_is() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    // The endpoint's store knows the account only to bind it.
    let store = MemoryStore::new();
    let account = ServiceAccount::new("from-ldap");
    store.insert_account(account.clone());
    store.bind("from-ldap", Binding::new(CLIENT_ID, ["read"]));
    let unbound = ServiceAccount::new("unbound-from-ldap");
    let verifier = service_fn(move |request: ClientAuthentication| {
        counter.fetch_add(1, Ordering::SeqCst);
        let (account, unbound) = (account.clone(), unbound.clone());
        async move {
            assert_eq!(request.application.client_id(), CLIENT_ID);
            match request.credentials {
                Credentials::ClientSecret(secret) if secret.expose_secret() == "let-me-in" => {
                    Ok(Principal::from(account))
                }
                // A custom verifier cannot skip the endpoint's binding check.
                Credentials::ClientSecret(secret) if secret.expose_secret() == "unbound" => {
                    Ok(Principal::from(unbound))
                }
                _ => Err(VerifyError::Rejected(
                    tower_m2m_auth::issuer::Rejection::UnknownCredentials,
                )),
            }
        }
    });
    let base = serve(verifier, store, application()).await;

    let response = request_token(&base, "let-me-in").await;
    let claims = access_token_claims(response).await;
    assert_eq!(claims["preferred_username"], "from-ldap");
    assert_eq!(claims["iss"], format!("{base}/application/o/{SLUG}/"));

    let response = request_token(&base, "wrong").await;
    assert_eq!(error_code(response).await, "invalid_grant");
    let response = request_token(&base, "unbound").await;
    assert_eq!(error_code(response).await, "invalid_grant");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn unavailable_verifier_is_503_temporarily_unavailable() {
    let verifier = service_fn(|_: ClientAuthentication| async {
        Err::<Principal, _>(VerifyError::from(StoreError(Box::new(
            std::io::Error::other("database is down"),
        ))))
    });
    let base = serve(verifier, MemoryStore::new(), application()).await;
    let response = request_token(&base, "anything").await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(!body.contains("database"), "internal detail leaked: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "temporarily_unavailable");
}

const CI_ISSUER: &str = "https://ci.example";

/// The test application, trusting `external` to sign input JWTs for
/// `CI_ISSUER`, each usable once.
fn ci_application(external: &External) -> Application {
    let key = VerificationKey::from_pem(external.public_key_pem().as_bytes()).unwrap();
    application()
        .with_verification_keys(
            VerificationKeys::new().with_issuer(TrustedIssuer::new(CI_ISSUER).with_key(key)),
        )
        .with_single_use_assertions(true)
        // Tokens without `aud`: the audience rule is tested in tests/assertion.rs.
        .danger_accept_any_assertion_audience()
}

fn ci_claims(jti: &str, exp_in: i64) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    serde_json::json!({
        "iss": CI_ISSUER, "sub": "repo:deploy", "jti": jti,
        "iat": now, "exp": now + exp_in,
    })
}

async fn post_assertion(base: &str, jwt: &str) -> reqwest::Response {
    let jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let assertion = [
        ("client_assertion_type", jwt_bearer),
        ("client_assertion", jwt),
    ];
    post_token(base, &assertion).await
}

/// A custom verifier that counts its calls and takes every verified input
/// JWT for the account it stands for.
fn jwt_verifier(calls: Arc<AtomicUsize>) -> impl Verifier {
    service_fn(move |request: ClientAuthentication| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match &request.credentials {
                Credentials::Assertion(assertion) => {
                    assert_eq!(
                        assertion.identity,
                        ExternalIdentity::new(CI_ISSUER, "repo:deploy")
                    );
                    Ok(assertion.principal(&request.application))
                }
                _ => Err(VerifyError::Rejected(
                    tower_m2m_auth::issuer::Rejection::UnknownCredentials,
                )),
            }
        }
    })
}

#[tokio::test]
async fn custom_verifier_gets_input_jwts_verified_by_the_endpoint() {
    let external = External::new(Algorithm::ES256);
    let calls = Arc::new(AtomicUsize::new(0));
    let verifier = jwt_verifier(calls.clone());
    let base = serve(verifier, MemoryStore::new(), ci_application(&external)).await;

    let response = post_assertion(&base, &external.mint(&ci_claims("one", 300))).await;
    let claims = access_token_claims(response).await;
    assert_eq!(claims["act"]["iss"], CI_ISSUER);
    assert_eq!(claims["act"]["sub"], "repo:deploy");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn input_jwts_the_endpoint_refuses_never_reach_a_custom_verifier() {
    let external = External::new(Algorithm::ES256);
    let stranger = External::new(Algorithm::ES256);
    let calls = Arc::new(AtomicUsize::new(0));
    let verifier = jwt_verifier(calls.clone());
    let base = serve(verifier, MemoryStore::new(), ci_application(&external)).await;

    let replayed = external.mint(&ci_claims("once", 300));
    assert_eq!(post_assertion(&base, &replayed).await.status(), 200);
    let refused = [
        ("forged_signature", stranger.mint(&ci_claims("forged", 300))),
        ("expired", external.mint(&ci_claims("expired", -60))),
        (
            "too_long_lived",
            external.mint(&ci_claims("long", 48 * 3600)),
        ),
        ("replayed_jti", replayed),
    ];
    for (rule, jwt) in refused {
        let response = post_assertion(&base, &jwt).await;
        assert_eq!(error_code(response).await, "invalid_client", "{rule}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the valid JWT reached it"
    );
}

/// A single-use JWT whose request the verifier could not decide (503) is
/// not used up: no token was issued, so the same JWT works once the
/// verifier is back, and only once.
#[tokio::test]
async fn a_single_use_jwt_is_given_back_when_its_request_could_not_be_answered() {
    let external = External::new(Algorithm::ES256);
    let calls = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let verifier = {
        let (calls, down) = (calls.clone(), down.clone());
        let up = jwt_verifier(calls.clone());
        service_fn(move |request: ClientAuthentication| {
            let (mut up, calls) = (up.clone(), calls.clone());
            let down = down.load(Ordering::SeqCst);
            async move {
                if down {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let cause = std::io::Error::other("directory is down");
                    return Err(VerifyError::from(StoreError(Box::new(cause))));
                }
                tower::ServiceExt::oneshot(&mut up, request).await
            }
        })
    };
    let base = serve(verifier, MemoryStore::new(), ci_application(&external)).await;

    let jwt = external.mint(&ci_claims("retried", 300));
    let first = post_assertion(&base, &jwt).await;
    assert_eq!(first.status(), 503);
    assert_eq!(error_code(first).await, "temporarily_unavailable");
    down.store(false, Ordering::SeqCst);
    let retry = post_assertion(&base, &jwt).await;
    assert_eq!(retry.status(), 200);
    let replay = post_assertion(&base, &jwt).await;
    assert_eq!(error_code(replay).await, "invalid_client");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the replay never reached it"
    );
}
