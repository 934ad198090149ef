//! The verified claims of a request's token, as the middleware leaves them in
//! the request's extensions.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};

/// The verified claims of the request's access token.
///
/// [`JwtValidate`](super::JwtValidate) inserts one into the extensions of
/// every request it lets through with a token. It is cheap to clone (an
/// `Arc`); the standard claims are parsed once, at verification, and the
/// whole claims set is kept as the token's JSON, for
/// [`deserialize`](Self::deserialize) into a type of your own.
///
/// - axum (feature `axum`): take [`Claims<T>`] or `VerifiedClaims` as a
///   handler argument (or `Option<…>` of either, for
///   [optional tokens](super::JwtValidateLayer::allow_missing_token)).
/// - tonic: `request.extensions().get::<VerifiedClaims>()` in the service
///   method (tonic keeps the HTTP request's extensions).
/// - anything else: `request.extensions().get::<VerifiedClaims>()`.
#[derive(Clone)]
pub struct VerifiedClaims {
    inner: Arc<Inner>,
}

struct Inner {
    json: Box<[u8]>,
    standard: StandardClaims,
}

/// The registered claims (RFC 7519 §4.1) and those of RFC 9068 and RFC 8693
/// the middleware looks at.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct StandardClaims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    aud: Vec<String>,
    #[serde(default)]
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    /// `scope` (space-separated, RFC 9068 §2.2.3) and `scp` (an array, as
    /// some issuers send), merged.
    #[serde(default, deserialize_with = "space_separated")]
    scope: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    scp: Vec<String>,
    /// RFC 7800 / RFC 9449 §6.1: the key a token is bound to.
    #[serde(default)]
    cnf: Option<Confirmation>,
}

/// The `cnf` claim: the DPoP key's thumbprint.
#[derive(Debug, Clone, Default, Deserialize)]
struct Confirmation {
    #[serde(default)]
    jkt: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

fn space_separated<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => one.split_ascii_whitespace().map(str::to_owned).collect(),
        Some(OneOrMany::Many(many)) => many,
    })
}

impl VerifiedClaims {
    pub(crate) fn new(json: Vec<u8>, mut standard: StandardClaims) -> Self {
        let scp = std::mem::take(&mut standard.scp);
        for scope in scp {
            if !standard.scope.contains(&scope) {
                standard.scope.push(scope);
            }
        }
        Self {
            inner: Arc::new(Inner {
                json: json.into_boxed_slice(),
                standard,
            }),
        }
    }

    /// `iss`: who issued the token.
    pub fn issuer(&self) -> &str {
        &self.inner.standard.iss
    }

    /// `sub`: whom the token is about (for a client-credentials token, the
    /// service account).
    pub fn subject(&self) -> Option<&str> {
        self.inner.standard.sub.as_deref()
    }

    /// `aud`: the audiences (one of which was accepted).
    pub fn audiences(&self) -> &[String] {
        &self.inner.standard.aud
    }

    /// `exp`, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.inner.standard.exp
    }

    /// `nbf`, if present.
    pub fn not_before(&self) -> Option<u64> {
        self.inner.standard.nbf
    }

    /// `iat`, if present.
    pub fn issued_at(&self) -> Option<u64> {
        self.inner.standard.iat
    }

    /// `jti`, if present.
    pub fn token_id(&self) -> Option<&str> {
        self.inner.standard.jti.as_deref()
    }

    /// The thumbprint of the DPoP key the token is bound to (`cnf.jkt`,
    /// RFC 9449 §6.1), if it is bound. The middleware has checked that the
    /// request's proof was signed by that key.
    pub fn dpop_thumbprint(&self) -> Option<&str> {
        self.inner.standard.cnf.as_ref()?.jkt.as_deref()
    }

    /// `client_id` (RFC 9068 §2.2), if present.
    pub fn client_id(&self) -> Option<&str> {
        self.inner.standard.client_id.as_deref()
    }

    /// The granted scopes: the words of `scope`, and the entries of `scp`.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.inner.standard.scope.iter().map(String::as_str)
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner.standard.scope.iter().any(|s| s == scope)
    }

    /// The claims set as the token carried it (JSON).
    pub fn json(&self) -> &[u8] {
        &self.inner.json
    }

    /// The claims set as a type of your own.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.inner.json)
    }

    /// An approximate heap size, for the token cache's memory bound.
    pub(crate) fn weight(&self) -> usize {
        let s = &self.inner.standard;
        let strings = s.iss.len()
            + s.sub.as_ref().map_or(0, String::len)
            + s.jti.as_ref().map_or(0, String::len)
            + s.client_id.as_ref().map_or(0, String::len)
            + s.aud
                .iter()
                .chain(&s.scope)
                .map(|v| v.len() + 24)
                .sum::<usize>();
        self.inner.json.len() + strings + std::mem::size_of::<Inner>() + 64
    }
}

