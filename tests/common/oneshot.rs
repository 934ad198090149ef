//! The token endpoint called in process with `tower::ServiceExt::oneshot`:
//! the same layer and inner service as [`super::start`] serves, no socket.
//! Rule tables describe their requests as [`Post`]s and read [`Answer`]s.

use std::net::SocketAddr;
use std::ops::Deref;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;
use tower::ServiceExt as _;
use tower_m2m_auth::issuer::Application;

use super::{CLIENT_ID, SLUG, Server, TestLayer, application, build, verify};

/// The media type of a token request.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// The token endpoint in process; derefs to the [`Server`] fixture it was
/// built with (its `addr` is a TEST-NET address nothing listens on).
pub struct Endpoint {
    pub app: Router,
    pub server: Server,
}

impl Deref for Endpoint {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Endpoint {
    /// The test application, signing with ES256.
    pub fn new() -> Self {
        Self::with(Algorithm::ES256, |layer| layer)
    }

    /// Signing with `algorithm`; `configure` may adjust the layer.
    pub fn with(algorithm: Algorithm, configure: impl FnOnce(TestLayer) -> TestLayer) -> Self {
        Self::with_application(algorithm, application(), configure)
    }

    /// Like [`with`](Self::with), with `application` as the test application.
    pub fn with_application(
        algorithm: Algorithm,
        application: Application,
        configure: impl FnOnce(TestLayer) -> TestLayer,
    ) -> Self {
        let addr = SocketAddr::from(([192, 0, 2, 1], 80));
        let (app, server) = build(addr, algorithm, application, configure);
        Self { app, server }
    }

    /// Sends `request` through the layer.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        Answer::of(self.app.clone().oneshot(request).await.unwrap()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// Sends `post` to the token path, its `{name}` placeholders filled from
    /// `vars`; asserts that no value of `vars` (secrets) is echoed.
    pub async fn post(&self, post: &Post<'_>, vars: &[(&str, &str)]) -> Answer {
        self.post_to("/application/o/token/", post, vars).await
    }

    /// Like [`post`](Self::post), to `path`.
    pub async fn post_to(&self, path: &str, post: &Post<'_>, vars: &[(&str, &str)]) -> Answer {
        let answer = self.send(post.request(path, vars)).await;
        let text = answer.text();
        for (name, value) in vars {
            assert!(!text.contains(value), "the answer echoes {name}: {text}");
        }
        answer
    }

    /// A token request with the form `pairs`.
    pub async fn post_form(&self, pairs: &[(&str, &str)]) -> Answer {
        let body = super::form_encode(pairs);
        self.send(Post::raw(&body, Some(FORM)).request("/application/o/token/", &[]))
            .await
    }

    /// The JSON of a successful token request with the form `pairs`.
    pub async fn token_json(&self, pairs: &[(&str, &str)]) -> Value {
        let answer = self.post_form(pairs).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()
    }

    /// The test account's username and app password, at the test application.
    pub fn password_form(&self) -> [(&'static str, &str); 4] {
        [
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("username", super::USERNAME),
            ("password", &self.token),
        ]
    }

    /// The test application's JWKS, served by the layer.
    pub async fn jwks(&self) -> JwkSet {
        let answer = self.get(&format!("/application/o/{SLUG}/jwks/")).await;
        assert_eq!(answer.status, 200);
        serde_json::from_slice(&answer.body).unwrap()
    }

    /// The verified claims of the access token in a token response `json`
    /// for `client_id` at the application `slug`.
    pub async fn claims_at(&self, json: &Value, client_id: &str, slug: &str) -> Value {
        verify(
            &self.jwks().await,
            json["access_token"].as_str().unwrap(),
            client_id,
            &self.url(&format!("/application/o/{slug}/")),
        )
    }

    /// [`claims_at`](Self::claims_at) the test application.
    pub async fn claims(&self, json: &Value) -> Value {
        self.claims_at(json, CLIENT_ID, SLUG).await
    }
}

/// A token request as data: a form (or a raw body), its content type and
/// HTTP Basic credentials. Values may hold `{name}` placeholders.
#[derive(Clone, Copy, Debug)]
pub struct Post<'a> {
    pub form: &'a [(&'a str, &'a str)],
    pub raw: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub basic: Option<(&'a str, &'a str)>,
    /// An `Authorization` header sent as is.
    pub authorization: Option<&'a str>,
}

impl<'a> Post<'a> {
    /// A form body, `application/x-www-form-urlencoded`.
    pub const fn form(form: &'a [(&'a str, &'a str)]) -> Self {
        Self {
            form,
            raw: None,
            content_type: Some(FORM),
            basic: None,
            authorization: None,
        }
    }

    /// A raw body with this content type (none when `None`).
    pub const fn raw(body: &'a str, content_type: Option<&'a str>) -> Self {
        Self {
            form: &[],
            raw: Some(body),
            content_type,
            basic: None,
            authorization: None,
        }
    }

    /// The same with HTTP Basic credentials `user:password`.
    pub const fn basic(self, user: &'a str, password: &'a str) -> Self {
        Self {
            basic: Some((user, password)),
            ..self
        }
    }

    /// The same with this `Authorization` header, sent as is.
    pub const fn authorization(self, value: &'a str) -> Self {
        Self {
            authorization: Some(value),
            ..self
        }
    }

    /// The same with another content type (none when `None`).
    pub const fn content_type(self, content_type: Option<&'a str>) -> Self {
        Self {
            content_type,
            ..self
        }
    }

    /// The HTTP request, placeholders filled from `vars`.
    pub fn request(&self, path: &str, vars: &[(&str, &str)]) -> Request<Body> {
        let body = match self.raw {
            Some(raw) => fill(raw, vars),
            None => {
                let form: Vec<(String, String)> = self
                    .form
                    .iter()
                    .map(|(name, value)| (fill(name, vars), fill(value, vars)))
                    .collect();
                serde_urlencoded::to_string(form).unwrap()
            }
        };
        let mut request = Request::post(path);
        if let Some(content_type) = self.content_type {
            request = request.header("content-type", content_type);
        }
        if let Some((user, password)) = self.basic {
            let credentials = format!("{}:{}", fill(user, vars), fill(password, vars));
            request = request.header(
                "authorization",
                format!("Basic {}", STANDARD.encode(credentials)),
            );
        }
        if let Some(value) = self.authorization {
            request = request.header("authorization", fill(value, vars));
        }
        request.body(Body::from(body)).unwrap()
    }
}

/// `value` with each `{name}` of `vars` replaced by its value.
pub fn fill(value: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(value.to_owned(), |value, (name, with)| {
        value.replace(&format!("{{{name}}}"), with)
    })
}

/// A response, read whole: in process or over HTTP.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// Reads a response of the layer in process.
    pub async fn of(response: axum::response::Response) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// Reads a response received over HTTP.
    pub async fn read(response: reqwest::Response) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap(),
        }
    }

    /// The header `name` as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |value| value.to_str().unwrap())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The `error` code of an RFC 6749 §5.2 response, after checking its
    /// shape (JSON, `no-store`, a description).
    pub fn error(&self) -> String {
        assert_eq!(self.header("content-type"), "application/json");
        assert_eq!(self.header("cache-control"), "no-store");
        let json = self.json();
        assert!(json["error_description"].is_string(), "{json}");
        json["error"].as_str().unwrap().to_owned()
    }
}
