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
use jsonwebtoken::Validation;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tower_service::Service;

use super::application::Application;
use super::authenticate::authenticate;
use super::classify::client_claim;
use super::config::EndpointConfig;
use super::credentials::{ClientAuthentication, GrantType, Principal};
use super::error::{TokenError, VerifyError};
use super::federation;
use super::request::{BoxError, present_secret, read_form};
use super::response;
use crate::keys::{ASYMMETRIC_ALGORITHMS, Algorithm};

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
/// revoked, and `caller` may see it; `None` otherwise.
async fn live_claims(
    config: &EndpointConfig,
    caller: &Application,
    token: &str,
) -> Result<Option<Map<String, Value>>, TokenError> {
    let audience = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
        .ok()
        .and_then(|claims| claims.get("aud").and_then(Value::as_str).map(str::to_owned));
    let Some(owner) = audience.and_then(|aud| config.applications.get(&aud)) else {
        return Ok(None);
    };
    if !may_see(caller, owner) {
        return Ok(None);
    }
    // The ring's own HS256 secrets verify too; each key allows only its
    // own algorithms, so no key confusion follows from listing HS256.
    let mut validation = Validation::new(Algorithm::ES256);
    validation.algorithms = ASYMMETRIC_ALGORITHMS.to_vec();
    validation.algorithms.push(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "jti"]);
    validation.set_issuer(&[owner.issuer()]);
    validation.set_audience(&[owner.client_id()]);
    let Ok(data) = config
        .keys
        .verification_keys()
        .verify::<Map<String, Value>>(token, &validation)
    else {
        return Ok(None);
    };
    // Only access tokens are introspected (as authentik, which looks tokens
    // up among its access tokens): an ID token, which never carries
    // `client_id`, is inactive, so a resource server that introspects
    // cannot take it for an access token either.
    if !data.claims.contains_key("client_id") {
        return Ok(None);
    }
    let jti = data
        .claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if config
        .revocations
        .is_revoked(jti)
        .await
        .map_err(|_| TokenError::TemporarilyUnavailable)?
    {
        return Ok(None);
    }
    // A token is active only while its account is (disabling an account
    // ends its tokens for every introspecting resource server).
    let claim = |name: &str| {
        data.claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    match federation::account_behind(config, owner, claim("preferred_username"), claim("sub")).await
    {
        Ok(_) => Ok(Some(data.claims)),
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
