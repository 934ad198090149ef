//! The claims of the tokens the endpoint mints: authentik's access-token
//! claims plus those of RFC 9068, and the matching ID token.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::{Application, Principal, SubjectMode};
use crate::store::TokenDigest;

#[derive(Serialize)]
pub(crate) struct AccessTokenClaims<'a> {
    pub(crate) iss: &'a str,
    pub(crate) sub: &'a str,
    pub(crate) aud: &'a str,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) auth_time: u64,
    pub(crate) jti: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) azp: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) preferred_username: &'a str,
    /// For JWT-authenticated clients: the input JWT's issuer and subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) act: Option<Actor<'a>>,
}

/// RFC 8693-style actor: who the client really was.
#[derive(Serialize)]
pub(crate) struct Actor<'a> {
    pub(crate) iss: &'a str,
    pub(crate) sub: &'a str,
}

#[derive(Serialize)]
pub(crate) struct IdTokenClaims<'a> {
    pub(crate) iss: &'a str,
    pub(crate) sub: &'a str,
    pub(crate) aud: &'a str,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) auth_time: u64,
    pub(crate) jti: &'a str,
    pub(crate) preferred_username: &'a str,
}

/// The `sub` of tokens minted for `principal` by `application`.
pub(crate) fn subject(application: &Application, principal: &Principal, salt: &str) -> String {
    match application.subject_mode {
        SubjectMode::HashedId => {
            TokenDigest::of_parts(&[principal.id.as_bytes(), b"-", salt.as_bytes()]).to_hex()
        }
        SubjectMode::Username => principal.username.clone(),
        SubjectMode::Uuid => principal.uuid.to_string(),
        SubjectMode::Id => principal.id.clone(),
    }
}

/// A unique token id: 30 random bytes, base64url (40 characters).
pub(crate) fn token_id() -> Option<String> {
    let mut bytes = [0u8; 30];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
