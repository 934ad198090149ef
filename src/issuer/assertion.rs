//! Input JWTs (client assertions, RFC 7523) from external issuers: an
//! endpoint stage, before and independent of the pluggable verifier.
//! Verification against the keys the application trusts for the JWT's
//! `iss`; date and lifetime checks; single use; policies. The verifier then
//! gets the [`VerifiedAssertion`] and decides only who it stands for.
//! (Tokens of federated applications are traded instead: see `federation`.)

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::application::Application;
use super::config::EndpointConfig;
use super::credentials::{ExternalIdentity, GrantType, VerifiedAssertion};
use super::error::{Rejection, VerifyError};
use super::mint;
use crate::keys::{ASYMMETRIC_ALGORITHMS, JwtError};
use crate::policy::PolicyContext;
use crate::store::TokenDigest;

/// The `client_assertion_type` of RFC 7523 §2.2.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Whether `secret` is a compact JWS (three base64url parts). A base64
/// `username:token` secret never contains a dot.
pub(crate) fn is_compact_jws(secret: &str) -> bool {
    let mut parts = secret.split('.');
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(s), None) if base64url(h) && base64url(p) && base64url(s)
    )
}

/// The claims read from an input JWT besides the whole claim set.
#[derive(Deserialize)]
struct Registered {
    iss: String,
    sub: String,
    /// NumericDate may have a fraction (RFC 7519 §2).
    exp: f64,
    iat: Option<f64>,
    jti: Option<String>,
    /// Read by [`VerifiedAssertion::principal`]: must be strings.
    #[serde(rename = "preferred_username")]
    _preferred_username: Option<String>,
    #[serde(rename = "nickname")]
    _nickname: Option<String>,
}

impl Registered {
    /// Whether `iss`, `sub` and `jti` are free of control characters. They
    /// are joined with a NUL into the identity (`iss`, `sub`) and the replay
    /// key (`iss`, `jti`): without a NUL in them, each join has one reading,
    /// so no two pairs share an account or a replay entry.
    fn has_plain_identifiers(&self) -> bool {
        let plain = |value: &str| !value.chars().any(char::is_control);
        plain(&self.iss) && plain(&self.sub) && self.jti.as_deref().is_none_or(plain)
    }
}

/// Verifies an input JWT for `application`; `scopes` (those requested that
/// the application allows) and `grant_type` are what its policies see.
pub(crate) async fn check(
    config: &EndpointConfig,
    application: &Application,
    token: &str,
    grant_type: GrantType,
    scopes: &[String],
) -> Result<VerifiedAssertion, VerifyError> {
    let rules = &application.assertions;
    if rules.keys.is_empty() {
        return Err(Rejection::UntrustedAssertion.into());
    }

    // Each key narrows the algorithms further; HS256 only ever matches a
    // shared secret configured explicitly. Narrowed to the token's own
    // algorithm here, the validation needs no copy per key.
    let algorithm = jsonwebtoken::decode_header(token)
        .map_err(|_| Rejection::InvalidAssertion(JwtError::Malformed))?
        .alg;
    if !ASYMMETRIC_ALGORITHMS.contains(&algorithm) && algorithm != Algorithm::HS256 {
        return Err(Rejection::InvalidAssertion(JwtError::NoMatchingKey).into());
    }
    let mut validation = Validation::new(algorithm);
    validation.leeway = rules.leeway.as_secs();
    validation.validate_nbf = true;
    if rules.audiences.is_empty() {
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_aud = false;
    } else {
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.set_audience(&rules.audiences);
    }
    let claims: serde_json::Value = rules.keys.verify(token, &validation).await?.claims;
    let registered = Registered::deserialize(&claims)
        .map_err(|_| Rejection::InvalidAssertion(JwtError::InvalidClaims))?;
    if !registered.has_plain_identifiers() {
        return Err(Rejection::InvalidAssertion(JwtError::InvalidClaims).into());
    }

    // "exp must not be now or in the past"; iat must not be in the future.
    let now = mint::now() as f64;
    let leeway = rules.leeway.as_secs_f64();
    if registered.exp + leeway <= now {
        return Err(Rejection::InvalidAssertion(JwtError::Expired).into());
    }
    if registered.iat.is_some_and(|iat| iat > now + leeway) {
        return Err(Rejection::InvalidAssertion(JwtError::NotYetValid).into());
    }
    // A JWT valid for years is a standing credential, not a platform token.
    let lifetime = registered.exp - registered.iat.unwrap_or(now);
    if lifetime > rules.max_lifetime.as_secs_f64() {
        return Err(Rejection::AssertionLifetime.into());
    }

    if rules.single_use {
        let jti = registered
            .jti
            .as_deref()
            .ok_or(Rejection::AssertionReplayed)?;
        // Key on the issuer too: jti is only unique per issuer. Remember it as
        // long as the JWT is accepted, leeway included.
        let key = TokenDigest::of(&format!("{}\u{0}{jti}", registered.iss)).to_hex();
        if !config
            .replay
            .first_use(&key, (registered.exp + leeway).ceil() as u64)
            .await?
        {
            return Err(Rejection::AssertionReplayed.into());
        }
    }

    let context = PolicyContext::new(
        &claims,
        application.client_id(),
        grant_type.as_str(),
        scopes,
    );
    if let Err(denied) = rules.policies.evaluate(&context) {
        tracing::debug!(client_id = %application.client_id(), reason = %denied.reason, "input JWT denied by policy");
        return Err(Rejection::PolicyDenied.into());
    }

    let exp = std::time::Duration::try_from_secs_f64(registered.exp).unwrap_or_default();
    Ok(VerifiedAssertion {
        identity: ExternalIdentity::new(registered.iss, registered.sub),
        claims,
        expires: std::time::UNIX_EPOCH
            .checked_add(exp)
            .unwrap_or(std::time::UNIX_EPOCH),
    })
}
