//! Client authentication, shared by the token, introspection and revocation
//! endpoints: the stages between a classified request and a [`Grant`].
//!
//! 1. The attempt limiter takes the request's failure slots (429 for a
//!    locked-out address or `client_id`, before anything is looked up).
//! 2. The `client_id` names an application, or the client is `invalid_client`.
//! 3. A token of a federated application is traded by the endpoint itself
//!    (`federation`); an input JWT is checked by the endpoint against the
//!    application's trust rules (`assertion`) before it goes, verified, to the
//!    pluggable verifier; app passwords and client secrets go to the verifier
//!    as they are. The verifier answers only "who is this client".
//! 4. Authorization (`authorize`): the account's binding to the application,
//!    which narrows the scopes.
//!
//! The failure slots stay taken only if authentication or authorization
//! failed. A single-use input JWT's `jti` is spent between the endpoint's
//! checks and the verifier, without holding the slots, so the verifier never
//! sees a replay; the request then goes on without slots (it is not admitted
//! again, so it cannot be refused with its `jti` spent for a lockout that
//! began meanwhile), and a replay or a refusal counts as a failure on its
//! own. If the verifier then cannot decide (503), the `jti` is given back.

use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tower_service::Service;
use tracing::Span;
use tracing::field::display;

use super::application::Application;
use super::assertion::{self, SingleUse};
use super::attempts::Attempt;
use super::authorize::{Provenance, authorize};
use super::classify::{ClientClaim, Presented};
use super::config::EndpointConfig;
use super::credentials::{ClientAuthentication, Credentials, GrantType, Principal};
use super::error::{TokenError, VerifyError};
use super::federation;
use super::mint::Grant;
use crate::observe::AUDIT_TARGET;
use crate::store::snapshot;

/// The audit event of a refused credential. A `client_id` that names no
/// application is shown quoted and cut to 64 characters: it came from the
/// client.
fn audit_rejected(
    application: Option<&Application>,
    client_id: &str,
    reason: &'static str,
    method: &'static str,
    address: Option<IpAddr>,
) {
    let unknown = application
        .is_none()
        .then(|| client_id.chars().take(64).collect::<String>());
    tracing::warn!(
        target: AUDIT_TARGET,
        event = "credential_rejected",
        application = application.map_or("", |app| app.client_id()),
        unknown_client_id = unknown.as_deref().map(tracing::field::debug),
        auth_method = method,
        reason,
        client.address = address.map(display),
        "credential rejected"
    );
}

/// Authenticates the client of `claim` and authorizes it at the application
/// it names (see the [module docs](self)); the verifier sees the `requested`
/// scopes clamped to the application's.
pub(crate) async fn authenticate<V>(
    config: &EndpointConfig,
    verifier: V,
    claim: ClientClaim,
    grant_type: GrantType,
    requested: &str,
) -> Result<Grant, TokenError>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
{
    let ClientClaim {
        client_id,
        presented,
        method,
        address,
    } = claim;
    let application = config.applications.get(&client_id);
    if config.instrument {
        let span = Span::current();
        if let Some(application) = application {
            span.record("oauth2.client_id", application.client_id());
        }
        span.record("oauth2.auth_method", method);
        if let Some(address) = address {
            span.record("client.address", display(address));
        }
    }
    let known = application.map(|app| &**app);
    let mut attempt = admit(config, address, known, &client_id, method).await?;
    let Some(application) = application.cloned() else {
        if let Some(attempt) = attempt {
            attempt.end(true).await;
        }
        audit_rejected(None, &client_id, "unknown_client", method, address);
        return Err(TokenError::InvalidClient);
    };
    let mut scopes: Vec<String> = application
        .clamp_scopes(requested)
        .into_iter()
        .map(str::to_owned)
        .collect();
    // (Each scope is one request: a SQL store checks for credential changes
    // once in it.)
    let checked = snapshot::scope(check(
        config,
        &application,
        presented,
        grant_type,
        &mut scopes,
    ))
    .await;
    let outcome = match checked {
        Ok(Checked::Traded(trade)) => Ok(Authenticated {
            principal: trade.principal,
            expires_by: Some(trade.expires),
            prior_act: trade.act,
            client_jwt: None,
        }),
        Ok(Checked::Verify(credentials, single_use, client_jwt)) => {
            let mut spent = Ok(());
            if let Some(single_use) = &single_use {
                // Written without holding the client's slots, so that more
                // requests than its failure limit can share a commit (with a
                // SQL store). The attempt is not admitted anew: once its `jti`
                // is spent, a 429 would use the JWT up without a token. What
                // is left cannot be a guess (the JWT's signature is valid), so
                // a failure from here on (a replay, or the verifier's refusal)
                // is counted where a slot is free to count it in.
                if let Some(held) = attempt.take() {
                    held.end(false).await;
                }
                spent = single_use.spend(config).await;
            }
            let spent_ok = spent.is_ok();
            let outcome = match spent {
                Ok(()) => {
                    let verify = verify(
                        config,
                        verifier,
                        &application,
                        credentials,
                        grant_type,
                        &mut scopes,
                    );
                    snapshot::scope(verify)
                        .await
                        .map(|principal| Authenticated {
                            principal,
                            expires_by: None,
                            prior_act: None,
                            client_jwt,
                        })
                }
                Err(error) => Err(error),
            };
            if let (None, Some(guard), Err(VerifyError::Rejected(_))) =
                (&attempt, &config.attempts, &outcome)
            {
                let client = Some(application.client_id());
                guard.record_failure(address, client).await;
            }
            // Spent, but the verifier or its store could not decide: no
            // token, so the client may try the same JWT again.
            if let (true, Some(single_use), Err(VerifyError::Unavailable(_))) =
                (spent_ok, single_use, &outcome)
            {
                single_use.give_back(config).await;
            }
            outcome
        }
        Err(error) => Err(error),
    };
    if let Some(attempt) = attempt {
        // Only rejected credentials (and refused authorization) count; a
        // verifier or store that could not answer (503) does not.
        attempt
            .end(matches!(outcome, Err(VerifyError::Rejected(_))))
            .await;
    }
    match outcome {
        Ok(Authenticated {
            principal,
            expires_by,
            prior_act,
            client_jwt,
        }) => {
            // Only a trade sets a limit on the new token's `exp`.
            let method = if expires_by.is_some() {
                "federation"
            } else {
                method
            };
            if config.instrument && expires_by.is_some() {
                Span::current().record("oauth2.auth_method", method);
            }
            Ok(Grant {
                scope: scopes.join(" "),
                application,
                principal,
                expires_by,
                method,
                address,
                audience: Vec::new(),
                exchange: None,
                prior_act,
                client_jwt,
            })
        }
        Err(error) => {
            tracing::debug!(client_id = %application.client_id(), %error, "client not authenticated");
            if let VerifyError::Rejected(rejection) = &error {
                audit_rejected(
                    Some(&application),
                    &client_id,
                    rejection.reason(),
                    method,
                    address,
                );
            }
            Err(error.into())
        }
    }
}

