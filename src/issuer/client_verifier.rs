//! The credential verifier: a `tower::Service` that decides who a client is.
//!
//! The token endpoint delegates this decision to any
//! `Service<ClientAuthentication, Response = Principal, Error = VerifyError>`,
//! so an application can plug in its own. It is asked only "who is this
//! client": input JWTs reach it verified already (`assertion`), federated
//! tokens never (`federation`), and the account's binding is checked after
//! it (`authorize`). [`StoreVerifier`] is the default: it follows
//! authentik's rules over a [`CredentialStore`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use secrecy::ExposeSecret;
use tower_service::Service;

use super::application::Application;
use super::credentials::{ClientAuthentication, Credentials, Principal, VerifiedAssertion};
use super::directory::Directory;
use super::error::{Rejection, VerifyError};
use crate::store::{CredentialStore, ExternalAccount, TokenDigest};

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
/// An input JWT, which the endpoint has verified already, stands for an
/// automatic service account keyed on the JWT's (`iss`, `sub`)
/// ([`VerifiedAssertion::principal`]), which the store records on first use
/// ([`CredentialStore::external_account`]; stores that do not implement it
/// record nothing): a disabled one is refused ([`Rejection::AccountDisabled`]),
/// and its stored username, never an existing account's, names the client.
#[derive(Debug)]
pub struct StoreVerifier<S> {
    store: Arc<S>,
}

impl<S> Clone for StoreVerifier<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
        }
    }
}

impl<S: CredentialStore> StoreVerifier<S> {
    /// A verifier that reads `store`.
    pub fn new(store: S) -> Self {
        Self::shared(Arc::new(store))
    }

    /// A verifier over a store the endpoint shares.
    pub(crate) fn shared(store: Arc<S>) -> Self {
        Self { store }
    }

    /// The store it reads.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: CredentialStore> Service<ClientAuthentication> for StoreVerifier<S> {
    type Response = Principal;
    type Error = VerifyError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, VerifyError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ClientAuthentication) -> Self::Future {
        let store = self.store.clone();
        Box::pin(async move { verify(&*store, request).await })
    }
}

async fn verify<S: CredentialStore>(
    store: &S,
    request: ClientAuthentication,
) -> Result<Principal, VerifyError> {
    match &request.credentials {
        // Boxed: its future is large, and inlined it would make every
        // static-credential request allocate and move it.
        Credentials::Assertion(assertion) => {
            Box::pin(external_account(store, &request.application, assertion)).await
        }
        Credentials::Password { username, password } => {
            verify_app_password(store, username, password.expose_secret()).await
        }
        Credentials::ClientSecret(secret) => {
            let secret = secret.expose_secret();
            if request.application.client_secret_matches(secret) {
                return Ok(Principal::automatic(&request.application));
            }
            let decoded = decode_basic_secret(secret).ok_or(Rejection::MalformedSecret)?;
            let (username, token) = decoded.split_once(':').ok_or(Rejection::MalformedSecret)?;
            verify_app_password(store, username, token).await
        }
    }
}

/// The account a verified input JWT stands for, as `store` records it (the
/// verifier's answer for a client assertion, and token exchange's for a JWT
/// subject token).
pub(crate) async fn external_account<S: Directory + ?Sized>(
    store: &S,
    application: &Application,
    assertion: &VerifiedAssertion,
) -> Result<Principal, VerifyError> {
    let mut principal = assertion.principal(application);
    let identity = &assertion.identity;
    let account = ExternalAccount::new(&identity.issuer, &identity.subject, &principal.username)
        .with_name(&principal.name)
        .with_expires(Some(assertion.expires));
    debug_assert_eq!((&account.id, account.uuid), (&principal.id, principal.uuid));
    match store.external_account(&account).await? {
        Some(stored) => {
            if !stored.active {
                return Err(Rejection::AccountDisabled.into());
            }
            // The id and UUID stay derived from (iss, sub).
            principal.username = stored.username;
            principal.name = stored.name;
        }
        // A store that records no identity cannot keep the name from
        // another account's (a stored account's, an automatic account's, in
        // the `Username` subject mode their `sub`): the name that is this
        // identity's alone.
        None => principal.username = account.disambiguated_username(),
    }
    Ok(principal)
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
