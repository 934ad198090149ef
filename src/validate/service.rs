//! The [`JwtValidate`] service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;
use tracing::Instrument as _;

use super::response::reject;
use super::verify::{Config, VerifyFuture, authorize, bearer_token};
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
        let token = match bearer_token(request.headers()) {
            Ok(token) => token,
            Err(AuthError::MissingToken | AuthError::UnsupportedScheme)
                if self.config.allow_missing =>
            {
                if let Some(watch) = watch {
                    watch.passed(&request);
                }
                return ResponseFuture::inner(self.inner.call(request));
            }
            Err(error) => {
                let response = reject(&mut self.rejection, error, &request);
                if let Some(watch) = watch {
                    watch.refused(&response);
                }
                return ResponseFuture::rejected(response);
            }
        };
        let (cached, hash) = self.config.cached(token);
        if let (Some(watch), Some(_)) = (&watch, &self.config.cache) {
            watch.cache_hit(cached.is_some());
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
        // The signature check may await a JWKS refresh: hand the service
        // that was driven to readiness to the future, keep a clone
        // (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
        let verification = self.config.clone().verify(token.to_owned(), hash);
        let verify: VerifyFuture = match &watch {
            Some(watch) => Box::pin(verification.instrument(watch.span())),
            None => Box::pin(verification),
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