impl fmt::Debug for VerifiedClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.inner.standard;
        f.debug_struct("VerifiedClaims")
            .field("iss", &s.iss)
            .field("sub", &s.sub)
            .field("aud", &s.aud)
            .field("exp", &s.exp)
            .field("scope", &s.scope)
            .finish_non_exhaustive()
    }
}

/// Claims of the request's token as a type of your own: an axum extractor
/// (feature `axum`), also usable by hand with
/// [`Claims::from_verified`].
///
/// ```
/// # #[cfg(feature = "axum")]
/// # mod example {
/// use serde::Deserialize;
/// use tower_m2m_auth::validate::Claims;
///
/// #[derive(Deserialize)]
/// struct MyClaims {
///     sub: String,
///     scope: String,
/// }
///
/// async fn handler(Claims(claims): Claims<MyClaims>) -> String {
///     format!("hello {} ({})", claims.sub, claims.scope)
/// }
/// # }
/// ```
///
/// As an extractor, it refuses requests that carry no verified claims with
/// 401 (`Option<Claims<T>>` gets `None` instead), and claims that do not fit
/// `T` with 401 `invalid_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims<T>(pub T);

impl<T> std::ops::Deref for Claims<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> Claims<T> {
    /// Deserializes verified claims into `T`.
    pub fn from_verified(claims: &VerifiedClaims) -> Result<Self, serde_json::Error> {
        claims.deserialize().map(Claims)
    }
}

#[cfg(feature = "axum")]
pub use self::with_axum::ClaimsRejection;

#[cfg(feature = "axum")]
mod with_axum {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::header::{HeaderValue, WWW_AUTHENTICATE};
    use http::request::Parts;
    use serde::de::DeserializeOwned;

    use super::{Claims, VerifiedClaims};

    /// Why the [`Claims`] or [`VerifiedClaims`] extractor refused a request.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum ClaimsRejection {
        /// The request carries no verified claims: it had no token (in
        /// optional mode), or the route is not behind
        /// [`JwtValidateLayer`](crate::validate::JwtValidateLayer).
        #[error("no verified bearer token")]
        Missing,
        /// The claims do not fit the handler's type.
        #[error("the token lacks a claim this service needs")]
        Mismatch,
    }

    impl IntoResponse for ClaimsRejection {
        fn into_response(self) -> Response {
            let challenge = match self {
                ClaimsRejection::Missing => "Bearer",
                ClaimsRejection::Mismatch => {
                    "Bearer error=\"invalid_token\", error_description=\"the token lacks a claim this service needs\""
                }
            };
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            response
        }
    }

    fn deserialize<T: DeserializeOwned>(claims: &VerifiedClaims) -> Result<T, ClaimsRejection> {
        claims.deserialize().map_err(|error| {
            tracing::debug!(%error, "verified claims do not fit the handler's type");
            ClaimsRejection::Mismatch
        })
    }

    impl<S: Sync> FromRequestParts<S> for VerifiedClaims {
        type Rejection = ClaimsRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<VerifiedClaims>()
                .cloned()
                .ok_or(ClaimsRejection::Missing)
        }
    }

    impl<S: Sync> OptionalFromRequestParts<S> for VerifiedClaims {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<VerifiedClaims>().cloned())
        }
    }

    impl<S: Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
        type Rejection = ClaimsRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            let claims = parts
                .extensions
                .get::<VerifiedClaims>()
                .ok_or(ClaimsRejection::Missing)?;
            deserialize(claims).map(Claims)
        }
    }

    impl<S: Sync, T: DeserializeOwned> OptionalFromRequestParts<S> for Claims<T> {
        type Rejection = ClaimsRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            match parts.extensions.get::<VerifiedClaims>() {
                None => Ok(None),
                Some(claims) => deserialize(claims).map(|claims| Some(Claims(claims))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> VerifiedClaims {
        let standard = serde_json::from_str(json).unwrap();
        VerifiedClaims::new(json.as_bytes().to_vec(), standard)
    }

    #[test]
    fn scope_and_scp_are_merged() {
        let claims =
            claims(r#"{"iss":"i","aud":"a","exp":1,"scope":"read write","scp":["admin","read"]}"#);
        assert_eq!(
            claims.scopes().collect::<Vec<_>>(),
            ["read", "write", "admin"]
        );
        assert!(claims.has_scope("admin"));
        assert_eq!(claims.audiences(), ["a"]);
    }

    #[test]
    fn claims_deserialize_into_any_type() {
        #[derive(Deserialize)]
        struct Mine {
            sub: String,
            tenant: u32,
        }
        let mine: Mine = claims(r#"{"iss":"i","aud":["a","b"],"exp":1,"sub":"s","tenant":7}"#)
            .deserialize()
            .unwrap();
        assert_eq!((mine.sub.as_str(), mine.tenant), ("s", 7));
    }
}
