//! A JWKS document as a remote source delivers it, read by `RemoteJwks`
//! behind `JwtValidateLayer` (the token endpoint's `TrustedIssuer` reads
//! remote keys through the same `RemoteJwks`), then used to verify a token
//! the issuer signed and one with an unknown `kid`.
//!
//! Input: the first byte picks the response's `max-age` (0–249 s, none, or
//! the largest durations a `Cache-Control` header can give), the second the
//! cache policy (the default, no upper bound on the TTL, bounds given in
//! the wrong order), the rest is the document (`$JWK` expands to the
//! signing key's public JWK).
//! Oracle: the layer answers well-formed, and the good token passes only
//! if the document holds the signing key's public key.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_m2m_auth::keys::fetch::{BoxFuture, FetchError, FetchedDocument, JwksFetcher};
use tower_m2m_auth::keys::{CachePolicy, RemoteJwks};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};
use tower_m2m_auth_fuzz::*;

struct Document(Bytes, Option<Duration>);

impl JwksFetcher for Document {
    fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            Ok(FetchedDocument {
                body: self.0.clone(),
                max_age: self.1,
            })
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let [age, policy_choice, document @ ..] = data else {
        return;
    };
    let max_age = match age {
        0..=249 => Some(Duration::from_secs(u64::from(*age))),
        250 => None,
        251 => Some(Duration::from_secs(u64::MAX)),
        _ => Some(Duration::MAX),
    };
    let mut policy = CachePolicy::default();
    match policy_choice % 3 {
        0 => {}
        1 => policy.max_ttl = Duration::MAX,
        _ => std::mem::swap(&mut policy.min_ttl, &mut policy.max_ttl),
    }
    let issuer = issuer();
    let active = issuer.ring.active();
    let jwk = serde_json::to_vec(active.public_jwk().unwrap()).unwrap();
    let document = replace(document, b"$JWK", &jwk);
    let iss = format!("{BASE}/application/o/{SLUG}/");
    let remote = RemoteJwks::with_policy(
        "https://auth.example/jwks",
        Arc::new(Document(Bytes::from(document.clone()), max_age)),
        policy,
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
            assert_json(&document, "JWKS");
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
