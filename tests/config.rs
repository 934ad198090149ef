//! The embedding path: a host builds the token endpoint, its store and the
//! sample API's validator from the library's configuration types, without
//! TOML (here from JSON), and gets a token through them in process.

#![cfg(feature = "config")]

use std::convert::Infallible;
use std::path::Path;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt, service_fn};
use tower_m2m_auth::config::{BuildError, Built, Config};
use tower_m2m_auth::issuer::ApplicationError;
use tower_m2m_auth::store::{AccountAdmin, CredentialStore};

const PASSWORD: &str = "embedded-app-password-0123456789";

/// A configuration with one application and one bound account, changed by `edit`.
fn config(edit: impl FnOnce(&mut Value)) -> Config {
    let mut value = json!({
        "issuer": "https://auth.example.com",
        "store": { "memory": true },
        "attempt_limits": { "per_client_id": 5 },
        "applications": [{ "client_id": "embedded", "slug": "embedded", "scopes": ["read", "write"] }],
        "service_accounts": [{
            "username": "svc",
            "tokens": [{ "token": PASSWORD, "expires": "2999-01-01T00:00:00+02:00" }],
            "bindings": [{ "client_id": "embedded", "scopes": ["read"] }],
        }],
    });
    edit(&mut value);
    serde_json::from_value(value).unwrap()
}

async fn build(config: Config, base_dir: &Path) -> Result<Built, BuildError> {
    config.build(base_dir).await
}

