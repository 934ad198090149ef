//! The checks themselves, independent of the tower plumbing: the issuer
//! chosen by `iss`, the access-token rules (`typ`, required claims,
//! audiences, no bound token as a bearer token), the token cache. The token
//! comes out of the request in `dpop` (either scheme). The signature
//! and the key refresh are the shared key source's
//! ([`TrustedIssuer`](crate::keys::TrustedIssuer)).

use std::sync::Arc;

use http::{Request, Response};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::cache::{self, CacheSettings, TokenCache, TokenHash};
use super::dpop::{self, DpopValidation};
use super::extract::StandardClaims;
use super::response::reject;
use super::scope::RequiredScopes;
use super::trusted::Issuer;
use super::{AuthError, OnAuthError, VerifiedClaims};
use crate::BoxFuture;
use crate::keys::{JwtError, Peeked, TrustedIssuer};

/// A token's verification, as the response future awaits it.
pub(crate) type VerifyFuture = BoxFuture<'static, Result<VerifiedClaims, AuthError>>;

/// The algorithms accepted unless configured otherwise.
pub(crate) const DEFAULT_ALGORITHMS: &[Algorithm] = crate::keys::ASYMMETRIC_ALGORITHMS;

/// Everything the middleware needs, shared by every clone of the layer and
/// its services.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) issuers: Vec<Issuer>,
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) leeway: u64,
    /// Whether tokens without `typ: at+jwt` may pass as access tokens (see
    /// [`JwtValidateLayer::allow_untyped_access_tokens`](super::JwtValidateLayer::allow_untyped_access_tokens)).
    pub(crate) untyped_access_tokens: bool,
    pub(crate) scopes: Option<RequiredScopes>,
    pub(crate) allow_missing: bool,
    pub(crate) cache_settings: CacheSettings,
    /// Whether checks are counted, timed and traced.
    pub(crate) instrument: bool,
    pub(crate) dpop: DpopValidation,
    /// Derived from the above by [`Config::rebuild`].
    compiled: Vec<CompiledIssuer>,
    pub(crate) cache: Option<TokenCache>,
}

#[derive(Clone)]
struct CompiledIssuer {
    keys: TrustedIssuer,
    /// One `Validation` per algorithm of the allow-list: jsonwebtoken
    /// refuses a `Validation` whose algorithms span several families, and
    /// `KeySet::verify` narrows (clones) a list of several.
    validations: Vec<(Algorithm, Validation)>,
    has_audience: bool,
    /// Untyped access tokens are accepted from this issuer (its own
    /// setting, else the layer's).
    untyped_access_tokens: bool,
}

impl CompiledIssuer {
    fn validation(&self, algorithm: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(allowed, _)| *allowed == algorithm)
            .map(|(_, validation)| validation)
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut config = Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: 30,
            untyped_access_tokens: false,
            scopes: None,
            allow_missing: false,
            cache_settings: CacheSettings::default(),
            instrument: true,
            dpop: DpopValidation::default(),
            compiled: Vec::new(),
            cache: None,
        };
        config.rebuild();
        config
    }
}

impl Config {
    /// Recomputes the per-issuer validations and starts a fresh token cache,
    /// so a token verified under an older configuration is never served
    /// from the cache under a newer one.
    pub(crate) fn rebuild(&mut self) {
        self.compiled = self
            .issuers
            .iter()
            .map(|issuer| {
                let audiences = if issuer.audiences.is_empty() {
                    &self.audiences
                } else {
                    &issuer.audiences
                };
                let validations = self
                    .algorithms
                    .iter()
                    .map(|&algorithm| {
                        let mut validation = Validation::new(algorithm);
                        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                        validation.set_issuer(&[issuer.iss()]);
                        // With no audience configured, `aud` is still
                        // required, and no value matches: fail closed.
                        validation.set_audience(audiences);
                        validation.validate_aud = true;
                        validation.validate_exp = true;
                        validation.validate_nbf = true;
                        validation.leeway = self.leeway;
                        (algorithm, validation)
                    })
                    .collect();
                CompiledIssuer {
                    keys: issuer.keys.clone(),
                    validations,
                    has_audience: !audiences.is_empty(),
                    untyped_access_tokens: issuer
                        .untyped_access_tokens
                        .unwrap_or(self.untyped_access_tokens),
                }
            })
            .collect();
        self.cache = TokenCache::new(self.cache_settings);
    }

    /// The cached claims of `token`, if it was verified before and has not
    /// expired; and the token's digest, to cache it after verification.
    #[inline]
    pub(crate) fn cached(&self, token: &str) -> (Option<VerifiedClaims>, Option<TokenHash>) {
        match &self.cache {
            None => (None, None),
            Some(cache) => {
                let hash = cache::hash(token);
                let cached = cache.get(&hash, cache::now());
                if self.instrument {
                    let result = if cached.is_some() { "hit" } else { "miss" };
                    metrics::counter!(crate::observe::TOKEN_CACHE, "result" => result).increment(1);
                }
                (cached, Some(hash))
            }
        }
    }

    /// Verifies `token` against the keys of the issuer its `iss` names.
    pub(crate) async fn verify(
        self: Arc<Self>,
        token: String,
        hash: Option<TokenHash>,
    ) -> Result<VerifiedClaims, AuthError> {
        let result = self.verify_token(&token).await;
        match &result {
            Ok(claims) => {
                if let (Some(cache), Some(hash)) = (&self.cache, hash) {
                    cache.insert(hash, claims.clone(), cache::now());
                }
            }
            Err(error) => tracing::debug!(%error, "bearer token rejected"),
        }
        result
    }

