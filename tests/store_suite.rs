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
use tower_m2m_auth::issuer::{Application, SubjectMode, TokenEndpointLayer};
use tower_m2m_auth::keys::{
    Algorithm, KeyRing, SigningKey, TrustedIssuer, VerificationKey, VerificationKeys,
};
use tower_m2m_auth::store::{
    AccountAdmin, AdminError, AppPassword, Binding, CredentialStore, ExternalAccount,
    ServiceAccount, TokenDigest,
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
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let base = common::serve(|base| {
        let mut layer = TokenEndpointLayer::new(base, keys, store)
            .unwrap()
            // The behaviours at `suite-client` are about credentials; bindings
            // have behaviours of their own, at the other applications.
            .application(Application::new("suite-client", "suite").danger_allow_any_account())
            .unwrap();
        // `sub` is the username here: shows that usernames never collide.
        let mut by_username = Application::new(BY_USERNAME, BY_USERNAME)
            .with_name("by-username")
            .with_subject_mode(SubjectMode::Username)
            .with_client_secret(BY_USERNAME_SECRET);
        if let Some(external) = external {
            let trusted =
                VerificationKeys::new().with_issuer(TrustedIssuer::new(JWT_ISSUER).with_key(
                    VerificationKey::from_pem(external.certificate_pem().as_bytes()).unwrap(),
                ));
            // Tokens without `aud`: the audience rule is tested in tests/assertion.rs.
            by_username = by_username
                .with_verification_keys(trusted.clone())
                .danger_accept_any_assertion_audience();
            layer = layer
                .application(
                    Application::new("suite-jwt", "suite-jwt")
                        .with_verification_keys(trusted)
                        .danger_accept_any_assertion_audience(),
                )
                .unwrap();
        }
        layer = layer
            .applications([
                by_username,
                Application::new(BOUND_CLIENT, BOUND_CLIENT).with_allowed_scopes(["read", "write"]),
            ])
            .unwrap();
        Router::new()
            .route("/", get(|| async { "inner" }))
            .layer(layer)
    })
    .await;
    format!("{base}/application/o/token/")
}

/// An application whose tokens' `sub` is the account's username, trusting
/// the same input JWTs as `suite-jwt` in `jwt_endpoint`.
const BY_USERNAME: &str = "suite-by-username";

/// An application that only accounts bound to it may use (the default).
const BOUND_CLIENT: &str = "suite-bound";

/// The client secret of `BY_USERNAME`: logs in as its automatic account.
const BY_USERNAME_SECRET: &str = "suite-by-username-secret";

/// The HTTP status of a token request as `username` with `token`.
async fn login(url: &str, username: &str, token: &SecretString) -> u16 {
    login_at(url, "suite-client", username, token).await.0
}

/// A token request at `client_id` as `username` with `token`: the status,
/// and the claims of the access token if one was issued.
async fn login_at(
    url: &str,
    client_id: &str,
    username: &str,
    token: &SecretString,
) -> (u16, Option<Value>) {
    token_request(
        url,
        &[
            ("client_id", client_id),
            ("username", username),
            ("password", token.expose_secret()),
        ],
    )
    .await
}

/// A client-credentials token request with `form` at `url`: the status,
/// and the claims of the access token if one was issued.
async fn token_request(url: &str, form: &[(&str, &str)]) -> (u16, Option<Value>) {
    let mut body = vec![("grant_type", "client_credentials")];
    body.extend_from_slice(form);
    let response = http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&body))
        .send()
        .await
        .unwrap();
    token_claims(response).await
}

/// Asserts that the admin call `call` fails with an error matching `pattern`.
macro_rules! assert_refused {
    ($call:expr, $pattern:pat) => {{
        let error = $call.await.unwrap_err();
        assert!(matches!(error, $pattern), "{error}");
    }};
}

/// Creates the service account `username` in `store`, with a first app
/// password; the account and its token.
async fn create<S: AccountAdmin>(store: &S, username: &str) -> (ServiceAccount, SecretString) {
    store
        .create_service_account(ServiceAccount::new(username), None)
        .await
        .unwrap()
}

/// Imports the service account `username` into `store`; the stored account.
async fn import<S: AccountAdmin>(store: &S, username: &str) -> ServiceAccount {
    store
        .import_service_account(ServiceAccount::new(username))
        .await
        .unwrap()
}

