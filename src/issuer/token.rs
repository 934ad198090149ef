//! The token endpoint (RFC 6749 §4.4): one request through the pipeline.
//! Check its DPoP proof, if any → read the form → classify it (grant,
//! client authentication) → authenticate and authorize the client → spend
//! the proof (binding the token to its key) → mint → the §5.1 response body.

use http::Request;
use http_body::Body;
use tower_service::Service;

use super::authenticate::authenticate;
use super::classify::{client_claim, grant_type};
use super::config::EndpointConfig;
use super::credentials::{ClientAuthentication, Principal};
use super::error::{TokenError, VerifyError};
use super::request::{BoxError, present, read_form};
use super::response;
use super::{dpop, mint};
use crate::observe::TOKENS_ISSUED;

/// Answers a token request with the body of a token response.
pub(crate) async fn issue<V, B>(
    config: &EndpointConfig,
    verifier: V,
    request: Request<B>,
) -> Result<Vec<u8>, TokenError>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let now = mint::now();
    let proof = dpop::check(&config.dpop, request.method(), request.headers(), now)?;
    let form = read_form(config, request).await?;
    let grant_type = grant_type(&form.fields)?;
    let requested = present(&form.fields.scope).unwrap_or("").to_owned();
    let claim = client_claim(form)?;
    let grant = authenticate(config, verifier, claim, grant_type, &requested).await?;
    let jkt = dpop::bind(&*config.replay, &grant.application, proof).await?;
    let minted = mint::mint(config, &grant, jkt.as_deref())?;
    if config.instrument {
        metrics::counter!(
            TOKENS_ISSUED,
            "application" => grant.application.client_id().to_owned(),
            "auth_method" => grant.method,
        )
        .increment(1);
    }
    Ok(response::token_body(
        &minted.access_token,
        if jkt.is_some() { "DPoP" } else { "Bearer" },
        minted.expires_in,
        &grant.scope,
        minted.id_token.as_deref(),
    ))
}
