//! The public key of a DPoP proof (its `jwk` header) and its RFC 7638
//! thumbprint, the `jkt` that binds tokens to it.

use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, OctetKeyPairParameters, OctetKeyPairType, RSAKeyParameters,
    RSAKeyType, ThumbprintHash,
};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::DpopError;
use crate::keys::VerificationKey;

/// A proof's `jwk` header as sent: the members of the public key types this
/// crate verifies, and those that only a private or symmetric key has
/// (RFC 7518 §6), which refuse it. Read directly rather than through
/// [`Jwk`]'s untagged, flattened form: this is on every DPoP request.
#[derive(Deserialize)]
pub(super) struct HeaderJwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default, rename = "use")]
    key_use: Option<String>,
    #[serde(default)]
    d: Option<IgnoredAny>,
    #[serde(default)]
    p: Option<IgnoredAny>,
    #[serde(default)]
    q: Option<IgnoredAny>,
    #[serde(default)]
    dp: Option<IgnoredAny>,
    #[serde(default)]
    dq: Option<IgnoredAny>,
    #[serde(default)]
    qi: Option<IgnoredAny>,
    #[serde(default)]
    oth: Option<IgnoredAny>,
    #[serde(default)]
    k: Option<IgnoredAny>,
}

/// A proof's key: the key that verifies it and its thumbprint.
pub(super) struct ProofKey {
    pub(super) key: VerificationKey,
    pub(super) thumbprint: String,
}

impl ProofKey {
    /// The key of a `jwk` header: a public RSA, EC (P-256, P-384) or Ed25519
    /// signing key, with no private member.
    pub(super) fn from_header(jwk: HeaderJwk) -> Result<Self, DpopError> {
        let private = [
            &jwk.d, &jwk.p, &jwk.q, &jwk.dp, &jwk.dq, &jwk.qi, &jwk.oth, &jwk.k,
        ];
        if private.iter().any(|member| member.is_some()) {
            return Err(DpopError::PrivateKey);
        }
        if jwk
            .key_use
            .as_deref()
            .is_some_and(|key_use| key_use != "sig")
        {
            return Err(DpopError::InvalidKey);
        }
        let algorithm = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: if crv == "P-256" {
                        EllipticCurve::P256
                    } else {
                        EllipticCurve::P384
                    },
                    x: jwk.x.ok_or(DpopError::InvalidKey)?,
                    y: jwk.y.ok_or(DpopError::InvalidKey)?,
                })
            }
            ("OKP", Some("Ed25519")) => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: jwk.x.ok_or(DpopError::InvalidKey)?,
            }),
            ("RSA", _) => AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: jwk.n.ok_or(DpopError::InvalidKey)?,
                e: jwk.e.ok_or(DpopError::InvalidKey)?,
            }),
            _ => return Err(DpopError::InvalidKey),
        };
        let jwk = Jwk {
            common: CommonParameters::default(),
            algorithm,
        };
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
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let example = serde_json::json!({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
        let jwk: Jwk = serde_json::from_value(example.clone()).unwrap();
        let want = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
        assert_eq!(jwk_thumbprint(&jwk).as_deref(), Some(want));
        // The same key as a proof's header.
        let header: HeaderJwk = serde_json::from_value(example).unwrap();
        assert_eq!(ProofKey::from_header(header).ok().unwrap().thumbprint, want);
    }

    #[test]
    fn private_members_are_refused() {
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            let header = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", member: "AAAA"});
            let header: HeaderJwk = serde_json::from_value(header).unwrap();
            assert!(
                matches!(ProofKey::from_header(header), Err(DpopError::PrivateKey)),
                "{member}"
            );
        }
    }

    #[test]
    fn symmetric_unknown_or_encryption_keys_are_refused() {
        for header in [
            serde_json::json!({"kty": "oct"}),
            serde_json::json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            serde_json::json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
            serde_json::json!({"kty": "RSA", "n": "AA", "e": "AQAB", "use": "enc"}),
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA"}),
        ] {
            let parsed: HeaderJwk = serde_json::from_value(header.clone()).unwrap();
            assert!(
                matches!(ProofKey::from_header(parsed), Err(DpopError::InvalidKey)),
                "{header}"
            );
        }
    }
}
