//! DPoP at the validator (RFC 9449 §7): the `Authorization` scheme, the
//! proof of a `DPoP`-scheme request, and the binding of the token to the
//! proof's key.
//!
//! A token with `cnf.jkt` passes only as `Authorization: DPoP <token>` with
//! a proof, for this request (`htm`, `htu`), of this token (`ath`), signed by
//! the key the token is bound to, fresh (`iat`) and never seen before
//! (`jti`, through a [`ReplayCache`](crate::store::ReplayCache)). A bound
//! token presented as `Bearer` (a downgrade) and an unbound token presented
//! as `DPoP` are refused.

use std::sync::Arc;

use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, Request};

use super::{AuthError, VerifiedClaims};
use crate::keys::dpop::{
    DpopError, DpopNonces, DpopProof, DpopRequest, DpopRules, normalize_htu, proof_header,
};
use crate::store::{ErasedReplay, MemoryReplayCache};

/// The scheme of the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Dpop,
}

/// The access token of the request and its scheme: `Bearer` (RFC 6750
/// §2.1) or `DPoP` (RFC 9449 §7.1), case-insensitive.
#[inline]
pub(crate) fn access_token(headers: &HeaderMap) -> Result<(Scheme, &str), AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest(
            "the request has more than one Authorization header",
        ));
    }
    let bytes = value.as_bytes();
    let scheme_end = bytes.iter().position(|b| *b == b' ').unwrap_or(bytes.len());
    let scheme = match &bytes[..scheme_end] {
        scheme if scheme.eq_ignore_ascii_case(b"bearer") => Scheme::Bearer,
        scheme if scheme.eq_ignore_ascii_case(b"dpop") => Scheme::Dpop,
        _ => return Err(AuthError::UnsupportedScheme),
    };
    let token = value
        .to_str()
        .map_err(|_| AuthError::InvalidRequest("the access token is malformed"))?[scheme_end..]
        .trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::InvalidRequest("the access token is empty"));
    }
    Ok((scheme, token))
}

/// Whether the request presents its token with the `DPoP` scheme.
pub(crate) fn uses_dpop(headers: &HeaderMap) -> bool {
    matches!(access_token(headers), Ok((Scheme::Dpop, _)))
}

/// The validator's DPoP settings.
#[derive(Clone)]
pub(crate) struct DpopValidation {
    pub(crate) rules: DpopRules,
    /// The external origin (`https://api.example.com`) the `htu` of proofs
    /// names. Without one, DPoP requests are refused, unless
    /// `origin_from_request` is set.
    pub(crate) origin: Option<String>,
    /// Whether, without an origin, the request's own scheme and authority
    /// (else `http://` and its `Host`) stand for it: whoever sends the
    /// request chooses them.
    pub(crate) origin_from_request: bool,
    pub(crate) replay: Arc<dyn ErasedReplay>,
    /// Server nonces, when proofs must carry one (RFC 9449 §9).
    pub(crate) nonces: Option<DpopNonces>,
}

impl Default for DpopValidation {
    fn default() -> Self {
        Self {
            rules: DpopRules::default(),
            origin: None,
            origin_from_request: false,
            replay: Arc::new(MemoryReplayCache::new()),
            nonces: None,
        }
    }
}

impl DpopValidation {
    /// The proof of a `DPoP`-scheme request presenting `token`, checked
    /// against every rule but the binding and single use ([`confirm`](Self::confirm)).
    pub(crate) fn proof<B>(
        &self,
        request: &Request<B>,
        token: &str,
        now: u64,
    ) -> Result<DpopProof, AuthError> {
        let proof = proof_header(request.headers())
            .map_err(AuthError::InvalidDpopProof)?
            .ok_or(AuthError::InvalidDpopProof(DpopError::Missing))?;
        let htu = self
            .htu(request)
            .ok_or(AuthError::InvalidDpopProof(DpopError::UriMismatch))?;
        let expected = DpopRequest {
            method: request.method().as_str(),
            htu: &htu,
            access_token: Some(token),
            nonces: self.nonces.as_ref(),
        };
        self.rules
            .check(proof, &expected, now)
            .map_err(|error| match (error, &self.nonces) {
                (DpopError::UseNonce, Some(nonces)) => AuthError::UseDpopNonce {
                    nonce: Arc::from(nonces.issue(now)),
                },
                (error, _) => AuthError::InvalidDpopProof(error),
            })
    }

    /// This request's URI as a proof's `htu` must name it: the configured
    /// origin and the request's path. Without an origin, `None` (refused),
    /// unless the layer takes the origin from the request.
    fn htu<B>(&self, request: &Request<B>) -> Option<String> {
        let uri = request.uri();
        let path = uri.path();
        let url = match (&self.origin, uri.scheme_str(), uri.authority()) {
            (Some(origin), _, _) => format!("{origin}{path}"),
            (None, _, _) if !self.origin_from_request => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "a DPoP request was refused: the JwtValidateLayer has no dpop_origin \
                         (set it to this API's external origin, e.g. https://api.example.com)"
                    );
                });
                return None;
            }
            (None, Some(scheme), Some(authority)) => format!("{scheme}://{authority}{path}"),
            (None, _, _) => {
                let host = request.headers().get(HOST)?.to_str().ok()?;
                format!("http://{host}{path}")
            }
        };
        normalize_htu(&url)
    }

    /// The token of `claims` is bound to the proof's key, and the proof is
    /// used for the first time.
    pub(crate) async fn confirm(
        &self,
        claims: &VerifiedClaims,
        proof: &DpopProof,
    ) -> Result<(), AuthError> {
        let jkt = claims
            .dpop_thumbprint()
            .ok_or(AuthError::UnboundDpopToken)?;
        if jkt != proof.thumbprint() {
            return Err(AuthError::InvalidDpopProof(DpopError::KeyMismatch));
        }
        match self
            .replay
            .first_use(&proof.replay_key(), proof.expires_at())
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(AuthError::InvalidDpopProof(DpopError::Replayed)),
            Err(error) => {
                tracing::warn!(%error, "the replay cache could not record a DPoP proof");
                Err(AuthError::ReplayCacheUnavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn schemes_are_case_insensitive() {
        assert_eq!(
            access_token(&headers("bearer abc")),
            Ok((Scheme::Bearer, "abc"))
        );
        assert_eq!(
            access_token(&headers("BEARER  abc")),
            Ok((Scheme::Bearer, "abc"))
        );
        assert_eq!(
            access_token(&headers("dpop abc")),
            Ok((Scheme::Dpop, "abc"))
        );
        assert_eq!(
            access_token(&headers("DPoP abc")),
            Ok((Scheme::Dpop, "abc"))
        );
    }

    #[test]
    fn other_schemes_count_as_no_token() {
        assert_eq!(
            access_token(&headers("Basic YTpi")),
            Err(AuthError::UnsupportedScheme)
        );
        assert_eq!(
            access_token(&headers("Bearerabc")),
            Err(AuthError::UnsupportedScheme)
        );
        assert_eq!(
            access_token(&HeaderMap::new()),
            Err(AuthError::MissingToken)
        );
    }

    #[test]
    fn empty_token_is_invalid_request() {
        for value in ["Bearer ", "Bearer", "DPoP "] {
            assert!(
                matches!(
                    access_token(&headers(value)),
                    Err(AuthError::InvalidRequest(_))
                ),
                "{value}"
            );
        }
    }
}