/// The usernames in `store` that start with `prefix`, as listed.
async fn usernames<S: AccountAdmin>(store: &S, prefix: &str) -> Vec<String> {
    let accounts = store.list_service_accounts().await.unwrap();
    accounts
        .into_iter()
        .map(|account| account.username)
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// The status of a token response, and the claims of its access token.
async fn token_claims(response: reqwest::Response) -> (u16, Option<Value>) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let claims = body["access_token"].as_str().map(|token| {
        jsonwebtoken::dangerous::insecure_decode::<Value>(token)
            .unwrap()
            .claims
    });
    (status, claims)
}

pub async fn created_account_authenticates<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let (account, token) = create(&store, "svc-create").await;
    assert_eq!(account.username, "svc-create");
    assert_eq!(login(&url, "svc-create", &token).await, 200);
    assert_eq!(
        login(&url, "svc-create", &SecretString::from("wrong")).await,
        400
    );
}

pub async fn duplicate_username_is_refused<S: SuiteStore>(store: S) {
    create(&store, "svc-dup").await;
    assert_refused!(
        store.create_service_account(ServiceAccount::new("svc-dup"), None),
        AdminError::AccountExists(_)
    );
}

pub async fn second_token_rotates_without_downtime<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let (_, first) = create(&store, "svc-rotate").await;
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
    let (_, token) = create(&store, "svc-disable").await;
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
    create(&store, "svc-alice").await;
    let (_, bobs) = create(&store, "svc-bob").await;
    assert_eq!(login(&url, "svc-alice", &bobs).await, 400);
    assert_eq!(login(&url, "svc-bob", &bobs).await, 200);
}

pub async fn adding_a_token_to_an_unknown_account_fails<S: SuiteStore>(store: S) {
    assert_refused!(
        store.add_app_password("svc-ghost", None),
        AdminError::NoSuchAccount(_)
    );
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
    let listed = usernames(&store, "svc-list-").await;
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
    let (created, token) = create(&store, "svc-kept").await;
    let stored = store
        .import_service_account(ServiceAccount::new("svc-kept").with_name("Other"))
        .await
        .unwrap();
    assert_eq!(stored, created);
    assert_eq!(login(&url, "svc-kept", &token).await, 200);
}

pub async fn imported_password_authenticates_once_imported<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let account = import(&store, "svc-import-pw").await;
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
    import(&store, "svc-import-exp").await;
    // An expired imported password does not authenticate; a valid one does.
    let now = SystemTime::now();
    for (token, expires, status) in [
        ("expired-imported-token", now - Duration::from_secs(5), 400),
        ("valid-imported-token", now + Duration::from_secs(3600), 200),
    ] {
        let token = SecretString::from(token);
        let password =
            AppPassword::new("", TokenDigest::of(token.expose_secret())).with_expires(expires);
        assert!(
            store
                .import_app_password("svc-import-exp", password)
                .await
                .unwrap()
        );
        assert_eq!(login(&url, "svc-import-exp", &token).await, status);
    }
}

pub async fn importing_a_password_for_an_unknown_account_fails<S: SuiteStore>(store: S) {
    let password = AppPassword::new("", TokenDigest::of("orphan token"));
    assert_refused!(
        store.import_app_password("svc-import-ghost", password),
        AdminError::NoSuchAccount(_)
    );
}

pub async fn an_imported_password_never_moves_to_another_account<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let (_, token) = create(&store, "svc-owner").await;
    import(&store, "svc-thief").await;
    let password = AppPassword::new("", TokenDigest::of(token.expose_secret()));
    assert_refused!(
        store.import_app_password("svc-thief", password),
        AdminError::PasswordOfAnotherAccount
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
    exchange_at(url, "suite-jwt", jwt).await
}

/// Exchanges an input JWT at `client_id`.
async fn exchange_at(url: &str, client_id: &str, jwt: &str) -> (u16, Option<Value>) {
    let form = [
        ("client_id", client_id),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", jwt),
    ];
    token_request(url, &form).await
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
    let named = usernames(&store, "svc-jwt-").await;
    assert_eq!(named, ["svc-jwt-same"]);
    // Another subject of the same issuer is another account.
    let (status, other) = exchange(&url, &input_jwt(&external, "job-other", exp, None)).await;
    assert_eq!(status, 200);
    assert_ne!(other.unwrap()["sub"], first["sub"]);
}

