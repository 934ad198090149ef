//! The issuer side: an OAuth2 token endpoint for machine-to-machine clients.
//!
//! [`TokenEndpointLayer`] wraps any tower service (an axum `Router`, a tonic
//! server, a hyper service). It answers `POST` on the token path with the
//! `client_credentials` grant (and `password`, treated the same, as authentik
//! does), publishes each application's JWKS and metadata, and passes every
//! other request to the inner service untouched.
//!
//! Who a client is, is decided by a credential verifier: any
//! `tower::Service<ClientAuthentication, Response = Principal, Error = VerifyError>`.
//! [`StoreVerifier`] is the default, over a
//! [`CredentialStore`](crate::store::CredentialStore). Successful requests get
//! an RFC 6749 §5.1 JSON response with a signed JWT access token; failures an
//! RFC 6749 §5.2 error.
//!
//! ```
//! use http::{Request, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use bytes::Bytes;
//! use jsonwebtoken::Algorithm;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_m2m_auth::issuer::{Application, TokenEndpointLayer};
//! use tower_m2m_auth::keys::{KeyRing, SigningKey};
//! use tower_m2m_auth::store::{AppPassword, Binding, MemoryStore, ServiceAccount};
//! # use secrecy::ExposeSecret;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A service account with one app-password token.
//! let store = MemoryStore::new();
//! let account = ServiceAccount::new("deployer");
//! let (token, password) = AppPassword::generate(&account.id);
//! store.insert_account(account);
//! store.insert_app_password(password);
//!
//! // It may get tokens (with scope `read`) at the application `my-client`.
//! store.bind("deployer", Binding::new("my-client", ["read"]));
//!
//! let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256)?);
//! let layer = TokenEndpointLayer::new("https://auth.example.com", keys, store)?
//!     .application(Application::new("my-client", "my-app").with_allowed_scopes(["read"]))?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("inner"))))
//!     }));
//!
//! let body = format!(
//!     "grant_type=client_credentials&client_id=my-client&username=deployer&password={}&scope=read",
//!     token.expose_secret()
//! );
//! let request = Request::post("/application/o/token/")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(Full::new(Bytes::from(body)))?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! let json: serde_json::Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
//! assert_eq!(json["token_type"], "Bearer");
//! assert_eq!(json["scope"], "read");
//!
//! // Every other path reaches the inner service.
//! let response = service.oneshot(Request::get("/api").body(Full::default())?).await?;
//! assert_eq!(response.into_body().collect().await?.to_bytes(), "inner");
//! # Ok(())
//! # }
//! ```

mod application;
mod assertion;
mod attempts;
mod authorize;
mod body;
mod claims;
mod credentials;
mod directory;
mod endpoint;
mod error;
mod federation;
mod future;
mod introspection;
mod layer;
mod metadata;
mod request;
mod response;
mod service;
mod verifier;

pub use application::{Application, ApplicationError, SubjectMode};
pub use attempts::AttemptLimits;
pub use body::ResponseBody;
pub use credentials::{ClientAuthentication, Credentials, ExternalIdentity, GrantType, Principal};
pub use error::TokenError;
pub use future::ResponseFuture;
pub use layer::{ConfigError, TokenEndpointLayer};
pub use service::TokenEndpoint;
pub use verifier::{Rejection, StoreVerifier, VerifyError};
