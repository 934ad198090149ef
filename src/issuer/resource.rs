//! Resource indicators (RFC 8707) and the `audience` of token exchange
//! (RFC 8693 §2.1): which audience (`aud`) a minted access token gets.
//!
//! An application lists the resources its tokens may be minted for
//! ([`Application::with_resources`]). A request names some with `resource`
//! (absolute URIs without a fragment, RFC 8707 §2) and/or `audience` (any
//! listed name), each repeatable:
//! - none named: `aud` is the `client_id`, as authentik mints it;
//! - each named one listed: `aud` is that one, or the array of them all
//!   (in request order, without duplicates) when several are named: one token
//!   for several resource servers, each of which finds itself in `aud`;
//! - any one not listed, or a malformed `resource`: `invalid_target`, and no
//!   token (RFC 8707 §2, RFC 8693 §2.2.2).

use super::application::Application;
use super::error::TokenError;
use super::exchange_rules::is_resource_uri;
use super::request::ExchangeFields;

/// The audiences `fields` name (`resource`, then `audience`), in order,
/// without duplicates; a `resource` that is not an absolute URI without a
/// fragment is `invalid_target` (RFC 8707 §2).
pub(crate) fn requested(fields: &ExchangeFields) -> Result<Vec<String>, TokenError> {
    if !fields.resource.iter().all(|r| is_resource_uri(r)) {
        return Err(TokenError::InvalidTarget);
    }
    let mut named: Vec<String> = Vec::new();
    for value in fields.resource.iter().chain(&fields.audience) {
        if !named.contains(value) {
            named.push(value.clone());
        }
    }
    Ok(named)
}

/// The `aud` of `application`'s token for the `named` audiences: empty (the
/// `client_id`) when none is named; `invalid_target` when one is not listed.
pub(crate) fn choose(
    application: &Application,
    named: Vec<String>,
) -> Result<Vec<String>, TokenError> {
    if named
        .iter()
        .all(|name| application.resources.contains(name))
    {
        Ok(named)
    } else {
        Err(TokenError::InvalidTarget)
    }
}

impl Application {
    /// The resources (RFC 8707) and audiences (RFC 8693) its access tokens
    /// may be minted for. A token request chooses among them with
    /// `resource` or `audience`, and the token's `aud` is the chosen one
    /// (several: an array); one not listed is `invalid_target`. Without
    /// them, `aud` is the `client_id`. None are listed by default.
    ///
    /// ```
    /// use tower_m2m_auth::issuer::Application;
    ///
    /// let app = Application::new("orders-client", "orders")
    ///     .with_resources(["https://api.example.com/orders", "billing"]);
    /// assert_eq!(app.resources().len(), 2);
    /// ```
    pub fn with_resources<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.resources = resources.into_iter().map(Into::into).collect();
        self
    }

    /// The resources its tokens may be minted for.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }
}