pub async fn input_jwt_cannot_take_over_an_existing_account<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    let (created, token) = create(&store, "svc-static").await;
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
    // Each use's `exp`, and the stored expiry after it: later by less than
    // the slack is not rewritten, later by more extends it, and an older
    // `exp` never shortens it.
    for (exp, stored) in [(300, 300), (330, 300), (900, 900), (120, 900)] {
        assert_eq!(exchange(&url, &mint(now + exp)).await.0, 200);
        let expires = jwt_account(&store, "job-exp").await.unwrap().expires;
        assert_eq!(expires, at(now + stored), "after exp = now + {exp}");
    }
    // Through the trait: the record returned carries the expiry too.
    let account =
        ExternalAccount::new(JWT_ISSUER, "job-exp", "ignored").with_expires(at(now + 3600));
    let stored = store.external_account(&account).await.unwrap().unwrap();
    assert_eq!(stored.username, "suite-jwt-job-exp");
    assert_eq!(stored.expires, at(now + 3600));
    assert_eq!(jwt_account(&store, "job-exp").await.unwrap(), stored);
}

/// Every way of making `username` a service account, or of giving it
/// credentials or bindings, refused as `AdminError::NameOfJwtIdentity`.
async fn assert_every_admin_path_refuses<S: SuiteStore>(store: &S, username: &str) {
    let is_jwt_name = |error: AdminError| {
        assert!(
            matches!(&error, AdminError::NameOfJwtIdentity(name) if name == username),
            "{error}"
        );
    };
    is_jwt_name(
        store
            .create_service_account(ServiceAccount::new(username), None)
            .await
            .unwrap_err(),
    );
    is_jwt_name(
        store
            .import_service_account(ServiceAccount::new(username).with_name("Configured"))
            .await
            .unwrap_err(),
    );
    is_jwt_name(store.add_app_password(username, None).await.unwrap_err());
    let password = AppPassword::new("", TokenDigest::of("a token for the JWT identity"));
    is_jwt_name(
        store
            .import_app_password(username, password)
            .await
            .unwrap_err(),
    );
    is_jwt_name(
        store
            .bind_account(username, Binding::new("suite-client", ["read"]))
            .await
            .unwrap_err(),
    );
}

/// Issue 8, case 3, JWT first: an identity recorded from an input JWT keeps
/// its name; creating, importing (as a server does with its configured
/// accounts on every start), or adding a token or a binding under that name
/// is a clear error, never a merge. Its `sub` stays the same in every
/// subject mode, and no password logs in as it.
pub async fn a_jwt_identity_name_never_becomes_a_service_account<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    let jwt = input_jwt(
        &external,
        "job-first",
        unix_now() + 300,
        Some("svc-jwt-first"),
    );
    let (status, hashed) = exchange(&url, &jwt).await;
    assert_eq!(status, 200);
    let (status, by_username) = exchange_at(&url, BY_USERNAME, &jwt).await;
    assert_eq!(status, 200);
    assert_eq!(by_username.as_ref().unwrap()["sub"], "svc-jwt-first");
    let recorded = jwt_account(&store, "job-first").await.unwrap();
    assert_eq!(recorded.username, "svc-jwt-first");
    assert!(recorded.is_jwt_identity());

    assert_every_admin_path_refuses(&store, "svc-jwt-first").await;

    assert_eq!(
        jwt_account(&store, "job-first").await,
        Some(recorded.clone())
    );
    assert_eq!(
        store.account("svc-jwt-first").await.unwrap(),
        Some(recorded)
    );
    assert!(
        store
            .list_bindings("svc-jwt-first")
            .await
            .unwrap()
            .is_empty()
    );
    // The identity's tokens are as before; no token logs in as it.
    assert_eq!(
        exchange(&url, &jwt).await.1.unwrap()["sub"],
        hashed.unwrap()["sub"]
    );
    assert_eq!(
        exchange_at(&url, BY_USERNAME, &jwt).await.1.unwrap()["sub"],
        "svc-jwt-first"
    );
    let guess = SecretString::from("a token for the JWT identity");
    assert_eq!(login(&url, "svc-jwt-first", &guess).await, 400);
    // Under another name, the service account is fine.
    let (account, _) = create(&store, "svc-jwt-first-2").await;
    assert!(!account.is_jwt_identity());
}

