//! The credential verifier: a `tower::Service` that decides who a client is.
//!
//! The token endpoint delegates this decision to any
//! `Service<ClientAuthentication, Response = Principal, Error = VerifyError>`,
//! so an application can plug in its own. [`StoreVerifier`] is the default:
//! it follows authentik's rules over a [`CredentialStore`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use secrecy::ExposeSecret;
use tower_service::Service;

use super::assertion;
use super::{ClientAuthentication, Credentials, Principal};
use crate::keys::JwtError;
use crate::store::{CredentialStore, MemoryReplayCache, ReplayCache, StoreError, TokenDigest};

/// Why a client was not authenticated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The credentials do not authenticate anyone. Answered as
    /// `invalid_grant`; the reason goes to tracing only.
    #[error("credentials rejected: {0}")]
    Rejected(Rejection),
    /// The verifier could not decide (its store is down). Answered as
    /// `temporarily_unavailable` with status 503.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
    /// The keys that might verify an input JWT could not be fetched, and
    /// there is no earlier copy (fail closed). Answered as 503; the key
    /// source logs why.
    #[error("{}", JwtError::KeysUnavailable)]
    KeysUnavailable,
}

/// The precise reason credentials were rejected, for logs; the client is only
/// told `invalid_grant`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// No such account, or the account has no such app password.
    #[error("unknown account or app password")]
    UnknownCredentials,
    /// The account is disabled.
    #[error("account disabled")]
    AccountDisabled,
    /// The app password has expired.
    #[error("app password expired")]
    PasswordExpired,
    /// `client_secret` is neither the application's secret nor base64 of
    /// `username:token`.
    #[error("client secret is not base64(username:token)")]
    MalformedSecret,
    /// An input JWT did not verify (signature, dates, issuer, audience).
    #[error("input JWT rejected: {0}")]
    InvalidAssertion(JwtError),
    /// An input JWT was sent to an application that trusts no JWT issuer.
    #[error("the application trusts no input JWTs")]
    UntrustedAssertion,
    /// A single-use input JWT was replayed (or lacks a `jti`).
    #[error("input JWT replayed or without jti")]
    AssertionReplayed,
    /// A policy denied the input JWT.
    #[error("input JWT denied by policy")]
    PolicyDenied,
    /// The input JWT is valid for longer than the application accepts
    /// ([`Application::with_max_assertion_lifetime`](super::Application::with_max_assertion_lifetime)).
    #[error("input JWT lives longer than the application accepts")]
    AssertionLifetime,
    /// The account is not bound to the application (see
    /// [`Binding`](crate::store::Binding)).
    #[error("account not bound to the application")]
    NotBound,
    /// The account behind a traded token no longer exists (or its name now
    /// belongs to another account).
    #[error("the account behind the token no longer exists")]
    AccountRemoved,
    /// A token offered for a trade is not an access token (an ID token).
    #[error("not an access token")]
    NotAnAccessToken,
}

impl Rejection {
    /// The reason class, for metrics and audit events: the variant's name in
    /// snake case (`unknown_credentials`, `invalid_assertion`, `not_bound`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::UnknownCredentials => "unknown_credentials",
            Rejection::AccountDisabled => "account_disabled",
            Rejection::PasswordExpired => "password_expired",
            Rejection::MalformedSecret => "malformed_secret",
            Rejection::InvalidAssertion(_) => "invalid_assertion",
            Rejection::UntrustedAssertion => "untrusted_assertion",
            Rejection::AssertionReplayed => "assertion_replayed",
            Rejection::PolicyDenied => "policy_denied",
            Rejection::AssertionLifetime => "assertion_lifetime",
            Rejection::NotBound => "not_bound",
            Rejection::AccountRemoved => "account_removed",
            Rejection::NotAnAccessToken => "not_an_access_token",
        }
    }
}

impl From<Rejection> for VerifyError {
    fn from(rejection: Rejection) -> Self {
        VerifyError::Rejected(rejection)
    }
}

