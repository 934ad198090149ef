//! One behavioural suite for every credential store, instantiated per
//! backend with `store_suite!`. Each behaviour is checked through the store's
//! admin API and through a real token endpoint over HTTP.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use common::jwks::External;
use common::{form_encode, http};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tower_m2m_auth::issuer::{Application, StoreVerifier, TokenEndpointLayer};
use tower_m2m_auth::keys::{
    Algorithm, KeyRing, SigningKey, TrustedIssuer, VerificationKey, VerificationKeys,
};
use tower_m2m_auth::store::{
    AccountAdmin, AdminError, AppPassword, CredentialStore, ExternalAccount, ServiceAccount,
    TokenDigest,
};

/// A store every behaviour can use.
pub trait SuiteStore: CredentialStore + AccountAdmin + Clone {}
impl<T: CredentialStore + AccountAdmin + Clone> SuiteStore for T {}

/// The issuer of the input JWTs that the `suite-jwt` application trusts.
const JWT_ISSUER: &str = "https://ci.suite.example";

/// A token endpoint over `store`, on 127.0.0.1; returns its token URL.
async fn endpoint<S: SuiteStore>(store: S) -> String {
    endpoint_trusting(store, None).await
}

/// A token endpoint over `store` whose `suite-jwt` application trusts input
/// JWTs of a fresh external issuer; returns its token URL and that issuer.
async fn jwt_endpoint<S: SuiteStore>(store: S) -> (String, External) {
    let external = External::new(Algorithm::ES256);
    let url = endpoint_trusting(store, Some(&external)).await;
    (url, external)
}

async fn endpoint_trusting<S: SuiteStore>(store: S, external: Option<&External>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let mut layer = TokenEndpointLayer::new(&base, keys, StoreVerifier::new(store))
        .unwrap()
        .application(Application::new("suite-client", "suite"));
    if let Some(external) = external {
        let trusted =
            VerificationKeys::new().with_issuer(TrustedIssuer::new(JWT_ISSUER).with_key(
                VerificationKey::from_pem(external.certificate_pem().as_bytes()).unwrap(),
            ));
        layer = layer.application(
            Application::new("suite-jwt", "suite-jwt").with_verification_keys(trusted),
        );
    }
    let app = Router::new()
        .route("/", get(|| async { "inner" }))
        .layer(layer);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{base}/application/o/token/")
}

/// The HTTP status of a token request as `username` with `token`.
async fn login(url: &str, username: &str, token: &SecretString) -> u16 {
    http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", "suite-client"),
            ("username", username),
            ("password", token.expose_secret()),
        ]))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub async fn created_account_authenticates<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let (account, token) = store
        .create_service_account(ServiceAccount::new("svc-create"), None)
        .await
        .unwrap();
    assert_eq!(account.username, "svc-create");
    assert_eq!(login(&url, "svc-create", &token).await, 200);
    assert_eq!(
        login(&url, "svc-create", &SecretString::from("wrong")).await,
        400
    );
}

pub async fn duplicate_username_is_refused<S: SuiteStore>(store: S) {
    store
        .create_service_account(ServiceAccount::new("svc-dup"), None)
        .await
        .unwrap();
    let error = store
        .create_service_account(ServiceAccount::new("svc-dup"), None)
        .await
        .unwrap_err();
    assert!(matches!(error, AdminError::AccountExists(_)), "{error}");
}

pub async fn second_token_rotates_without_downtime<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let (_, first) = store
        .create_service_account(ServiceAccount::new("svc-rotate"), None)
        .await
        .unwrap();
    let second = store.add_app_password("svc-rotate", None).await.unwrap();
    assert_ne!(first.expose_secret(), second.expose_secret());
    assert_eq!(login(&url, "svc-rotate", &first).await, 200);
    assert_eq!(login(&url, "svc-rotate", &second).await, 200);
    assert!(
        store
            .revoke_app_password(&TokenDigest::of(first.expose_secret()))
            .await
            .unwrap()
    );
    assert_eq!(login(&url, "svc-rotate", &first).await, 400);
    assert_eq!(login(&url, "svc-rotate", &second).await, 200);
}

pub async fn revoking_an_unknown_token_reports_false<S: SuiteStore>(store: S) {
    assert!(
        !store
            .revoke_app_password(&TokenDigest::of("never issued"))
            .await
            .unwrap()
    );
}