/// Issue 8, case 3, account first: a JWT asking for a service account's
/// name gets the disambiguated name, and the account keeps its own, its
/// `sub` (in username mode too) and its import stays idempotent.
pub async fn a_service_account_name_is_never_taken_by_a_jwt<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    let configured = ServiceAccount::new("svc-configured").with_name("Configured");
    let imported = store
        .import_service_account(configured.clone())
        .await
        .unwrap();
    assert_eq!(imported, configured);
    let token = store
        .add_app_password("svc-configured", None)
        .await
        .unwrap();
    store
        .bind_account(
            "svc-configured",
            Binding::new(BY_USERNAME, Vec::<String>::new()),
        )
        .await
        .unwrap();
    let (status, before) = login_at(&url, BY_USERNAME, "svc-configured", &token).await;
    assert_eq!(status, 200);
    assert_eq!(before.unwrap()["sub"], "svc-configured");

    let jwt = input_jwt(
        &external,
        "job-second",
        unix_now() + 300,
        Some("svc-configured"),
    );
    let (status, claims) = exchange_at(&url, BY_USERNAME, &jwt).await;
    assert_eq!(status, 200);
    let disambiguated =
        ExternalAccount::new(JWT_ISSUER, "job-second", "svc-configured").disambiguated_username();
    assert_eq!(claims.unwrap()["sub"], disambiguated);

    // A restart imports the configured account again: still the same one.
    assert_eq!(
        store
            .import_service_account(configured.clone())
            .await
            .unwrap(),
        configured
    );
    assert_eq!(
        store.account("svc-configured").await.unwrap(),
        Some(configured)
    );
    let (status, after) = login_at(&url, BY_USERNAME, "svc-configured", &token).await;
    assert_eq!(status, 200);
    assert_eq!(after.unwrap()["sub"], "svc-configured");
    let recorded = jwt_account(&store, "job-second").await.unwrap();
    assert_eq!(recorded.username, disambiguated);
    assert_eq!(recorded.external_issuer.as_deref(), Some(JWT_ISSUER));
    assert_eq!(recorded.external_subject.as_deref(), Some("job-second"));
}

/// No input JWT holds a name of the automatic form
/// `ak-<application name>-client_credentials`, whether that application
/// exists (then it would share the automatic account's `sub` in username
/// mode) or is added later.
pub async fn a_jwt_never_gets_an_automatic_account_name<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    for (sub, asked) in [
        ("job-ak-own", "ak-by-username-client_credentials"),
        ("job-ak-other", "ak-suite-client_credentials"),
        ("job-ak-later", "ak-Not Yet Added-client_credentials"),
        ("job-ak-case", "AK-by-username-CLIENT_CREDENTIALS"),
    ] {
        let jwt = input_jwt(&external, sub, unix_now() + 300, Some(asked));
        let (status, claims) = exchange_at(&url, BY_USERNAME, &jwt).await;
        assert_eq!(status, 200, "{asked}");
        let expected = ExternalAccount::new(JWT_ISSUER, sub, asked).disambiguated_username();
        assert_eq!(claims.unwrap()["sub"], expected, "{asked}");
        assert!(
            !ServiceAccount::is_automatic_username(&expected),
            "{expected}"
        );
        assert_eq!(jwt_account(&store, sub).await.unwrap().username, expected);
    }
    // The automatic account of by-username keeps its name and `sub`.
    let response = http()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", BY_USERNAME),
            ("client_secret", BY_USERNAME_SECRET),
        ]))
        .send()
        .await
        .unwrap();
    let (status, claims) = token_claims(response).await;
    assert_eq!(status, 200);
    assert_eq!(claims.unwrap()["sub"], "ak-by-username-client_credentials");
}

