//! Classifying a request that was read, the pipeline's second stage: which
//! grant it asks for, and who the client says it is and with what (RFC 6749
//! §2.3 allows one client authentication method per request).

use std::net::IpAddr;

use secrecy::{ExposeSecret, SecretString};

use super::assertion::{JWT_BEARER, is_compact_jws};
use super::credentials::{Credentials, GrantType, TOKEN_EXCHANGE};
use super::error::TokenError;
use super::request::{BasicCredentials, Form, TokenRequest, present, present_secret};

/// Who the client of a request says it is, with what, and from where.
pub(crate) struct ClientClaim {
    /// The `client_id`, from the form or HTTP Basic.
    pub(crate) client_id: String,
    pub(crate) presented: Presented,
    /// How the client authenticated (the `auth_method` label; `federation`
    /// is decided later, when a JWT turns out to be a trade).
    pub(crate) method: &'static str,
    /// The client's address, when the endpoint knows it.
    pub(crate) address: Option<IpAddr>,
}

/// What a client presented, before the endpoint's own checks.
pub(crate) enum Presented {
    /// An app password or a client secret, for the verifier as they are.
    Credentials(Credentials),
    /// A JWT: an input JWT or a token of a federated application.
    Jwt {
        token: SecretString,
        /// Sent as a bare `client_secret` (no assertion type), so it is the
        /// application's own secret if that matches.
        bare: bool,
    },
}

/// The grant a token request asks for.
pub(crate) fn grant_type(fields: &TokenRequest) -> Result<GrantType, TokenError> {
    match present(&fields.grant_type) {
        None => Err(TokenError::InvalidRequest(
            "parameter grant_type is missing",
        )),
        Some("client_credentials") => Ok(GrantType::ClientCredentials),
        Some("password") => Ok(GrantType::Password),
        Some(TOKEN_EXCHANGE) => Ok(GrantType::TokenExchange),
        Some(_) => Err(TokenError::UnsupportedGrantType),
    }
}

/// Classifies the client authentication of `form`.
pub(crate) fn client_claim(form: Form) -> Result<ClientClaim, TokenError> {
    let (client_id, presented) = client_authentication(&form.fields, form.basic)?;
    let method = match &presented {
        Presented::Jwt { .. } => "jwt",
        Presented::Credentials(Credentials::Password { .. }) => "app_password",
        Presented::Credentials(_) => "client_secret",
    };
    Ok(ClientClaim {
        client_id,
        presented,
        method,
        address: form.address,
    })
}

/// Who the client says it is, and with what: RFC 6749 §2.3 allows one client
/// authentication method per request.
fn client_authentication(
    form: &TokenRequest,
    basic: Option<BasicCredentials>,
) -> Result<(String, Presented), TokenError> {
    const TWO_METHODS: TokenError =
        TokenError::InvalidRequest("more than one client authentication method was used");
    let assertion_type = present(&form.client_assertion_type);
    let assertion = present_secret(&form.client_assertion);
    if assertion_type.is_some_and(|kind| kind != JWT_BEARER) {
        // authentik answers an unknown assertion type with invalid_grant.
        return Err(TokenError::InvalidGrant);
    }
    if assertion.is_some() && assertion_type.is_none() {
        return Err(TokenError::InvalidRequest(
            "parameter client_assertion_type is missing",
        ));
    }
    let (client_id, secret) = match basic {
        Some(basic) => {
            if present_secret(&form.client_secret).is_some() || assertion.is_some() {
                return Err(TWO_METHODS);
            }
            if present(&form.client_id).is_some_and(|id| id != basic.client_id) {
                return Err(TokenError::InvalidRequest(
                    "client_id differs from the HTTP Basic client id",
                ));
            }
            let secret =
                (!basic.client_secret.expose_secret().is_empty()).then_some(basic.client_secret);
            (basic.client_id, secret)
        }
        None => (
            present(&form.client_id)
                .ok_or(TokenError::InvalidRequest("parameter client_id is missing"))?
                .to_owned(),
            present_secret(&form.client_secret).cloned(),
        ),
    };
    if client_id.is_empty() {
        return Err(TokenError::InvalidRequest("parameter client_id is missing"));
    }
    if assertion_type.is_some() {
        // RFC 7523 §2.2, or the JWT in client_secret for clients that can
        // only set a password (authentik still wants the assertion type).
        if present(&form.username).is_some() {
            return Err(TWO_METHODS);
        }
        let jwt = match (assertion, secret) {
            (Some(assertion), None) => assertion.clone(),
            (None, Some(secret)) => secret,
            (Some(_), Some(_)) => return Err(TWO_METHODS),
            (None, None) => {
                return Err(TokenError::InvalidRequest(
                    "parameter client_assertion is missing",
                ));
            }
        };
        let jwt = Presented::Jwt {
            token: jwt,
            bare: false,
        };
        return Ok((client_id, jwt));
    }
    let credentials = match (
        present(&form.username),
        present_secret(&form.password),
        secret,
    ) {
        (Some(_), _, Some(_)) => return Err(TWO_METHODS),
        (Some(username), Some(password), None) => Credentials::Password {
            username: username.to_owned(),
            password: password.clone(),
        },
        (Some(_), None, None) => {
            return Err(TokenError::InvalidRequest("parameter password is missing"));
        }
        (None, Some(_), _) => {
            return Err(TokenError::InvalidRequest("parameter username is missing"));
        }
        // A compact JWS (a bare `client_secret` of base64(username:token)
        // has no dot): for clients that can only set a password.
        (None, None, Some(secret)) if is_compact_jws(secret.expose_secret()) => {
            return Ok((
                client_id,
                Presented::Jwt {
                    token: secret,
                    bare: true,
                },
            ));
        }
        (None, None, Some(secret)) => Credentials::ClientSecret(secret),
        (None, None, None) => {
            return Err(TokenError::InvalidRequest(
                "no client credentials were given",
            ));
        }
    };
    Ok((client_id, Presented::Credentials(credentials)))
}
