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
    bench_requests(group, runtime, name, service, || {
        token_request(body.clone())
    });
}

/// A token request with `body`.
pub fn token_request(body: Bytes) -> Request<Full<Bytes>> {
    Request::post("/application/o/token/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(body))
        .unwrap()
}

/// Benchmarks the requests `make_request` builds (untimed) through `service`.
pub fn bench_requests<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    service: &mut S,
    mut make_request: impl FnMut() -> Request<Full<Bytes>>,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Error = Infallible>,
{
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            &mut make_request,
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

/// A DPoP client key (ES256) that signs proofs (RFC 9449 §4.2); the stores
/// benchmark has no use for it.
#[allow(dead_code)]
pub struct DpopSigner {
    encoding: jsonwebtoken::EncodingKey,
    header: String,
}

#[allow(dead_code)]
impl DpopSigner {
    /// A fresh key; its public JWK goes into every proof's header.
    pub fn new() -> (Self, tower_m2m_auth::keys::SigningKey) {
        use base64::Engine as _;
        let key =
            tower_m2m_auth::keys::SigningKey::generate(tower_m2m_auth::keys::Algorithm::ES256)
                .unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        let encoding = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let header =
            serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()});
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
        (Self { encoding, header }, key)
    }

    /// A fresh proof for `htm` `htu` (and `token`).
    pub fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        use base64::Engine as _;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = serde_json::json!({
            "jti": uuid::Uuid::new_v4().to_string(), "htm": htm, "htu": htu, "iat": now,
        });
        if let Some(token) = token {
            claims["ath"] = tower_m2m_auth::keys::dpop::token_hash(token).into();
        }
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        let message = format!("{}.{claims}", self.header);
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &self.encoding,
            jsonwebtoken::Algorithm::ES256,
        )
        .unwrap();
        format!("{message}.{signature}")
    }
}
