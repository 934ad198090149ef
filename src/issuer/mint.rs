//! Minting: the pipeline's last stage before the response. A [`Grant`] (a
//! client authenticated and authorized at an application) becomes a signed
//! access token (authentik's claims plus those of RFC 9068) and, if enabled,
//! the matching ID token.
//!
//! The rules of the minted claims live here, so the stages that check this
//! issuer's own tokens (federation) recompute `sub` the same way.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::application::{Application, SubjectMode};
use super::config::EndpointConfig;
use super::credentials::Principal;
use super::error::TokenError;
use crate::keys::KeyError;
use crate::observe::AUDIT_TARGET;
use crate::store::TokenDigest;

/// A client that authenticated and may get a token at `application`: what
/// the earlier stages hand to [`mint`].
pub(crate) struct Grant {
    pub(crate) application: Arc<Application>,
    pub(crate) principal: Principal,
    /// The granted scopes, space-separated.
    pub(crate) scope: String,
    /// For a trade: the traded token's `exp`, which the new token must not pass.
    pub(crate) expires_by: Option<u64>,
    /// How the client authenticated (the `auth_method` label).
    pub(crate) method: &'static str,
    /// The client's address, if known.
    pub(crate) address: Option<IpAddr>,
    /// The chosen resources (RFC 8707): the access token's `aud`; empty:
    /// the `client_id`.
    pub(crate) audience: Vec<String>,
    /// For a token exchange (RFC 8693): what the new token carries.
    pub(crate) exchange: Option<Exchanged>,
    /// For a trade: the traded token's `act`, nested in the new one's
    /// (RFC 8693 §4.1). This issuer minted it, so it vouches for it.
    pub(crate) prior_act: Option<serde_json::Value>,
    /// For a token exchange by a client that authenticated with an input
    /// JWT: its claims, which the application's policies see again with the
    /// scopes about to be granted.
    pub(crate) client_jwt: Option<serde_json::Value>,
}

/// What token exchange adds to a grant.
pub(crate) struct Exchanged {
    /// The `act` claim (§4.1): the actor, prior actors nested.
    pub(crate) act: Option<serde_json::Value>,
    /// The `issued_token_type` of the answer.
    pub(crate) issued_token_type: &'static str,
}

/// An `aud` claim: one value, or several (RFC 7519 §4.1.3).
#[derive(Clone, Copy, Serialize)]
#[serde(untagged)]
pub(crate) enum Audience<'a> {
    One(&'a str),
    Many(&'a [String]),
}

/// The signed tokens of one grant.
pub(crate) struct Minted {
    pub(crate) access_token: String,
    pub(crate) id_token: Option<String>,
    /// Seconds until the access token expires (`expires_in`).
    pub(crate) expires_in: u64,
}

/// The claims of an access token: the ID token's, and those that name the
/// client (RFC 9068 §2.2), which no ID token carries.
#[derive(Serialize)]
pub(crate) struct AccessTokenClaims<'a> {
    #[serde(flatten)]
    pub(crate) token: IdTokenClaims<'a>,
    pub(crate) client_id: &'a str,
    pub(crate) azp: &'a str,
    pub(crate) scope: &'a str,
    /// For JWT-authenticated clients: the input JWT's issuer and subject;
    /// for token exchange, the actors (RFC 8693 §4.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) act: Option<Actor<'a>>,
    /// For a DPoP-bound token: the thumbprint of its key (RFC 9449 §6.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cnf: Option<Confirmation<'a>>,
}

/// The `cnf` claim of a DPoP-bound token.
#[derive(Serialize)]
pub(crate) struct Confirmation<'a> {
    pub(crate) jkt: &'a str,
}

/// RFC 8693-style actor: who the client really was, or the actors of an
/// exchange.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Actor<'a> {
    Client {
        iss: &'a str,
        sub: &'a str,
        /// A traded token's own `act`.
        #[serde(skip_serializing_if = "Option::is_none")]
        act: Option<&'a serde_json::Value>,
    },
    Exchange(&'a serde_json::Value),
}

