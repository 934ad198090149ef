//! Issuer-bound trust: each trusted key source speaks for one issuer, and an
//! input JWT is verified only by the keys of the issuer its `iss` names. Over
//! real HTTP, one test per rule.

#![cfg(feature = "reqwest")]

mod common;

use std::sync::Arc;

use common::foreign::{Foreign, now};
use common::jwks::{External, JwksSource, fast_policy};
use common::*;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Value, json};
use tower_m2m_auth::issuer::{Application, SubjectMode};
use tower_m2m_auth::keys::fetch::ReqwestFetcher;
use tower_m2m_auth::keys::{
    JwtError, RemoteJwks, TrustedIssuer, VerificationKey, VerificationKeys,
};
use tower_m2m_auth::store::{AccountAdmin, ExternalAccount};

const CI_CLIENT: &str = "ci-client";
const CI_SLUG: &str = "ci";
/// The CI platform (GitHub Actions' stand-in): keys at a JWKS URL.
const PLATFORM: &str = "https://token.actions.example";
/// A partner: one certificate.
const PARTNER: &str = "https://partner.example";
const WORKFLOW: &str = "repo:org/app:ref:refs/heads/main";

fn claims(iss: &str, sub: &str) -> Value {
    let now = now();
    json!({
        "iss": iss,
        "sub": sub,
        "exp": now + 300,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "repository": "org/app",
    })
}

fn certificate_key(external: &External) -> VerificationKey {
    VerificationKey::from_pem(external.certificate_pem().as_bytes()).unwrap()
}

/// An issuer whose `ci-client` application trusts `keys`.
async fn server(keys: VerificationKeys, subject_mode: SubjectMode) -> Server {
    let remote = keys.has_remote();
    let mut application = Application::new(CI_CLIENT, CI_SLUG)
        .with_verification_keys(keys)
        .with_allowed_scopes(["deploy"])
        .with_subject_mode(subject_mode)
        // Tokens without `aud`: the audience rule is tested in tests/assertion.rs.
        .danger_accept_any_assertion_audience();
    if remote {
        // A JWKS URL may sign for others too: pin this application's JWTs.
        application =
            application.with_policy(|context: &tower_m2m_auth::policy::PolicyContext<'_>| {
                context.claims["repository"] == "org/app"
            });
    }
    start_with(Algorithm::ES256, move |layer| {
        layer.application(application).unwrap()
    })
    .await
}

async fn exchange(server: &Server, jwt: &str) -> reqwest::Response {
    post_assertion(server, CI_CLIENT, jwt, "deploy").await
}

async fn exchange_ok(server: &Server, jwt: &str) -> Value {
    let response = exchange(server, jwt).await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
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

/// The platform behind a JWKS URL, and a partner with a certificate: the
/// keys of an application that trusts both.
struct TwoSources {
    platform: External,
    partner: External,
    _source: JwksSource,
    keys: VerificationKeys,
}

impl TwoSources {
    async fn start() -> Self {
        let platform = External::new(Algorithm::RS256);
        let partner = External::new(Algorithm::ES256);
        let source = JwksSource::start(platform.jwks(), true, "max-age=600").await;
        let remote =
            RemoteJwks::with_policy(&source.url, Arc::new(ReqwestFetcher::new()), fast_policy());
        let keys = VerificationKeys::new()
            .with_issuer(TrustedIssuer::new(PLATFORM).with_remote(remote))
            .with_issuer(TrustedIssuer::new(PARTNER).with_key(certificate_key(&partner)));
        Self {
            platform,
            partner,
            _source: source,
            keys,
        }
    }
}

#[tokio::test]
async fn partner_key_cannot_sign_for_another_issuer() {
    let trust = TwoSources::start().await;
    let server = server(trust.keys.clone(), SubjectMode::Id).await;
    // The real workflow's identity, as the platform vouches for it.
    let honest = exchange_ok(&server, &trust.platform.mint(&claims(PLATFORM, WORKFLOW))).await;
    assert_eq!(honest["act"], json!({"iss": PLATFORM, "sub": WORKFLOW}));

    // The partner signs the same claims: refused, with or without a `kid`.
    let spoof = claims(PLATFORM, WORKFLOW);
    for jwt in [
        trust.partner.mint(&spoof),
        trust.partner.mint_without_kid(&spoof),
    ] {
        assert_eq!(rejected(&server, &jwt).await, "invalid_client");
    }
    // Nothing was recorded for the spoof: only the workflow's account exists.
    let recorded: Vec<_> = server
        .store
        .list_service_accounts()
        .await
        .unwrap()
        .into_iter()
        .filter(|account| account.id.starts_with("jwt:"))
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].id, honest["sub"]);
}

