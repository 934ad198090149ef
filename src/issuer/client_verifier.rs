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
use super::credentials::{ClientAuthentication, Credentials, Principal};
use super::error::{Rejection, VerifyError};
use crate::store::{CredentialStore, MemoryReplayCache, ReplayCache, TokenDigest};

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
