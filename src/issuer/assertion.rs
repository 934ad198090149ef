//! Input JWTs (client assertions) from external issuers: verification
//! against the application's trusted keys; date and lifetime checks; single
//! use; policies; and the identity they stand for. (Tokens of federated
//! applications are traded by the endpoint: see `federation`.)

use jsonwebtoken::{Algorithm, Validation};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::claims;
use super::{
    Application, ClientAuthentication, ExternalIdentity, Principal, Rejection, VerifyError,
};
use crate::keys::{ASYMMETRIC_ALGORITHMS, JwtError};
use crate::policy::PolicyContext;
use crate::store::{CredentialStore, ExternalAccount, ReplayCache, TokenDigest};

/// The `client_assertion_type` of RFC 7523 §2.2.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Whether `secret` is a compact JWS (three base64url parts). A base64
/// `username:token` secret never contains a dot.
pub(crate) fn is_compact_jws(secret: &str) -> bool {
    let mut parts = secret.split('.');
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(s), None) if base64url(h) && base64url(p) && base64url(s)
    )
}

/// The claims read from an input JWT besides the whole claim set.
#[derive(Deserialize)]
struct Registered {
    iss: String,
    sub: String,
    /// NumericDate may have a fraction (RFC 7519 §2).
    exp: f64,
    iat: Option<f64>,
    jti: Option<String>,
    preferred_username: Option<String>,
    nickname: Option<String>,
}

impl Registered {
    /// Whether `iss`, `sub` and `jti` are free of control characters. They
    /// are joined with a NUL into the identity (`iss`, `sub`) and the replay
    /// key (`iss`, `jti`): without a NUL in them, each join has one reading,
    /// so no two pairs share an account or a replay entry.
    fn has_plain_identifiers(&self) -> bool {
        let plain = |value: &str| !value.chars().any(char::is_control);
        plain(&self.iss) && plain(&self.sub) && self.jti.as_deref().is_none_or(plain)
    }
}

/// Verifies an input JWT for `request.application` and says who it stands for.
///
/// A JWT from an external issuer stands for an automatic service account
/// that `store` records on first use (see
/// [`CredentialStore::external_account`]), after every check and policy has
/// passed: a disabled record refuses the JWT, and the stored username (which
/// may be disambiguated) names the client.
pub(crate) async fn verify<S: CredentialStore, R: ReplayCache>(
    request: &ClientAuthentication,
    token: &str,
    store: &S,
    replay: &R,
) -> Result<Principal, VerifyError> {
    let application = &request.application;
    let rules = &application.assertions;
    if rules.keys.is_empty() {
        return Err(Rejection::UntrustedAssertion.into());
    }

    // Each key narrows the algorithms further; HS256 only ever matches a
    // shared secret configured explicitly. Narrowed to the token's own
    // algorithm here, the validation needs no copy per key.
    let algorithm = jsonwebtoken::decode_header(token)
        .map_err(|_| Rejection::InvalidAssertion(JwtError::Malformed))?
        .alg;
    if !ASYMMETRIC_ALGORITHMS.contains(&algorithm) && algorithm != Algorithm::HS256 {
        return Err(Rejection::InvalidAssertion(JwtError::NoMatchingKey).into());
    }
    let mut validation = Validation::new(algorithm);
    validation.leeway = rules.leeway.as_secs();
    validation.validate_nbf = true;
    if rules.audiences.is_empty() {
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_aud = false;
    } else {
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.set_audience(&rules.audiences);
    }
    let claims: serde_json::Value = match rules.keys.verify(token, &validation).await {
        Ok(data) => data.claims,
        Err(JwtError::KeysUnavailable) => return Err(VerifyError::KeysUnavailable),
        Err(error) => return Err(Rejection::InvalidAssertion(error).into()),
    };
    let registered = Registered::deserialize(&claims)
        .map_err(|_| Rejection::InvalidAssertion(JwtError::InvalidClaims))?;
    if !registered.has_plain_identifiers() {
        return Err(Rejection::InvalidAssertion(JwtError::InvalidClaims).into());
    }

    // "exp must not be now or in the past"; iat must not be in the future.
    let now = claims::now() as f64;
    let leeway = rules.leeway.as_secs_f64();
    if registered.exp + leeway <= now {
        return Err(Rejection::InvalidAssertion(JwtError::Expired).into());
    }
    if registered.iat.is_some_and(|iat| iat > now + leeway) {
        return Err(Rejection::InvalidAssertion(JwtError::NotYetValid).into());
    }
    // A JWT valid for years is a standing credential, not a platform token.
    let lifetime = registered.exp - registered.iat.unwrap_or(now);
    if lifetime > rules.max_lifetime.as_secs_f64() {
        return Err(Rejection::AssertionLifetime.into());
    }

    if rules.single_use {
        let jti = registered
            .jti
            .as_deref()
            .ok_or(Rejection::AssertionReplayed)?;
        // Key on the issuer too: jti is only unique per issuer. Remember it as
        // long as the JWT is accepted, leeway included.
        let key = TokenDigest::of(&format!("{}\u{0}{jti}", registered.iss)).to_hex();
        if !replay
            .first_use(&key, (registered.exp + leeway).ceil() as u64)
            .await?
        {
            return Err(Rejection::AssertionReplayed.into());
        }
    }

    let context = PolicyContext::new(
        &claims,
        application.client_id(),
        request.grant_type.as_str(),
        &request.scopes,
    );
    if let Err(denied) = rules.policies.evaluate(&context) {
        tracing::debug!(client_id = %application.client_id(), reason = %denied.reason, "input JWT denied by policy");
        return Err(Rejection::PolicyDenied.into());
    }

    let expires = std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::try_from_secs_f64(registered.exp).unwrap_or_default());
    let mut principal = principal(application, registered);
    if let Some(external) = principal.external.clone() {
        let account = ExternalAccount::new(external.issuer, external.subject, &principal.username)
            .with_name(&principal.name)
            .with_expires(expires);
        debug_assert_eq!((&account.id, account.uuid), (&principal.id, principal.uuid));
        if let Some(stored) = store.external_account(&account).await? {
            if !stored.active {
                return Err(Rejection::AccountDisabled.into());
            }
            // The id and UUID stay derived from (iss, sub).
            principal.username = stored.username;
            principal.name = stored.name;
        }
    }
    Ok(principal)
}

/// The service account an input JWT stands for. Its identity is keyed on
/// (issuer, subject), never on a username: a JWT that claims the username of
/// an existing account does not become that account.
fn principal(application: &Application, claims: Registered) -> Principal {
    let identity = format!("{}\u{0}{}", claims.iss, claims.sub);
    let username = claims
        .preferred_username
        .or(claims.nickname)
        .unwrap_or_else(|| format!("{}-{}", application.name(), claims.sub));
    let mut principal = Principal::automatic(application);
    principal.id = format!("jwt:{}", TokenDigest::of(&identity).to_hex());
    principal.uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, identity.as_bytes());
    principal.name = format!(
        "Autogenerated user from application {} (client credentials JWT)",
        application.name()
    );
    principal.username = username;
    principal.external = Some(ExternalIdentity::new(claims.iss, claims.sub));
    principal
}

/// Verifies the assertion of a request whose credentials are one.
pub(crate) async fn verify_request<S: CredentialStore, R: ReplayCache>(
    request: &ClientAuthentication,
    assertion: &secrecy::SecretString,
    store: &S,
    replay: &R,
) -> Result<Principal, VerifyError> {
    verify(request, assertion.expose_secret(), store, replay).await
}
