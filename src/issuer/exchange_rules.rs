//! The settings of token exchange (RFC 8693) and resource indicators
//! (RFC 8707) that an application holds: data and syntax only; the
//! `exchange` and `resource` stages apply them.

/// Which tokens an application accepts in token exchange (RFC 8693), and who
/// may act for their subjects. An application accepts no exchange until it
/// is given one ([`Application::with_token_exchange`](super::Application::with_token_exchange)),
/// and a `TokenExchange::new()` accepts no subject token until told which.
///
/// ```
/// use tower_m2m_auth::issuer::{Application, TokenExchange};
///
/// // The orders API trades the tokens that callers got for it (at
/// // `web-client`) for tokens of its own, to call the billing API.
/// let orders = Application::new("orders-api", "orders")
///     .with_resources(["https://billing.example.com"])
///     .with_token_exchange(TokenExchange::new().accept_tokens_of("web-client"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct TokenExchange {
    /// `client_id`s whose access tokens (minted here) are accepted.
    pub(crate) applications: Vec<String>,
    /// Whether input JWTs that the application trusts are accepted.
    pub(crate) jwts: bool,
    /// `(iss, sub)` of the actors allowed to act for any accepted subject.
    pub(crate) actors: Vec<(String, String)>,
}

impl TokenExchange {
    /// Rules that accept nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts the access tokens this endpoint minted for the application
    /// `client_id` as subject (and actor) tokens
    /// (`urn:ietf:params:oauth:token-type:access_token`). The application's
    /// own `client_id` is allowed: exchanging its own tokens narrows them.
    pub fn accept_tokens_of(mut self, client_id: impl Into<String>) -> Self {
        self.applications.push(client_id.into());
        self
    }

    /// Accepts the input JWTs that the application trusts (its trusted
    /// issuers, policies, audiences, lifetime and single-use rules: those of
    /// client assertions) as subject and actor tokens
    /// (`urn:ietf:params:oauth:token-type:jwt`).
    pub fn accept_trusted_jwts(mut self) -> Self {
        self.jwts = true;
        self
    }

    /// Lets the actor with this `iss` and `sub` (the claims of its actor
    /// token) act for every accepted subject (delegation, RFC 8693 §1.1). A
    /// subject token whose `may_act` names its actors (§4.4) allows those
    /// only, whatever this says; without either, an actor token is refused.
    pub fn allow_actor(mut self, issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        self.actors.push((issuer.into(), subject.into()));
        self
    }

    /// The `client_id`s whose tokens are accepted.
    pub fn accepted_applications(&self) -> &[String] {
        &self.applications
    }

    /// Its settings are sound for an application that does (`has_keys`) or
    /// does not trust input JWTs; else the name of the rule that cannot apply.
    pub(crate) fn check(&self, has_keys: bool) -> Result<(), &'static str> {
        if self.jwts && !has_keys {
            return Err("accept_trusted_jwts");
        }
        Ok(())
    }
}

/// Whether `name` may be listed as a resource or audience: not empty, no
/// whitespace or control characters, no fragment.
pub(crate) fn is_resource_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
}

/// Whether `value` is an absolute URI (RFC 3986 §4.3: a scheme, `:`, and
/// more) without a fragment, as RFC 8707 §2 requires of `resource`.
pub(crate) fn is_resource_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && is_resource_name(value)
}

#[cfg(test)]
mod tests {
    use super::is_resource_uri;

    #[test]
    fn resource_uris_are_absolute_without_fragment() {
        let good = [
            "https://api.example.com/orders",
            "urn:example:billing",
            "http://a:1/x?y=z",
        ];
        for uri in good {
            assert!(is_resource_uri(uri), "{uri}");
        }
        let bad = [
            "/orders",
            "orders",
            "https://a.example/#x",
            "1http://a",
            ":x",
            "https:",
            "https://a b",
        ];
        for uri in bad {
            assert!(!is_resource_uri(uri), "{uri}");
        }
    }
}
