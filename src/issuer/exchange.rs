//! Token exchange (RFC 8693): a stage after client authentication, for
//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`.
//!
//! The client authenticates as for any grant; then its application's
//! [`TokenExchange`] rules decide which `subject_token` (and `actor_token`)
//! it may trade, and the new token is the subject's:
//! - an application without rules answers `unauthorized_client`;
//! - `subject_token_type` `…:access_token`: an access token this endpoint
//!   minted for an accepted application, checked as federation checks its
//!   trades (`minted`: unrevoked, its account still there and active);
//!   `…:jwt`: that too, or an input JWT the application trusts (checked as a
//!   client assertion, `assertion`);
//! - an actor token is checked the same way, and may act only if the
//!   subject token's `may_act` names it (§4.4) or, without `may_act`, the
//!   rules allow it (a `may_act` without `iss` names an actor of the
//!   subject token's issuer); the new token's `act` is the actor, with the
//!   subject token's own `act` nested inside (§4.1); without an actor token,
//!   the subject token's `act` is kept as it is. Only an `act` this issuer
//!   minted is kept: an input JWT's own `act` is never copied;
//! - every input JWT of the request (the client's, the subject's, the
//!   actor's) passes the application's policies with the scopes about to
//!   be granted;
//! - `sub` is the subject's account's; scopes are those requested (default:
//!   the subject token's) that the subject token, the application and the
//!   account's binding all allow; `exp` is never later than the subject
//!   token's (nor the actor token's).
//!
//! A subject or actor token that is invalid, expired, revoked or not
//! accepted is `invalid_request`, as RFC 8693 §2.2.2 requires (not
//! `invalid_grant`); a `requested_token_type` other than an access token or
//! a JWT is `invalid_request`.

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::application::Application;
use super::assertion;
use super::authorize::{Provenance, authorize};
use super::client_verifier::external_account;
use super::config::EndpointConfig;
use super::credentials::{GrantType, Principal};
use super::error::{ConfigError, Rejection, TokenError, VerifyError};
use super::exchange_rules::TokenExchange;
use super::mint::{self, Exchanged, Grant};
use super::minted;
use super::request::{ExchangeFields, present, present_secret};
use crate::keys::JwtError;
use crate::observe::AUDIT_TARGET;

/// `urn:ietf:params:oauth:token-type:access_token` (RFC 8693 §3).
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `urn:ietf:params:oauth:token-type:jwt` (RFC 8693 §3).
pub(crate) const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The exchange parameters of a request, read before client authentication.
pub(crate) struct ExchangeRequest {
    subject: (SecretString, &'static str),
    actor: Option<(SecretString, &'static str)>,
    /// The `issued_token_type` of the answer.
    issued_token_type: &'static str,
}

/// A token type this endpoint takes or mints.
fn token_type(value: &str) -> Option<&'static str> {
    [ACCESS_TOKEN_TYPE, JWT_TYPE]
        .into_iter()
        .find(|known| *known == value)
}

/// Reads the exchange parameters (RFC 8693 §2.1).
pub(crate) fn request(fields: &ExchangeFields) -> Result<ExchangeRequest, TokenError> {
    let unsupported = TokenError::InvalidRequest("the token type is not supported");
    let subject = present_secret(&fields.subject_token).ok_or(TokenError::InvalidRequest(
        "parameter subject_token is missing",
    ))?;
    let subject_type = present(&fields.subject_token_type).ok_or(TokenError::InvalidRequest(
        "parameter subject_token_type is missing",
    ))?;
    let subject = (
        subject.clone(),
        token_type(subject_type).ok_or(unsupported)?,
    );
    let actor = match (
        present_secret(&fields.actor_token),
        present(&fields.actor_token_type),
    ) {
        (None, None) => None,
        (Some(token), Some(kind)) => Some((token.clone(), token_type(kind).ok_or(unsupported)?)),
        (Some(_), None) => {
            return Err(TokenError::InvalidRequest(
                "parameter actor_token_type is missing",
            ));
        }
        (None, Some(_)) => {
            return Err(TokenError::InvalidRequest(
                "actor_token_type is given without actor_token",
            ));
        }
    };
    let issued_token_type = match present(&fields.requested_token_type) {
        None => ACCESS_TOKEN_TYPE,
        Some(kind) => token_type(kind).ok_or(unsupported)?,
    };
    Ok(ExchangeRequest {
        subject,
        actor,
        issued_token_type,
    })
}

/// A subject or actor token, checked.
struct Party {
    principal: Principal,
    provenance: Provenance,
    iss: String,
    sub: String,
    exp: u64,
    /// Its scopes (`None`: an input JWT without `scope`, bounded by the
    /// application's alone).
    scopes: Option<Vec<String>>,
    claims: Map<String, Value>,
    /// Whether it is an input JWT (else a token this issuer minted): the
    /// application's policies apply to it, and this issuer vouches for
    /// none of its claims (its `act` is never copied).
    input: bool,
}

/// Which token of the request a [`Party`] is.
#[derive(Clone, Copy)]
enum Role {
    Subject,
    Actor,
}

impl Role {
    /// The `error_description` of its refusal (RFC 8693 §2.2.2).
    fn refused(self) -> &'static str {
        match self {
            Role::Subject => "the subject_token is not accepted",
            Role::Actor => "the actor_token is not accepted",
        }
    }
}

