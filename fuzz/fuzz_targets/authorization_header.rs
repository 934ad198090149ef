//! The `Authorization` header on both sides: HTTP Basic (and anything
//! else) at the token endpoint, `Bearer` (and anything else) at
//! `JwtValidateLayer`, cache on and off.
//!
//! Input: one or more header values separated by `\n` (placeholders
//! expanded: `$BASIC`, `$TOKEN`, ...). Every value goes to both sides.
#![no_main]

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_m2m_auth_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let issuer = issuer();
    let values: Vec<HeaderValue> = data
        .split(|b| *b == b'\n')
        .take(4)
        .filter_map(|value| header_value(&issuer.expand(value)))
        .collect();
    if values.is_empty() {
        return;
    }
    run(async {
        // Issuer side: a token request authenticated by the header alone.
        let mut request = Request::post(TOKEN_PATH)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"grant_type=client_credentials&scope=read+write",
            )))
            .unwrap();
        for value in &values {
            request
                .headers_mut()
                .append(http::header::AUTHORIZATION, value.clone());
        }
        send_to_issuer(issuer, request).await;

        // Validator side, with and without the cache: the same decision.
        let (cached, uncached) = downstreams();
        let miss = send_downstream(&cached, &values).await;
        let hit = send_downstream(&cached, &values).await;
        let plain = send_downstream(&uncached, &values).await;
        assert_eq!(miss.status(), plain.status());
        assert_eq!(hit.status(), plain.status());
        assert_eq!(
            miss.headers().get("www-authenticate"),
            plain.headers().get("www-authenticate")
        );
    });
});
