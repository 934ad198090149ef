//! Spans and audit events in a tower stack, over HTTP: the layers' spans
//! nest under tower-http's `TraceLayer` request span, and `instrument(false)`
//! drops metrics and spans but never the audit events.
//! (`examples/server/observability.rs` checks the fields of a whole mix and
//! the metrics page.)

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use jsonwebtoken::Algorithm;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;
use tower_m2m_auth::issuer::{Application, TokenEndpointLayer};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::observe::AUDIT_TARGET;
use tower_m2m_auth::store::{AppPassword, Binding, MemoryStore, ServiceAccount};
use tower_m2m_auth::validate::{Issuer, JwtValidateLayer};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// Each span as (name, parent's name).
type Spans = Vec<(String, Option<String>)>;

/// Spans, and the `event` field of audit events.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<(Spans, Vec<String>)>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.name().to_owned());
        let name = attrs.metadata().name().to_owned();
        self.0.lock().unwrap().0.push((name, parent));
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        struct Kind(Option<String>);
        impl tracing::field::Visit for Kind {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "event" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "event" {
                    self.0 = Some(value.to_owned());
                }
            }
        }
        if event.metadata().target() == AUDIT_TARGET {
            let mut kind = Kind(None);
            event.record(&mut kind);
            self.0.lock().unwrap().1.push(kind.0.unwrap_or_default());
        }
    }
}

/// Serves the endpoint and a protected `/api/hello` behind `TraceLayer`,
/// gets a token and calls the API with it; returns what was captured.
async fn traffic(instrument: bool) -> (Spans, Vec<String>) {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let store = MemoryStore::new();
    let account = ServiceAccount::new("svc");
    let (password, digest) = AppPassword::generate(&account.id);
    store.insert_account(account);
    store.insert_app_password(digest);
    store.bind("svc", Binding::new("client", ["read"]));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let endpoint = TokenEndpointLayer::new(&base, keys, store)
        .unwrap()
        .application(Application::new("client", "app").with_allowed_scopes(["read"]))
        .unwrap()
        .instrument(instrument);
    let validator = JwtValidateLayer::new()
        .issuer(Issuer::with_key_set(
            format!("{base}/application/o/app/"),
            (*endpoint.keys().verification_keys()).clone(),
        ))
        .audience("client")
        .instrument(instrument);
    let api = Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .layer(validator);
    let app = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .map_response(axum::response::IntoResponse::into_response)
        .layer(endpoint)
        .service(api);
    let app = Router::new().fallback_service(app);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    let body = format!(
        "grant_type=client_credentials&client_id=client&username=svc&password={}&scope=read",
        password.expose_secret()
    );
    let response = client
        .post(format!("{base}/application/o/token/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let json: serde_json::Value = response.json().await.unwrap();
    let token = json["access_token"].as_str().unwrap();
    let response = client
        .get(format!("{base}/api/hello"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let captured = capture.0.lock().unwrap();
    captured.clone()
}

#[tokio::test(flavor = "current_thread")]
async fn spans_nest_under_tower_http_trace_layer() {
    let (spans, audit) = traffic(true).await;
    let parent_of = |name: &str| {
        spans
            .iter()
            .find(|(span, _)| span == name)
            .unwrap_or_else(|| panic!("no span {name} in {spans:?}"))
            .1
            .clone()
    };
    assert_eq!(
        parent_of("tower_m2m_auth.issuer").as_deref(),
        Some("request")
    );
    assert_eq!(
        parent_of("tower_m2m_auth.validate").as_deref(),
        Some("request")
    );
    assert_eq!(audit, ["token_issued"]);
}

#[tokio::test(flavor = "current_thread")]
async fn uninstrumented_layers_still_emit_audit_events() {
    let (spans, audit) = traffic(false).await;
    assert!(
        spans
            .iter()
            .all(|(name, _)| !name.starts_with("tower_m2m_auth")),
        "{spans:?}"
    );
    assert_eq!(audit, ["token_issued"]);
}