/// Turns `grant` (a client authenticated at its application) into the
/// subject's grant, or refuses; `requested` is the `scope` parameter.
pub(crate) async fn exchange(
    config: &EndpointConfig,
    grant: &mut Grant,
    request: ExchangeRequest,
    requested: Option<&str>,
) -> Result<(), TokenError> {
    let application = grant.application.clone();
    let refuse = |reason: &'static str, description: &'static str| {
        tracing::warn!(
            target: AUDIT_TARGET,
            event = "exchange_rejected",
            application = application.client_id(),
            reason,
            "token exchange refused"
        );
        TokenError::InvalidRequest(description)
    };
    let Some(rules) = &application.exchange else {
        return Err(TokenError::UnauthorizedClient);
    };
    // What the policies of input JWTs see first: the scopes asked for.
    let asked: Vec<String> = application
        .clamp_scopes(requested.unwrap_or(""))
        .into_iter()
        .map(str::to_owned)
        .collect();
    let checked = async |(token, kind): &(SecretString, &'static str), role: Role| {
        party(
            config,
            &application,
            rules,
            token.expose_secret(),
            kind,
            &asked,
        )
        .await
        .map_err(|error| match error {
            VerifyError::Rejected(why) => refuse(why.reason(), role.refused()),
            VerifyError::Unavailable(_) => TokenError::TemporarilyUnavailable,
        })
    };
    let subject = checked(&request.subject, Role::Subject).await?;
    let actor = match &request.actor {
        None => None,
        Some(token) => {
            let actor = checked(token, Role::Actor).await?;
            if !may_act(&subject, &actor, rules) {
                return Err(refuse(
                    "actor_not_allowed",
                    "the actor may not act for the subject",
                ));
            }
            Some(actor)
        }
    };

    let wanted = match (requested, &subject.scopes) {
        (Some(requested), _) => requested.to_owned(),
        (None, Some(scopes)) => scopes.join(" "),
        (None, None) => String::new(),
    };
    let mut scopes: Vec<String> = application
        .clamp_scopes(&wanted)
        .into_iter()
        .filter(|scope| {
            subject
                .scopes
                .as_ref()
                .is_none_or(|had| had.iter().any(|s| s == scope))
        })
        .map(str::to_owned)
        .collect();
    authorize(
        config,
        &application,
        &subject.principal,
        subject.provenance,
        &mut scopes,
    )
    .await
    .map_err(|error| match error {
        VerifyError::Rejected(why) => refuse(
            why.reason(),
            "the subject's account may not get tokens for this client",
        ),
        VerifyError::Unavailable(_) => TokenError::TemporarilyUnavailable,
    })?;

    // Every input JWT of the request passes the policies with the scopes
    // about to be granted: the client's, the subject's and the actor's.
    let exchange = GrantType::TokenExchange;
    if let Some(claims) = &grant.client_jwt {
        assertion::permits(&application, claims, exchange, &scopes).map_err(TokenError::from)?;
    }
    for (party, role) in [
        (Some(&subject), Role::Subject),
        (actor.as_ref(), Role::Actor),
    ] {
        let Some(party) = party.filter(|party| party.input) else {
            continue;
        };
        let claims = Value::Object(party.claims.clone());
        assertion::permits(&application, &claims, exchange, &scopes)
            .map_err(|_| refuse("policy_denied", role.refused()))?;
    }

    let expires_by = actor
        .as_ref()
        .map_or(subject.exp, |actor| actor.exp.min(subject.exp));
    // Only an `act` this issuer minted is carried on.
    let prior = match subject.input {
        true => None,
        false => subject.claims.get("act").cloned(),
    };
    let act = match actor {
        Some(actor) => {
            let mut act = Map::new();
            act.insert("iss".into(), Value::String(actor.iss));
            act.insert("sub".into(), Value::String(actor.sub));
            if let Some(prior) = prior {
                act.insert("act".into(), prior);
            }
            Some(Value::Object(act))
        }
        None => prior,
    };
    let mut principal = subject.principal;
    principal.external = None;
    grant.principal = principal;
    grant.scope = scopes.join(" ");
    grant.expires_by = Some(expires_by);
    grant.method = "token_exchange";
    grant.exchange = Some(Exchanged {
        act,
        issued_token_type: request.issued_token_type,
    });
    Ok(())
}

