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

thread_local! {
    /// The standard library's functions and macros, built once per thread:
    /// each evaluation only adds its variables in a child scope.
    /// (`cel::Context` is not `Send`, so it cannot live in the policy.)
    static STANDARD: Context<'static, 'static> = Context::default();
}

impl Policy for CelPolicy {
    fn evaluate(&self, context: &PolicyContext<'_>) -> Result<(), Denied> {
        let deny =
            |why: &dyn std::fmt::Display| Denied::new(format!("CEL `{}`: {why}", self.source));
        // Converted once per request, for every CEL policy of the application.
        let claims = context
            .cel_claims
            .get_or_init(|| cel::to_value(context.claims).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| deny(e))?;
        let scopes: Vec<Value> = context
            .scopes
            .iter()
            .map(|s| Value::from(s.as_str()))
            .collect();
        let outcome = STANDARD.with(|standard| {
            let mut scope = standard.new_inner_scope();
            scope.add_variable_from_value("claims", claims.clone());
            scope.add_variable_from_value("client_id", context.client_id);
            scope.add_variable_from_value("grant_type", context.grant_type);
            scope.add_variable_from_value("scopes", scopes);
            self.program.execute(&scope)
        });
        match outcome {
            Ok(Value::Bool(true)) => Ok(()),
            Ok(other) => Err(deny(&format_args!("evaluated to {other:?}"))),
            Err(error) => Err(deny(&error)),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn policies_share_one_conversion_and_each_decides_on_its_own_request() {
        let claims = json!({"iss": "https://ci.example", "sub": "repo:org/app"});
        let scopes = vec!["read".to_owned()];
        let context = PolicyContext::new(&claims, "ci", "client_credentials", &scopes);
        let pass = CelPolicy::new(
            r#"claims.iss == "https://ci.example" && client_id == "ci" && "read" in scopes"#,
        )
        .unwrap();
        let fail = CelPolicy::new(r#"claims.sub.startsWith("repo:other/")"#).unwrap();

        assert!(context.cel_claims.get().is_none());
        assert!(pass.evaluate(&context).is_ok());
        assert!(context.cel_claims.get().is_some(), "converted once, kept");
        assert!(fail.evaluate(&context).is_err());
        assert!(pass.evaluate(&context).is_ok());

        // Another request's variables, not this one's: the per-thread
        // standard context keeps nothing between evaluations.
        let elsewhere = json!({"iss": "https://elsewhere", "sub": "repo:org/app"});
        let other = PolicyContext::new(&elsewhere, "ci", "client_credentials", &scopes);
        assert!(pass.evaluate(&other).is_err());
        let no_scope = PolicyContext::new(&claims, "ci", "client_credentials", &[]);
        assert!(pass.evaluate(&no_scope).is_err());
    }
}