/// Takes a slot of the attempt limiter (if there is one) for the request's
/// address and `client_id`; a refusal (429, 503) is audited.
async fn admit<'a>(
    config: &'a EndpointConfig,
    address: Option<IpAddr>,
    application: Option<&Application>,
    client_id: &str,
    method: &'static str,
) -> Result<Option<Attempt<'a>>, TokenError> {
    let Some(guard) = &config.attempts else {
        return Ok(None);
    };
    match guard
        .admit(address, application.map(Application::client_id))
        .await
    {
        Ok(attempt) => Ok(Some(attempt)),
        Err(error) => {
            if let TokenError::TooManyAttempts(_) = error {
                audit_rejected(application, client_id, error.reason(), method, address);
            }
            Err(error)
        }
    }
}

/// What the endpoint made of the presented credentials, before the verifier.
enum Checked {
    /// A token of a federated application, traded and authorized.
    Traded(federation::Trade),
    /// Credentials for the verifier (an input JWT verified by the endpoint),
    /// with a single-use JWT's `jti` still to spend, and, in a token
    /// exchange, the input JWT's claims.
    Verify(Credentials, Option<SingleUse>, Option<serde_json::Value>),
}

/// Who the client is, and what its credential bounds.
struct Authenticated {
    principal: Principal,
    /// For a trade: the traded token's `exp`.
    expires_by: Option<u64>,
    /// For a trade: the traded token's `act`.
    prior_act: Option<serde_json::Value>,
    /// In a token exchange: the claims of the client's input JWT.
    client_jwt: Option<serde_json::Value>,
}

/// The endpoint's own checks of the presented credentials: a trade of a
/// federated application's token (narrowing `scopes`), or an input JWT
/// checked against the application's trust rules.
async fn check(
    config: &EndpointConfig,
    application: &Arc<Application>,
    presented: Presented,
    grant_type: GrantType,
    scopes: &mut Vec<String>,
) -> Result<Checked, VerifyError> {
    let (token, bare) = match presented {
        Presented::Credentials(credentials) => {
            return Ok(Checked::Verify(credentials, None, None));
        }
        Presented::Jwt { token, bare } => (token, bare),
    };
    let jwt = token.expose_secret();
    if let Some(source) = federation::source(config, application, jwt) {
        // Boxed: trades are rare, and their future is large.
        let trade = Box::pin(federation::trade(config, application, source, jwt)).await?;
        scopes.retain(|scope| trade.scopes.contains(scope));
        let provenance = Provenance::Trade;
        authorize(config, application, &trade.principal, provenance, scopes).await?;
        return Ok(Checked::Traded(trade));
    }
    if bare && application.client_secret_matches(jwt) {
        // The application's own secret, which looks like a JWT.
        return Ok(Checked::Verify(
            Credentials::ClientSecret(token),
            None,
            None,
        ));
    }
    // Boxed, as trades: its future is large.
    let check = assertion::check(config, application, jwt, grant_type, scopes);
    let (verified, single_use) = Box::pin(check).await?;
    let client_jwt = (grant_type == GrantType::TokenExchange).then(|| verified.claims.clone());
    Ok(Checked::Verify(
        Credentials::Assertion(verified),
        single_use,
        client_jwt,
    ))
}

/// Who the client is, by the verifier, and whether it may get a token at
/// `application`; narrows `scopes`.
async fn verify<V>(
    config: &EndpointConfig,
    mut verifier: V,
    application: &Arc<Application>,
    credentials: Credentials,
    grant_type: GrantType,
    scopes: &mut Vec<String>,
) -> Result<Principal, VerifyError>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
{
    poll_fn(|cx| verifier.poll_ready(cx)).await?;
    let request = ClientAuthentication::new(application.clone(), credentials, grant_type)
        .with_scopes(scopes.clone());
    let principal = verifier.call(request).await?;
    authorize(config, application, &principal, Provenance::Login, scopes).await?;
    Ok(principal)
}