/// Whether `actor` may act for `subject`: as the subject token's `may_act`
/// says (its `sub`, and its `iss`, which defaults to the subject token's:
/// a `sub` is unique only within its issuer, RFC 8693 §4.1), else as the
/// rules say.
fn may_act(subject: &Party, actor: &Party, rules: &TokenExchange) -> bool {
    match subject.claims.get("may_act") {
        Some(Value::Object(may_act)) => {
            let iss = match may_act.get("iss") {
                None => Some(subject.iss.as_str()),
                Some(iss) => iss.as_str(),
            };
            may_act.get("sub").and_then(Value::as_str) == Some(actor.sub.as_str())
                && iss == Some(actor.iss.as_str())
        }
        Some(_) => false,
        None => rules
            .actors
            .iter()
            .any(|(iss, sub)| *iss == actor.iss && *sub == actor.sub),
    }
}

/// Checks a subject or actor `token` of type `kind` against `rules`; the
/// policies of an input JWT see the `asked` scopes.
async fn party(
    config: &EndpointConfig,
    application: &Application,
    rules: &TokenExchange,
    token: &str,
    kind: &str,
    asked: &[String],
) -> Result<Party, VerifyError> {
    /// The one claim read before verification: which issuer's rules apply.
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: String,
    }
    let malformed = || VerifyError::from(Rejection::InvalidAssertion(JwtError::Malformed));
    let iss = jsonwebtoken::dangerous::insecure_decode_claims::<Issuer>(token)
        .map_err(|_| malformed())?
        .iss;
    let iss = iss.as_str();
    let source = rules
        .applications
        .iter()
        .filter_map(|client_id| config.applications.get(client_id))
        .find(|source| source.issuer() == iss);
    if let Some(source) = source {
        let leeway = application.assertions.leeway.as_secs();
        let own = minted::verify_unbound(config, source, token, leeway).await?;
        // The application's own automatic account is its own, as at login.
        let provenance = if source.client_id() == application.client_id() {
            Provenance::Login
        } else {
            Provenance::Trade
        };
        return Ok(Party {
            principal: own.principal,
            provenance,
            iss: iss.to_owned(),
            sub: own.sub,
            exp: own.exp,
            scopes: Some(own.scopes),
            claims: own.claims,
            input: false,
        });
    }
    if kind != JWT_TYPE || !rules.jwts {
        return Err(Rejection::UntrustedAssertion.into());
    }
    let check = assertion::check(config, application, token, GrantType::TokenExchange, asked);
    let (verified, single_use) = Box::pin(check).await?;
    if let Some(single_use) = single_use {
        single_use.spend(config).await?;
    }
    let principal = external_account(&*config.directory, application, &verified).await?;
    let Value::Object(claims) = verified.claims else {
        return Err(malformed());
    };
    let scopes = claims
        .get("scope")
        .and_then(Value::as_str)
        .map(crate::store::scope_list);
    let exp = mint::unix_seconds(verified.expires);
    Ok(Party {
        principal,
        provenance: Provenance::Login,
        iss: verified.identity.issuer,
        sub: verified.identity.subject,
        exp,
        scopes,
        claims,
        input: true,
    })
}

impl Application {
    /// Accepts token exchange (RFC 8693) under these rules (see
    /// [`TokenExchange`]). Without it, an exchange request is answered
    /// `unauthorized_client`.
    pub fn with_token_exchange(mut self, rules: TokenExchange) -> Self {
        self.exchange = Some(rules);
        self
    }

    /// Its token exchange rules, if it accepts exchange.
    pub fn token_exchange(&self) -> Option<&TokenExchange> {
        self.exchange.as_ref()
    }
}

/// Every `client_id` whose tokens an application accepts in exchange names
/// an application.
pub(crate) fn check_exchange(
    applications: &HashMap<String, Arc<Application>>,
) -> Result<(), ConfigError> {
    for application in applications.values() {
        let accepted = application
            .exchange
            .iter()
            .flat_map(|rules| &rules.applications);
        for client_id in accepted {
            if !applications.contains_key(client_id) {
                return Err(ConfigError::UnknownExchangeApplication {
                    client_id: application.client_id().to_owned(),
                    accepted: client_id.clone(),
                });
            }
        }
    }
    Ok(())
}
