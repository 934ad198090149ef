//! Policies written in CEL (the `cel` feature).

use cel::{Context, Program, Value};

use super::{Denied, Policy, PolicyContext};

/// The variables an expression may use.
const VARIABLES: [&str; 4] = ["claims", "client_id", "grant_type", "scopes"];

/// A policy written as a [CEL](https://cel.dev) expression over `claims` (the
/// input JWT's claims), `client_id`, `grant_type` and `scopes`. It passes only
/// when the expression evaluates to `true`; any other value, or an error
/// (such as a missing claim), denies.
///
/// ```
/// use tower_m2m_auth::policy::{CelPolicy, Policy, PolicyContext};
///
/// let policy = CelPolicy::new(r#"claims.iss == "https://my.issuer" && claims.sub.startsWith("repo:org/")"#).unwrap();
/// let claims = serde_json::json!({"iss": "https://my.issuer", "sub": "repo:org/app"});
/// assert!(policy.evaluate(&PolicyContext::new(&claims, "ci", "client_credentials", &[])).is_ok());
/// let claims = serde_json::json!({"iss": "https://elsewhere"});
/// assert!(policy.evaluate(&PolicyContext::new(&claims, "ci", "client_credentials", &[])).is_err());
/// ```
pub struct CelPolicy {
    source: String,
    program: Program,
}

/// A CEL expression that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CelPolicyError {
    /// It does not parse.
    #[error("CEL expression does not parse: {0}")]
    Parse(String),
    /// It uses a variable that policies do not have.
    #[error(
        "CEL expression uses unknown variable {0:?} (known: claims, client_id, grant_type, scopes)"
    )]
    UnknownVariable(String),
}

impl CelPolicy {
    /// Compiles `expression`, refusing unknown variables up front.
    pub fn new(expression: &str) -> Result<Self, CelPolicyError> {
        let program =
            Program::compile(expression).map_err(|e| CelPolicyError::Parse(e.to_string()))?;
        let references = program.references();
        if let Some(unknown) = references
            .variables()
            .into_iter()
            .find(|name| !VARIABLES.contains(name))
        {
            return Err(CelPolicyError::UnknownVariable(unknown.to_owned()));
        }
        Ok(Self {
            source: expression.to_owned(),
            program,
        })
    }

    /// The expression.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl Policy for CelPolicy {
    fn evaluate(&self, context: &PolicyContext<'_>) -> Result<(), Denied> {
        let deny = |why: String| Denied::new(format!("CEL `{}`: {why}", self.source));
        // `cel::Context` is not `Send`: built and dropped inside this call.
        let mut cel_context = Context::default();
        let claims = cel::to_value(context.claims).map_err(|e| deny(e.to_string()))?;
        cel_context.add_variable_from_value("claims", claims);
        cel_context.add_variable_from_value("client_id", context.client_id);
        cel_context.add_variable_from_value("grant_type", context.grant_type);
        let scopes: Vec<Value> = context
            .scopes
            .iter()
            .map(|s| Value::from(s.as_str()))
            .collect();
        cel_context.add_variable_from_value("scopes", scopes);
        match self.program.execute(&cel_context) {
            Ok(Value::Bool(true)) => Ok(()),
            Ok(other) => Err(deny(format!("evaluated to {other:?}"))),
            Err(error) => Err(deny(error.to_string())),
        }
    }
}

impl std::fmt::Debug for CelPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelPolicy")
            .field("source", &self.source)
            .finish()
    }
}
