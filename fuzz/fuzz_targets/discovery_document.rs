//! An OpenID discovery (or RFC 8414) metadata document as the issuer's
//! server delivers it, read by `RemoteJwks::discover` behind `JwtValidateLayer`.
//!
//! Input: the first byte's low bit picks where the document is served
//! (OpenID location, or 404 there and the RFC 8414 location); the rest is
//! the document (`$ISS` expands to the issuer, `$JWKS_URI` to the real
//! JWKS URL). The JWKS URL serves the signing key; any other URL 404.
//! Oracle: well-formed answers; the issuer's token passes only if the
//! metadata names exactly this issuer and the real JWKS URL.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_m2m_auth::keys::RemoteJwks;
use tower_m2m_auth::keys::fetch::{BoxFuture, FetchError, FetchedDocument, JwksFetcher};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};
use tower_m2m_auth_fuzz::*;

const JWKS_URI: &str = "https://auth.example/application/o/app/jwks/";

struct Server {
    metadata_url: String,
    other_url: String,
    metadata: Bytes,
    jwks: Bytes,
}

impl JwksFetcher for Server {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            let body = if url == self.metadata_url {
                self.metadata.clone()
            } else if url == JWKS_URI {
                self.jwks.clone()
            } else {
                let _ = &self.other_url;
                return Err(FetchError::Status(404));
            };
            Ok(FetchedDocument {
                body,
                max_age: None,
            })
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, document)) = data.split_first() else {
        return;
    };
    let issuer = issuer();
    let iss = format!("{BASE}/application/o/{SLUG}/");
    let document = replace(
        &replace(document, b"$ISS", iss.as_bytes()),
        b"$JWKS_URI",
        JWKS_URI.as_bytes(),
    );
    // OpenID Connect Discovery §4, then RFC 8414 §3.1.
    let openid = format!("{iss}.well-known/openid-configuration");
    let rfc8414 = iss.replacen(
        "/application/",
        "/.well-known/oauth-authorization-server/application/",
        1,
    );
    let rfc8414 = rfc8414.trim_end_matches('/').to_owned();
    let (metadata_url, other_url) = if mode & 1 == 0 {
        (openid, rfc8414)
    } else {
        (rfc8414, openid)
    };
    let server = Server {
        metadata_url,
        other_url,
        metadata: Bytes::from(document.clone()),
        jwks: issuer.ring.jwks_json(),
    };
    let discovered = RemoteJwks::discover(&iss, Arc::new(server));
    let service = downstream_with(
        JwtValidateLayer::new()
            .issuer(Issuer::with_discovery(discovered).audience(CLIENT_ID))
            .token_cache(0),
    );
    let token = HeaderValue::try_from(format!("Bearer {}", issuer.access_token)).unwrap();
    run(async {
        let answer = send_downstream(&service, &[token]).await;
        if answer.status() == 200 {
            assert_json(&document, "metadata");
            // Members with unpaired surrogates are JSON, but no `Value`.
            let Ok(metadata) = serde_json::from_slice::<Value>(&document) else {
                return;
            };
            assert_eq!(
                metadata["issuer"],
                iss.as_str(),
                "metadata vouching for another issuer"
            );
            assert_eq!(metadata["jwks_uri"], JWKS_URI);
        }
    });
});
