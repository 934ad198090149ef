//! Policies: extra checks over an input JWT's claims before the token
//! endpoint trusts it (authentik's expression policies over
//! `request.context["oauth_jwt"]`).
//!
//! A policy is anything that implements [`Policy`]; closures
//! `Fn(&PolicyContext) -> bool` do. With the `cel` feature, `CelPolicy`
//! evaluates a CEL expression, so a configuration file can say
//! `claims.iss == "https://my.issuer"`.
//!
//! ```
//! use tower_m2m_auth::policy::{Policy, PolicyContext};
//!
//! let from_my_repo = |context: &PolicyContext<'_>| context.claims["repository"] == "org/repo";
//! let claims = serde_json::json!({"repository": "org/repo"});
//! let context = PolicyContext::new(&claims, "my-client", "client_credentials", &[]);
//! assert!(from_my_repo.evaluate(&context).is_ok());
//! ```
//!
//! This module knows nothing of HTTP.

#[cfg(feature = "cel")]
mod cel;

#[cfg(feature = "cel")]
pub use self::cel::{CelPolicy, CelPolicyError};

use std::sync::Arc;

/// What a policy sees. The endpoint makes one per request, shared by all the
/// application's policies.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PolicyContext<'a> {
    /// The verified claims of the input JWT (authentik's `oauth_jwt`).
    pub claims: &'a serde_json::Value,
    /// The `client_id` of the request.
    pub client_id: &'a str,
    /// The requested grant type (`oauth_grant_type`).
    pub grant_type: &'a str,
    /// The scopes granted so far, after clamping (`oauth_scopes`).
    pub scopes: &'a [String],
    /// The claims as CEL values, converted by the first CEL policy that
    /// needs them and reused by the others.
    #[cfg(feature = "cel")]
    cel_claims: std::sync::OnceLock<Result<::cel::Value, String>>,
}

impl<'a> PolicyContext<'a> {
    /// A context.
    pub fn new(
        claims: &'a serde_json::Value,
        client_id: &'a str,
        grant_type: &'a str,
        scopes: &'a [String],
    ) -> Self {
        Self {
            claims,
            client_id,
            grant_type,
            scopes,
            #[cfg(feature = "cel")]
            cel_claims: std::sync::OnceLock::new(),
        }
    }
}

/// A policy said no. The reason is for logs only, never for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy denied: {reason}")]
pub struct Denied {
    /// Why, for the operator.
    pub reason: String,
}

impl Denied {
    /// A denial with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// A check over an input JWT that must pass for the token endpoint to trust it.
pub trait Policy: Send + Sync + 'static {
    /// Passes, or says why not.
    fn evaluate(&self, context: &PolicyContext<'_>) -> Result<(), Denied>;
}

impl<F> Policy for F
where
    F: Fn(&PolicyContext<'_>) -> bool + Send + Sync + 'static,
{
    fn evaluate(&self, context: &PolicyContext<'_>) -> Result<(), Denied> {
        if self(context) {
            Ok(())
        } else {
            Err(Denied::new("closure policy returned false"))
        }
    }
}

/// Several policies that must all pass.
#[derive(Clone, Default)]
pub struct Policies(Vec<Arc<dyn Policy>>);

impl Policies {
    /// No policy: everything passes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a policy.
    pub fn push(&mut self, policy: impl Policy) {
        self.0.push(Arc::new(policy));
    }

    /// Whether there is no policy.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Passes when every policy passes; stops at the first denial.
    pub fn evaluate(&self, context: &PolicyContext<'_>) -> Result<(), Denied> {
        self.0
            .iter()
            .try_for_each(|policy| policy.evaluate(context))
    }
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("count", &self.0.len())
            .finish()
    }
}