pub async fn disabled_account_cannot_authenticate_until_enabled<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let (_, token) = store
        .create_service_account(ServiceAccount::new("svc-disable"), None)
        .await
        .unwrap();
    assert!(
        store
            .set_account_active("svc-disable", false)
            .await
            .unwrap()
    );
    assert_eq!(login(&url, "svc-disable", &token).await, 400);
    assert!(store.set_account_active("svc-disable", true).await.unwrap());
    assert_eq!(login(&url, "svc-disable", &token).await, 200);
    assert!(!store.set_account_active("nobody", false).await.unwrap());
}

pub async fn expired_token_does_not_authenticate<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let past = SystemTime::now() - Duration::from_secs(5);
    let (_, token) = store
        .create_service_account(ServiceAccount::new("svc-expired"), Some(past))
        .await
        .unwrap();
    assert_eq!(login(&url, "svc-expired", &token).await, 400);
    let future = SystemTime::now() + Duration::from_secs(3600);
    let fresh = store
        .add_app_password("svc-expired", Some(future))
        .await
        .unwrap();
    assert_eq!(login(&url, "svc-expired", &fresh).await, 200);
}

pub async fn another_accounts_token_is_refused<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    store
        .create_service_account(ServiceAccount::new("svc-alice"), None)
        .await
        .unwrap();
    let (_, bobs) = store
        .create_service_account(ServiceAccount::new("svc-bob"), None)
        .await
        .unwrap();
    assert_eq!(login(&url, "svc-alice", &bobs).await, 400);
    assert_eq!(login(&url, "svc-bob", &bobs).await, 200);
}

pub async fn adding_a_token_to_an_unknown_account_fails<S: SuiteStore>(store: S) {
    let error = store.add_app_password("svc-ghost", None).await.unwrap_err();
    assert!(matches!(error, AdminError::NoSuchAccount(_)), "{error}");
}

pub async fn accounts_are_listed_by_username<S: SuiteStore>(store: S) {
    for name in ["svc-list-b", "svc-list-a", "svc-list-c"] {
        store
            .create_service_account(
                ServiceAccount::new(name).with_name(format!("{name} display")),
                None,
            )
            .await
            .unwrap();
    }
    let listed: Vec<String> = store
        .list_service_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|account| account.username)
        .filter(|name| name.starts_with("svc-list-"))
        .collect();
    assert_eq!(listed, ["svc-list-a", "svc-list-b", "svc-list-c"]);
}

pub async fn importing_an_account_is_idempotent<S: SuiteStore>(store: S) {
    let account = ServiceAccount::new("svc-import").with_name("Imported");
    let imported = store.import_service_account(account.clone()).await.unwrap();
    assert_eq!(imported, account);
    // Importing again, even with other settings, keeps the stored account.
    let changed = ServiceAccount::new("svc-import")
        .with_name("Changed")
        .with_active(false);
    let again = store.import_service_account(changed).await.unwrap();
    assert_eq!(again, account);
    let listed: Vec<ServiceAccount> = store
        .list_service_accounts()
        .await
        .unwrap()
        .into_iter()
        .filter(|listed| listed.username == "svc-import")
        .collect();
    assert_eq!(listed, [account]);
}

pub async fn an_existing_account_is_not_replaced_by_an_import<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let (created, token) = store
        .create_service_account(ServiceAccount::new("svc-kept"), None)
        .await
        .unwrap();
    let stored = store
        .import_service_account(ServiceAccount::new("svc-kept").with_name("Other"))
        .await
        .unwrap();
    assert_eq!(stored, created);
    assert_eq!(login(&url, "svc-kept", &token).await, 200);
}

pub async fn imported_password_authenticates_once_imported<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let account = store
        .import_service_account(ServiceAccount::new("svc-import-pw"))
        .await
        .unwrap();
    let token = SecretString::from("imported-token-of-svc-import-pw");
    let digest = TokenDigest::of(token.expose_secret());
    // The password's account_id is not what counts: the username is.
    let password = AppPassword::new("some other id", digest);
    assert!(
        store
            .import_app_password("svc-import-pw", password.clone())
            .await
            .unwrap()
    );
    assert!(
        !store
            .import_app_password("svc-import-pw", password)
            .await
            .unwrap()
    );
    assert_eq!(login(&url, "svc-import-pw", &token).await, 200);
    let credential = store
        .app_password("svc-import-pw", &digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credential.password.account_id, account.id);
    // Once revoked, importing it again brings it back.
    assert!(store.revoke_app_password(&digest).await.unwrap());
    assert_eq!(login(&url, "svc-import-pw", &token).await, 400);
    assert!(
        store
            .import_app_password("svc-import-pw", AppPassword::new("", digest))
            .await
            .unwrap()
    );
    assert_eq!(login(&url, "svc-import-pw", &token).await, 200);
}

