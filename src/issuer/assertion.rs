//! Input JWTs (client assertions, RFC 7523) from external issuers: an
//! endpoint stage, before and independent of the pluggable verifier.
//! Verification against the keys the application trusts for the JWT's
//! `iss`; date and lifetime checks; policies; single use (the `jti` spent
//! by the caller). The verifier then gets the [`VerifiedAssertion`] and
//! decides only who it stands for.
//! (Tokens of federated applications are traded instead: see `federation`.)

use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::application::Application;
use super::config::EndpointConfig;
use super::credentials::{ExternalIdentity, GrantType, VerifiedAssertion};
use super::error::{Rejection, VerifyError};
use super::mint;
use crate::keys::{ASYMMETRIC_ALGORITHMS, JwtError, VerificationKeys};
use crate::policy::{Policy, PolicyContext};
use crate::store::TokenDigest;

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

/// Whether a JOSE `typ` marks a JWT made for another purpose, which is no
/// input JWT even when a trusted issuer signed it (RFC 8725 §3.11, §3.12):
/// a DPoP proof (RFC 9449), a security event token (RFC 8417), a logout
/// token (OpenID Back-Channel Logout). With or without `application/`, in
/// any case (RFC 7515 §4.1.9).
fn is_another_kind_of_jwt(typ: Option<&str>) -> bool {
    let Some(typ) = typ else { return false };
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    ["dpop+jwt", "secevent+jwt", "logout+jwt"]
        .iter()
        .any(|other| typ.eq_ignore_ascii_case(other))
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
    /// Read by [`VerifiedAssertion::principal`]: must be strings.
    #[serde(rename = "preferred_username")]
    _preferred_username: Option<String>,
    #[serde(rename = "nickname")]
    _nickname: Option<String>,
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

/// The `jti` of a verified single-use input JWT, not yet spent: the caller
/// spends it once the request is otherwise granted (see [`check`]).
#[must_use = "a single-use assertion is accepted only once its jti is spent"]
pub(crate) struct SingleUse {
    /// The replay-cache key: `exp`, then a digest of `iss` and `jti`
    /// ([`replay_key`]).
    key: String,
    /// Until when it is remembered (Unix seconds): as long as the JWT is
    /// accepted, leeway included.
    expires_at: u64,
}

impl SingleUse {
    /// Records the `jti` as used: refused (`AssertionReplayed`) if it was
    /// used before; atomic across instances sharing the replay cache.
    pub(crate) async fn spend(&self, config: &EndpointConfig) -> Result<(), VerifyError> {
        if config.replay.first_use(&self.key, self.expires_at).await? {
            Ok(())
        } else {
            Err(Rejection::AssertionReplayed.into())
        }
    }

    /// Gives a spent `jti` back, after its request could not be answered
    /// (503) and no token was issued: the client may send the JWT again.
    /// If the replay cache cannot, the JWT stays used up (logged).
    pub(crate) async fn give_back(self, config: &EndpointConfig) {
        if let Err(error) = config.replay.forget(&self.key).await {
            tracing::warn!(%error, "a single-use JWT's jti could not be given back");
        }
    }
}

/// The replay-cache key of a JWT: its `exp` (whole seconds, 12 digits),
/// then a digest of `iss` and `jti` (a `jti` is only unique per issuer).
///
/// A replay is the same signed JWT again, so its `exp` is the same. Another
/// JWT with the same `jti` but another `exp` can only come from whoever
/// holds the issuer's key, who could as well pick a new `jti`: it is not a
/// replay. Leading with `exp` puts the keys of one moment next to each
/// other, so a SQL store's index takes each batch of first uses into a few
/// recent pages instead of one random page of the whole cache each.
/// Measured on SQLite over two minutes of single-use JWTs living 20 s (a
/// cache of 400,000–500,000 keys): p99 11.0–11.2 ms before, 7.0 ms after,
/// and 8 % more requests per second.
fn replay_key(iss: &str, jti: &str, exp: f64) -> String {
    let digest = TokenDigest::of(&format!("{iss}\u{0}{jti}")).to_hex();
    format!("{:012}-{digest}", exp.ceil() as u64)
}

/// Verifies an input JWT for `application`; `scopes` (those requested that
/// the application allows) and `grant_type` are what its policies see.
/// Its `aud` must name this server (RFC 7523 §3): the token endpoint's URL,
/// the application's issuer, or one of the application's assertion
/// audiences, unless the application accepts any audience.
///
/// A single-use JWT's `jti` is checked for presence here but spent by the
/// caller, before the verifier sees the JWT: the token endpoint waits for
/// that write (a commit, with a SQL store) without holding the attempt
/// limiter's slots; a JWT these checks refuse does not burn its `jti`.
pub(crate) async fn check(
    config: &EndpointConfig,
    application: &Application,
    token: &str,
    grant_type: GrantType,
    scopes: &[String],
) -> Result<(VerifiedAssertion, Option<SingleUse>), VerifyError> {
    let rules = &application.assertions;
    if rules.keys.is_empty() {
        return Err(Rejection::UntrustedAssertion.into());
    }

    // Each key narrows the algorithms further; HS256 only ever matches a
    // shared secret configured explicitly. Narrowed to the token's own
    // algorithm here, the validation needs no copy per key.
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| Rejection::InvalidAssertion(JwtError::Malformed))?;
    if is_another_kind_of_jwt(header.typ.as_deref()) {
        return Err(Rejection::InvalidAssertion(JwtError::InvalidClaims).into());
    }
    let algorithm = header.alg;
    if !ASYMMETRIC_ALGORITHMS.contains(&algorithm) && algorithm != Algorithm::HS256 {
        return Err(Rejection::InvalidAssertion(JwtError::NoMatchingKey).into());
    }
    let mut validation = Validation::new(algorithm);
    validation.leeway = rules.leeway.as_secs();
    validation.validate_nbf = true;
    if rules.any_audience {
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_aud = false;
    } else {
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let own = [config.token_url.as_str(), application.issuer()];
        let configured = rules.audiences.iter().map(String::as_str);
        validation.set_audience(&own.into_iter().chain(configured).collect::<Vec<_>>());
    }
    let claims: serde_json::Value = rules.keys.verify(token, &validation).await?.claims;
    let registered = Registered::deserialize(&claims)
        .map_err(|_| Rejection::InvalidAssertion(JwtError::InvalidClaims))?;
    if !registered.has_plain_identifiers() {
        return Err(Rejection::InvalidAssertion(JwtError::InvalidClaims).into());
    }

    // "exp must not be now or in the past"; iat must not be in the future.
    let now = mint::now() as f64;
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

    let single_use = match &registered.jti {
        Some(jti) if rules.single_use => Some(SingleUse {
            key: replay_key(&registered.iss, jti, registered.exp),
            expires_at: (registered.exp + leeway).ceil() as u64,
        }),
        None if rules.single_use => return Err(Rejection::AssertionReplayed.into()),
        _ => None,
    };

    permits(application, &claims, grant_type, scopes)?;

    let exp = std::time::Duration::try_from_secs_f64(registered.exp).unwrap_or_default();
    let verified = VerifiedAssertion {
        identity: ExternalIdentity::new(registered.iss, registered.sub),
        claims,
        expires: std::time::UNIX_EPOCH
            .checked_add(exp)
            .unwrap_or(std::time::UNIX_EPOCH),
    };
    Ok((verified, single_use))
}

