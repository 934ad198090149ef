//! An input JWT (header, claims, signature) through the token endpoint's
//! assertion checks, with the CI issuer's real key configured at the `ci`
//! application (static key, audience pinned, single-use `jti`s).
//!
//! Input: `MODE\nHEADER\nCLAIMS\nSIGNATURE` (see `FuzzedJws`); the mode's
//! second character picks how the JWT is sent: `a` as `client_assertion`
//! (RFC 7523), `s` as the `client_secret` of a password-style request,
//! `b` as the HTTP Basic password.
//! Oracle, beyond the endpoint's: a token is issued only for a JWT the
//! trusted key signed, with `iss` the CI issuer and the pinned audience.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_m2m_auth_fuzz::*;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fuzz_target!(|data: &[u8]| {
    let issuer = issuer();
    let Some(jws) = FuzzedJws::build(issuer, data, &issuer.ci_key, &issuer.stranger) else {
        return;
    };
    let mut request =
        Request::post(TOKEN_PATH).header("content-type", "application/x-www-form-urlencoded");
    let body = match jws.variant {
        b's' => form(&[
            ("grant_type", "password"),
            ("client_id", CI_CLIENT),
            ("client_secret", &jws.token),
        ]),
        b'b' => {
            let credentials = STANDARD.encode(format!("{CI_CLIENT}:{}", jws.token));
            request = request.header("authorization", format!("Basic {credentials}"));
            form(&[("grant_type", "client_credentials"), ("scope", "deploy")])
        }
        _ => form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CI_CLIENT),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &jws.token),
            ("scope", "deploy"),
        ]),
    };
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = run(send_to_issuer(issuer, request));
    assert!(
        !response
            .body()
            .windows(jws.token.len())
            .any(|w| w == jws.token.as_bytes()),
        "the answer echoes the assertion"
    );
    if response.status() == 200 {
        assert!(
            jws.trusted_signature,
            "a token for a JWT the trusted key did not sign"
        );
        assert_json(&jws.claims, "claims set");
        // Members with unpaired surrogates are JSON, but no `Value`.
        let Ok(claims) = serde_json::from_slice::<Value>(&jws.claims) else {
            return;
        };
        assert_eq!(claims["iss"], CI_ISSUER);
        let aud_ok = claims["aud"] == CI_AUDIENCE
            || claims["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == CI_AUDIENCE));
        assert!(aud_ok, "accepted without the pinned audience: {claims}");
        assert!(
            claims["exp"].as_u64().is_some_and(|exp| exp + 60 >= now()),
            "{claims}"
        );
    }
});
