//! The spans and audit events the mix leaves.

use super::*;

/// The spans and audit events of the mix: their fields, and no secret.
pub(super) fn check_traces(capture: &Capture, secrets: &[String]) {
    let captured = capture.0.lock().unwrap();
    let audit: Vec<&BTreeMap<String, String>> = captured
        .events
        .iter()
        .filter(|(target, _)| target == tower_m2m_auth::observe::AUDIT_TARGET)
        .map(|(_, fields)| fields)
        .collect();
    let field = |fields: &BTreeMap<String, String>, name: &str| {
        fields.get(name).cloned().unwrap_or_default()
    };
    let of_event = |event: &str| {
        audit
            .iter()
            .filter(|fields| field(fields, "event") == event)
            .copied()
            .collect::<Vec<_>>()
    };
    let issued = of_event("token_issued");
    assert_eq!(issued.len(), 3, "{issued:?}");
    let by_password = issued
        .iter()
        .find(|fields| field(fields, "auth_method") == "app_password")
        .unwrap();
    assert_eq!(field(by_password, "application"), "static-client");
    assert_eq!(field(by_password, "account"), "svc");
    assert_eq!(field(by_password, "scope"), "read");
    assert_eq!(field(by_password, "client.address"), "127.0.0.1");
    assert!(field(by_password, "jti").len() >= 16);
    let by_jwt = issued
        .iter()
        .find(|fields| field(fields, "auth_method") == "jwt")
        .unwrap();
    assert_eq!(field(by_jwt, "application"), "ci-client");
    assert!(field(by_jwt, "act_iss").starts_with("http://127.0.0.1:"));
    assert_eq!(field(by_jwt, "act_sub"), "repo:org/app");

    let rejected = of_event("credential_rejected");
    let reasons: Vec<String> = rejected
        .iter()
        .map(|fields| field(fields, "reason"))
        .collect();
    for reason in [
        "unknown_credentials",
        "unknown_client",
        "invalid_assertion",
        "locked_out",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason}: {rejected:?}"
        );
    }
    let unknown = rejected
        .iter()
        .find(|fields| field(fields, "reason") == "unknown_client")
        .unwrap();
    assert_eq!(field(unknown, "application"), "");
    assert_eq!(field(unknown, "unknown_client_id"), r#""nobody""#);
    assert!(
        rejected
            .iter()
            .all(|fields| field(fields, "client.address") == "127.0.0.1")
    );

    let spans = |name: &str| {
        captured
            .spans
            .iter()
            .filter(|(span, _)| span == name)
            .map(|(_, fields)| fields)
            .collect::<Vec<_>>()
    };
    let issuer = spans("tower_m2m_auth.issuer");
    let on = |route: &str| {
        issuer
            .iter()
            .filter(|fields| field(fields, "http.route") == route)
            .count()
    };
    assert_eq!((on(TOKEN_PATH), on(INTROSPECT_PATH)), (9, 2));
    assert!(issuer.iter().any(|fields| {
        field(fields, "oauth2.outcome") == "ok"
            && field(fields, "oauth2.client_id") == "static-client"
            && field(fields, "oauth2.auth_method") == "app_password"
            && field(fields, "http.route") == TOKEN_PATH
            && field(fields, "client.address") == "127.0.0.1"
    }));
    assert!(issuer.iter().any(|fields| {
        field(fields, "oauth2.outcome") == "rejected"
            && field(fields, "error.type") == "invalid_grant"
            && field(fields, "oauth2.reason") == "bad_credentials"
    }));
    let validate = spans("tower_m2m_auth.validate");
    assert_eq!(validate.len(), 5);
    assert!(validate.iter().any(|fields| {
        field(fields, "oauth2.outcome") == "ok"
            && field(fields, "oauth2.cache_hit") == "true"
            && field(fields, "oauth2.client_id") == "static-client"
    }));
    assert!(validate.iter().any(|fields| {
        field(fields, "oauth2.reason") == "malformed"
            && field(fields, "error.type") == "invalid_token"
    }));

    // No secret, nor the signature of any token, in any field.
    let values = captured
        .spans
        .iter()
        .chain(&captured.events)
        .flat_map(|(_, fields)| fields.values());
    for value in values {
        for secret in secrets {
            let signature = secret.rsplit('.').next().unwrap();
            assert!(
                !value.contains(secret.as_str()) && !value.contains(signature),
                "a secret in a captured field ({} characters)",
                value.len()
            );
        }
    }
}
