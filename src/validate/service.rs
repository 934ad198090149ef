//! The [`JwtValidate`] service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;
use tracing::Instrument as _;

use super::cache;
use super::dpop::{Scheme, access_token};
use super::response::reject;
use super::verify::{Config, VerifyFuture, authorize};
use super::watch::Watch;
use super::{AuthError, DefaultRejection, JwtValidateLayer, OnAuthError, ResponseFuture};

/// Middleware that verifies the request's bearer token and passes the
/// request, with its [`VerifiedClaims`](super::VerifiedClaims) in the extensions, to the inner
/// service; refused requests get the rejection's response and never reach
/// it.
///
/// See the [module docs](crate::validate) for an example.
#[derive(Clone)]
pub struct JwtValidate<S, R = DefaultRejection> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) rejection: R,
}

impl<S, R: Clone> JwtValidate<S, R> {
    /// Wraps `inner` with the checks that `layer` describes.
    pub fn new(inner: S, layer: &JwtValidateLayer<R>) -> Self {
        Self {
            inner,
            config: layer.config.clone(),
            rejection: layer.rejection.clone(),
        }
    }
}

impl<S, R> JwtValidate<S, R> {
    define_inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for JwtValidate<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    R: OnAuthError<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let watch = Watch::start(&self.config);
        let (scheme, token) = match access_token(request.headers()) {
            Ok(found) => found,
            Err(AuthError::MissingToken | AuthError::UnsupportedScheme)
                if self.config.allow_missing =>
            {
                if let Some(watch) = watch {
                    watch.passed(&request);
                }
                return ResponseFuture::inner(self.inner.call(request));
            }
            Err(error) => return self.refuse(error, &request, watch),
        };
        let (cached, hash) = self.config.cached(token);
        if let (Some(watch), Some(_)) = (&watch, &self.config.cache) {
            watch.cache_hit(cached.is_some());
        }
        if scheme == Scheme::Dpop {
            // The proof is checked here; the binding and its single use once
            // the token is verified (RFC 9449 §7.1).
            let proof = match self.config.dpop.proof(&request, token, cache::now()) {
                Ok(proof) => proof,
                Err(error) => return self.refuse(error, &request, watch),
            };
            let config = self.config.clone();
            let token = token.to_owned();
            let verification = async move {
                let claims = match cached {
                    Some(claims) => claims,
                    None => config.clone().verify(token, hash).await?,
                };
                config.dpop.confirm(&claims, &proof).await?;
                Ok(claims)
            };
            return self.verifying(Box::pin(verification), request, watch);
        }
        if let Some(claims) = cached {
            return match authorize(&self.config, &mut self.rejection, request, claims) {
                Ok(request) => {
                    if let Some(watch) = watch {
                        watch.passed(&request);
                    }
                    ResponseFuture::inner(self.inner.call(request))
                }
                Err(response) => {
                    if let Some(watch) = watch {
                        watch.refused(&response);
                    }
                    ResponseFuture::rejected(response)
                }
            };
        }
        let verification = self.config.clone().verify(token.to_owned(), hash);
        self.verifying(Box::pin(verification), request, watch)
    }
}

impl<S, R> JwtValidate<S, R>
where
    R: Clone,
{
    /// Refuses `request` with `error`.
    fn refuse<ReqBody, ResBody>(
        &mut self,
        error: AuthError,
        request: &Request<ReqBody>,
        watch: Option<Watch>,
    ) -> ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        R: OnAuthError<ResBody>,
    {
        let response = reject(&mut self.rejection, error, request);
        if let Some(watch) = watch {
            watch.refused(&response);
        }
        ResponseFuture::rejected(response)
    }

    /// Awaits `verification`, then calls the inner service or refuses.
    fn verifying<ReqBody>(
        &mut self,
        verification: VerifyFuture,
        request: Request<ReqBody>,
        watch: Option<Watch>,
    ) -> ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>> + Clone,
    {
        // The signature check may await a JWKS refresh: hand the service
        // that was driven to readiness to the future, keep a clone
        // (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
        let verify: VerifyFuture = match &watch {
            Some(watch) => Box::pin(verification.instrument(watch.span())),
            None => verification,
        };
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::verifying(
            verify,
            request,
            inner,
            self.config.clone(),
            self.rejection.clone(),
            watch,
        )
    }
}