/// Whether the application's policies pass the input JWT of `claims` for
/// `grant_type` and `scopes`. A token exchange asks again with the scopes it
/// is about to grant, for each input JWT of the request.
pub(crate) fn permits(
    application: &Application,
    claims: &serde_json::Value,
    grant_type: GrantType,
    scopes: &[String],
) -> Result<(), VerifyError> {
    let context = PolicyContext::new(claims, application.client_id(), grant_type.as_str(), scopes);
    match application.assertions.policies.evaluate(&context) {
        Ok(()) => Ok(()),
        Err(denied) => {
            tracing::debug!(client_id = %application.client_id(), reason = %denied.reason, "input JWT denied by policy");
            Err(Rejection::PolicyDenied.into())
        }
    }
}

/// The rules of input JWTs (client assertions) and federation, set on an
/// application.
impl Application {
    /// Accepts input JWTs verified by a remote JWKS (a platform that signs
    /// for many parties, such as a CI service) with neither a
    /// [policy](Self::with_policy) nor an
    /// [assertion audience](Self::with_assertion_audiences) to pin the ones
    /// meant for this application. Without it, such an application is
    /// refused when added to the endpoint: it would accept every token the
    /// platform signs, for anyone.
    pub fn danger_accept_unpinned_jwks(mut self) -> Self {
        self.assertions.unpinned = true;
        self
    }

