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

use crate::cli::ServeArgs;
use crate::run;

mod metrics;
mod traces;
mod traffic;

use metrics::check_metrics;
use traces::check_traces;
use traffic::traffic;

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
