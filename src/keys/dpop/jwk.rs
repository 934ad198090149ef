//! The public key of a DPoP proof (its `jwk` header) and its RFC 7638
//! thumbprint, the `jkt` that binds tokens to it.

use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use serde_json::{Map, Value};

use super::DpopError;
use crate::keys::VerificationKey;

/// JWK members that only a private (or symmetric) key has (RFC 7518 §6).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A proof's key: the key that verifies it and its thumbprint.
pub(super) struct ProofKey {
    pub(super) key: VerificationKey,
    pub(super) thumbprint: String,
}

impl ProofKey {
    /// The key of a `jwk` header: a public RSA, EC (P-256, P-384) or Ed25519
    /// key, with no private member.
    pub(super) fn from_header(jwk: Map<String, Value>) -> Result<Self, DpopError> {
        if PRIVATE_MEMBERS
            .iter()
            .any(|member| jwk.contains_key(*member))
        {
            return Err(DpopError::PrivateKey);
        }
        let jwk: Jwk =
            serde_json::from_value(Value::Object(jwk)).map_err(|_| DpopError::InvalidKey)?;
        let key = VerificationKey::from_jwk(&jwk).map_err(|_| DpopError::InvalidKey)?;
        let thumbprint = jwk_thumbprint(&jwk).ok_or(DpopError::InvalidKey)?;
        Ok(Self { key, thumbprint })
    }
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: the `jkt` of
/// RFC 9449 §6. `None` for a key of no supported kind.
pub fn jwk_thumbprint(jwk: &Jwk) -> Option<String> {
    jwk.thumbprint(ThumbprintHash::SHA256).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn thumbprint_of_the_rfc_7638_example() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(
            jwk_thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn private_members_are_refused() {
        for member in PRIVATE_MEMBERS {
            let mut jwk = Map::new();
            jwk.insert("kty".into(), "EC".into());
            jwk.insert((*member).into(), "AAAA".into());
            assert!(
                matches!(ProofKey::from_header(jwk), Err(DpopError::PrivateKey)),
                "{member}"
            );
        }
    }
}