/// Service accounts stay out of the namespaces of automatic accounts and
/// input-JWT identities, and have printable names: each refused with its
/// own error, through create and import alike, and nothing is stored.
pub async fn reserved_names_and_ids_are_refused<S: SuiteStore>(store: S) {
    let before = store.list_service_accounts().await.unwrap();
    /// Whether an error is the expected one.
    type Expected = fn(&AdminError) -> bool;
    let cases: Vec<(ServiceAccount, Expected)> = vec![
        (ServiceAccount::new("ak-Demo-client_credentials"), |e| {
            matches!(e, AdminError::ReservedUsername(_))
        }),
        (ServiceAccount::new("Ak-demo-Client_Credentials"), |e| {
            matches!(e, AdminError::ReservedUsername(_))
        }),
        (ServiceAccount::new("svc-jwt-id").with_id("jwt:0123"), |e| {
            matches!(e, AdminError::ReservedId(_))
        }),
        (
            ServiceAccount::new("svc-auto-id").with_id("client_credentials:suite-client"),
            |e| matches!(e, AdminError::ReservedId(_)),
        ),
        (ServiceAccount::new("svc-empty-id").with_id(""), |e| {
            matches!(e, AdminError::ReservedId(_))
        }),
        (ServiceAccount::new(""), |e| {
            matches!(e, AdminError::InvalidUsername(_))
        }),
        (ServiceAccount::new("svc\nforged log line"), |e| {
            matches!(e, AdminError::InvalidUsername(_))
        }),
    ];
    for (account, expected) in cases {
        assert!(account.check().is_err(), "{account:?}");
        let error = store
            .create_service_account(account.clone(), None)
            .await
            .unwrap_err();
        assert!(expected(&error), "create {:?}: {error}", account.username);
        let error = store
            .import_service_account(account.clone())
            .await
            .unwrap_err();
        assert!(expected(&error), "import {:?}: {error}", account.username);
    }
    assert_eq!(store.list_service_accounts().await.unwrap(), before);
    // The forms that are not reserved.
    for username in ["ak-client_credentials", "ak-demo", "svc-client_credentials"] {
        store
            .create_service_account(ServiceAccount::new(username), None)
            .await
            .unwrap();
    }
}

/// A service account never shares its id or UUID (the `id` and `uuid`
/// subject modes) with an input-JWT identity or another account.
pub async fn an_account_with_the_uuid_or_id_of_another_is_refused<S: SuiteStore>(store: S) {
    let (url, external) = jwt_endpoint(store.clone()).await;
    let jwt = input_jwt(&external, "job-uuid", unix_now() + 300, None);
    assert_eq!(exchange(&url, &jwt).await.0, 200);
    let recorded = jwt_account(&store, "job-uuid").await.unwrap();
    let twin = ServiceAccount::new("svc-uuid-twin").with_uuid(recorded.uuid);
    assert_refused!(
        store.import_service_account(twin.clone()),
        AdminError::IdTaken(_)
    );
    assert_refused!(
        store.create_service_account(twin, None),
        AdminError::IdTaken(_)
    );

    let (first, _) = create(&store, "svc-id-first").await;
    let same_id = ServiceAccount::new("svc-id-second").with_id(first.id.clone());
    assert_refused!(
        store.import_service_account(same_id),
        AdminError::IdTaken(_)
    );
    assert_eq!(store.account("svc-uuid-twin").await.unwrap(), None);
    assert_eq!(store.account("svc-id-second").await.unwrap(), None);
    assert_eq!(jwt_account(&store, "job-uuid").await, Some(recorded));
}

/// `account` finds service accounts and JWT identities by username, active
/// or not, and tells them apart.
pub async fn accounts_are_looked_up_by_username<S: SuiteStore>(store: S) {
    let (created, _) = create(&store, "svc-lookup").await;
    assert_eq!(
        store.account("svc-lookup").await.unwrap(),
        Some(created.clone())
    );
    assert!(!created.is_jwt_identity());
    assert_eq!(created.external_issuer, None);
    assert!(store.set_account_active("svc-lookup", false).await.unwrap());
    assert!(!store.account("svc-lookup").await.unwrap().unwrap().active);
    assert_eq!(store.account("svc-nobody").await.unwrap(), None);

    let identity = ExternalAccount::new(JWT_ISSUER, "job-lookup", "svc-lookup-jwt");
    let recorded = store.external_account(&identity).await.unwrap().unwrap();
    let found = store.account("svc-lookup-jwt").await.unwrap().unwrap();
    assert_eq!(found, recorded);
    assert!(found.is_jwt_identity());
    assert_eq!(found.id, identity.id);
    assert_eq!(found.external_issuer.as_deref(), Some(JWT_ISSUER));
    assert_eq!(found.external_subject.as_deref(), Some("job-lookup"));
}

