//! Federation: an access token that this issuer minted for one application,
//! traded for a token of another application that accepts it (authentik's
//! federated providers).
//!
//! A trade is an endpoint stage, before and independent of the pluggable
//! verifier. It cannot outlive the account behind the token:
//! - only access tokens trade: an ID token (`typ: JWT`, no `client_id`) never does;
//! - the token must verify with the issuer's own keys, for the federated
//!   application's issuer and audience, and must not be revoked;
//! - the account behind it must still exist, be the same account (its `sub`
//!   is recomputed) and be active;
//! - the new token never lives past the traded one, and never carries a
//!   scope the traded one did not.

use jsonwebtoken::Validation;
use serde::Deserialize;

use super::application::Application;
use super::config::EndpointConfig;
use super::credentials::{ExternalIdentity, Principal};
use super::error::{Rejection, VerifyError};
use super::mint;
use crate::keys::JwtError;

/// What a trade yields: who the new token is for, and its bounds.
pub(crate) struct Trade {
    pub(crate) principal: Principal,
    /// The traded token's `exp`: the new one expires no later.
    pub(crate) expires: u64,
    /// The traded token's scopes: the new one carries no other.
    pub(crate) scopes: Vec<String>,
}

/// The claims a trade reads.
#[derive(Deserialize)]
struct Traded {
    sub: String,
    exp: u64,
    #[serde(default)]
    jti: String,
    client_id: Option<String>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    preferred_username: String,
    /// Set on DPoP-bound tokens, which are never traded.
    #[serde(default)]
    cnf: Option<serde::de::IgnoredAny>,
}

/// The application whose token `token` claims to be, if `application`
/// federates with it (its `iss` is peeked at, unverified, only then).
pub(crate) fn source<'a>(
    config: &'a EndpointConfig,
    application: &Application,
    token: &str,
) -> Option<&'a Application> {
    if application.assertions.federated.is_empty() {
        return None;
    }
    let claims =
        jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(token).ok()?;
    let iss = claims.get("iss")?.as_str()?;
    let (_, client_id) = application
        .assertions
        .federated
        .iter()
        .find(|(issuer, _)| issuer == iss)?;
    config.applications.get(client_id).map(|app| &**app)
}

/// Whether a JOSE `typ` is that of this issuer's access tokens: `at+jwt`
/// (RFC 9068), or none (authentik's style); never `JWT`, which ID tokens carry.
pub(crate) fn is_access_token_typ(typ: Option<&str>) -> bool {
    typ.is_none_or(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    })
}

/// Checks `token`, an access token of `source`, for a trade at `application`.
pub(crate) async fn trade(
    config: &EndpointConfig,
    application: &Application,
    source: &Application,
    token: &str,
) -> Result<Trade, VerifyError> {
    let invalid = |error| VerifyError::from(Rejection::InvalidAssertion(error));
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid(JwtError::Malformed))?;
    if !is_access_token_typ(header.typ.as_deref()) {
        return Err(Rejection::NotAnAccessToken.into());
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = application.assertions.leeway.as_secs();
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[source.issuer()]);
    validation.set_audience(&[source.client_id()]);
    let traded: Traded = config
        .keys
        .verification_keys()
        .verify(token, &validation)
        .map_err(invalid)?
        .claims;
    // Access tokens name their client (RFC 9068 §2.2); ID tokens never do.
    if traded.client_id.as_deref() != Some(source.client_id()) {
        return Err(Rejection::NotAnAccessToken.into());
    }
    if traded.cnf.is_some() {
        return Err(Rejection::BoundToken.into());
    }
    if traded.exp <= mint::now() {
        return Err(invalid(JwtError::Expired));
    }
    if config.revocations.is_revoked(&traded.jti).await? {
        return Err(invalid(JwtError::Revoked));
    }
    let mut principal =
        account_behind(config, source, &traded.preferred_username, &traded.sub).await?;
    principal.external = Some(ExternalIdentity::new(source.issuer(), traded.sub));
    Ok(Trade {
        principal,
        expires: traded.exp,
        scopes: traded
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
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
    let automatic = Principal::automatic(source);
    let principal = if username == automatic.username {
        automatic
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
