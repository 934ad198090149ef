//! `[metrics]`: the library's metrics in Prometheus format, on a listener of
//! their own (so that the token endpoint's port never serves them).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::Deserialize;
use tokio::net::TcpListener;
use tower_m2m_auth::observe::{self, REQUEST_DURATION};

use super::BoxError;

/// `[metrics]`. Without `listen`, no metrics are recorded.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Address of the metrics listener, e.g. `127.0.0.1:9464`.
    listen: Option<SocketAddr>,
    /// Path of the metrics page. Default: `/metrics`.
    #[serde(default = "default_path")]
    path: String,
}

fn default_path() -> String {
    "/metrics".into()
}

/// Buckets of the request-duration histogram, in seconds: a token request
/// takes tens of microseconds in process, a JWKS refresh or a store round
/// trip milliseconds.
const DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// How often histograms are compacted.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder and serves its page at `listen`, when
/// the configuration asks for it. Returns the address it listens on.
pub(crate) async fn start(config: Option<&MetricsConfig>) -> Result<Option<SocketAddr>, BoxError> {
    let Some(MetricsConfig {
        listen: Some(listen),
        path,
    }) = config
    else {
        return Ok(None);
    };
    if !path.starts_with('/') {
        return Err(format!("[metrics] path {path:?} must start with '/'").into());
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen for metrics on {listen}: {error}"))?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), DURATION_BUCKETS)?
        .install_recorder()
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
    observe::describe_metrics();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP).await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route(
        path,
        get(move || {
            let page = handle.render();
            async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], page) }
        }),
    );
    let address = listener.local_addr()?;
    tracing::info!(%address, %path, "metrics listening");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics listener failed");
        }
    });
    Ok(Some(address))
}

#[cfg(test)]
mod tests {
    //! The whole server, started from a configuration file, under a mix of
    //! good and bad requests over HTTP: its metrics page counts each, and the
    //! spans and audit events it emits say what happened without a secret.

    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use axum::Router;
    use axum::routing::get;
    use jsonwebtoken::Algorithm;
    use serde_json::{Value, json};
    use tokio::net::TcpListener;
    use tower_m2m_auth::keys::SigningKey;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::Registry;
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

    use super::super::{ServeArgs, run};

    const APP_PASSWORD: &str = "obs-app-password-0123456789";
    const WRONG_PASSWORD: &str = "obs-wrong-password-9876543210";
    const TOKEN_PATH: &str = "/application/o/token/";
    const INTROSPECT_PATH: &str = "/application/o/introspect/";
    const FORM: &str = "application/x-www-form-urlencoded";
    const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

