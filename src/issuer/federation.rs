//! Federation: an access token that this issuer minted for one application,
//! traded for a token of another application that accepts it (authentik's
//! federated providers).
//!
//! A trade is an endpoint stage, before and independent of the pluggable
//! verifier, and a special case of token exchange (RFC 8693, `exchange`):
//! the client's credential is the subject token. Both check the token the
//! same way (`minted`: an unrevoked access token of the other application,
//! whose account still exists and is active), and bound what they mint:
//! the new token never lives past the traded one, and never carries a scope
//! the traded one did not.

use super::application::Application;
use super::config::EndpointConfig;
use super::credentials::{ExternalIdentity, Principal};
use super::error::VerifyError;
use super::minted;

/// What a trade yields: who the new token is for, and its bounds.
pub(crate) struct Trade {
    pub(crate) principal: Principal,
    /// The traded token's `exp`: the new one expires no later.
    pub(crate) expires: u64,
    /// The traded token's scopes: the new one carries no other.
    pub(crate) scopes: Vec<String>,
    /// The traded token's `act` (earlier actors), kept nested in the new one.
    pub(crate) act: Option<serde_json::Value>,
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

/// Checks `token`, an access token of `source`, for a trade at
/// `application`: the check of every token this issuer gets back
/// ([`minted::verify_unbound`], shared with token exchange).
pub(crate) async fn trade(
    config: &EndpointConfig,
    application: &Application,
    source: &Application,
    token: &str,
) -> Result<Trade, VerifyError> {
    let leeway = application.assertions.leeway.as_secs();
    let mut traded = minted::verify_unbound(config, source, token, leeway).await?;
    let act = traded.claims.remove("act");
    let mut principal = traded.principal;
    principal.external = Some(ExternalIdentity::new(source.issuer(), traded.sub));
    Ok(Trade {
        principal,
        expires: traded.exp,
        scopes: traded.scopes,
        act,
    })
}