#[tokio::test]
async fn platform_key_cannot_sign_for_the_partner() {
    let trust = TwoSources::start().await;
    let server = server(trust.keys.clone(), SubjectMode::HashedId).await;
    let jwt = trust.platform.mint(&claims(PARTNER, "partner-robot"));
    assert_eq!(rejected(&server, &jwt).await, "invalid_client");
}

#[tokio::test]
async fn each_issuer_keeps_its_own_honest_tokens() {
    let trust = TwoSources::start().await;
    let server = server(trust.keys.clone(), SubjectMode::Id).await;
    let platform = exchange_ok(&server, &trust.platform.mint(&claims(PLATFORM, "same"))).await;
    let partner = exchange_ok(&server, &trust.partner.mint(&claims(PARTNER, "same"))).await;
    assert_eq!(platform["act"]["iss"], PLATFORM);
    assert_eq!(partner["act"]["iss"], PARTNER);
    // One `sub`, two issuers: two identities.
    assert_ne!(platform["sub"], partner["sub"]);
}

#[tokio::test]
async fn token_of_an_issuer_no_source_speaks_for_is_invalid_client() {
    let trust = TwoSources::start().await;
    let server = server(trust.keys.clone(), SubjectMode::HashedId).await;
    for iss in ["https://elsewhere.example", "", "https://partner.example/"] {
        let jwt = trust.partner.mint(&claims(iss, WORKFLOW));
        assert_eq!(rejected(&server, &jwt).await, "invalid_client", "{iss:?}");
    }
    let mut no_iss = claims(PARTNER, WORKFLOW);
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        rejected(&server, &trust.partner.mint(&no_iss)).await,
        "invalid_client"
    );
    // An `iss` that is a list is no issuer either.
    let mut list = claims(PARTNER, WORKFLOW);
    list["iss"] = json!([PARTNER]);
    assert_eq!(
        rejected(&server, &trust.partner.mint(&list)).await,
        "invalid_client"
    );
}

#[tokio::test]
async fn untrusted_issuer_is_its_own_error() {
    let trust = TwoSources::start().await;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_aud = false;
    let spoof = trust.partner.mint(&claims(PLATFORM, WORKFLOW));
    let unknown = trust
        .partner
        .mint(&claims("https://elsewhere.example", WORKFLOW));
    let honest = trust.partner.mint(&claims(PARTNER, WORKFLOW));
    let verify = |token: String| {
        let keys = trust.keys.clone();
        let validation = validation.clone();
        async move { keys.verify::<Value>(&token, &validation).await }
    };
    // The platform's keys do not verify the partner's signature.
    assert!(matches!(
        verify(spoof).await,
        Err(JwtError::UnknownKey | JwtError::BadSignature)
    ));
    assert!(matches!(
        verify(unknown).await,
        Err(JwtError::UntrustedIssuer)
    ));
    assert_eq!(verify(honest).await.unwrap().claims["iss"], PARTNER);
    assert!(trust.keys.has_remote());
    assert!(
        !VerificationKeys::new()
            .with_issuer(TrustedIssuer::new(PARTNER).with_key(certificate_key(&trust.partner)))
            .has_remote()
    );
}

#[tokio::test]
async fn duplicate_iss_claims_are_refused() {
    // `{"iss": trusted, ..., "iss": other}`: whichever a parser keeps, the
    // token is refused rather than read two ways.
    let trust = TwoSources::start().await;
    let server = server(trust.keys.clone(), SubjectMode::HashedId).await;
    let header = jsonwebtoken::Header::new(Algorithm::ES256);
    let payload = format!(
        r#"{{"iss":"{PARTNER}","sub":"x","exp":{},"iss":"{PLATFORM}"}}"#,
        now() + 300
    );
    let jwt = sign_raw(&trust.partner, &header, payload.as_bytes());
    assert_eq!(rejected(&server, &jwt).await, "invalid_client");
}

