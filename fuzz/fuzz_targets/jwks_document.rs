//! A JWKS document as a remote source delivers it, read by `RemoteJwks`
//! behind `JwtValidateLayer` and by the token endpoint's `TrustedIssuer`
//! alike (the same code), then used to verify a token the issuer signed
//! and one with an unknown `kid`.
//!
//! Input: the first byte picks `Cache-Control: max-age` (0–255 s), the rest
//! is the document (`$JWK` expands to the signing key's public JWK).
//! Oracle: the layer answers well-formed, and the good token passes only
//! if the document holds the signing key's public key.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_m2m_auth::keys::{
    BoxFuture, CachePolicy, FetchError, FetchedDocument, JwksFetcher, RemoteJwks,
};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};
use tower_m2m_auth_fuzz::*;

struct Document(Bytes, Duration);

impl JwksFetcher for Document {
    fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            Ok(FetchedDocument {
                body: self.0.clone(),
                max_age: Some(self.1),
            })
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&age, document)) = data.split_first() else {
        return;
    };
    let issuer = issuer();
    let active = issuer.ring.active();
    let jwk = serde_json::to_vec(active.public_jwk().unwrap()).unwrap();
    let document = replace(document, b"$JWK", &jwk);
    let iss = format!("{BASE}/application/o/{SLUG}/");
    let remote = RemoteJwks::with_policy(
        "https://auth.example/jwks",
        Arc::new(Document(
            Bytes::from(document.clone()),
            Duration::from_secs(age.into()),
        )),
        CachePolicy::default(),
    );
    let service = downstream_with(
        JwtValidateLayer::new()
            .issuer(Issuer::with_remote_jwks(&iss, remote.clone()).audience(CLIENT_ID))
            .token_cache(0),
    );
    let good = issuer.access_token.clone();
    let unknown_kid = active
        .clone()
        .as_ref()
        .sign_jwt(Some("at+jwt"), &serde_json::json!({"iss": iss, "aud": CLIENT_ID, "exp": now() + 60, "client_id": CLIENT_ID}))
        .unwrap();
    run(async {
        let _ = remote.keys().await;
        let _ = remote.refresh_for_unknown_kid("no-such-kid").await;
        let answer = send_downstream(&service, &[bearer(&good)]).await;
        if answer.status() == 200 {
            let x = active.public_jwk().unwrap();
            let x = serde_json::to_value(x).unwrap()["x"].clone();
            let doc = String::from_utf8_lossy(&document);
            assert!(
                doc.contains(x.as_str().unwrap()),
                "a token passed with keys the document does not hold"
            );
        }
        send_downstream(&service, &[bearer(&unknown_kid)]).await;
    });
});

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::try_from(format!("Bearer {token}")).unwrap()
}
