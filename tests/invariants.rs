//! The rules the library enforces when it is configured, one row each: an
//! endpoint, key or account built in code is refused with a typed error
//! (in process; nothing here is about the wire).

#![cfg(feature = "reqwest")]

use std::sync::Arc;
use std::time::Duration;

use tower_m2m_auth::issuer::{Application, ApplicationError, ConfigError, TokenEndpointLayer};
use tower_m2m_auth::keys::fetch::{FetchError, JwksFetcher, ReqwestFetcher};
use tower_m2m_auth::keys::{
    Algorithm, KeyError, KeyRing, SigningKey, TrustedIssuer, VerificationKey, VerificationKeys,
};
use tower_m2m_auth::policy::PolicyContext;
use tower_m2m_auth::store::{AdminError, MemoryStore, ServiceAccount};

/// `application` added to a fresh endpoint.
fn add(application: Application) -> Result<(), ConfigError> {
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    TokenEndpointLayer::new("https://auth.example.com", keys, MemoryStore::new())
        .unwrap()
        .application(application)
        .map(drop)
}

/// Keys of one trusted issuer, so that input-JWT rules have something to apply to.
fn trusted_keys() -> VerificationKeys {
    let key = rcgen::KeyPair::generate().unwrap();
    let key = VerificationKey::from_pem(key.public_key_pem().as_bytes()).unwrap();
    VerificationKeys::new().with_issuer(TrustedIssuer::new("https://ci.example").with_key(key))
}

fn app() -> Application {
    Application::new("client", "slug")
}

#[test]
fn applications_with_invalid_settings_are_refused() {
    use ApplicationError as E;
    let cases: Vec<(&str, Application, ApplicationError)> = vec![
        (
            "empty_client_id",
            Application::new("", "slug"),
            E::ClientId(String::new()),
        ),
        (
            "control_character_in_client_id",
            Application::new("a\nb", "slug"),
            E::ClientId("a\nb".into()),
        ),
        (
            "empty_slug",
            Application::new("client", ""),
            E::Slug(String::new()),
        ),
        (
            "slug_with_slash",
            Application::new("client", "a/b"),
            E::Slug("a/b".into()),
        ),
        (
            "slug_starting_with_dot",
            Application::new("client", ".."),
            E::Slug("..".into()),
        ),
        (
            "scope_with_space",
            app().with_allowed_scopes(["read write"]),
            E::Scope("read write".into()),
        ),
        (
            "scope_with_quote",
            app().with_allowed_scopes(["a\"b"]),
            E::Scope("a\"b".into()),
        ),
        (
            "empty_scope",
            app().with_allowed_scopes([""]),
            E::Scope(String::new()),
        ),
        (
            "zero_token_lifetime",
            app().with_token_lifetime(Duration::ZERO),
            E::TokenLifetime,
        ),
        (
            "zero_max_assertion_lifetime",
            app()
                .with_verification_keys(trusted_keys())
                .with_max_assertion_lifetime(Duration::ZERO),
            E::MaxAssertionLifetime,
        ),
        (
            "leeway_over_the_cap",
            app()
                .with_verification_keys(trusted_keys())
                .with_assertion_leeway(Duration::from_secs(301)),
            E::Leeway(Duration::from_secs(301)),
        ),
        (
            "empty_assertion_audience",
            app()
                .with_verification_keys(trusted_keys())
                .with_assertion_audiences([""]),
            E::EmptyAudience,
        ),
        (
            "policy_without_keys",
            app().with_policy(|_: &PolicyContext<'_>| true),
            E::RulesWithoutKeys("a policy"),
        ),
        (
            "audience_without_keys",
            app().with_assertion_audiences(["aud"]),
            E::RulesWithoutKeys("an assertion audience"),
        ),
        (
            "single_use_without_keys",
            app().with_single_use_assertions(true),
            E::RulesWithoutKeys("single-use assertions"),
        ),
        (
            "leeway_without_keys",
            app().with_assertion_leeway(Duration::from_secs(5)),
            E::RulesWithoutKeys("an assertion leeway"),
        ),
        (
            "max_assertion_lifetime_without_keys",
            app().with_max_assertion_lifetime(Duration::from_secs(60)),
            E::RulesWithoutKeys("a maximum assertion lifetime"),
        ),
        (
            "unpinned_opt_in_without_keys",
            app().danger_accept_unpinned_jwks(),
            E::RulesWithoutKeys("danger_accept_unpinned_jwks"),
        ),
    ];
    for (name, application, expected) in cases {
        match add(application) {
            Err(ConfigError::Application {
                client_id: _,
                error,
            }) => {
                assert_eq!(error, expected, "{name}");
            }
            other => panic!("{name}: expected {expected:?}, got {other:?}"),
        }
    }
}

#[test]
fn sound_applications_are_accepted() {
    let leeway = Application::MAX_ASSERTION_LEEWAY;
    for (name, application) in [
        ("plain", app().with_allowed_scopes(["read", "deploy:prod"])),
        ("dotted_slug", Application::new("client", "my.app_1-x")),
        (
            "leeway_at_the_cap",
            app()
                .with_verification_keys(trusted_keys())
                .with_assertion_leeway(leeway),
        ),
        (
            "rules_with_keys",
            app()
                .with_verification_keys(trusted_keys())
                .with_single_use_assertions(true)
                .with_assertion_audiences(["aud"]),
        ),
    ] {
        add(application).unwrap_or_else(|error| panic!("{name}: {error}"));
    }
}

#[test]
fn self_federation_is_refused() {
    let federating = app().with_federated_application("client");
    assert!(matches!(add(federating), Err(ConfigError::SelfFederation(id)) if id == "client"));
}

fn pem_block(tag: &str, contents: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, contents.to_vec()))
}