/// Signs a raw payload (bytes as given) with `external`'s key.
fn sign_raw(external: &External, header: &jsonwebtoken::Header, payload: &[u8]) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
    let payload = URL_SAFE_NO_PAD.encode(payload);
    let message = format!("{header}.{payload}");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(external.pem.as_bytes()).unwrap();
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::ES256).unwrap();
    format!("{message}.{signature}")
}

#[tokio::test]
async fn issuer_found_by_discovery_is_bound_to_its_own_keys() {
    let platform = Foreign::start(Algorithm::ES256).await;
    let partner = External::new(Algorithm::ES256);
    let discovered = RemoteJwks::discover_with_policy(
        &platform.iss,
        Arc::new(ReqwestFetcher::new()),
        fast_policy(),
    );
    let keys = VerificationKeys::new()
        .with_discovery(discovered)
        .with_issuer(TrustedIssuer::new(PARTNER).with_key(certificate_key(&partner)));
    assert_eq!(
        keys.issuers().map(TrustedIssuer::iss).collect::<Vec<_>>(),
        [platform.iss.as_str(), PARTNER]
    );
    let server = server(keys, SubjectMode::HashedId).await;

    let honest = exchange_ok(&server, &platform.mint(&claims(&platform.iss, WORKFLOW))).await;
    assert_eq!(honest["act"]["iss"], platform.iss);
    // The partner cannot speak for the discovered issuer...
    let spoof = claims(&platform.iss, WORKFLOW);
    assert_eq!(
        rejected(&server, &partner.mint(&spoof)).await,
        "invalid_client"
    );
    // ...nor the discovered issuer's keys for the partner.
    let spoof = claims(PARTNER, "partner-robot");
    assert_eq!(
        rejected(&server, &platform.mint(&spoof)).await,
        "invalid_client"
    );
}

// ---- identifiers that are joined into keys ------------------------------------------

/// An application trusting `external` for `iss` (one that may itself hold a
/// control character, so that only the identifier rule can refuse it).
async fn trusting(external: &External, iss: &str, single_use: bool) -> Server {
    let keys = VerificationKeys::new()
        .with_issuer(TrustedIssuer::new(iss).with_key(certificate_key(external)));
    let application = Application::new(CI_CLIENT, CI_SLUG)
        .with_verification_keys(keys)
        .with_allowed_scopes(["deploy"])
        .with_subject_mode(SubjectMode::Id)
        .with_single_use_assertions(single_use)
        .danger_accept_any_assertion_audience();
    start_with(Algorithm::ES256, move |layer| {
        layer.application(application).unwrap()
    })
    .await
}

#[tokio::test]
async fn nul_in_sub_is_refused() {
    // ("a", "b\0c") and ("a\0b", "c") would join into one identity.
    let external = External::new(Algorithm::ES256);
    let server = trusting(&external, PARTNER, false).await;
    for sub in ["robot\u{0}admin", "robot\u{0}", "\u{0}"] {
        let jwt = external.mint(&claims(PARTNER, sub));
        assert_eq!(rejected(&server, &jwt).await, "invalid_client", "{sub:?}");
    }
}

#[tokio::test]
async fn nul_in_iss_is_refused_even_when_trusted() {
    let external = External::new(Algorithm::ES256);
    let iss = "https://partner.example\u{0}robot";
    let server = trusting(&external, iss, false).await;
    let jwt = external.mint(&claims(iss, "admin"));
    assert_eq!(rejected(&server, &jwt).await, "invalid_client");
}

#[tokio::test]
async fn nul_in_jti_is_refused() {
    let external = External::new(Algorithm::ES256);
    let server = trusting(&external, PARTNER, true).await;
    let mut with_nul = claims(PARTNER, "robot");
    with_nul["jti"] = json!("one\u{0}two");
    assert_eq!(
        rejected(&server, &external.mint(&with_nul)).await,
        "invalid_client"
    );
    // Without single use, a `jti` is still an identifier: refused as well.
    let server = trusting(&external, PARTNER, false).await;
    assert_eq!(
        rejected(&server, &external.mint(&with_nul)).await,
        "invalid_client"
    );
}