/// The default credential verifier, over a [`CredentialStore`].
///
/// It accepts every static form authentik accepts:
/// 1. `username` + `password` (an app-password token of that account);
/// 2. `client_secret` = base64(`username:token`);
/// 3. `client_secret` = the application's own secret, which authenticates as
///    its automatic service account.
///
/// A disabled account, an expired token or another account's token are
/// rejected. Secrets are compared as SHA-256 digests in constant time.
///
/// It also verifies input JWTs (client assertions) with the keys, policies
/// and rules configured on the application; single-use `jti`s are
/// remembered in a [`ReplayCache`] (in memory by default). A client that
/// authenticates with a JWT from an external issuer becomes an automatic
/// service account keyed on the JWT's (`iss`, `sub`), which the store
/// records on first use ([`CredentialStore::external_account`]; stores that
/// do not implement it record nothing): a disabled one is refused
/// ([`Rejection::AccountDisabled`]), and its stored username, never an
/// existing account's, names the client.
#[derive(Debug)]
pub struct StoreVerifier<S, R = MemoryReplayCache> {
    store: Arc<S>,
    replay: Arc<R>,
}

impl<S, R> Clone for StoreVerifier<S, R> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            replay: self.replay.clone(),
        }
    }
}

impl<S: CredentialStore> StoreVerifier<S> {
    /// A verifier that reads `store`, with an in-memory replay cache.
    pub fn new(store: S) -> Self {
        Self::shared(Arc::new(store))
    }

    /// A verifier over a store the endpoint shares.
    pub(crate) fn shared(store: Arc<S>) -> Self {
        Self {
            store,
            replay: Arc::new(MemoryReplayCache::new()),
        }
    }
}

impl<S: CredentialStore, R: ReplayCache> StoreVerifier<S, R> {
    /// Uses `replay` to remember single-use `jti`s (share one between
    /// instances to refuse replays across them).
    pub fn with_replay_cache<R2: ReplayCache>(self, replay: R2) -> StoreVerifier<S, R2> {
        StoreVerifier {
            store: self.store,
            replay: Arc::new(replay),
        }
    }

    /// The store it reads.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: CredentialStore, R: ReplayCache> Service<ClientAuthentication> for StoreVerifier<S, R> {
    type Response = Principal;
    type Error = VerifyError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, VerifyError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ClientAuthentication) -> Self::Future {
        let store = self.store.clone();
        let replay = self.replay.clone();
        Box::pin(async move { verify(&*store, &*replay, request).await })
    }
}

async fn verify<S: CredentialStore, R: ReplayCache>(
    store: &S,
    replay: &R,
    request: ClientAuthentication,
) -> Result<Principal, VerifyError> {
    match &request.credentials {
        // The JWT paths are boxed: their futures are large, and inlined they
        // would make every static-credential request allocate and move them.
        Credentials::Assertion(token) => {
            Box::pin(assertion::verify_request(&request, token, store, replay)).await
        }
        Credentials::Password { username, password } => {
            verify_app_password(store, username, password.expose_secret()).await
        }
        Credentials::ClientSecret(secret) => {
            let secret = secret.expose_secret();
            if request.application.client_secret_matches(secret) {
                return Ok(Principal::automatic(&request.application));
            }
            // A compact JWS in client_secret is an input JWT, for clients that
            // can only set a password; base64(username:token) has no dot.
            if assertion::is_compact_jws(secret) {
                return Box::pin(assertion::verify(&request, secret, store, replay)).await;
            }
            let decoded = decode_basic_secret(secret).ok_or(Rejection::MalformedSecret)?;
            let (username, token) = decoded.split_once(':').ok_or(Rejection::MalformedSecret)?;
            verify_app_password(store, username, token).await
        }
    }
}

/// base64 (standard alphabet, padding optional) of UTF-8 `username:token`.
fn decode_basic_secret(secret: &str) -> Option<String> {
    let bytes = STANDARD
        .decode(secret)
        .or_else(|_| STANDARD_NO_PAD.decode(secret))
        .ok()?;
    String::from_utf8(bytes).ok()
}

async fn verify_app_password<S: CredentialStore>(
    store: &S,
    username: &str,
    token: &str,
) -> Result<Principal, VerifyError> {
    // The digest is computed whether or not the account exists, so both
    // answers take the same time.
    let digest = TokenDigest::of(token);
    let credential = store
        .app_password(username, &digest)
        .await?
        .ok_or(Rejection::UnknownCredentials)?;
    let belongs = credential.password.digest == digest
        && credential.password.account_id == credential.account.id
        && credential.account.username == username;
    if !belongs {
        return Err(Rejection::UnknownCredentials.into());
    }
    if !credential.account.active {
        return Err(Rejection::AccountDisabled.into());
    }
    if credential
        .password
        .expires
        .is_some_and(|expires| expires <= SystemTime::now())
    {
        return Err(Rejection::PasswordExpired.into());
    }
    Ok(Principal::from(credential.account))
}