#[test]
fn pem_bundles_hold_only_certificates_and_public_keys() {
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["issuer.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    let public = key.public_key_pem();
    let cases: Vec<(&str, String, KeyError)> = vec![
        ("empty_bundle", String::new(), KeyError::EmptyPemBundle),
        (
            "private_key",
            format!("{public}{}", key.serialize_pem()),
            KeyError::PrivateKeyInBundle(2),
        ),
        (
            "pkcs1_public_key",
            pem_block("RSA PUBLIC KEY", b"x"),
            KeyError::UnexpectedPemBlock {
                block: 1,
                tag: "RSA PUBLIC KEY".into(),
            },
        ),
        (
            "malformed_certificate",
            format!("{certificate}{}", pem_block("CERTIFICATE", b"not der")),
            KeyError::UnsupportedKeyInBundle(2),
        ),
    ];
    for (name, bundle, expected) in cases {
        let error = VerificationKey::from_pem_bundle(bundle.as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), expected.to_string(), "{name}");
    }
    // A certificate chain and a public key: every block becomes a key.
    let other = rcgen::KeyPair::generate().unwrap().public_key_pem();
    let bundle = format!("{certificate}{public}{other}");
    let keys = VerificationKey::from_pem_bundle(bundle.as_bytes()).unwrap();
    assert_eq!(keys.len(), 3);
}

#[tokio::test]
async fn keys_are_fetched_only_over_https_or_from_loopback() {
    let fetcher = ReqwestFetcher::new();
    for url in [
        "http://keys.example.com/jwks",
        "ftp://keys.example.com/jwks",
        "/jwks",
        "not a url",
    ] {
        let error = fetcher.fetch(url).await.unwrap_err();
        assert!(matches!(error, FetchError::Forbidden(_)), "{url}: {error}");
    }
    let _: Arc<dyn JwksFetcher> = Arc::new(fetcher);
}

#[test]
fn service_account_usernames_are_printable_ascii_without_spaces() {
    for username in ["", "two words", "tab\there", "naïve", "line\nbreak"] {
        let error = ServiceAccount::new(username).check().unwrap_err();
        assert!(
            matches!(error, AdminError::InvalidUsername(_)),
            "{username:?}"
        );
    }
    ServiceAccount::new("ci-deployer_1.x").check().unwrap();
}
