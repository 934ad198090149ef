//! What the benchmarks share: the endpoint around an inner service, and one
//! timed token request through it.

use std::convert::Infallible;

use bytes::Bytes;
use criterion::BatchSize;
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, service_fn};
use tower_m2m_auth::issuer::{StoreVerifier, TokenEndpointLayer};
use tower_m2m_auth::store::CredentialStore;

/// A fresh ES256 signing key as PKCS#8 PEM (parsed by each layer the
/// benchmark builds, and by the raw floors).
pub fn es256_pem() -> String {
    tower_m2m_auth::keys::SigningKey::generate(tower_m2m_auth::keys::Algorithm::ES256)
        .unwrap()
        .to_pkcs8_pem()
        .unwrap()
}

/// The layer around an inner service that answers every other path.
pub fn endpoint<S: CredentialStore>(
    layer: TokenEndpointLayer<StoreVerifier<S>>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Error = Infallible>>,
    Error = Infallible,
> {
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }))
}

/// Benchmarks one token request with `body` through `service`. Building the
/// request is the caller's cost, not the layer's, so it is not timed.
pub fn bench_request<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    service: &mut S,
    body: Bytes,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Error = Infallible>,
{
    let make_request = || {
        Request::post("/application/o/token/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(body.clone()))
            .unwrap()
    };
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            make_request,
            |request| {
                let call = ready_call(service, request);
                async move {
                    let response = call.await.unwrap();
                    assert_eq!(response.status(), 200);
                    response.into_body().collect().await.unwrap().to_bytes()
                }
            },
            BatchSize::SmallInput,
        )
    });
}

/// Calls an always-ready service without cloning it.
fn ready_call<S: Service<R>, R>(service: &mut S, request: R) -> S::Future {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        service.poll_ready(&mut cx).is_ready(),
        "the endpoint is always ready"
    );
    service.call(request)
}
