//! The metrics page after the mix: each request counted once, by kind.

use super::*;

/// Reads the metrics page, on its own port, and checks every count.
pub(super) async fn check_metrics(client: &reqwest::Client, metrics_port: u16) {
    let page = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |name: &str, labels: &[(&str, &str)]| {
        sample(&page, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{page}"))
    };
    let issued = "tower_m2m_auth_tokens_issued_total";
    let app_password = [
        ("application", "static-client"),
        ("auth_method", "app_password"),
    ];
    assert_eq!(count(issued, &app_password), 2.0);
    let jwt = [("application", "ci-client"), ("auth_method", "jwt")];
    assert_eq!(count(issued, &jwt), 1.0);
    let rejected = "tower_m2m_auth_rejections_total";
    for (endpoint, reason, expected) in [
        // A wrong password; an unknown client and three forged assertions
        // (RFC 7523 §3.2: failed client authentication).
        ("token", "bad_credentials", 1.0),
        ("token", "invalid_client", 4.0),
        ("token", "locked_out", 1.0),
        ("introspect", "invalid_client", 1.0),
        ("validate", "malformed", 1.0),
        ("validate", "missing_token", 1.0),
        ("validate", "wrong_token_type", 1.0),
    ] {
        let labels = [("endpoint", endpoint), ("reason", reason)];
        assert_eq!(count(rejected, &labels), expected, "{labels:?}");
    }
    let cache = "tower_m2m_auth_token_cache_lookups_total";
    assert_eq!(count(cache, &[("result", "hit")]), 1.0);
    assert_eq!(count(cache, &[("result", "miss")]), 3.0);
    let lockouts = "tower_m2m_auth_lockouts_total";
    assert_eq!(count(lockouts, &[("key", "client_id")]), 1.0);
    let fetches = "tower_m2m_auth_jwks_fetches_total";
    assert!(count(fetches, &[("outcome", "ok")]) >= 1.0);
    assert!(count(fetches, &[("outcome", "unavailable")]) >= 1.0);
    let duration = "tower_m2m_auth_request_duration_seconds_count";
    assert_eq!(count(duration, &[("endpoint", "token")]), 9.0);
    assert_eq!(count(duration, &[("endpoint", "introspect")]), 2.0);
    assert_eq!(count(duration, &[("endpoint", "validate")]), 5.0);
    assert!(page.contains("# HELP tower_m2m_auth_tokens_issued_total"));
}