    async fn verify_token(&self, token: &str) -> Result<VerifiedClaims, AuthError> {
        let peeked = Peeked::parse(token)?;
        let iss = peeked.iss.as_deref().ok_or(JwtError::InvalidClaims)?;
        let issuer = self
            .compiled
            .iter()
            .find(|issuer| issuer.keys.iss() == iss)
            .ok_or(JwtError::InvalidIssuer)?;
        // RFC 9068 §4: an access token says so in its `typ`. A plain JWT
        // (an ID token above all) passes only where explicitly allowed, and
        // then only with an access-token claim (checked once verified).
        let typ = TokenTyp::of(peeked.typ.as_deref());
        match typ {
            TokenTyp::AccessToken => {}
            TokenTyp::Plain if issuer.untyped_access_tokens => {}
            TokenTyp::Plain | TokenTyp::Other => return Err(AuthError::WrongTokenType),
        }
        let validation = issuer
            .validation(peeked.alg)
            .ok_or(JwtError::NoMatchingKey)?;
        let data = issuer
            .keys
            .verify_token::<StandardClaims>(token, validation)
            .await
            .inspect_err(|error| match error {
                JwtError::KeysUnavailable => {
                    tracing::warn!(iss, "no keys to verify tokens with");
                }
                JwtError::InvalidAudience if !issuer.has_audience => {
                    tracing::warn!(
                        iss,
                        "no audience is configured for this issuer: every token is refused"
                    );
                }
                _ => {}
            })?;
        if typ == TokenTyp::Plain && !has_access_token_claim(&peeked.payload) {
            return Err(AuthError::WrongTokenType);
        }
        Ok(VerifiedClaims::new(peeked.payload, data.claims))
    }
}

/// The checks after verification (required scopes), then the claims into
/// the request.
#[inline]
pub(crate) fn authorize<R, ReqBody, ResBody>(
    config: &Config,
    rejection: &mut R,
    mut request: Request<ReqBody>,
    claims: VerifiedClaims,
) -> Result<Request<ReqBody>, Response<ResBody>>
where
    R: OnAuthError<ResBody>,
{
    // RFC 9449 §7.2: a bound token never passes as a bearer token.
    if claims.dpop_thumbprint().is_some() && !dpop::uses_dpop(request.headers()) {
        return Err(reject(rejection, AuthError::DpopBoundToken, &request));
    }
    if let Some(Err(error)) = config.scopes.as_ref().map(|scopes| scopes.check(&claims)) {
        return Err(reject(rejection, error, &request));
    }
    request.extensions_mut().insert(claims);
    Ok(request)
}

/// Whether a verified claims set carries `client_id` (RFC 9068 §2.2),
/// `scope` or `scp`: claims of access tokens that an ID token never has
/// (OpenID Connect Core §2 defines none of them; authentik's ID tokens are
/// its access tokens without `azp`, `uid` and `scope`, this crate's without
/// `client_id`, `azp` and `scope`). `azp` does not count: OpenID Connect
/// ID tokens may carry it.
fn has_access_token_claim(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct AccessTokenClaims {
        #[serde(default)]
        client_id: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        scope: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        scp: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<AccessTokenClaims>(payload).is_ok_and(|claims| {
        claims.client_id.is_some() || claims.scope.is_some() || claims.scp.is_some()
    })
}

/// What a token's JOSE `typ` header says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenTyp {
    /// `at+jwt` or `application/at+jwt` (RFC 9068 §4, case-insensitive).
    AccessToken,
    /// No `typ`, or `JWT` / `application/jwt` (RFC 7519 §5.1): says
    /// nothing about what the token is for; ID tokens look like this.
    Plain,
    /// Any other type (`logout+jwt`, `secevent+jwt`, …): never an access
    /// token.
    Other,
}

impl TokenTyp {
    fn of(typ: Option<&str>) -> Self {
        let Some(typ) = typ else {
            return Self::Plain;
        };
        let bare = typ
            .get(..12)
            .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
            .map_or(typ, |_| &typ[12..]);
        if bare.eq_ignore_ascii_case("at+jwt") {
            Self::AccessToken
        } else if bare.eq_ignore_ascii_case("jwt") {
            Self::Plain
        } else {
            Self::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_classified_case_insensitively_with_or_without_media_type_prefix() {
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert_eq!(TokenTyp::of(Some(typ)), TokenTyp::AccessToken, "{typ}");
        }
        for typ in [None, Some("JWT"), Some("jwt"), Some("application/jwt")] {
            assert_eq!(TokenTyp::of(typ), TokenTyp::Plain, "{typ:?}");
        }
        for typ in [
            "",
            "logout+jwt",
            "application/",
            "at+jwt ",
            "dpop+jwt",
            "JWE",
        ] {
            assert_eq!(TokenTyp::of(Some(typ)), TokenTyp::Other, "{typ}");
        }
    }

    #[test]
    fn access_token_claims_are_told_apart_from_id_token_claims() {
        assert!(has_access_token_claim(br#"{"client_id":"a"}"#));
        assert!(has_access_token_claim(br#"{"scope":""}"#));
        assert!(has_access_token_claim(br#"{"scp":["read"]}"#));
        // An ID token: authentik's and this crate's alike.
        assert!(!has_access_token_claim(
            br#"{"iss":"i","sub":"s","aud":"a","exp":1,"azp":"a","preferred_username":"u"}"#
        ));
        assert!(!has_access_token_claim(br#"{"client_id":null}"#));
    }
}
