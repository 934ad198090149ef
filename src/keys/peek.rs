//! The unverified parts of a compact JWS that select the keys and rules to
//! verify it with.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::JwtError;

/// What is read from a token before its signature is checked: only to
/// choose the issuer, the key and the validation rules. Nothing here is
/// trusted until the signature verifies.
pub(crate) struct Peeked {
    pub(crate) alg: Algorithm,
    /// The JOSE `typ` header.
    pub(crate) typ: Option<String>,
    pub(crate) iss: Option<String>,
    /// The decoded claims set, kept (by the validator) for the verified
    /// claims once the signature over it has verified.
    pub(crate) payload: Vec<u8>,
}

#[derive(Deserialize)]
struct PeekHeader<'a> {
    alg: Algorithm,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PeekPayload<'a> {
    #[serde(borrow, default)]
    iss: Option<Cow<'a, str>>,
}

impl Peeked {
    pub(crate) fn parse(token: &str) -> Result<Self, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| JwtError::Malformed)?;
        // Header and claims are UTF-8 JSON (RFC 7519 §7.2): checked first,
        // since serde_json skips the strings of members it ignores without
        // checking them, and the validator hands the bytes on.
        let header = std::str::from_utf8(&header).map_err(|_| JwtError::Malformed)?;
        // `alg: none` (or any algorithm jsonwebtoken does not know) fails here.
        let header: PeekHeader<'_> =
            serde_json::from_str(header).map_err(|_| JwtError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| JwtError::Malformed)?;
        let text = std::str::from_utf8(&payload).map_err(|_| JwtError::InvalidClaims)?;
        let iss = serde_json::from_str::<PeekPayload<'_>>(text)
            .map_err(|_| JwtError::InvalidClaims)?
            .iss
            .map(Cow::into_owned);
        Ok(Self {
            alg: header.alg,
            typ: header.typ.map(Cow::into_owned),
            iss,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::{JwtError, Peeked};

    #[test]
    fn alg_none_is_malformed() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        assert_eq!(
            Peeked::parse(&format!("{header}.{payload}.")).err(),
            Some(JwtError::Malformed)
        );
    }
}