    /// What a subscriber saw: spans (name and fields, as recorded) and
    /// events (target and fields).
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Captured>>);

    #[derive(Default)]
    struct Captured {
        spans: Vec<(String, BTreeMap<String, String>)>,
        by_id: HashMap<u64, usize>,
        events: Vec<(String, BTreeMap<String, String>)>,
    }

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
            let mut fields = BTreeMap::new();
            attrs.record(&mut Fields(&mut fields));
            let mut captured = self.0.lock().unwrap();
            let index = captured.spans.len();
            captured
                .spans
                .push((attrs.metadata().name().to_owned(), fields));
            captured.by_id.insert(id.into_u64(), index);
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
            let mut captured = self.0.lock().unwrap();
            if let Some(&index) = captured.by_id.get(&id.into_u64()) {
                values.record(&mut Fields(&mut captured.spans[index].1));
            }
        }
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut fields = BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            let target = event.metadata().target().to_owned();
            self.0.lock().unwrap().events.push((target, fields));
        }
    }

    /// A free port on 127.0.0.1 (nothing listens on it afterwards).
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// The value of the sample `name{labels}` on a Prometheus text page.
    fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
        page.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, labels) = match series.split_once('{') {
                    Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                    None => (series, ""),
                };
                let found: BTreeMap<&str, &str> = labels
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                    .filter_map(|pair| {
                        let (key, value) = pair.split_once('=')?;
                        Some((key, value.trim_matches('"')))
                    })
                    .collect();
                (metric == name && found == wanted).then(|| value.parse().unwrap())
            })
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// An input JWT of the CI issuer at `iss`, signed by `key`.
    fn assertion(key: &SigningKey, iss: &str) -> String {
        let now = now();
        key.sign_jwt(
            Some("JWT"),
            &json!({
                "iss": iss, "sub": "repo:org/app", "aud": "obs-audience",
                "iat": now, "exp": now + 300, "jti": format!("jti-{}", uuid::Uuid::new_v4()),
            }),
        )
        .unwrap()
    }

    #[test]
    fn mixed_traffic_is_counted_traced_and_audited() {
        let capture = Capture::default();
        let _guard = tracing::subscriber::set_default(Registry::default().with(capture.clone()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let secrets = local.block_on(&runtime, traffic(capture.clone()));
        check_traces(&capture, &secrets);
    }

    /// Runs the mix against a fresh server, checks its metrics page, and
    /// returns every secret that went over the wire.
    async fn traffic(_capture: Capture) -> Vec<String> {
        // The CI platform's JWKS, served over HTTP on loopback.
        let ci_key = SigningKey::generate(Algorithm::ES256).unwrap();
        let jwks = json!({ "keys": [ci_key.public_jwk().unwrap()] });
        let jwks_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jwks_address = jwks_listener.local_addr().unwrap();
        let jwks_app = Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }));
        tokio::task::spawn_local(async move { axum::serve(jwks_listener, jwks_app).await });
        let ci_issuer = format!("http://{jwks_address}");

        let port = free_port();
        let metrics_port = free_port();
        let dead_port = free_port();
        let dir = std::env::temp_dir().join(format!("obs-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            r#"
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
[store]
memory = true
[attempt_limits]
per_client_id = 3
[metrics]
listen = "127.0.0.1:{metrics_port}"
[[applications]]
client_id = "static-client"
slug = "static"
scopes = ["read"]
[[applications]]
client_id = "ci-client"
slug = "ci"
scopes = ["deploy"]
allow_any_account = true
assertion_audiences = ["obs-audience"]
[[applications.trusted_issuers]]
issuer = "{ci_issuer}"
jwks_url = "{ci_issuer}/jwks"
[[applications.trusted_issuers]]
issuer = "http://127.0.0.1:{dead_port}"
jwks_url = "http://127.0.0.1:{dead_port}/jwks"
[[service_accounts]]
username = "svc"
tokens = [{{ token = "{APP_PASSWORD}" }}]
bindings = [{{ client_id = "static-client", scopes = ["read"] }}]
"#
        );
        let path = dir.join("obs.toml");
        std::fs::write(&path, config).unwrap();
        tokio::task::spawn_local(async move {
            if let Err(error) = run(Some(path), ServeArgs { listen: None }).await {
                panic!("server failed: {error}");
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            // Ready once it publishes its keys (not counted below).
            let jwks = client.get(format!("{base}/application/o/static/jwks/"));
            if jwks.send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let mut secrets = vec![APP_PASSWORD.to_owned(), WRONG_PASSWORD.to_owned()];

        let token_request = |form: Vec<(&'static str, String)>| {
            let request = client
                .post(format!("{base}{TOKEN_PATH}"))
                .header("content-type", FORM)
                .body(serde_urlencoded::to_string(&form).unwrap());
            async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap())
            }
        };
        let static_form = |password: &str| {
            vec![
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", "static-client".to_owned()),
                ("username", "svc".to_owned()),
                ("password", password.to_owned()),
                ("scope", "read".to_owned()),
            ]
        };
        // Static authentication: two good, one wrong password, one unknown client.
        let (status, good) = token_request(static_form(APP_PASSWORD)).await;
        assert_eq!(status, 200, "{good}");
        let access_token = good["access_token"].as_str().unwrap().to_owned();
        let id_token = good["id_token"].as_str().unwrap().to_owned();
        let (status, again) = token_request(static_form(APP_PASSWORD)).await;
        assert_eq!(status, 200);
        secrets.extend([access_token.clone(), id_token.clone()]);
        secrets.push(again["access_token"].as_str().unwrap().to_owned());
        assert_eq!(token_request(static_form(WRONG_PASSWORD)).await.0, 400);
        let mut unknown = static_form(APP_PASSWORD);
        unknown[1].1 = "nobody".into();
        assert_eq!(token_request(unknown).await.0, 400);

        // JWT authentication: one good, then bad ones until the client is locked out.
        let jwt_form = |jwt: &str| {
            vec![
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", "ci-client".to_owned()),
                ("client_assertion_type", JWT_BEARER.to_owned()),
                ("client_assertion", jwt.to_owned()),
                ("scope", "deploy".to_owned()),
            ]
        };
        let good_jwt = assertion(&ci_key, &ci_issuer);
        let (status, jwt_token) = token_request(jwt_form(&good_jwt)).await;
        assert_eq!(status, 200, "{jwt_token}");
        secrets.push(good_jwt);
        secrets.push(jwt_token["access_token"].as_str().unwrap().to_owned());
        let impostor = SigningKey::generate(Algorithm::ES256).unwrap();
        for _ in 0..3 {
            let bad_jwt = assertion(&impostor, &ci_issuer);
            assert_eq!(token_request(jwt_form(&bad_jwt)).await.0, 400);
            secrets.push(bad_jwt);
        }
        let bad_jwt = assertion(&impostor, &ci_issuer);
        assert_eq!(token_request(jwt_form(&bad_jwt)).await.0, 429);
        secrets.push(bad_jwt);

        // Introspection: one good caller, one with a wrong password.
        let introspect = |password: &str| {
            let mut form = static_form(password);
            form.retain(|(key, _)| *key != "grant_type" && *key != "scope");
            form.push(("token", access_token.clone()));
            client
                .post(format!("{base}{INTROSPECT_PATH}"))
                .header("content-type", FORM)
                .body(serde_urlencoded::to_string(&form).unwrap())
                .send()
        };
        let response = introspect(APP_PASSWORD).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap()["active"], true);
        assert_eq!(introspect(WRONG_PASSWORD).await.unwrap().status(), 400);

        // The sample API: a miss then a hit of the verified-token cache, a
        // malformed token, no token, an ID token.
        let hello = |token: Option<&str>| {
            let request = client.get(format!("{base}/api/hello"));
            match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
            .send()
        };
        assert_eq!(hello(Some(&access_token)).await.unwrap().status(), 200);
        assert_eq!(hello(Some(&access_token)).await.unwrap().status(), 200);
        assert_eq!(hello(Some("garbage")).await.unwrap().status(), 401);
        assert_eq!(hello(None).await.unwrap().status(), 401);
        assert_eq!(hello(Some(&id_token)).await.unwrap().status(), 401);

        // The metrics page, on its own port.
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
            ("token", "bad_credentials", 4.0),
            ("token", "invalid_client", 1.0),
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
        std::fs::remove_dir_all(&dir).ok();
        secrets
    }

    /// The spans and audit events of the mix: their fields, and no secret.
    fn check_traces(capture: &Capture, secrets: &[String]) {
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
}
