//! Loading verification and signing keys: PEM (public keys, X.509
//! certificates, PKCS#8 / SEC1 / PKCS#1 private keys), DER and JWK.
//!
//! Input: the first byte picks the loader, the rest is the document.
//! Oracle: no panic; a loaded signing key's tokens verify with its own
//! published JWK; a loaded verification key verifies or refuses a token
//! without panicking, and accepts it only when it is the signer's key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_m2m_auth::keys::{Algorithm, KeySet, SigningKey, VerificationKey};
use tower_m2m_auth_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let Some((&loader, document)) = data.split_first() else {
        return;
    };
    match loader % 6 {
        0 => check_verification(VerificationKey::from_pem(document)),
        1 => check_verification(VerificationKey::from_spki_der(document)),
        2 => check_verification(
            serde_json::from_slice(document)
                .map_err(|_| ())
                .and_then(|jwk| VerificationKey::from_jwk(&jwk).map_err(|_| ())),
        ),
        3 => check_signing(SigningKey::from_pem(document)),
        4 => {
            let algorithm = [
                Algorithm::ES256,
                Algorithm::EdDSA,
                Algorithm::RS256,
                Algorithm::ES384,
            ][usize::from(document.first().copied().unwrap_or(0) % 4)];
            check_signing(SigningKey::from_pkcs8_der(
                algorithm,
                document.get(1..).unwrap_or_default(),
            ))
        }
        _ => check_verification(VerificationKey::from_hmac_secret(document)),
    }
});

fn check_verification<E>(key: Result<VerificationKey, E>) {
    let Ok(key) = key else { return };
    let issuer = issuer();
    let token = &issuer.access_token;
    let Some(&algorithm) = key.algorithms().first() else {
        return;
    };
    let mut validation = jsonwebtoken::Validation::new(algorithm);
    validation.algorithms = key.algorithms().to_vec();
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let keys = KeySet::new([key]);
    if keys.verify::<serde_json::Value>(token, &validation).is_ok() {
        // Only the ring's active public key verifies its tokens.
        let active = issuer.ring.active();
        assert_eq!(key_alg(&keys), Some(active.algorithm()));
    }
}

fn key_alg(keys: &KeySet) -> Option<Algorithm> {
    keys.keys()
        .next()
        .and_then(|k| k.algorithms().first().copied())
}

fn check_signing<E>(key: Result<SigningKey, E>) {
    let Ok(key) = key else { return };
    let claims = serde_json::json!({"iss": "i", "aud": "a", "exp": now() + 60});
    let token = key.sign_jwt(None, &claims).expect("a loaded key signs");
    let Some(jwk) = key.public_jwk() else {
        return; // HMAC keys publish nothing
    };
    let public = VerificationKey::from_jwk(jwk).expect("a key's own JWK loads");
    let mut validation = jsonwebtoken::Validation::new(key.algorithm());
    validation.set_audience(&["a"]);
    KeySet::new([public])
        .verify::<serde_json::Value>(&token, &validation)
        .expect("a key's token verifies with its own published JWK");
    // And through the ring's JWKS publication.
    let ring = tower_m2m_auth::keys::KeyRing::new(key);
    KeySet::from_jwks(&ring.jwks())
        .verify::<serde_json::Value>(&token, &validation)
        .expect("a key's token verifies with the ring's JWKS");
}
