//! OpenID Connect Discovery (and RFC 8414): an issuer URL alone leads to its
//! `jwks_uri`, whose keys a [`RemoteJwks`](super::RemoteJwks) made by
//! [`discover`](super::RemoteJwks::discover) then fetches and caches.

use serde::Deserialize;

use super::fetch::{FetchError, JwksFetcher};

/// The metadata URLs of `issuer`, in the order they are tried: OpenID
/// Connect Discovery 1.0 §4 (`<issuer>/.well-known/openid-configuration`),
/// then RFC 8414 §3.1 (the well-known suffix inserted before the issuer's
/// path).
pub(crate) fn metadata_urls(issuer: &str) -> [String; 2] {
    let trimmed = issuer.trim_end_matches('/');
    let openid = format!("{trimmed}/.well-known/openid-configuration");
    let rfc8414 = match trimmed.split_once("://") {
        Some((scheme, rest)) => match rest.find('/') {
            Some(slash) => format!(
                "{scheme}://{}/.well-known/oauth-authorization-server{}",
                &rest[..slash],
                &rest[slash..]
            ),
            None => format!("{scheme}://{rest}/.well-known/oauth-authorization-server"),
        },
        None => format!("{trimmed}/.well-known/oauth-authorization-server"),
    };
    [openid, rfc8414]
}

#[derive(Deserialize)]
struct Metadata {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// Finds the `jwks_uri` of `issuer` from its metadata document.
///
/// The document's `issuer` must equal `issuer` exactly (OpenID Connect
/// Discovery §4.3, RFC 8414 §3.3), so a metadata document cannot vouch for
/// another issuer. The RFC 8414 location is tried when the OpenID one
/// answers 404.
pub(crate) async fn discover_jwks_uri(
    fetcher: &dyn JwksFetcher,
    issuer: &str,
) -> Result<String, FetchError> {
    let [openid, rfc8414] = metadata_urls(issuer);
    let document = match fetcher.fetch(&openid).await {
        Err(FetchError::Status(404)) => fetcher.fetch(&rfc8414).await,
        document => document,
    }?;
    let discovery = FetchError::Discovery;
    // JSON is UTF-8 (RFC 8259 §8.1): checked first, since serde_json skips
    // the strings of members it ignores without checking them.
    let metadata: Metadata = std::str::from_utf8(&document.body)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| discovery("the document is not authorization server metadata"))?;
    if metadata.issuer.as_deref() != Some(issuer) {
        return Err(discovery(
            "the metadata's issuer differs from the configured issuer",
        ));
    }
    metadata
        .jwks_uri
        .filter(|uri| !uri.is_empty())
        .ok_or_else(|| discovery("the metadata has no jwks_uri"))
}

#[cfg(test)]
mod tests {
    use super::metadata_urls;

    #[test]
    fn metadata_urls_follow_both_specs() {
        let [openid, rfc8414] = metadata_urls("https://auth.example.com/application/o/app/");
        assert_eq!(
            openid,
            "https://auth.example.com/application/o/app/.well-known/openid-configuration"
        );
        assert_eq!(
            rfc8414,
            "https://auth.example.com/.well-known/oauth-authorization-server/application/o/app"
        );
        let [openid, rfc8414] = metadata_urls("https://auth.example.com");
        assert_eq!(
            openid,
            "https://auth.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            rfc8414,
            "https://auth.example.com/.well-known/oauth-authorization-server"
        );
    }
}
