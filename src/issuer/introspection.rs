//! Token introspection (RFC 7662) and revocation (RFC 7009) at authentik's
//! paths (`/application/o/introspect/`, `/application/o/revoke/`).
//!
//! Only an authenticated client of the token's own application, or of an
//! application federated with it, may introspect or revoke a token (the check
//! whose absence was authentik's CVE-2024-47077).

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
use super::minted;
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
    let Some(mut claims) = live_claims(config, &caller, &token).await? else {
        return Ok(answer(&serde_json::json!({"active": false})));
    };
    claims.insert("active".into(), Value::Bool(true));
    claims.insert("token_type".into(), Value::from("Bearer"));
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
    if let Some(claims) = live_claims(config, &caller, &token).await? {
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
        tracing::debug!(client_id = %caller.client_id(), "token revoked");
    }
    Ok(answer(&serde_json::json!({})))
}

/// The calling client, authenticated, and the `token` parameter. A client
/// that fails authentication gets 401 `invalid_client` (RFC 7662 §2.3).
async fn authenticated_request<V, B>(
    config: &EndpointConfig,
    verifier: V,
    request: Request<B>,
) -> Result<(Arc<Application>, String), TokenError>
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
    let caller = authenticate(config, verifier, claim, GrantType::ClientCredentials, "")
        .await
        .map_err(TokenError::of_caller)?
        .application;
    Ok((caller, token))
}

/// The claims of `token` if this issuer minted it, it is unexpired, not
/// revoked, its account is still active, and `caller` may see it; `None`
/// otherwise. Only access tokens are introspected (as authentik, which looks
/// tokens up among its access tokens): an ID token is inactive, so a
/// resource server that introspects cannot take it for an access token.
async fn live_claims(
    config: &EndpointConfig,
    caller: &Application,
    token: &str,
) -> Result<Option<Map<String, Value>>, TokenError> {
    // The owner is the token's client (`aud` may name resources instead).
    let client_id = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
        .ok()
        .and_then(|claims| claims.get("client_id")?.as_str().map(str::to_owned));
    let Some(owner) = client_id.and_then(|id| config.applications.get(&id)) else {
        return Ok(None);
    };
    if !may_see(caller, owner) {
        return Ok(None);
    }
    match minted::verify(config, owner, token, 0).await {
        Ok(live) => Ok(Some(live.claims)),
        Err(VerifyError::Rejected(_)) => Ok(None),
        Err(_) => Err(TokenError::TemporarilyUnavailable),
    }
}

/// The same application, or one federated with it either way.
fn may_see(caller: &Application, owner: &Application) -> bool {
    let federates = |a: &Application, b: &Application| {
        a.assertions
            .federated_clients
            .iter()
            .any(|client_id| client_id == b.client_id())
    };
    caller.client_id() == owner.client_id() || federates(caller, owner) || federates(owner, caller)
}

fn answer(body: &Value) -> Response<Full<Bytes>> {
    response::token(serde_json::to_vec(body).unwrap_or_default())
}
