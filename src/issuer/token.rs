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
use super::credentials::{ClientAuthentication, GrantType, Principal};
use super::error::{TokenError, VerifyError};
use super::exchange;
use super::request::{BoxError, present, read_form};
use super::{dpop, mint, resource, response};
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
    let requested = present(&form.fields.scope).map(str::to_owned);
    let audiences = resource::requested(&form.fields.exchange)?;
    let exchange = match grant_type {
        GrantType::TokenExchange => Some(exchange::request(&form.fields.exchange)?),
        _ => None,
    };
    // The client's policies see the scopes asked for in every grant; an
    // exchange asks them again with the scopes it is about to grant.
    let claim = client_claim(form)?;
    let scope = requested.as_deref().unwrap_or("");
    let mut grant = authenticate(config, verifier, claim, grant_type, scope).await?;
    grant.audience = resource::choose(&grant.application, audiences)?;
    if let Some(exchange) = exchange {
        Box::pin(exchange::exchange(
            config,
            &mut grant,
            exchange,
            requested.as_deref(),
        ))
        .await?;
    }
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
        grant.exchange.as_ref().map(|e| e.issued_token_type),
    ))
}