pub async fn imported_password_keeps_its_expiry<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    store
        .import_service_account(ServiceAccount::new("svc-import-exp"))
        .await
        .unwrap();
    let expired = SecretString::from("expired-imported-token");
    let past = SystemTime::now() - Duration::from_secs(5);
    let password =
        AppPassword::new("", TokenDigest::of(expired.expose_secret())).with_expires(past);
    assert!(
        store
            .import_app_password("svc-import-exp", password)
            .await
            .unwrap()
    );
    assert_eq!(login(&url, "svc-import-exp", &expired).await, 400);
    let valid = SecretString::from("valid-imported-token");
    let future = SystemTime::now() + Duration::from_secs(3600);
    let password =
        AppPassword::new("", TokenDigest::of(valid.expose_secret())).with_expires(future);
    assert!(
        store
            .import_app_password("svc-import-exp", password)
            .await
            .unwrap()
    );
    assert_eq!(login(&url, "svc-import-exp", &valid).await, 200);
}

pub async fn importing_a_password_for_an_unknown_account_fails<S: SuiteStore>(store: S) {
    let password = AppPassword::new("", TokenDigest::of("orphan token"));
    let error = store
        .import_app_password("svc-import-ghost", password)
        .await
        .unwrap_err();
    assert!(matches!(error, AdminError::NoSuchAccount(_)), "{error}");
}

pub async fn an_imported_password_never_moves_to_another_account<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let (_, token) = store
        .create_service_account(ServiceAccount::new("svc-owner"), None)
        .await
        .unwrap();
    store
        .import_service_account(ServiceAccount::new("svc-thief"))
        .await
        .unwrap();
    let password = AppPassword::new("", TokenDigest::of(token.expose_secret()));
    let error = store
        .import_app_password("svc-thief", password)
        .await
        .unwrap_err();
    assert!(
        matches!(error, AdminError::PasswordOfAnotherAccount),
        "{error}"
    );
    assert_eq!(login(&url, "svc-owner", &token).await, 200);
    assert_eq!(login(&url, "svc-thief", &token).await, 400);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An input JWT of `external` for (`JWT_ISSUER`, `sub`), expiring at `exp`
/// (Unix seconds), asking for `preferred_username` if given.
fn input_jwt(external: &External, sub: &str, exp: u64, preferred_username: Option<&str>) -> String {
    let mut claims = json!({
        "iss": JWT_ISSUER,
        "sub": sub,
        "exp": exp,
        "iat": unix_now(),
    });
    if let Some(username) = preferred_username {
        claims["preferred_username"] = json!(username);
    }
    external.mint(&claims)
}

/// Exchanges an input JWT at `suite-jwt`: the status, and the claims of the
/// access token if one was issued.
async fn exchange(url: &str, jwt: &str) -> (u16, Option<Value>) {
    let response = http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", "suite-jwt"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
        ]))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let claims = body["access_token"].as_str().map(|token| {
        jsonwebtoken::dangerous::insecure_decode::<Value>(token)
            .unwrap()
            .claims
    });
    (status, claims)
}

/// The stored account of the identity (`JWT_ISSUER`, `sub`), if any.
async fn jwt_account<S: SuiteStore>(store: &S, sub: &str) -> Option<ServiceAccount> {
    let id = ExternalAccount::new(JWT_ISSUER, sub, "").id;
    let mut found: Vec<ServiceAccount> = store
        .list_service_accounts()
        .await
        .unwrap()
        .into_iter()
        .filter(|account| account.id == id)
        .collect();
    assert!(found.len() <= 1, "{found:?}");
    found.pop()
}

