//! DPoP at the token endpoint (RFC 9449 §5): a token request with a valid
//! proof gets an access token bound to the proof's key (`cnf.jkt`,
//! `token_type: DPoP`).
//!
//! Two steps around authentication: [`check`] runs every stateless rule of
//! the proof before the body is read (so `use_dpop_nonce` comes back before
//! any credential is spent), and [`bind`], once the client is known, applies
//! its application's [`require_dpop`](Application::require_dpop) and spends
//! the proof's `jti` in the endpoint's replay cache (shared by instances
//! with one Redis or SQL store).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response};
use http_body_util::Full;

use super::application::Application;
use super::config::DpopEndpoint;
use super::directory::Replays;
use super::error::TokenError;
use super::layer::TokenEndpointLayer;
use crate::keys::dpop::{DpopError, DpopNonces, DpopProof, DpopRequest, DpopRules, proof_header};

/// The `DPoP-Nonce` response header.
const DPOP_NONCE: &str = "dpop-nonce";

/// The proof of a token request, if it has one, checked against every rule
/// but single use.
pub(crate) fn check(
    dpop: &DpopEndpoint,
    method: &Method,
    headers: &HeaderMap,
    now: u64,
) -> Result<Option<DpopProof>, TokenError> {
    let Some(proof) = proof_header(headers).map_err(TokenError::InvalidDpopProof)? else {
        return Ok(None);
    };
    let request = DpopRequest {
        method: method.as_str(),
        htu: &dpop.htu,
        access_token: None,
        nonces: dpop.nonces.as_ref(),
    };
    match dpop.rules.check(proof, &request, now) {
        Ok(proof) => Ok(Some(proof)),
        Err(DpopError::UseNonce) => Err(TokenError::UseDpopNonce),
        Err(error) => Err(TokenError::InvalidDpopProof(error)),
    }
}

/// The key thumbprint to bind the token to: `None` for a request without a
/// proof at an application that does not require one. The proof's `jti` is
/// spent here.
pub(crate) async fn bind(
    replay: &dyn Replays,
    application: &Application,
    proof: Option<DpopProof>,
) -> Result<Option<String>, TokenError> {
    let Some(proof) = proof else {
        return if application.require_dpop {
            Err(TokenError::InvalidDpopProof(DpopError::Missing))
        } else {
            Ok(None)
        };
    };
    match replay
        .first_use(&proof.replay_key(), proof.expires_at())
        .await
    {
        Ok(true) => Ok(Some(proof.thumbprint().to_owned())),
        Ok(false) => Err(TokenError::InvalidDpopProof(DpopError::Replayed)),
        Err(error) => {
            tracing::warn!(%error, "the replay cache could not record a DPoP proof");
            Err(TokenError::TemporarilyUnavailable)
        }
    }
}

/// Adds a fresh `DPoP-Nonce` to a token endpoint response, when the
/// endpoint requires nonces.
pub(crate) fn add_nonce(dpop: &DpopEndpoint, response: &mut Response<Full<Bytes>>, now: u64) {
    if let Some(nonces) = &dpop.nonces
        && let Ok(value) = HeaderValue::from_str(&nonces.issue(now))
    {
        response.headers_mut().insert(DPOP_NONCE, value);
    }
}

impl Application {
    /// Token requests for this application must carry a DPoP proof (RFC
    /// 9449), so every token it gets is bound to a key; a request without
    /// one is `invalid_dpop_proof`. By default a proof is optional: with one
    /// the token is bound, without one it is a bearer token.
    pub fn require_dpop(mut self) -> Self {
        self.require_dpop = true;
        self
    }

    /// Whether token requests must carry a DPoP proof.
    pub fn requires_dpop(&self) -> bool {
        self.require_dpop
    }
}

impl<V> TokenEndpointLayer<V> {
    /// The DPoP proof rules of token requests (default [`DpopRules::new`]:
    /// asymmetric algorithms, `iat` at most 60 s old). The endpoint's `htu`
    /// is its token URL (base URL and token path), so the base URL must be
    /// the one clients reach, proxies included.
    pub fn dpop(mut self, rules: DpopRules) -> Self {
        Arc::make_mut(&mut self.config).dpop.rules = rules;
        self
    }

    /// Requires a server nonce in every DPoP proof (RFC 9449 §8): a proof
    /// without a valid one is answered `use_dpop_nonce`, and every token
    /// endpoint response carries a fresh nonce in `DPoP-Nonce`. Give every
    /// instance the same [`DpopNonces`] secret. Default: no nonces.
    pub fn dpop_nonces(mut self, nonces: DpopNonces) -> Self {
        Arc::make_mut(&mut self.config).dpop.nonces = Some(nonces);
        self
    }
}
