//! No secret ever appears in a `Debug` output.

use std::sync::Arc;

use secrecy::SecretString;
use tower_m2m_auth::issuer::{Application, ClientAuthentication, Credentials, GrantType};
use tower_m2m_auth::keys::SigningKey;
use tower_m2m_auth::store::{AppPassword, TokenDigest};

const SECRET: &str = "very-secret-value-42";

#[test]
fn credentials_debug_redacts_secrets() {
    let application = Arc::new(Application::new("client", "app").with_client_secret(SECRET));
    for credentials in [
        Credentials::Password {
            username: "svc".into(),
            password: SecretString::from(SECRET),
        },
        Credentials::ClientSecret(SecretString::from(SECRET)),
    ] {
        let request = ClientAuthentication::new(
            application.clone(),
            credentials,
            GrantType::ClientCredentials,
        );
        let debug = format!("{request:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(
            !debug.contains(&TokenDigest::of(SECRET).to_hex()),
            "{debug}"
        );
    }
}

#[test]
fn stored_forms_debug_shows_no_digest_or_key_bytes() {
    let (token, password) = AppPassword::generate("account");
    let debug = format!("{password:?}");
    use secrecy::ExposeSecret;
    assert!(!debug.contains(token.expose_secret()));
    assert!(!debug.contains(&password.digest.to_hex()));

    let key = SigningKey::from_hmac_secret(SECRET.repeat(2).as_bytes()).unwrap();
    assert!(!format!("{key:?}").contains(SECRET));
}
