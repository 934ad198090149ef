//! The response future of [`JwtValidate`](super::JwtValidate).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::OnAuthError;
use super::response::reject;
use super::verify::{Config, VerifyFuture, authorize};
use super::watch::Watch;

pin_project! {
    /// Response future of [`JwtValidate`](super::JwtValidate): the token's
    /// verification (when it was not cached), then the inner service's
    /// response, or the rejection.
    pub struct ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        Verifying {
            verify: VerifyFuture,
            pending: Option<Pending<S, ReqBody, R>>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
        Rejected {
            response: Option<S::Response>,
        },
    }
}

/// What the future holds while the token is being verified.
struct Pending<S, ReqBody, R> {
    request: Request<ReqBody>,
    inner: S,
    config: Arc<Config>,
    rejection: R,
    watch: Option<Watch>,
}

impl<S, ReqBody, R> ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn inner(future: S::Future) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    pub(crate) fn rejected(response: S::Response) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn verifying(
        verify: VerifyFuture,
        request: Request<ReqBody>,
        inner: S,
        config: Arc<Config>,
        rejection: R,
        watch: Option<Watch>,
    ) -> Self {
        Self {
            state: State::Verifying {
                verify,
                pending: Some(Pending {
                    request,
                    inner,
                    config,
                    rejection,
                    watch,
                }),
            },
        }
    }
}

impl<S, ReqBody, R, ResBody> Future for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: OnAuthError<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Verifying { verify, pending } => {
                    let verified = ready!(verify.as_mut().poll(cx));
                    let Pending {
                        request,
                        mut inner,
                        config,
                        mut rejection,
                        watch,
                    } = pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let authorized = verified
                        .map_err(|error| reject(&mut rejection, error, &request))
                        .and_then(|claims| authorize(&config, &mut rejection, request, claims));
                    match authorized {
                        Ok(request) => {
                            if let Some(watch) = watch {
                                watch.passed(&request);
                            }
                            this.state.set(State::Inner {
                                future: inner.call(request),
                            });
                        }
                        Err(response) => {
                            if let Some(watch) = watch {
                                watch.refused(&response);
                            }
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
            }
        }
    }
}