#[tokio::test]
async fn other_control_characters_in_identifiers_are_refused() {
    let external = External::new(Algorithm::ES256);
    let server = trusting(&external, PARTNER, false).await;
    for sub in ["robot\nadmin", "robot\tx", "robot\u{7f}", "robot\u{85}"] {
        let jwt = external.mint(&claims(PARTNER, sub));
        assert_eq!(rejected(&server, &jwt).await, "invalid_client", "{sub:?}");
    }
    let mut jti = claims(PARTNER, "robot");
    jti["jti"] = json!("a\rb");
    assert_eq!(
        rejected(&server, &external.mint(&jti)).await,
        "invalid_client"
    );
}

#[tokio::test]
async fn identity_of_plain_identifiers_is_unchanged() {
    // Recorded accounts keep their ids: `jwt:` + SHA-256 of `iss`, NUL, `sub`.
    let external = External::new(Algorithm::ES256);
    let server = trusting(&external, PARTNER, false).await;
    let sub = "repo:org/app:ref:refs/heads/main ünïcödé ✓";
    let minted = exchange_ok(&server, &external.mint(&claims(PARTNER, sub))).await;
    let expected = ExternalAccount::new(PARTNER, sub, "unused");
    assert_eq!(minted["sub"], expected.id);
    let digest = tower_m2m_auth::store::TokenDigest::of(&format!("{PARTNER}\u{0}{sub}"));
    assert_eq!(expected.id, format!("jwt:{}", digest.to_hex()));
}

/// A store that knows app passwords only: the trait's defaults for the rest,
/// so it records no JWT identity.
struct PasswordsOnly(tower_m2m_auth::store::MemoryStore);

impl tower_m2m_auth::store::CredentialStore for PasswordsOnly {
    fn app_password(
        &self,
        username: &str,
        digest: &tower_m2m_auth::store::TokenDigest,
    ) -> impl Future<
        Output = Result<
            Option<tower_m2m_auth::store::AccountCredential>,
            tower_m2m_auth::store::StoreError,
        >,
    > + Send {
        self.0.app_password(username, digest)
    }
}

#[tokio::test]
async fn a_jwt_identity_never_takes_a_name_where_the_store_records_none() {
    use tower_m2m_auth::keys::{KeyRing, SigningKey};
    let external = External::new(Algorithm::ES256);
    let trusted = VerificationKeys::new()
        .with_issuer(TrustedIssuer::new(PARTNER).with_key(certificate_key(&external)));
    let (store, _, _) = account_store();
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let base = serve(move |base| {
        // Usernames are `sub` here: two identities alike would be one.
        let application = Application::new(CI_CLIENT, CI_SLUG)
            .with_name("ci")
            .with_verification_keys(trusted)
            .with_allowed_scopes(["deploy"])
            .with_subject_mode(SubjectMode::Username)
            .danger_accept_any_assertion_audience();
        let layer =
            tower_m2m_auth::issuer::TokenEndpointLayer::new(base, keys, PasswordsOnly(store))
                .unwrap()
                .application(application)
                .unwrap();
        axum::Router::new()
            .route("/{*path}", axum::routing::any(|| async { "inner" }))
            .layer(layer)
    })
    .await;
    let token_url = format!("{base}/application/o/token/");
    // The name of a stored service account, of the automatic account, none.
    for asked in [
        Some(USERNAME),
        Some("ak-ci-client_credentials"),
        Some(""),
        None,
    ] {
        let mut claims = claims(PARTNER, "robot");
        if let Some(asked) = asked {
            claims["preferred_username"] = json!(asked);
        }
        let response = post_assertion_to(&token_url, CI_CLIENT, &external.mint(&claims)).await;
        assert_eq!(response.status(), 200, "{asked:?}");
        let json: Value = response.json().await.unwrap();
        let token: Value =
            jsonwebtoken::dangerous::insecure_decode_claims(json["access_token"].as_str().unwrap())
                .unwrap();
        let username = token["preferred_username"].as_str().unwrap();
        assert!(username.contains('@'), "{asked:?}: {token}");
        assert_ne!(Some(username), asked, "{token}");
        assert_eq!(token["sub"], username, "{token}");
    }
}