    /// The longest an input JWT may be valid for: `exp - iat`, or
    /// `exp - now` when it has no `iat` (default
    /// [`DEFAULT_MAX_ASSERTION_LIFETIME`](Self::DEFAULT_MAX_ASSERTION_LIFETIME)).
    /// A longer-lived JWT is refused (`invalid_grant`).
    pub fn with_max_assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.assertions.max_lifetime = lifetime;
        self
    }

    /// The keys trusted to sign input JWTs (client assertions, RFC 7523),
    /// each bound to the issuer it speaks for (see [`VerificationKeys`]): an
    /// input JWT is verified only by the keys of the issuer its `iss` names.
    pub fn with_verification_keys(mut self, keys: VerificationKeys) -> Self {
        self.assertions.keys = keys;
        self
    }

    /// Adds a policy that every input JWT must pass (after its signature
    /// and dates are checked).
    pub fn with_policy(mut self, policy: impl Policy) -> Self {
        self.assertions.policies.push(policy);
        self
    }

    /// Also accepts input JWTs whose `aud` names one of these audiences. By
    /// default an input JWT's `aud` must name this server (RFC 7523 §3): the
    /// token endpoint's URL (what `private_key_jwt` clients send) or the
    /// application's issuer URL. A platform token minted for another
    /// audience (a CI job's OIDC token addressed to your deployment) needs
    /// its audience here.
    pub fn with_assertion_audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.assertions.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts input JWTs whatever their `aud` names, or without one: a JWT
    /// addressed to another relying party is then accepted here too, so
    /// whoever it was given to can log in with it (RFC 7523 §3 says the
    /// server MUST reject it). Pin the JWTs that are meant for this
    /// application with a [policy](Self::with_policy) instead.
    pub fn danger_accept_any_assertion_audience(mut self) -> Self {
        self.assertions.any_audience = true;
        self
    }

    /// Accepts each input JWT once: it must carry a `jti`, remembered until
    /// the JWT expires (off by default: platform tokens are often reused).
    pub fn with_single_use_assertions(mut self, single_use: bool) -> Self {
        self.assertions.single_use = single_use;
        self
    }

    /// Clock skew allowed on input JWTs' `exp`, `nbf` and `iat` (default 0,
    /// at most [`MAX_ASSERTION_LEEWAY`](Self::MAX_ASSERTION_LEEWAY)).
    pub fn with_assertion_leeway(mut self, leeway: Duration) -> Self {
        self.assertions.leeway = leeway;
        self
    }

    /// Accepts access tokens that this issuer minted for the application
    /// `client_id` as input JWTs (authentik's federated providers).
    pub fn with_federated_application(mut self, client_id: impl Into<String>) -> Self {
        self.assertions.federated_clients.push(client_id.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::replay_key;

    #[test]
    fn a_replay_key_names_one_jti_of_one_issuer_with_one_exp() {
        let key = replay_key("https://ci.example", "abc", 1_900_000_000.0);
        assert_eq!(
            key,
            replay_key("https://ci.example", "abc", 1_900_000_000.0)
        );
        // NumericDate may have a fraction: the key holds whole seconds.
        assert_eq!(
            key,
            replay_key("https://ci.example", "abc", 1_899_999_999.5)
        );
        for other in [
            replay_key("https://other.example", "abc", 1_900_000_000.0),
            replay_key("https://ci.example", "abd", 1_900_000_000.0),
            // Another JWT with the same jti: signed by the issuer's key.
            replay_key("https://ci.example", "abc", 1_900_000_001.0),
            // The NUL join has one reading.
            replay_key("https://ci.exampleabc", "", 1_900_000_000.0),
        ] {
            assert_ne!(key, other);
        }
    }

    #[test]
    fn replay_keys_sort_by_exp() {
        let mut keys: Vec<(u64, String)> = [99_999, 100_000, 1_900_000_000, 1_900_000_001]
            .into_iter()
            .flat_map(|exp| {
                ["a", "b", "c"].map(|jti| (exp, replay_key("https://ci.example", jti, exp as f64)))
            })
            .collect();
        keys.sort_by(|a, b| a.1.cmp(&b.1));
        assert!(keys.is_sorted_by_key(|(exp, _)| *exp), "{keys:?}");
    }
}
