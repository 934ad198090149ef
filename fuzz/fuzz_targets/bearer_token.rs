//! A Bearer token through `JwtValidateLayer`, verified-token cache on and
//! off, against the issuer's published keys.
//!
//! Input: `MODE\nHEADER\nCLAIMS\nSIGNATURE` (see `FuzzedJws`); `v` signs
//! with the issuer's active key. Oracle: a well-formed RFC 6750 answer;
//! the cached layer (miss, then hit) decides as the uncached one; a token
//! passes only if the issuer's key signed it, over a UTF-8 JSON claims set.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_m2m_auth_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let issuer = issuer();
    let active = issuer.ring.active();
    let Some(jws) = FuzzedJws::build(issuer, data, &active, &issuer.stranger) else {
        return;
    };
    let Ok(value) = HeaderValue::try_from(format!("Bearer {}", jws.token)) else {
        return;
    };
    let values = [value];
    let (cached, uncached) = downstreams();
    run(async {
        let miss = send_downstream(&cached, &values).await;
        let hit = send_downstream(&cached, &values).await;
        let plain = send_downstream(&uncached, &values).await;
        assert_eq!(miss.status(), plain.status(), "cache miss vs no cache");
        assert_eq!(hit.status(), plain.status(), "cache hit vs no cache");
        if plain.status() == 200 {
            assert!(
                jws.trusted_signature,
                "a token the issuer did not sign passed"
            );
            assert_json(&jws.claims, "claims set");
        }
    });
});