pub async fn input_jwt_account_is_recorded_on_first_use<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    assert_eq!(jwt_account(&store, "job-1").await, None);
    let exp = unix_now() + 300;
    let (status, claims) = exchange(&url, &input_jwt(&external, "job-1", exp, None)).await;
    assert_eq!(status, 200);
    let claims = claims.unwrap();
    assert_eq!(claims["preferred_username"], "suite-jwt-job-1");
    let expected = ExternalAccount::new(JWT_ISSUER, "job-1", "suite-jwt-job-1");
    let stored = jwt_account(&store, "job-1").await.expect("recorded");
    assert_eq!(stored.username, "suite-jwt-job-1");
    assert_eq!(stored.uuid, expected.uuid);
    assert!(stored.active);
    assert_eq!(stored.expires, Some(UNIX_EPOCH + Duration::from_secs(exp)));
}

pub async fn the_same_input_jwt_identity_is_the_same_account<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    let exp = unix_now() + 300;
    let jwt = input_jwt(&external, "job-same", exp, Some("svc-jwt-same"));
    let (status, first) = exchange(&url, &jwt).await;
    assert_eq!(status, 200);
    let first = first.unwrap();
    let stored = jwt_account(&store, "job-same").await.unwrap();
    // Another JWT of the same (iss, sub), even asking for another name.
    let renamed = input_jwt(&external, "job-same", exp, Some("svc-jwt-renamed"));
    let (status, again) = exchange(&url, &renamed).await;
    assert_eq!(status, 200);
    let again = again.unwrap();
    assert_eq!(again["sub"], first["sub"]);
    assert_eq!(again["preferred_username"], "svc-jwt-same");
    assert_eq!(jwt_account(&store, "job-same").await, Some(stored));
    let named: Vec<String> = store
        .list_service_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|account| account.username)
        .filter(|name| name.starts_with("svc-jwt-"))
        .collect();
    assert_eq!(named, ["svc-jwt-same"]);
    // Another subject of the same issuer is another account.
    let (status, other) = exchange(&url, &input_jwt(&external, "job-other", exp, None)).await;
    assert_eq!(status, 200);
    assert_ne!(other.unwrap()["sub"], first["sub"]);
}

pub async fn input_jwt_cannot_take_over_an_existing_account<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    let (created, token) = store
        .create_service_account(ServiceAccount::new("svc-static"), None)
        .await
        .unwrap();
    let jwt = input_jwt(&external, "job-thief", unix_now() + 300, Some("svc-static"));
    let (status, claims) = exchange(&url, &jwt).await;
    assert_eq!(status, 200);
    let disambiguated =
        ExternalAccount::new(JWT_ISSUER, "job-thief", "svc-static").disambiguated_username();
    assert!(disambiguated.starts_with("svc-static@"), "{disambiguated}");
    assert_eq!(claims.unwrap()["preferred_username"], disambiguated);

    let accounts = store.list_service_accounts().await.unwrap();
    let static_account = accounts
        .iter()
        .find(|account| account.username == "svc-static")
        .unwrap();
    assert_eq!(
        *static_account, created,
        "the existing account is unchanged"
    );
    let stored = jwt_account(&store, "job-thief").await.unwrap();
    assert_eq!(stored.username, disambiguated);
    assert_ne!(stored.id, created.id);
    assert_eq!(login(&url, "svc-static", &token).await, 200);

    // Disabling the JWT's account leaves the existing one alone, and back.
    assert!(
        store
            .set_account_active(&disambiguated, false)
            .await
            .unwrap()
    );
    assert_eq!(exchange(&url, &jwt).await.0, 400);
    assert_eq!(login(&url, "svc-static", &token).await, 200);
}

pub async fn a_disabled_input_jwt_account_is_refused<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    let jwt = input_jwt(&external, "job-disable", unix_now() + 300, None);
    assert_eq!(exchange(&url, &jwt).await.0, 200);
    let username = jwt_account(&store, "job-disable").await.unwrap().username;
    assert!(store.set_account_active(&username, false).await.unwrap());
    let response = http()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", "suite-jwt"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &jwt),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    // A fresh JWT of the same identity is refused too; enabled, it is back.
    let fresh = input_jwt(&external, "job-disable", unix_now() + 600, None);
    assert_eq!(exchange(&url, &fresh).await.0, 400);
    assert!(!jwt_account(&store, "job-disable").await.unwrap().active);
    assert!(store.set_account_active(&username, true).await.unwrap());
    assert_eq!(exchange(&url, &fresh).await.0, 200);
}

