//! A DPoP client key that makes proofs, good or broken on purpose.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tower_m2m_auth::keys::SigningKey;
use tower_m2m_auth::keys::dpop::{jwk_thumbprint, token_hash};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A client's ES256 DPoP key.
pub struct DpopKey {
    key: SigningKey,
    encoding: EncodingKey,
}

impl DpopKey {
    pub fn new() -> Self {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let encoding = EncodingKey::from_ec_pem(key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        Self { key, encoding }
    }

    /// The public JWK, as a proof's `jwk` header carries it.
    pub fn jwk(&self) -> Value {
        serde_json::to_value(self.key.public_jwk().unwrap()).unwrap()
    }

    /// The RFC 7638 thumbprint (`cnf.jkt`).
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(self.key.public_jwk().unwrap()).unwrap()
    }

    /// Signs `header` and `claims` as they are.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, Algorithm::ES256)
                .unwrap();
        format!("{message}.{signature}")
    }

    /// The header and claims of a valid proof for `htm` `htu` (and `token`).
    pub fn parts(&self, htm: &str, htu: &str, token: Option<&str>) -> (Value, Value) {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(), "htm": htm, "htu": htu, "iat": now(),
        });
        if let Some(token) = token {
            claims["ath"] = token_hash(token).into();
        }
        (header, claims)
    }

    /// A valid proof.
    pub fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        let (header, claims) = self.parts(htm, htu, token);
        self.sign(&header, &claims)
    }
}

/// How a row breaks a proof (or the request's `DPoP` headers).
pub type Breaker = fn(&DpopKey, &mut Value, &mut Value) -> Option<Vec<String>>;

/// The `DPoP` header values of a row: `breaker` may edit the parts of a
/// valid proof, or return the values itself.
pub fn proof_headers(
    key: &DpopKey,
    htm: &str,
    htu: &str,
    token: Option<&str>,
    breaker: Breaker,
) -> Vec<String> {
    let (mut header, mut claims) = key.parts(htm, htu, token);
    match breaker(key, &mut header, &mut claims) {
        Some(values) => values,
        None => vec![key.sign(&header, &claims)],
    }
}

/// The proof rules every side checks the same way (RFC 9449 §4.3), as
/// (rule, breaker, the refusal's `error_description`).
pub const PROOF_RULES: &[(&str, Breaker, &str)] = &[
    (
        "two_dpop_headers_are_refused",
        |key, header, claims| {
            let proof = key.sign(header, claims);
            Some(vec![proof.clone(), proof])
        },
        "the request has more than one DPoP header",
    ),
    (
        "proof_that_is_not_a_jwt_is_refused",
        |_, _, _| Some(vec!["not-a-jwt".into()]),
        "the DPoP proof is not a well-formed JWT with htm, htu and iat",
    ),
    (
        // RFC 7515 §4.1.11: no extension is understood.
        "proof_with_a_crit_header_is_refused",
        |_, header, _| {
            header["crit"] = serde_json::json!(["x-restricted"]);
            None
        },
        "the DPoP proof is not a well-formed JWT with htm, htu and iat",
    ),
    (
        "proof_without_htm_is_refused",
        |_, _, claims| {
            claims.as_object_mut().unwrap().remove("htm");
            None
        },
        "the DPoP proof is not a well-formed JWT with htm, htu and iat",
    ),
    (
        "proof_without_iat_is_refused",
        |_, _, claims| {
            claims.as_object_mut().unwrap().remove("iat");
            None
        },
        "the DPoP proof is not a well-formed JWT with htm, htu and iat",
    ),
    (
        "proof_without_jti_is_refused",
        |_, _, claims| {
            claims.as_object_mut().unwrap().remove("jti");
            None
        },
        "the DPoP proof has no usable jti",
    ),
    (
        "jti_with_a_control_character_is_refused",
        |_, _, claims| {
            claims["jti"] = "a\u{0}b".into();
            None
        },
        "the DPoP proof has no usable jti",
    ),
    (
        "typ_other_than_dpop_jwt_is_refused",
        |_, header, _| {
            header["typ"] = "JWT".into();
            None
        },
        "the DPoP proof's typ is not dpop+jwt",
    ),
    (
        "alg_none_is_refused",
        |_, header, claims| {
            header["alg"] = "none".into();
            let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
            Some(vec![format!("{}.{}.", b64(header), b64(claims))])
        },
        "the DPoP proof's algorithm is not allowed",
    ),
    (
        "hmac_alg_is_refused",
        |_, header, _| {
            header["alg"] = "HS256".into();
            None
        },
        "the DPoP proof's algorithm is not allowed",
    ),
    (
        "proof_without_jwk_is_refused",
        |_, header, _| {
            header.as_object_mut().unwrap().remove("jwk");
            None
        },
        "the DPoP proof's jwk header is missing or not a supported public key",
    ),
    (
        "jwk_with_a_private_key_is_refused",
        |_, header, _| {
            header["jwk"]["d"] = "c2VjcmV0".into();
            None
        },
        "the DPoP proof's jwk header holds a private key",
    ),
    (
        "signature_by_another_key_is_refused",
        |_, header, claims| Some(vec![DpopKey::new().sign(header, claims)]),
        "the DPoP proof's signature is invalid",
    ),
    (
        "htm_of_another_method_is_refused",
        |_, _, claims| {
            claims["htm"] = "PUT".into();
            None
        },
        "the DPoP proof's htm does not match the request method",
    ),
    (
        "htu_of_another_uri_is_refused",
        |_, _, claims| {
            claims["htu"] = "https://elsewhere.example/token".into();
            None
        },
        "the DPoP proof's htu does not match the request URI",
    ),
    (
        "iat_too_old_is_refused",
        |_, _, claims| {
            claims["iat"] = (now() - 120).into();
            None
        },
        "the DPoP proof's iat is outside the accepted window",
    ),
    (
        "iat_in_the_future_is_refused",
        |_, _, claims| {
            claims["iat"] = (now() + 60).into();
            None
        },
        "the DPoP proof's iat is outside the accepted window",
    ),
];
