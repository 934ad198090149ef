//! The authorization server metadata each application publishes (OpenID
//! Connect Discovery 1.0 and RFC 8414).

use bytes::Bytes;
use serde::Serialize;

use super::application::Application;
use super::config::EndpointConfig;
use super::credentials::TOKEN_EXCHANGE;

#[derive(Serialize)]
struct Metadata<'a> {
    issuer: &'a str,
    token_endpoint: String,
    introspection_endpoint: String,
    revocation_endpoint: String,
    jwks_uri: String,
    grant_types_supported: &'static [&'static str],
    token_endpoint_auth_methods_supported: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    token_endpoint_auth_signing_alg_values_supported: Option<&'static [jsonwebtoken::Algorithm]>,
    response_types_supported: [&'static str; 0],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [jsonwebtoken::Algorithm; 1],
    scopes_supported: &'a [String],
    claims_supported: [&'static str; 12],
    /// RFC 9449 §5.1.
    dpop_signing_alg_values_supported: &'a [jsonwebtoken::Algorithm],
}

/// The metadata document of `application`.
pub(crate) fn discovery(config: &EndpointConfig, application: &Application) -> Bytes {
    let algorithm = config.keys.with_active(|key| key.algorithm());
    // Applications that trust input JWTs accept them as client assertions.
    let rules = &application.assertions;
    let accepts_jwts = !rules.keys.is_empty() || !rules.federated.is_empty();
    let metadata = Metadata {
        issuer: application.issuer(),
        token_endpoint: format!("{}{}", config.base_url, config.token_path),
        introspection_endpoint: format!("{}{}", config.base_url, config.introspection_path),
        revocation_endpoint: format!("{}{}", config.base_url, config.revocation_path),
        jwks_uri: config.url(&config.jwks_path, application.slug()),
        grant_types_supported: if application.exchange.is_some() {
            &["client_credentials", "password", TOKEN_EXCHANGE]
        } else {
            &["client_credentials", "password"]
        },
        token_endpoint_auth_methods_supported: if accepts_jwts {
            &[
                "client_secret_post",
                "client_secret_basic",
                "private_key_jwt",
            ]
        } else {
            &["client_secret_post", "client_secret_basic"]
        },
        token_endpoint_auth_signing_alg_values_supported: accepts_jwts
            .then_some(crate::keys::ASYMMETRIC_ALGORITHMS),
        response_types_supported: [],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: [algorithm],
        scopes_supported: application.allowed_scopes(),
        claims_supported: [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "jti",
            "client_id",
            "azp",
            "scope",
            "preferred_username",
            "act",
        ],
        dpop_signing_alg_values_supported: config.dpop.rules.algorithms(),
    };
    Bytes::from(serde_json::to_vec(&metadata).unwrap_or_default())
}
