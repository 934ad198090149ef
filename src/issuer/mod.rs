//! The issuer side: an OAuth2 token endpoint for machine-to-machine clients.
//!
//! [`TokenEndpointLayer`] wraps any tower service (an axum `Router`, a tonic
//! server, a hyper service). It answers `POST` on the token path with the
//! `client_credentials` grant (and `password`, treated the same, as authentik
//! does) and, for applications given [`TokenExchange`] rules, RFC 8693 token
//! exchange; `resource`/`audience` (RFC 8707) choose the token's `aud` among
//! the application's resources. It publishes each application's JWKS and
//! metadata, and passes every other request to the inner service untouched.
//!
//! Who a client is, is decided by a credential verifier: any
//! `tower::Service<ClientAuthentication, Response = Principal, Error = VerifyError>`.
//! [`StoreVerifier`] is the default, over a
//! [`CredentialStore`](crate::store::CredentialStore). Successful requests get
//! an RFC 6749 §5.1 JSON response with a signed JWT access token; failures an
//! RFC 6749 §5.2 error, which carries its [`TokenError`] in the response's
//! extensions for outer layers (logging, a custom error page) to read.
//!
//! # The pipeline
//!
//! A request to one of the endpoint's paths flows one way, one module per
//! stage:
//!
//! 1. **Read** (`request`): the form body under the size and time limits,
//!    HTTP Basic credentials, the client's address; before the body, the
//!    DPoP proof, if any, is checked (`dpop`, RFC 9449), and its `jti` spent
//!    once the client is authenticated, binding the token to its key.
//! 2. **Classify** (`classify`): the grant, and the one client
//!    authentication method the request uses (RFC 6749 §2.3).
//! 3. **Authenticate** (`authenticate`, shared by token, introspection and
//!    revocation): the attempt limiter, then the application named by
//!    `client_id`, then either
//!    - **federation** (`federation`): a token of a federated application is
//!      traded by the endpoint itself, before and independent of the
//!      verifier; or
//!    - **input JWTs** (`assertion`): checked against the application's
//!      trust rules (keys for the JWT's `iss`, dates, lifetime, audience,
//!      single use, policies), before and independent of the verifier, which
//!      gets them as a [`VerifiedAssertion`]; then
//!    - the **verifier** (`client_verifier`): [`StoreVerifier`] or yours
//!      answers only "who is this client".
//! 4. **Authorize** (`authorize`): the account's binding to the application,
//!    which narrows the scopes; no verifier can skip it.
//!    Then the token's audience (`resource`, RFC 8707) and, for the
//!    token-exchange grant, the **exchange** (`exchange`): the subject (and
//!    actor) token checked by the one routine for tokens this issuer minted
//!    (`minted`, shared with federation and introspection), the subject's
//!    account authorized, scope and `exp` bounded, `act` nested.
//! 5. **Mint** (`mint`): the signed access token, and the ID token.
//! 6. **Respond** (`response`): the RFC 6749 §5.1 body, or the §5.2 error.
//!
//! The `router` sends each path down its pipeline (`token`,
//! `introspection`, `metadata`, the JWKS); [`TokenEndpoint`] is the tower
//! service around it and [`TokenEndpointLayer`] its builder. Below every
//! stage sit `config` (keys, applications, paths, limits, checked when the
//! layer is built), `error` and `directory` (the stores as the endpoint sees
//! them). No two modules import each other.
//!
//! # Errors
//!
//! Each has one job: [`TokenError`] is what the endpoint answers (the one
//! place where an RFC 6749 §5.2 code and status are chosen), [`VerifyError`]
//! what a verifier returns (rejected, or could not decide), [`Rejection`]
//! why credentials were refused (for logs and audit events only), and
//! [`ConfigError`] a layer that cannot be built as asked.
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
mod authenticate;
mod authorize;
mod body;
mod classify;
mod client_verifier;
mod config;
mod credentials;
mod directory;
mod dpop;
mod error;
mod exchange;
mod exchange_rules;
mod federation;
mod future;
mod introspection;
mod layer;
mod metadata;
mod mint;
mod minted;
mod request;
mod resource;
mod response;
mod router;
mod service;
mod token;

pub use application::{Application, ApplicationError, SubjectMode};
pub use attempts::AttemptLimits;
pub use body::ResponseBody;
pub use client_verifier::StoreVerifier;
pub use credentials::{
    ClientAuthentication, Credentials, ExternalIdentity, GrantType, Principal, VerifiedAssertion,
};
pub use error::{ConfigError, Rejection, TokenError, VerifyError};
pub use exchange_rules::TokenExchange;
pub use future::ResponseFuture;
pub use layer::TokenEndpointLayer;
pub use service::TokenEndpoint;