/// The claims of an ID token.
#[derive(Clone, Copy, Serialize)]
pub(crate) struct IdTokenClaims<'a> {
    pub(crate) iss: &'a str,
    pub(crate) sub: &'a str,
    pub(crate) aud: Audience<'a>,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) auth_time: u64,
    pub(crate) jti: &'a str,
    pub(crate) preferred_username: &'a str,
}

/// The `sub` of tokens minted for `principal` by `application`.
pub(crate) fn subject(application: &Application, principal: &Principal, salt: &str) -> String {
    match application.subject_mode {
        SubjectMode::HashedId => {
            TokenDigest::of_parts(&[principal.id.as_bytes(), b"-", salt.as_bytes()]).to_hex()
        }
        SubjectMode::Username => principal.username.clone(),
        SubjectMode::Uuid => principal.uuid.to_string(),
        SubjectMode::Id => principal.id.clone(),
    }
}

/// A unique token id: 30 random bytes, base64url (40 characters).
pub(crate) fn token_id() -> Option<String> {
    let mut bytes = [0u8; 30];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// `time` in seconds since the Unix epoch (0 before it).
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Mints the access token (and ID token) of `grant`, the access token bound
/// to the DPoP key with thumbprint `jkt` when there is one. A traded token's
/// successor expires no later than it.
pub(crate) fn mint(
    config: &EndpointConfig,
    grant: &Grant,
    jkt: Option<&str>,
) -> Result<Minted, TokenError> {
    let Grant {
        application,
        principal,
        scope,
        expires_by,
        method,
        address,
        audience,
        exchange,
        prior_act,
        client_jwt: _,
    } = grant;
    let scope = scope.as_str();
    let now = now();
    let mut exp = now.saturating_add(application.token_lifetime().as_secs());
    if let Some(limit) = *expires_by {
        exp = exp.min(limit);
    }
    let lifetime = exp.saturating_sub(now);
    let sub = subject(application, principal, &config.subject_salt);
    let jti = token_id().ok_or(TokenError::ServerError)?;
    let access = AccessTokenClaims {
        token: IdTokenClaims {
            iss: application.issuer.as_str(),
            sub: &sub,
            aud: match audience.as_slice() {
                [] => Audience::One(application.client_id()),
                [one] => Audience::One(one),
                many => Audience::Many(many),
            },
            exp,
            iat: now,
            auth_time: now,
            jti: &jti,
            preferred_username: &principal.username,
        },
        client_id: application.client_id(),
        azp: application.client_id(),
        scope,
        act: match exchange {
            Some(exchange) => exchange.act.as_ref().map(Actor::Exchange),
            None => principal.external.as_ref().map(|external| Actor::Client {
                iss: &external.issuer,
                sub: &external.subject,
                act: prior_act.as_ref(),
            }),
        },
        cnf: jkt.map(|jkt| Confirmation { jkt }),
    };
    let typ = config.at_jwt_typ.then_some("at+jwt");
    let (access_token, id_token) = config
        .keys
        .with_active(|key| {
            let access_token = key.sign_jwt(typ, &access)?;
            // An exchange answers with the one token it was asked for.
            let id_token = if config.id_token && exchange.is_none() {
                let jti = token_id().ok_or(KeyError::Signing)?;
                let claims = IdTokenClaims {
                    jti: &jti,
                    aud: Audience::One(application.client_id()),
                    ..access.token
                };
                Some(key.sign_jwt(Some("JWT"), &claims)?)
            } else {
                None
            };
            Ok::<_, KeyError>((access_token, id_token))
        })
        .map_err(|error| {
            tracing::error!(%error, "token signing failed");
            TokenError::ServerError
        })?;
    let act = principal.external.as_ref();
    tracing::info!(
        target: AUDIT_TARGET,
        event = "token_issued",
        application = application.client_id(),
        account = %principal.username,
        account_id = %principal.id,
        auth_method = *method,
        scope,
        jti = %jti,
        exp,
        act_iss = act.map(|external| external.issuer.as_str()),
        act_sub = act.map(|external| external.subject.as_str()),
        dpop_jkt = jkt,
        client.address = address.map(display),
        "token issued"
    );
    Ok(Minted {
        access_token,
        id_token,
        expires_in: lifetime,
    })
}