/// Bindings: bind, rebind (the scopes are replaced), list (by `client_id`),
/// look up by account id, unbind; an unknown account and a malformed
/// binding are errors.
pub async fn bindings_are_created_replaced_listed_and_removed<S: SuiteStore>(store: S) {
    let (account, _) = create(&store, "svc-bound").await;
    assert!(store.list_bindings("svc-bound").await.unwrap().is_empty());
    assert_eq!(store.binding(&account.id, "ops-api").await.unwrap(), None);

    store
        .bind_account("svc-bound", Binding::new("ops-api", ["read", "write"]))
        .await
        .unwrap();
    assert_eq!(
        store.binding(&account.id, "ops-api").await.unwrap(),
        Some(Binding::new("ops-api", ["read", "write"]))
    );
    store
        .bind_account("svc-bound", Binding::new("ops-api", ["read"]))
        .await
        .unwrap();
    assert_eq!(
        store.binding(&account.id, "ops-api").await.unwrap(),
        Some(Binding::new("ops-api", ["read"]))
    );
    store
        .bind_account("svc-bound", Binding::new("metrics", Vec::<String>::new()))
        .await
        .unwrap();
    store
        .bind_account("svc-bound", Binding::new("Zeta", ["admin"]))
        .await
        .unwrap();
    assert_eq!(
        store.list_bindings("svc-bound").await.unwrap(),
        [
            Binding::new("Zeta", ["admin"]),
            Binding::new("metrics", Vec::<String>::new()),
            Binding::new("ops-api", ["read"]),
        ]
    );
    // Another account's bindings are its own.
    let (other, _) = create(&store, "svc-unbound").await;
    assert_eq!(store.binding(&other.id, "ops-api").await.unwrap(), None);
    assert!(store.list_bindings("svc-unbound").await.unwrap().is_empty());

    assert!(store.unbind_account("svc-bound", "ops-api").await.unwrap());
    assert!(!store.unbind_account("svc-bound", "ops-api").await.unwrap());
    assert_eq!(store.binding(&account.id, "ops-api").await.unwrap(), None);
    assert_eq!(store.list_bindings("svc-bound").await.unwrap().len(), 2);
    // A disabled account keeps its bindings (the endpoint refuses it anyway).
    assert!(store.set_account_active("svc-bound", false).await.unwrap());
    assert_eq!(store.list_bindings("svc-bound").await.unwrap().len(), 2);

    let no_such = |error: AdminError| {
        assert!(matches!(error, AdminError::NoSuchAccount(_)), "{error}");
    };
    no_such(
        store
            .bind_account("svc-ghost", Binding::new("ops-api", ["read"]))
            .await
            .unwrap_err(),
    );
    no_such(
        store
            .unbind_account("svc-ghost", "ops-api")
            .await
            .unwrap_err(),
    );
    no_such(store.list_bindings("svc-ghost").await.unwrap_err());
    for invalid in [
        Binding::new("ops-api", ["read write"]),
        Binding::new("ops-api", [""]),
        Binding::new("ops-api", ["quote\""]),
        Binding::new("", ["read"]),
        Binding::new("ops\napi", ["read"]),
    ] {
        let error = store
            .bind_account("svc-unbound", invalid.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(error, AdminError::InvalidBinding(_)),
            "{invalid:?}: {error}"
        );
    }
    assert!(store.list_bindings("svc-unbound").await.unwrap().is_empty());
}

/// Issue 8, case 4: the endpoint asks the store for the binding on every
/// request: unbound, refused; bound, the binding's scopes; unbound again,
/// refused on the very next request.
pub async fn a_binding_decides_at_the_endpoint<S: SuiteStore>(store: S) {
    let url = endpoint(store.clone()).await;
    let (_, token) = create(&store, "svc-binding").await;
    let request = |scope: &'static str| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let response = http()
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_encode(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", BOUND_CLIENT),
                    ("username", "svc-binding"),
                    ("password", token.expose_secret()),
                    ("scope", scope),
                ]))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    };
    let (status, body) = request("read write").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    store
        .bind_account("svc-binding", Binding::new(BOUND_CLIENT, ["read"]))
        .await
        .unwrap();
    let (status, body) = request("read write").await;
    assert_eq!((status, body["scope"].as_str()), (200, Some("read")));
    assert!(
        store
            .unbind_account("svc-binding", BOUND_CLIENT)
            .await
            .unwrap()
    );
    let (status, _) = request("read").await;
    assert_eq!(status, 400);
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
                a_jwt_identity_name_never_becomes_a_service_account,
                a_service_account_name_is_never_taken_by_a_jwt,
                a_jwt_never_gets_an_automatic_account_name,
                reserved_names_and_ids_are_refused,
                an_account_with_the_uuid_or_id_of_another_is_refused,
                accounts_are_looked_up_by_username,
                bindings_are_created_replaced_listed_and_removed,
                a_binding_decides_at_the_endpoint,
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