/// A token request through the endpoint; the inner service answers 404.
async fn token(built: &Built) -> (StatusCode, Value) {
    let inner = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .status(404)
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
    });
    let body = format!(
        "grant_type=client_credentials&client_id=embedded&username=svc&password={PASSWORD}&scope=read%20write"
    );
    let request = Request::post("/application/o/token/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = built.endpoint.layer(inner).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// The sample API behind the built validator, called with `token`.
async fn api(built: &Built, token: &str) -> StatusCode {
    let inner = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("hello")))
    });
    let request = Request::get("/api/hello")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    built
        .validator
        .layer(inner)
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_host_builds_the_endpoint_from_config_types_and_gets_a_token() {
    let built = build(config(|_| {}), Path::new(".")).await.unwrap();
    let (status, body) = token(&built).await;
    assert_eq!(status, 200, "{body}");
    // Clamped to the binding's scopes.
    assert_eq!(body["scope"], "read");
    let access_token = body["access_token"].as_str().unwrap();
    assert_eq!(api(&built, access_token).await, 200);
    assert_eq!(api(&built, body["id_token"].as_str().unwrap()).await, 401);
    // The returned store is the endpoint's, with the configured account in it.
    let accounts = built.store.list_service_accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    let clone = built.store.clone();
    assert!(clone.account("svc").await.unwrap().is_some());
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn an_sqlite_store_chosen_at_run_time_keeps_accounts_across_builds() {
    let dir = std::env::temp_dir().join(format!("config-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = |value: &mut Value| value["store"] = json!({ "sqlite": "accounts.db" });
    let first = build(config(sqlite), &dir).await.unwrap();
    assert!(
        dir.join("accounts.db").exists(),
        "relative to the base directory"
    );
    first.store.set_account_active("svc", false).await.unwrap();
    // A second start imports the file again: the store's state wins.
    let second = build(config(sqlite), &dir).await.unwrap();
    assert_eq!(token(&second).await.0, 400);
    second.store.set_account_active("svc", true).await.unwrap();
    assert_eq!(token(&second).await.0, 200);
    std::fs::remove_dir_all(&dir).ok();
}

/// Expects `build` to refuse the configuration, with an error `check` accepts.
async fn refused(edit: impl FnOnce(&mut Value), check: impl FnOnce(&BuildError) -> bool) {
    let error = match build(config(edit), Path::new(".")).await {
        Ok(_) => panic!("accepted"),
        Err(error) => error,
    };
    assert!(check(&error), "{error}");
}

#[tokio::test]
async fn the_library_refuses_what_the_configuration_gets_wrong() {
    use tower_m2m_auth::issuer::ConfigError as Endpoint;
    let app = |edit: Value| {
        move |value: &mut Value| {
            let application = value["applications"][0].as_object_mut().unwrap();
            application.extend(edit.as_object().unwrap().clone());
        }
    };
    let application_error = |expected: ApplicationError| move |error: &BuildError| matches!(error, BuildError::Endpoint { source: Endpoint::Application { error, .. }, .. } if *error == expected);
    refused(
        app(json!({ "slug": "a/b" })),
        application_error(ApplicationError::Slug("a/b".into())),
    )
    .await;
    refused(
        app(json!({ "scopes": ["two words"] })),
        application_error(ApplicationError::Scope("two words".into())),
    )
    .await;
    refused(
        app(json!({ "single_use_assertions": true })),
        application_error(ApplicationError::RulesWithoutKeys("single-use assertions")),
    )
    .await;
    let ci = |extra: Value| {
        let mut issuer = json!({ "issuer": "https://ci.example" });
        issuer
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "trusted_issuers": [issuer], "assertion_audiences": ["me"] })
    };
    let mut leeway = ci(json!({ "jwks_url": "https://ci.example/jwks" }));
    leeway["assertion_leeway_secs"] = json!(301);
    let over_the_cap = ApplicationError::Leeway(std::time::Duration::from_secs(301));
    refused(app(leeway), application_error(over_the_cap)).await;
    // The one fetch-URL check: plain http only to loopback.
    let invalid = |error: &BuildError| matches!(error, BuildError::Invalid { reason, .. } if reason.contains("loopback"));
    refused(
        app(ci(json!({ "jwks_url": "http://ci.example/jwks" }))),
        invalid,
    )
    .await;
    refused(
        app(ci(
            json!({ "discovery": true, "issuer": "http://ci.example" }),
        )),
        invalid,
    )
    .await;
    // The former `jwks_urls` key: refused, with its replacement shown, without
    // the URL's credentials.
    refused(
        app(json!({ "jwks_urls": ["https://ci:hunter2-legacy@ci.example/jwks"] })),
        |error| {
            let message = error.to_string();
            message.contains("jwks_url = \"https://…@ci.example/jwks\"")
                && !message.contains("hunter2-legacy")
        },
    )
    .await;
    // Credentials in a key URL: refused (every log line naming the URL would
    // carry them), and not repeated by the error.
    refused(
        app(ci(
            json!({ "jwks_url": "https://ci:hunter2-in-url@ci.example/jwks" }),
        )),
        |error| {
            let message = error.to_string();
            message.contains("credentials") && !message.contains("hunter2-in-url")
        },
    )
    .await;
    // Self-federation.
    refused(
        app(json!({ "federated_applications": ["embedded"] })),
        |error| {
            matches!(
                error,
                BuildError::Endpoint {
                    source: Endpoint::SelfFederation(_),
                    ..
                }
            )
        },
    )
    .await;
    // A binding to an application that does not exist.
    refused(
        |value| value["service_accounts"][0]["bindings"][0]["client_id"] = json!("nowhere"),
        |error| matches!(error, BuildError::Invalid { reason, .. } if reason.contains("no [[applications]]")),
    )
    .await;
    // A username the stores refuse.
    refused(
        |value| value["service_accounts"][0]["username"] = json!("two words"),
        |error| matches!(error, BuildError::Account { .. }),
    )
    .await;
}

#[tokio::test]
async fn settings_that_contradict_or_go_unused_are_refused() {
    let invalid = |at: &'static str| move |error: &BuildError| matches!(error, BuildError::Invalid { at: found, .. } if found.starts_with(at));
    let rows: Vec<(&str, Value, &str)> = vec![
        (
            "store_with_two_keys",
            json!({ "store": { "memory": true, "sqlite": "a.db" } }),
            "[store]",
        ),
        (
            "store_memory_false",
            json!({ "store": { "memory": false } }),
            "[store] memory = false",
        ),
        (
            "key_files_and_algorithm",
            json!({ "keys": { "files": ["k.pem"], "algorithm": "ES384" } }),
            "[keys]",
        ),
        (
            "zero_body_limit",
            json!({ "endpoint": { "body_limit": 0 } }),
            "[endpoint] body_limit",
        ),
        (
            "zero_attempt_window",
            json!({ "attempt_limits": { "window_secs": 0 } }),
            "[attempt_limits] window_secs",
        ),
        (
            "no_application",
            json!({ "applications": [], "service_accounts": [] }),
            "[[applications]]",
        ),
    ];
    for (name, edit, at) in rows {
        let edit = move |value: &mut Value| {
            value
                .as_object_mut()
                .unwrap()
                .extend(edit.as_object().unwrap().clone());
        };
        let error = build(config(edit), Path::new(".")).await.err();
        let error = error.unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(invalid(at)(&error), "{name}: {error}");
    }
    // A zero token lifetime is the library's rule, through the endpoint.
    refused(
        |value| value["applications"][0]["token_lifetime_secs"] = json!(0),
        |error| {
            matches!(error, BuildError::Endpoint { .. }) && error.to_string().contains("lifetime")
        },
    )
    .await;
}

#[tokio::test]
async fn a_pem_bundle_with_a_private_key_is_refused() {
    let dir = std::env::temp_dir().join(format!("config-pem-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(
        dir.join("ci.pem"),
        format!("{}{}", key.public_key_pem(), key.serialize_pem()),
    )
    .unwrap();
    let edit = |value: &mut Value| {
        value["applications"][0]["trusted_issuers"] =
            json!([{ "issuer": "https://ci.example", "certificates": ["ci.pem"] }]);
    };
    let error = build(config(edit), &dir).await.err().expect("refused");
    assert!(
        error.to_string().contains("PEM block #2 is a private key"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn resources_and_token_exchange_are_configured_per_application() {
    let exchange = |value: &mut Value| {
        value["applications"][0]["resources"] = json!(["https://api.example.com/"]);
        value["applications"][0]["token_exchange"] = json!({ "accept_tokens_of": ["embedded"] });
    };
    let built = build(config(exchange), Path::new(".")).await.unwrap();
    let (status, body) = token(&built).await;
    assert_eq!(status, 200, "{body}");
    let subject = body["access_token"].as_str().unwrap();
    let form = format!(
        "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&client_id=embedded\
         &username=svc&password={PASSWORD}&subject_token={subject}\
         &subject_token_type=urn:ietf:params:oauth:token-type:access_token\
         &resource=https%3A%2F%2Fapi.example.com%2F"
    );
    let request = Request::post("/application/o/token/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .unwrap();
    let inner = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let response = built.endpoint.layer(inner).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    let token = json["access_token"].as_str().unwrap();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap();
    assert_eq!(claims["aud"], "https://api.example.com/");

    use tower_m2m_auth::issuer::ConfigError as Endpoint;
    let app = |edit: Value| {
        move |value: &mut Value| {
            let application = value["applications"][0].as_object_mut().unwrap();
            application.extend(edit.as_object().unwrap().clone());
        }
    };
    refused(
        app(json!({ "resources": ["https://a.example/#x"] })),
        |error| {
            matches!(
                error,
                BuildError::Endpoint {
                    source: Endpoint::Application {
                        error: ApplicationError::Resource(_),
                        ..
                    },
                    ..
                }
            )
        },
    )
    .await;
    refused(
        app(json!({ "token_exchange": { "accept_tokens_of": ["nowhere"] } })),
        |error| {
            matches!(
                error,
                BuildError::Endpoint {
                    source: Endpoint::UnknownExchangeApplication { .. },
                    ..
                }
            )
        },
    )
    .await;
    refused(
        app(json!({ "token_exchange": { "accept_trusted_jwts": true } })),
        |error| {
            matches!(
                error,
                BuildError::Endpoint {
                    source: Endpoint::Application {
                        error: ApplicationError::RulesWithoutKeys("accept_trusted_jwts"),
                        ..
                    },
                    ..
                }
            )
        },
    )
    .await;
}

#[tokio::test]
async fn dpop_settings_reach_the_endpoint() {
    // `require_dpop`: a token request without a proof is refused.
    let built = build(
        config(|value| value["applications"][0]["require_dpop"] = json!(true)),
        Path::new("."),
    )
    .await
    .unwrap();
    assert!(
        built
            .endpoint
            .get_application("embedded")
            .unwrap()
            .requires_dpop()
    );
    let (status, body) = token(&built).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_dpop_proof");

    // A nonce secret: token responses carry nonces; a short one is refused.
    let built = build(
        config(|value| value["endpoint"] = json!({"dpop_nonce_secret": "n".repeat(32)})),
        Path::new("."),
    )
    .await
    .unwrap();
    assert_eq!(token(&built).await.0, StatusCode::OK);
    refused(
        |value| value["endpoint"] = json!({"dpop_nonce_secret": "too short"}),
        |error| matches!(error, BuildError::Key { at, .. } if at == "[endpoint] dpop_nonce_secret"),
    )
    .await;
}

/// A fresh PostgreSQL database per test.
#[cfg(all(feature = "postgres", feature = "sqlite"))]
#[path = "common/pg.rs"]
mod pg;

/// The warnings a build logs, while the guard lives (this thread only).
#[cfg(all(feature = "postgres", feature = "sqlite"))]
#[derive(Clone, Default)]
struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

#[cfg(all(feature = "postgres", feature = "sqlite"))]
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut message = String::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                    if field.name() == "message" {
                        message = format!("{value:?}");
                    }
                },
            );
            self.0.lock().unwrap().push(message);
        }
    }
}

#[cfg(all(feature = "postgres", feature = "sqlite"))]
impl Warnings {
    /// Whether a warning mentions `text`.
    fn mention(&self, text: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|warning| warning.contains(text))
    }
}

/// A store shared by several instances (PostgreSQL) with failed attempts
/// counted in each instance's memory: the build warns that the limits hold
/// per instance. An SQLite store (one machine) gets no such warning.
#[cfg(all(feature = "postgres", feature = "sqlite"))]
#[tokio::test]
async fn a_shared_store_with_attempts_counted_per_instance_is_warned_about() {
    use tracing_subscriber::layer::SubscriberExt as _;

    const WARNING: &str = "counted in this instance's memory";
    let warnings = Warnings::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let dir = std::env::temp_dir().join(format!("config-warn-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();

    let sqlite = |value: &mut Value| value["store"] = json!({ "sqlite": "accounts.db" });
    build(config(sqlite), &dir).await.unwrap();
    assert!(!warnings.mention(WARNING));

    let url = pg::fresh_database().await;
    let postgres = |value: &mut Value| value["store"] = json!({ "postgres": url });
    let built = build(config(postgres), &dir).await.unwrap();
    assert!(warnings.mention(WARNING));
    assert_eq!(token(&built).await.0, 200, "a warning, not a refusal");
    std::fs::remove_dir_all(&dir).ok();
}
