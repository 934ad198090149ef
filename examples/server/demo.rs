//! What the embedded demo prints: how to try it with curl.

use tower_m2m_auth::config::{ApplicationConfig, Config};

/// The token endpoint path (the layer's default, authentik's).
const TOKEN_PATH: &str = "/application/o/token/";

/// Prints, on stdout, how to try the demo with curl.
pub(crate) fn print_instructions(base: &str, config: &Config) {
    let Some(application) = config.applications.first() else {
        return;
    };
    let discovery = format!(
        "{base}/application/o/{}/.well-known/openid-configuration",
        application.slug
    );
    let jwks = format!("{base}/application/o/{}/jwks/", application.slug);

    println!();
    println!("tower-m2m-auth demo server on {base}");
    println!("(embedded demo configuration: pass --config FILE to use your own)");
    println!();
    if let Some(body) = token_request(config, application) {
        println!("Get a token:");
        println!("  curl -s {base}{TOKEN_PATH} -d {}", shell_quote(&body));
        println!();
    }
    println!("JWKS (the public keys that verify the tokens):");
    println!("  curl -s {jwks}");
    println!();
    println!("OpenID discovery document:");
    println!("  curl -s {discovery}");
    println!();
    println!("Sample API (needs a token from the endpoint; 401 without):");
    if let Some(body) = token_request(config, application) {
        println!(
            "  TOKEN=$(curl -s {base}{TOKEN_PATH} -d {} | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')",
            shell_quote(&body)
        );
    }
    println!("  curl -s {base}/api/hello -H \"Authorization: Bearer $TOKEN\"");
    println!();
}

/// The form body of a token request by the first active demo account that
/// has a plain-text token, for `application`.
fn token_request(config: &Config, application: &ApplicationConfig) -> Option<String> {
    let (account, token) = config
        .service_accounts
        .iter()
        .filter(|account| account.active)
        .find_map(|account| {
            let token = account.tokens.iter().find_map(|t| t.token.as_deref())?;
            Some((account.username.as_str(), token))
        })?;
    let scope = application.scopes.join(" ");
    serde_urlencoded::to_string([
        ("grant_type", "client_credentials"),
        ("client_id", application.client_id.as_str()),
        ("username", account),
        ("password", token),
        ("scope", scope.as_str()),
    ])
    .ok()
}

/// `value` as one POSIX shell word.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
