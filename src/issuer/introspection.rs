//! Token introspection (RFC 7662) and revocation (RFC 7009) at authentik's
//! paths (`/application/o/introspect/`, `/application/o/revoke/`).
//!
//! Who may see or revoke which token (the check whose absence was
//! authentik's CVE-2024-47077, and then its per-principal sequel):
//!
//! | caller | introspect | revoke |
//! |---|---|---|
//! | the application's own secret (its automatic account: the credential of a resource server) | every token of the application, and of each application it federates with (whose tokens it trusts) | every token of the application |
//! | any other principal of the application (a bound account, a JWT identity, a traded token) | its own tokens | its own tokens |
//! | a principal of another application | none | none |
//!
//! A token is a principal's own when the application minted it for that
//! same account: its `sub` and `preferred_username` are those the
//! application mints for the caller. Everything else is answered as an
//! unknown token: `{"active": false}`, or 200 without effect (RFC 7009
//! §2.2, RFC 7662 §2.2), so a caller learns nothing of tokens it may not see.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tower_service::Service;

use super::application::Application;
use super::authenticate::authenticate;
use super::classify::client_claim;
use super::config::EndpointConfig;
use super::credentials::{ClientAuthentication, GrantType, Principal};
use super::error::{TokenError, VerifyError};
use super::mint;
use super::minted::{self, OwnToken};
use super::request::{BoxError, present_secret, read_form};
use super::response;

/// `POST` introspection: `{"active": false}` for revoked, expired, foreign or
/// unparseable tokens and for ID tokens, else the access token's claims with
/// `active: true`.
pub(crate) async fn introspect<V, B>(
    config: &EndpointConfig,
    verifier: V,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, TokenError>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let (caller, token) = authenticated_request(config, verifier, request).await?;
    let Some(mut claims) = live_claims(config, &caller, &token, Purpose::Introspect).await? else {
        return Ok(answer(&serde_json::json!({"active": false})));
    };
    claims.insert("active".into(), Value::Bool(true));
    // A DPoP-bound token is used with the DPoP scheme (RFC 9449 §6).
    let token_type = if claims.contains_key("cnf") {
        "DPoP"
    } else {
        "Bearer"
    };
    claims.insert("token_type".into(), Value::from(token_type));
    if let Some(username) = claims.get("preferred_username").cloned() {
        claims.insert("username".into(), username);
    }
    Ok(answer(&Value::Object(claims)))
}

/// `POST` revocation: the token's id is remembered as revoked until it
/// expires. Unknown, expired or foreign tokens also get 200 (RFC 7009 §2.2).
pub(crate) async fn revoke<V, B>(
    config: &EndpointConfig,
    verifier: V,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, TokenError>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let (caller, token) = authenticated_request(config, verifier, request).await?;
    if let Some(claims) = live_claims(config, &caller, &token, Purpose::Revoke).await? {
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        config
            .revocations
            .revoke(jti, exp)
            .await
            .map_err(|_| TokenError::TemporarilyUnavailable)?;
        tracing::debug!(client_id = %caller.application.client_id(), "token revoked");
    }
    Ok(answer(&serde_json::json!({})))
}

/// The calling client, authenticated, and the `token` parameter. A client
/// that fails authentication gets 401 `invalid_client` (RFC 7662 §2.3).
async fn authenticated_request<V, B>(
    config: &EndpointConfig,
    verifier: V,
    request: Request<B>,
) -> Result<(Caller, String), TokenError>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let form = read_form(config, request).await?;
    let token = present_secret(&form.fields.token)
        .map(|token| token.expose_secret().to_owned())
        .ok_or(TokenError::InvalidRequest("parameter token is missing"))?;
    let claim = client_claim(form)?;
    let grant = authenticate(config, verifier, claim, GrantType::ClientCredentials, "")
        .await
        .map_err(TokenError::of_caller)?;
    let caller = Caller {
        application: grant.application,
        principal: grant.principal,
    };
    Ok((caller, token))
}

/// An authenticated caller of introspection or revocation.
struct Caller {
    application: Arc<Application>,
    principal: Principal,
}

impl Caller {
    /// Whether it authenticated with its application's own secret: the
    /// credential that stands for the application (a resource server).
    fn is_application(&self) -> bool {
        self.principal.external.is_none()
            && self.principal.id == Principal::automatic_id(&self.application)
    }
}

/// What the caller wants to do with the token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Introspect,
    Revoke,
}

/// The claims of `token` if this issuer minted it, it is unexpired, not
/// revoked, its account is still active, and `caller` may see it (or
/// revoke it, for `purpose`; see the [module docs](self)); `None`
/// otherwise. Only access tokens are introspected (as authentik, which looks
/// tokens up among its access tokens): an ID token is inactive, so a
/// resource server that introspects cannot take it for an access token.
async fn live_claims(
    config: &EndpointConfig,
    caller: &Caller,
    token: &str,
    purpose: Purpose,
) -> Result<Option<Map<String, Value>>, TokenError> {
    // The owner is the token's client (`aud` may name resources instead).
    let client_id = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
        .ok()
        .and_then(|claims| claims.get("client_id")?.as_str().map(str::to_owned));
    let Some(owner) = client_id.and_then(|id| config.applications.get(&id)) else {
        return Ok(None);
    };
    let own_application = caller.application.client_id() == owner.client_id();
    // Only the trusting side of a federation sees the trusted side's tokens.
    let trusts_owner = purpose == Purpose::Introspect
        && caller
            .application
            .assertions
            .federated_clients
            .iter()
            .any(|client_id| client_id == owner.client_id());
    let visible = own_application || (trusts_owner && caller.is_application());
    if !visible {
        return Ok(None);
    }
    let live = match minted::verify(config, owner, token, 0).await {
        Ok(live) => live,
        Err(VerifyError::Rejected(_)) => return Ok(None),
        Err(_) => return Err(TokenError::TemporarilyUnavailable),
    };
    if caller.is_application() || is_own(config, caller, owner, &live) {
        Ok(Some(live.claims))
    } else {
        Ok(None)
    }
}

/// Whether `owner` minted `token` for the caller's own account.
fn is_own(config: &EndpointConfig, caller: &Caller, owner: &Application, token: &OwnToken) -> bool {
    let principal = &caller.principal;
    token.principal.username == principal.username
        && token.sub == mint::subject(owner, principal, &config.subject_salt)
}

fn answer(body: &Value) -> Response<Full<Bytes>> {
    response::token(serde_json::to_vec(body).unwrap_or_default())
}
