//! Access tokens this issuer minted, presented back to it: the one check
//! behind federation trades and token exchange (RFC 8693 subject and actor
//! tokens). Such a token cannot outlive the account behind it:
//! - only access tokens count: an ID token (`typ: JWT`, no `client_id`) never does;
//! - it must verify with the issuer's own keys, for the application's issuer,
//!   name that application as its `client_id`, be unexpired and not revoked;
//! - the account behind it must still exist, be the same account (its `sub`
//!   is recomputed) and be active.
//!
//! Its `aud` is not checked: a token minted for a resource (RFC 8707) is
//! still the application's token.

use jsonwebtoken::Validation;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::application::Application;
use super::config::EndpointConfig;
use super::credentials::Principal;
use super::error::{Rejection, VerifyError};
use super::mint;
use crate::keys::JwtError;

/// An access token of this issuer, checked.
pub(crate) struct OwnToken {
    /// The account it was minted for, as it is now.
    pub(crate) principal: Principal,
    /// Its `sub`.
    pub(crate) sub: String,
    /// Its `exp`: what is minted from it expires no later.
    pub(crate) exp: u64,
    /// Its scopes: what is minted from it carries no other.
    pub(crate) scopes: Vec<String>,
    /// Its whole claim set (for `act` and `may_act`).
    pub(crate) claims: Map<String, Value>,
    /// Whether it is DPoP-bound (`cnf`, RFC 9449 §6).
    pub(crate) bound: bool,
}

/// The claims the check reads.
#[derive(Deserialize)]
struct Registered {
    sub: String,
    exp: u64,
    #[serde(default)]
    jti: String,
    client_id: Option<String>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    preferred_username: String,
    /// Set on DPoP-bound tokens (RFC 9449 §6).
    #[serde(default)]
    cnf: Option<serde::de::IgnoredAny>,
}

/// Whether a JOSE `typ` is that of this issuer's access tokens: `at+jwt`
/// (RFC 9068), or none (authentik's style); never `JWT`, which ID tokens carry.
pub(crate) fn is_access_token_typ(typ: Option<&str>) -> bool {
    typ.is_none_or(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    })
}

/// Checks `token`, an access token this issuer minted for `source` (see the
/// [module docs](self)), allowing `leeway` seconds of clock skew on `exp`.
pub(crate) async fn verify(
    config: &EndpointConfig,
    source: &Application,
    token: &str,
    leeway: u64,
) -> Result<OwnToken, VerifyError> {
    let invalid = |error| VerifyError::from(Rejection::InvalidAssertion(error));
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid(JwtError::Malformed))?;
    if !is_access_token_typ(header.typ.as_deref()) {
        return Err(Rejection::NotAnAccessToken.into());
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = leeway;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.set_issuer(&[source.issuer()]);
    let claims: Value = config
        .keys
        .verification_keys()
        .verify(token, &validation)
        .map_err(invalid)?
        .claims;
    let registered =
        Registered::deserialize(&claims).map_err(|_| invalid(JwtError::InvalidClaims))?;
    let Value::Object(claims) = claims else {
        return Err(invalid(JwtError::InvalidClaims));
    };
    // Access tokens name their client (RFC 9068 §2.2); ID tokens never do.
    if registered.client_id.as_deref() != Some(source.client_id()) {
        return Err(Rejection::NotAnAccessToken.into());
    }
    if registered.exp <= mint::now() {
        return Err(invalid(JwtError::Expired));
    }
    if config.revocations.is_revoked(&registered.jti).await? {
        return Err(invalid(JwtError::Revoked));
    }
    let principal = account_behind(
        config,
        source,
        &registered.preferred_username,
        &registered.sub,
    )
    .await?;
    Ok(OwnToken {
        principal,
        sub: registered.sub,
        exp: registered.exp,
        scopes: crate::store::scope_list(&registered.scope),
        claims,
        bound: registered.cnf.is_some(),
    })
}

/// [`verify`], for a token that is traded or exchanged for a new one: a
/// DPoP-bound token never is, since its successor would be an unbound bearer
/// token (a downgrade).
pub(crate) async fn verify_unbound(
    config: &EndpointConfig,
    source: &Application,
    token: &str,
    leeway: u64,
) -> Result<OwnToken, VerifyError> {
    let own = verify(config, source, token, leeway).await?;
    if own.bound {
        return Err(Rejection::BoundToken.into());
    }
    Ok(own)
}

/// The account that a token of `source` with these `preferred_username` and
/// `sub` was minted for, if it still exists, is the same account, and is
/// active (JWT identities: and unexpired).
pub(crate) async fn account_behind(
    config: &EndpointConfig,
    source: &Application,
    username: &str,
    sub: &str,
) -> Result<Principal, VerifyError> {
    let principal = if username == source.automatic_account_username() {
        Principal::automatic(source)
    } else {
        let account = config
            .directory
            .account(username)
            .await?
            .ok_or(Rejection::AccountRemoved)?;
        if !account.active {
            return Err(Rejection::AccountDisabled.into());
        }
        if account
            .expires
            .is_some_and(|expires| expires <= std::time::SystemTime::now())
        {
            return Err(Rejection::AccountRemoved.into());
        }
        Principal::from(account)
    };
    // A removed account's name may have gone to another account since.
    if mint::subject(source, &principal, &config.subject_salt) != sub {
        return Err(Rejection::AccountRemoved.into());
    }
    Ok(principal)
}
