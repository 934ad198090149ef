//! A whole request (method, path, headers, body) through
//! `TokenEndpointLayer`: the token, introspection and revocation endpoints,
//! the JWKS and metadata documents, and the pass-through.
//!
//! Input: `METHOD PATH\n` then header lines `name: value\n`, an empty line,
//! and the body (placeholders such as `$PASSWORD` are expanded; see the
//! harness).
#![no_main]

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_m2m_auth_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let issuer = issuer();
    let Some(newline) = data.iter().position(|b| *b == b'\n') else {
        return;
    };
    let (line, rest) = (&data[..newline], &data[newline + 1..]);
    let mut words = line.splitn(2, |b| *b == b' ');
    let Ok(method) = Method::from_bytes(words.next().unwrap_or_default()) else {
        return;
    };
    let path = words.next().unwrap_or(b"/");
    let path = match path {
        b"T" => TOKEN_PATH.as_bytes(),
        b"I" => INTROSPECT_PATH.as_bytes(),
        b"R" => REVOKE_PATH.as_bytes(),
        other => other,
    };
    let Ok(uri) = http::Uri::try_from(path) else {
        return;
    };
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, &[][..]),
    };
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    for line in head.split(|b| *b == b'\n') {
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            let value = issuer.expand(line[colon + 1..].trim_ascii_start());
            add_header(request.headers_mut(), &line[..colon], &value);
        }
    }
    let request = request.map(|_| Full::new(Bytes::from(issuer.expand(body))));
    run(send_to_issuer(issuer, request));
});
