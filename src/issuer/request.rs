//! Reading a request to the token, introspection or revocation endpoint,
//! the pipeline's first stage: the form body (RFC 6749 §4.4.2), read under
//! the size and time limits, HTTP Basic client authentication (RFC 6749
//! §2.3.1), and the client's address.

use std::borrow::Cow;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Request};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use percent_encoding::percent_decode_str;
use secrecy::SecretString;

use super::config::EndpointConfig;
use super::error::TokenError;

/// The error of a request body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The parameters of a token request that this endpoint reads. A parameter
/// sent without a value counts as omitted (RFC 6749 §3.1); unknown ones are
/// ignored (§3.2).
#[derive(Debug, Default)]
pub(crate) struct TokenRequest {
    pub(crate) grant_type: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<SecretString>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<SecretString>,
    pub(crate) scope: Option<String>,
    pub(crate) client_assertion_type: Option<String>,
    pub(crate) client_assertion: Option<SecretString>,
    /// The token to introspect or revoke (RFC 7662, RFC 7009).
    pub(crate) token: Option<SecretString>,
    /// Token exchange (RFC 8693 §2.1) and resource indicators (RFC 8707).
    pub(crate) exchange: ExchangeFields,
}

/// The parameters of token exchange (RFC 8693 §2.1) and of resource
/// indicators (RFC 8707 §2): `resource` and `audience` may repeat.
#[derive(Debug, Default)]
pub(crate) struct ExchangeFields {
    pub(crate) subject_token: Option<SecretString>,
    pub(crate) subject_token_type: Option<String>,
    pub(crate) actor_token: Option<SecretString>,
    pub(crate) actor_token_type: Option<String>,
    pub(crate) requested_token_type: Option<String>,
    pub(crate) resource: Vec<String>,
    pub(crate) audience: Vec<String>,
}

impl TokenRequest {
    /// Parses an `application/x-www-form-urlencoded` body. Each parameter may
    /// appear once (RFC 6749 §3.2).
    pub(crate) fn from_form(body: &[u8]) -> Result<Self, TokenError> {
        let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| TokenError::InvalidRequest("the request body is not a valid form"))?;
        let mut request = TokenRequest::default();
        for (name, value) in pairs {
            let (slot, duplicate): (&mut dyn Slot, &'static str) = match &*name {
                "grant_type" => (&mut request.grant_type, "parameter grant_type is repeated"),
                "client_id" => (&mut request.client_id, "parameter client_id is repeated"),
                "client_secret" => (
                    &mut request.client_secret,
                    "parameter client_secret is repeated",
                ),
                "username" => (&mut request.username, "parameter username is repeated"),
                "password" => (&mut request.password, "parameter password is repeated"),
                "scope" => (&mut request.scope, "parameter scope is repeated"),
                "client_assertion_type" => (
                    &mut request.client_assertion_type,
                    "parameter client_assertion_type is repeated",
                ),
                "client_assertion" => (
                    &mut request.client_assertion,
                    "parameter client_assertion is repeated",
                ),
                "token" => (&mut request.token, "parameter token is repeated"),
                name => match request.exchange.slot(name) {
                    Some(slot) => slot,
                    None => continue,
                },
            };
            if slot.is_seen() {
                return Err(TokenError::InvalidRequest(duplicate));
            }
            slot.set(value.into_owned());
        }
        Ok(request)
    }
}

impl ExchangeFields {
    /// The slot of parameter `name`, if it is one of these.
    fn slot(&mut self, name: &str) -> Option<(&mut dyn Slot, &'static str)> {
        Some(match name {
            "subject_token" => (
                &mut self.subject_token,
                "parameter subject_token is repeated",
            ),
            "subject_token_type" => (
                &mut self.subject_token_type,
                "parameter subject_token_type is repeated",
            ),
            "actor_token" => (&mut self.actor_token, "parameter actor_token is repeated"),
            "actor_token_type" => (
                &mut self.actor_token_type,
                "parameter actor_token_type is repeated",
            ),
            "requested_token_type" => (
                &mut self.requested_token_type,
                "parameter requested_token_type is repeated",
            ),
            "resource" => (&mut self.resource, ""),
            "audience" => (&mut self.audience, ""),
            _ => return None,
        })
    }
}

