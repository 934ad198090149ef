//! The [`TokenEndpoint`] service: the tower plumbing around the router.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use super::body::ResponseBody;
use super::config::EndpointConfig;
use super::credentials::{ClientAuthentication, Principal};
use super::error::VerifyError;
use super::future::ResponseFuture;
use super::layer::TokenEndpointLayer;
use super::request::BoxError;
use super::router;

/// Middleware that answers the token endpoint, JWKS and metadata paths and
/// passes every other request to the inner service untouched.
///
/// See the [module docs](crate::issuer) for an example.
#[derive(Clone)]
pub struct TokenEndpoint<S, V> {
    pub(crate) inner: S,
    pub(crate) verifier: V,
    pub(crate) config: Arc<EndpointConfig>,
}

impl<S, V> TokenEndpoint<S, V> {
    /// Wraps `inner` with the endpoint that `layer` describes.
    pub fn new(inner: S, layer: &TokenEndpointLayer<V>) -> Self
    where
        V: Clone,
    {
        Self {
            inner,
            verifier: layer.verifier.clone(),
            config: layer.config.clone(),
        }
    }

    define_inner_service_accessors!();
}

impl<S, V: Clone> Layer<S> for TokenEndpointLayer<V> {
    type Service = TokenEndpoint<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenEndpoint::new(inner, self)
    }
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for TokenEndpoint<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>
        + Clone
        + Send
        + 'static,
    V::Future: Send,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.config.route(request.uri().path()) {
            None => ResponseFuture::inner(self.inner.call(request)),
            Some(route) => {
                // Created here, so that it is a child of the caller's span
                // (tower-http's `TraceLayer`, say).
                let span = if self.config.instrument {
                    self.config.span(route)
                } else {
                    tracing::Span::none()
                };
                ResponseFuture::endpoint(Box::pin(
                    router::handle(
                        self.config.clone(),
                        route.clone(),
                        self.verifier.clone(),
                        request,
                    )
                    .instrument(span),
                ))
            }
        }
    }
}
