//! The floor of `scripts/load/served.py`: what a request costs on this
//! machine before any OAuth work, over the example server's own connection
//! handling (`support/connections.rs`), so that the benchmark can say how
//! much of a token request is the library's.
//!
//! ```text
//! cargo run --release --example floor -- --listen 127.0.0.1:19360
//! curl http://127.0.0.1:19360/hello                    # the floor: a hello
//! TOKEN=$(curl -s -X POST http://127.0.0.1:19360/sign) # the floor + one raw ES256 signature
//! curl http://127.0.0.1:19360/verify -H "Authorization: Bearer $TOKEN"  # + one raw verify
//! ```
//!
//! `/sign` signs a JWT-sized input with a P-256 key made at start, `/verify`
//! checks a compact JWS of `/sign` with the public key parsed once: the
//! crypto ceiling of a token endpoint and of a validator, with nothing else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    ParsedPublicKey,
};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use http::{StatusCode, header};
use tokio::net::TcpListener;

#[path = "support/connections.rs"]
mod connections;

#[derive(Parser)]
#[command(about = "A hello server: the floor of the served-path benchmark")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:19360")]
    listen: SocketAddr,
    /// Serve with `axum::serve` (as `examples/downstream` does) instead of the
    /// example server's connection handling.
    #[arg(long)]
    axum_serve: bool,
}

/// The key and the counter that makes each signed input unique.
struct Crypto {
    key: EcdsaKeyPair,
    public: ParsedPublicKey,
    rng: SystemRandom,
    counter: AtomicU64,
}

impl Crypto {
    fn new() -> Self {
        let key =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("a fresh P-256 key");
        let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref())
            .expect("its own public key parses");
        Self {
            key,
            public,
            rng: SystemRandom::new(),
            counter: AtomicU64::new(0),
        }
    }

    /// A compact JWS of a token-sized payload, unique per call.
    fn sign(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"at+jwt","kid":"floor"}"#);
        let payload = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"http://127.0.0.1/application/o/floor/","sub":"floor","aud":"floor","exp":4102444800,"iat":1700000000,"jti":"floor-{n}","client_id":"floor","scope":"read"}}"#
        ));
        let input = format!("{header}.{payload}");
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .expect("signing never fails");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    /// Whether `token` is a compact JWS that this key signed.
    fn verify(&self, token: &str) -> bool {
        let Some((input, signature)) = token.rsplit_once('.') else {
            return false;
        };
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        self.public.verify_sig(input.as_bytes(), &signature).is_ok()
    }
}

fn answer(status: StatusCode, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body.into())
        .expect("a valid response")
}

fn route(crypto: &Crypto, request: &Request) -> Response {
    match request.uri().path() {
        "/hello" => answer(StatusCode::OK, "hello\n"),
        "/sign" => answer(StatusCode::OK, crypto.sign()),
        "/verify" => {
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "));
            match token {
                Some(token) if crypto.verify(token) => answer(StatusCode::OK, "hello\n"),
                _ => answer(StatusCode::UNAUTHORIZED, ""),
            }
        }
        _ => answer(StatusCode::NOT_FOUND, ""),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let crypto = Arc::new(Crypto::new());
    let app = tower::service_fn(move |request: Request| {
        let response = route(&crypto, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let listener = TcpListener::bind(args.listen).await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if args.axum_serve {
        axum::serve(
            listener,
            axum::ServiceExt::<Request>::into_make_service(app),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
    } else {
        // The example server's limits, at their defaults.
        let limits = connections::ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(5),
        };
        connections::serve(listener, app, limits, shutdown).await;
    }
    Ok(())
}