pub async fn input_jwt_account_expiry_follows_the_newest_exp<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    let at = |exp: u64| Some(UNIX_EPOCH + Duration::from_secs(exp));
    let now = unix_now();
    let mint = |exp: u64| input_jwt(&external, "job-exp", exp, None);
    assert_eq!(exchange(&url, &mint(now + 300)).await.0, 200);
    assert_eq!(
        jwt_account(&store, "job-exp").await.unwrap().expires,
        at(now + 300)
    );
    // Later by less than the slack: not rewritten.
    assert_eq!(exchange(&url, &mint(now + 330)).await.0, 200);
    assert_eq!(
        jwt_account(&store, "job-exp").await.unwrap().expires,
        at(now + 300)
    );
    // Later by more: extended.
    assert_eq!(exchange(&url, &mint(now + 900)).await.0, 200);
    assert_eq!(
        jwt_account(&store, "job-exp").await.unwrap().expires,
        at(now + 900)
    );
    // An older exp never shortens it.
    assert_eq!(exchange(&url, &mint(now + 120)).await.0, 200);
    assert_eq!(
        jwt_account(&store, "job-exp").await.unwrap().expires,
        at(now + 900)
    );
    // Through the trait: the record returned carries the expiry too.
    let account =
        ExternalAccount::new(JWT_ISSUER, "job-exp", "ignored").with_expires(at(now + 3600));
    let stored = store.external_account(&account).await.unwrap().unwrap();
    assert_eq!(stored.username, "suite-jwt-job-exp");
    assert_eq!(stored.expires, at(now + 3600));
    assert_eq!(jwt_account(&store, "job-exp").await.unwrap(), stored);
}

/// Instantiates every behaviour for one backend: `store_suite!(module, async { store })`.
#[macro_export]
macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            $crate::store_suite!(@tests $make;
                created_account_authenticates,
                duplicate_username_is_refused,
                second_token_rotates_without_downtime,
                revoking_an_unknown_token_reports_false,
                disabled_account_cannot_authenticate_until_enabled,
                expired_token_does_not_authenticate,
                another_accounts_token_is_refused,
                adding_a_token_to_an_unknown_account_fails,
                accounts_are_listed_by_username,
                importing_an_account_is_idempotent,
                an_existing_account_is_not_replaced_by_an_import,
                imported_password_authenticates_once_imported,
                imported_password_keeps_its_expiry,
                importing_a_password_for_an_unknown_account_fails,
                an_imported_password_never_moves_to_another_account,
                input_jwt_account_is_recorded_on_first_use,
                the_same_input_jwt_identity_is_the_same_account,
                input_jwt_cannot_take_over_an_existing_account,
                a_disabled_input_jwt_account_is_refused,
                input_jwt_account_expiry_follows_the_newest_exp,
            );
        }
    };
    (@tests $make:expr; $($behaviour:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $behaviour() {
                super::$behaviour($make.await).await;
            }
        )*
    };
}

store_suite!(memory, async { tower_m2m_auth::store::MemoryStore::new() });

#[cfg(feature = "sqlite")]
store_suite!(sqlite, async {
    // A fresh file per test, under cargo's scratch directory for tests.
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-suite-{}.db", uuid::Uuid::new_v4()));
    tower_m2m_auth::store::SqliteStore::connect(path.to_str().unwrap())
        .await
        .unwrap()
});

#[cfg(feature = "postgres")]
store_suite!(postgres, async {
    // A fresh database per test on the server at TOWER_M2M_AUTH_PG_URL
    // (.ci/run starts one and sets it).
    use sqlx::postgres::{PgConnectOptions, PgPool};
    let url = std::env::var("TOWER_M2M_AUTH_PG_URL")
        .expect("set TOWER_M2M_AUTH_PG_URL to a PostgreSQL server (.ci/run starts one)");
    let options: PgConnectOptions = url.parse().unwrap();
    let database = format!("m2m_suite_{}", uuid::Uuid::new_v4().simple());
    let maintenance = PgPool::connect_with(options.clone()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&maintenance)
        .await
        .unwrap();
    maintenance.close().await;
    let pool = PgPool::connect_with(options.database(&database))
        .await
        .unwrap();
    tower_m2m_auth::store::PgStore::from_pool(pool)
        .await
        .unwrap()
});
