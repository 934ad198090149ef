//! Authorization: whether the account a client authenticated as may get a
//! token at the application it named, and with which scopes.
//!
//! Runs in the endpoint after client authentication, whatever verifier
//! answered "who is this client":
//!
//! | account | signed in with its own credentials | traded from a federated application |
//! |---|---|---|
//! | the application's automatic account | yes | — (never another application's) |
//! | a JWT identity the application's trust rules admitted | yes | only where every account may |
//! | a stored service account | if bound to the application | if bound to the application |
//!
//! An application built with
//! [`danger_allow_any_account`](super::Application::danger_allow_any_account)
//! lets every authenticated account in, as authentik does without bindings.
//! A binding also narrows the scopes: the token gets those requested that both
//! the application and the binding allow.

use super::application::Application;
use super::config::EndpointConfig;
use super::credentials::Principal;
use super::error::{Rejection, VerifyError};

/// How the client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provenance {
    /// Its own credentials, checked by the verifier.
    Login,
    /// A token of a federated application, traded at this one.
    Trade,
}

/// The id prefixes of the accounts that the store never binds: JWT
/// identities (`jwt:`) and automatic accounts (`client_credentials:`).
const UNBINDABLE: [&str; 2] = ["jwt:", "client_credentials:"];

/// Narrows `scopes` (already requested ∩ application's) to what `principal`
/// may get at `application`, or refuses it.
pub(crate) async fn authorize(
    config: &EndpointConfig,
    application: &Application,
    principal: &Principal,
    provenance: Provenance,
    scopes: &mut Vec<String>,
) -> Result<(), VerifyError> {
    let own = provenance == Provenance::Login
        && (principal.external.is_some() || principal.id == Principal::automatic_id(application));
    if own || application.allows_any_account() {
        return Ok(());
    }
    if UNBINDABLE
        .iter()
        .any(|prefix| principal.id.starts_with(prefix))
    {
        return Err(Rejection::NotBound.into());
    }
    let binding = config
        .directory
        .binding(&principal.id, application.client_id())
        .await?
        .ok_or(Rejection::NotBound)?;
    scopes.retain(|scope| binding.scopes.contains(scope));
    Ok(())
}