/// A parameter slot: `None` until seen; an empty value is kept as seen but
/// reads as omitted.
trait Slot {
    fn is_seen(&self) -> bool;
    fn set(&mut self, value: String);
}

impl Slot for Option<String> {
    fn is_seen(&self) -> bool {
        self.is_some()
    }
    fn set(&mut self, value: String) {
        *self = Some(value);
    }
}

impl Slot for Option<SecretString> {
    fn is_seen(&self) -> bool {
        self.is_some()
    }
    fn set(&mut self, value: String) {
        *self = Some(SecretString::from(value));
    }
}

/// A repeatable parameter: never "seen", empty values dropped (RFC 6749 §3.1).
impl Slot for Vec<String> {
    fn is_seen(&self) -> bool {
        false
    }
    fn set(&mut self, value: String) {
        if !value.is_empty() {
            self.push(value);
        }
    }
}

/// Treats an empty parameter as omitted (RFC 6749 §3.1).
pub(crate) fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Treats an empty secret as omitted.
pub(crate) fn present_secret(value: &Option<SecretString>) -> Option<&SecretString> {
    use secrecy::ExposeSecret;
    value.as_ref().filter(|v| !v.expose_secret().is_empty())
}

/// Whether the request declares a form body (`application/x-www-form-urlencoded`,
/// parameters such as `charset` allowed).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Client credentials from an `Authorization: Basic` header.
pub(crate) struct BasicCredentials {
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
}

/// Reads HTTP Basic client authentication. `Ok(None)` when there is no
/// `Authorization` header or it uses another scheme; an error when a Basic
/// header is malformed.
///
/// RFC 6749 §2.3.1 has the id and secret form-encoded before base64; like
/// authentik, only percent escapes are decoded, so a raw `+` (common in base64
/// secrets) stays a `+`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, TokenError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| TokenError::InvalidClient)?;
    let (scheme, encoded) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(TokenError::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(TokenError::InvalidClient)?;
    let unescape = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(Cow::into_owned)
            .map_err(|_| TokenError::InvalidClient)
    };
    Ok(Some(BasicCredentials {
        client_id: unescape(id)?,
        client_secret: SecretString::from(unescape(secret)?),
    }))
}

/// A form POST to one of the endpoint's paths, read under the size limit.
pub(crate) struct Form {
    pub(crate) basic: Option<BasicCredentials>,
    pub(crate) fields: TokenRequest,
    /// The client's address, when the endpoint knows it (for the attempt
    /// limiter and the audit events).
    pub(crate) address: Option<IpAddr>,
}

/// Reads a form POST: its content type, HTTP Basic credentials, body and
/// parameters, and the client's address.
pub(crate) async fn read_form<B>(
    config: &EndpointConfig,
    request: Request<B>,
) -> Result<Form, TokenError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    if !is_form(&parts.headers) {
        return Err(TokenError::InvalidRequest(
            "the content type must be application/x-www-form-urlencoded",
        ));
    }
    let basic = basic_credentials(&parts.headers)?;
    let body = read_body(config, &parts.headers, body).await?;
    let fields = TokenRequest::from_form(&body)?;
    let address = (config.client_address)(&parts);
    Ok(Form {
        basic,
        fields,
        address,
    })
}

/// Reads the body, refusing more than the limit without reading further.
async fn read_body<B>(
    config: &EndpointConfig,
    headers: &HeaderMap,
    body: B,
) -> Result<Bytes, TokenError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > config.body_limit as u64) {
        return Err(TokenError::PayloadTooLarge);
    }
    let collect = Limited::new(body, config.body_limit).collect();
    let collected = match config.body_timeout {
        Some(limit) => tokio::time::timeout(limit, collect)
            .await
            .map_err(|_| TokenError::BodyTimeout)?,
        None => collect.await,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(TokenError::PayloadTooLarge),
        Err(_) => Err(TokenError::InvalidRequest(
            "the request body could not be read",
        )),
    }
}
