//! The downstream side: protect an API with the issuer's tokens.
//!
//! [`JwtValidateLayer`] wraps any tower service (an axum `Router`, a tonic
//! server, a hyper service) and lets a request through only with a valid
//! `Authorization: Bearer <token>` (RFC 6750 §2.1). It verifies tokens
//! locally, without calling the issuer on each request:
//!
//! - **Issuer by `iss`.** Several [`Issuer`]s at once; a token is verified
//!   with the keys of the issuer its `iss` names, and no other. Keys are
//!   static (PEM public keys, certificates, JWKS), the issuer's JWKS URL,
//!   found from the issuer URL by OpenID discovery, or any mix of them: an
//!   [`Issuer`] wraps a [`TrustedIssuer`](crate::keys::TrustedIssuer), the
//!   key source the token endpoint uses for input JWTs, and verifies through
//!   the same routine. Remote keys are read without locking, swapped
//!   atomically, cached, refreshed (rate-limited) on an unknown `kid`, served
//!   from the last good copy while the source is down, and fail closed when
//!   there never was one.
//! - **Checks** (RFC 8725, RFC 9068): the signature, with an algorithm
//!   allow-list and each key's own list (no `none`, no key confusion);
//!   `exp` and `nbf` with a leeway; `iss`, `aud` (one of a configured set)
//!   and `exp` *required*, not merely checked when present; `typ: at+jwt`
//!   required, so an ID token never passes as an access token (plain JWTs
//!   with an access-token claim only behind
//!   [`allow_untyped_access_tokens`](JwtValidateLayer::allow_untyped_access_tokens),
//!   for authentik-style issuers); required scopes, for all routes or per
//!   route ([`RequireScopeLayer`]).
//! - **Claims** go into the request's extensions as [`VerifiedClaims`]; the
//!   axum extractor [`Claims<T>`] (feature `axum`) deserializes them into
//!   any `T: DeserializeOwned`.
//! - **Rejections** follow RFC 6750 §3 (`WWW-Authenticate: Bearer realm=…`,
//!   `error="invalid_token"`, `error="insufficient_scope"`); gRPC requests
//!   get a gRPC status (`UNAUTHENTICATED`, `PERMISSION_DENIED`) instead. The
//!   response is pluggable ([`OnAuthError`], or a closure), and the
//!   [`AuthError`] is attached to its extensions.
//! - **A verified-token cache** (on by default, bounded in entries and
//!   bytes, keyed by the token's SHA-256, never past `exp`) lets repeated
//!   tokens skip the signature check.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use jsonwebtoken::Algorithm;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_m2m_auth::keys::{KeyRing, SigningKey};
//! use tower_m2m_auth::validate::{Issuer, JwtValidateLayer, VerifiedClaims};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The issuer's keys. Here an inline JWKS; usually its JWKS URL
//! // (`Issuer::with_jwks_url`) or its URL alone (`Issuer::discover`).
//! let iss = "https://auth.example.com/application/o/app/";
//! let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256)?);
//!
//! let service = ServiceBuilder::new()
//!     .layer(
//!         JwtValidateLayer::new()
//!             .issuer(Issuer::with_jwks(iss, &ring.jwks()))
//!             .audience("my-client")
//!             .require_scopes(["read"])?,
//!     )
//!     .service(service_fn(|request: Request<Full<Bytes>>| async move {
//!         let claims = request.extensions().get::<VerifiedClaims>().unwrap();
//!         let body = format!("hello {}", claims.subject().unwrap_or("?"));
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
//!     }));
//!
//! // No token: 401 with a Bearer challenge.
//! let response = service.clone().oneshot(Request::new(Full::default())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="api""#);
//!
//! // A valid token: the handler runs and sees the claims.
//! let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 60;
//! let claims = serde_json::json!({
//!     "iss": iss, "aud": "my-client", "sub": "deployer", "exp": exp, "scope": "read write",
//! });
//! let token = ring.active().sign_jwt(Some("at+jwt"), &claims)?;
//! let request = Request::builder()
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Full::default())?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // A token of another audience: 401 invalid_token.
//! let claims = serde_json::json!({"iss": iss, "aud": "someone-else", "exp": exp, "scope": "read"});
//! let token = ring.active().sign_jwt(Some("at+jwt"), &claims)?;
//! let request = Request::builder()
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Full::default())?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert!(response.headers()["www-authenticate"].to_str()?.contains(r#"error="invalid_token""#));
//!
//! // An ID token (`typ: JWT`) of the right issuer and audience: refused too.
//! let claims = serde_json::json!({"iss": iss, "aud": "my-client", "sub": "deployer", "exp": exp});
//! let token = ring.active().sign_jwt(Some("JWT"), &claims)?;
//! let request = Request::builder()
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Full::default())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```
//!
//! # axum
//!
//! With the `axum` feature, handlers take [`Claims<T>`] (or
//! [`VerifiedClaims`], or `Option` of either):
//!
//! ```
//! # #[cfg(all(feature = "axum", feature = "reqwest"))]
//! # mod example {
//! use axum::{Router, routing::get};
//! use serde::Deserialize;
//! use tower_m2m_auth::validate::{Claims, Issuer, JwtValidateLayer};
//!
//! #[derive(Deserialize)]
//! struct AccessToken {
//!     sub: String,
//!     scope: String,
//! }
//!
//! async fn hello(Claims(token): Claims<AccessToken>) -> String {
//!     format!("hello {}, you may {}", token.sub, token.scope)
//! }
//!
//! fn app() -> Router {
//!     let iss = "https://auth.example.com/application/o/my-app/";
//!     Router::new().route("/api/hello", get(hello)).layer(
//!         JwtValidateLayer::new()
//!             .issuer(Issuer::with_jwks_url(iss, "https://auth.example.com/application/o/my-app/jwks/"))
//!             .audience("my-client"),
//!     )
//! }
//! # }
//! ```
//!
//! # tonic
//!
//! The layer goes on the server (`Server::builder().layer(layer)`); the
//! gRPC client sends `authorization: Bearer <token>` metadata. A service
//! method reads the claims from the request's extensions, which tonic
//! carries over from the HTTP request:
//!
//! ```
//! use tower_m2m_auth::validate::VerifiedClaims;
//!
//! /// In a tonic service method: who is calling?
//! fn caller<T>(request: &tonic::Request<T>) -> Result<String, tonic::Status> {
//!     let claims = request
//!         .extensions()
//!         .get::<VerifiedClaims>()
//!         .ok_or_else(|| tonic::Status::unauthenticated("no verified token"))?;
//!     if !claims.has_scope("read") {
//!         return Err(tonic::Status::permission_denied("scope read required"));
//!     }
//!     // Or the whole claims set as your own type: claims.deserialize::<MyClaims>()
//!     Ok(claims.subject().unwrap_or_default().to_owned())
//! }
//! ```
//!
//! `examples/grpc.rs` runs `tonic-health` behind the layer.
//!
//! # Response bodies
//!
//! The middleware keeps the inner service's response type, `Response<B>`,
//! and builds its rejections with `B::default()`: an empty body, which is
//! all RFC 6750 and gRPC's trailers-only responses need. axum's and tonic's
//! bodies, `Full`, `Empty` and the boxed bodies of `http-body-util` are all
//! `Default`. A custom [`OnAuthError`] can write a body of its own of that
//! same type (e.g. JSON into an axum `Body`).
//!
//! # Security notes
//!
//! - A cached token is accepted until the earlier of its `exp` and
//!   [`token_cache_max_ttl`](JwtValidateLayer::token_cache_max_ttl) (5
//!   minutes) after its first verification, even if the issuer withdraws
//!   its key from the JWKS meanwhile.
//! - Tokens are read from the `Authorization` header only (never the query
//!   string, RFC 6750 §2.3), and never logged.
//! - CORS preflight requests carry no token: put a CORS layer *outside* this
//!   one if browsers call the API.

mod cache;
mod dpop;
mod error;
mod extract;
mod future;
mod layer;
mod response;
mod scope;
mod service;
mod trusted;
mod verify;
mod watch;

pub use error::AuthError;
#[cfg(feature = "axum")]
pub use extract::ClaimsRejection;
pub use extract::{Claims, VerifiedClaims};
pub use future::ResponseFuture;
pub use layer::{JwtValidateLayer, SettingsError};
pub use response::{DefaultRejection, OnAuthError, grpc_response, is_grpc};
pub use scope::{RequireScope, RequireScopeFuture, RequireScopeLayer};
pub use service::JwtValidate;
pub use trusted::Issuer;
