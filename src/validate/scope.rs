//! Required scopes per route: [`RequireScopeLayer`], a small layer that
//! checks the claims [`JwtValidate`](super::JwtValidate) left in the
//! request, so one router can protect routes with different scopes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{AuthError, DefaultRejection, OnAuthError, SettingsError, VerifiedClaims};

/// Scopes a token must all carry.
#[derive(Debug, Clone)]
pub(crate) struct RequiredScopes {
    scopes: Arc<[String]>,
    /// Space-separated, for `WWW-Authenticate: … scope="…"`.
    joined: Arc<str>,
}

impl RequiredScopes {
    pub(crate) fn new<I>(scopes: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        for scope in &scopes {
            // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            let valid = !scope.is_empty()
                && scope
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
            if !valid {
                return Err(SettingsError::Scope(scope.clone()));
            }
        }
        Ok(Self {
            joined: Arc::from(scopes.join(" ")),
            scopes: Arc::from(scopes),
        })
    }

    #[inline]
    pub(crate) fn check(&self, claims: &VerifiedClaims) -> Result<(), AuthError> {
        if self.scopes.iter().all(|scope| claims.has_scope(scope)) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: self.joined.clone(),
            })
        }
    }
}

/// A layer that lets a request through only if its verified token carries
/// every one of some scopes: 403 `insufficient_scope` otherwise (gRPC: 7
/// `PERMISSION_DENIED`), and 401 for a request without verified claims.
///
/// Put it inside [`JwtValidateLayer`](super::JwtValidateLayer), per route:
///
/// ```
/// # #[cfg(feature = "axum")]
/// # fn router() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, routing::{get, post}};
/// use tower_m2m_auth::validate::{Issuer, JwtValidateLayer, RequireScopeLayer};
///
/// # let jwks = jsonwebtoken::jwk::JwkSet { keys: vec![] };
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "orders" }))
///     .route(
///         "/orders/new",
///         post(|| async { "created" }).layer(RequireScopeLayer::new(["orders:write"])?),
///     )
///     .layer(
///         JwtValidateLayer::new()
///             .issuer(Issuer::with_jwks("https://auth.example.com/application/o/app/", &jwks))
///             .audience("my-client")
///             .require_scopes(["orders:read"])?,
///     );
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RequireScopeLayer<R = DefaultRejection> {
    scopes: RequiredScopes,
    rejection: R,
}

impl RequireScopeLayer {
    /// Requires every scope of `scopes`; fails on a scope that is not an
    /// RFC 6749 scope token (empty, or with spaces, quotes or backslashes).
    pub fn new<I>(scopes: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Ok(Self {
            scopes: RequiredScopes::new(scopes)?,
            rejection: DefaultRejection::default(),
        })
    }

    /// The `realm` of the default rejection (see [`DefaultRejection::realm`]).
    pub fn realm(mut self, realm: &str) -> Result<Self, SettingsError> {
        self.rejection = self.rejection.realm(realm)?;
        Ok(self)
    }
}

impl<R> RequireScopeLayer<R> {
    /// Answers refused requests with `rejection` instead.
    pub fn with_rejection<T>(self, rejection: T) -> RequireScopeLayer<T> {
        RequireScopeLayer {
            scopes: self.scopes,
            rejection,
        }
    }
}

impl<S, R: Clone> Layer<S> for RequireScopeLayer<R> {
    type Service = RequireScope<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            scopes: self.scopes.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

/// Middleware that checks the scopes of the request's verified token. See
/// [`RequireScopeLayer`].
#[derive(Debug, Clone)]
pub struct RequireScope<S, R = DefaultRejection> {
    inner: S,
    scopes: RequiredScopes,
    rejection: R,
}

impl<S, R> RequireScope<S, R> {
    define_inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: OnAuthError<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequireScopeFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let verdict = match request.extensions().get::<VerifiedClaims>() {
            None => Err(AuthError::MissingToken),
            Some(claims) => self.scopes.check(claims),
        };
        match verdict {
            Ok(()) => RequireScopeFuture::inner(self.inner.call(request)),
            Err(error) => {
                let mut response = self.rejection.on_auth_error(&error, request.headers());
                response.extensions_mut().insert(error);
                RequireScopeFuture::rejected(response)
            }
        }
    }
}

pin_project! {
    /// Response future of [`RequireScope`].
    pub struct RequireScopeFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<B>> },
    }
}

impl<F, B> RequireScopeFuture<F, B> {
    fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn rejected(response: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for RequireScopeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => Poll::Ready(ready!(future.poll(cx))),
            KindProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("RequireScopeFuture polled after completion"))),
        }
    }
}
