//! The token endpoint's typed error is reachable from outside: every error
//! response carries its `TokenError` in the response extensions (as the
//! validator's responses carry `AuthError`), for an outer layer to read, and
//! it holds nothing the client sent. Run in process (`oneshot`): the rule is
//! about the response value, not the wire.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::Algorithm;
use secrecy::ExposeSecret;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_m2m_auth::issuer::{
    Application, AttemptLimits, ClientAuthentication, Principal, ResponseBody, StoreVerifier,
    TokenEndpointLayer, TokenError, VerifyError,
};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::store::{
    AppPassword, Binding, FailureLimit, MemoryAttemptLimiter, MemoryStore, ServiceAccount,
};

const CLIENT_SECRET: &str = "the-application-secret-7f3a9c";
const WRONG_PASSWORD: &str = "not-the-password-but-secret-all-the-same-41d8";

/// The service behind the endpoint (never reached by these requests).
fn inner()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(|_| std::future::ready(Ok(Response::new(Full::default()))))
}

/// A layer with one application (`my-client`) and one bound account
/// (`deployer`); returns the account's app-password token.
fn layer() -> (TokenEndpointLayer<StoreVerifier<MemoryStore>>, String) {
    let store = MemoryStore::new();
    let account = ServiceAccount::new("deployer");
    let (token, password) = AppPassword::generate(&account.id);
    store.insert_account(account);
    store.insert_app_password(password);
    store.bind("deployer", Binding::new("my-client", ["read"]));
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let layer = TokenEndpointLayer::new("https://auth.example.com", keys, store)
        .unwrap()
        .application(
            Application::new("my-client", "my-app")
                .with_allowed_scopes(["read"])
                .with_client_secret(CLIENT_SECRET),
        )
        .unwrap();
    (layer, token.expose_secret().to_owned())
}

fn form(path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

async fn send<S>(service: S, request: Request<Full<Bytes>>) -> (Response<()>, String)
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResponseBody<Full<Bytes>>>>,
    S::Error: std::fmt::Debug,
{
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// The error in `response`'s extensions, after checking that neither it nor
/// the response shows `secrets`, and that it is what the body says.
fn token_error(response: &Response<()>, body: &str, secrets: &[&str]) -> TokenError {
    let error = *response
        .extensions()
        .get::<TokenError>()
        .expect("an error response carries its TokenError");
    let shown = format!(
        "{error:?} {error} {} {body} {:?}",
        error.description(),
        response.headers()
    );
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} shown in {shown}");
    }
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"], error.code());
    assert_eq!(
        response.status(),
        error.status(response.status() == StatusCode::UNAUTHORIZED)
    );
    error
}

/// One row per kind of refused request: the rule, the request, the error
/// its response must carry, and the secrets that must not show.
#[tokio::test]
async fn each_refused_request_carries_its_token_error_without_its_secrets() {
    let (layer, password) = layer();
    let basic = STANDARD.encode(format!("my-client:{WRONG_PASSWORD}"));
    let with_basic = |mut request: Request<Full<Bytes>>| {
        let value = format!("Basic {basic}").parse().unwrap();
        request.headers_mut().insert("authorization", value);
        request
    };
    let token = "/application/o/token/";
    let rows = [
        (
            "wrong_app_password_is_invalid_grant",
            form(
                token,
                &format!(
                    "grant_type=client_credentials&client_id=my-client&username=deployer&password={WRONG_PASSWORD}"
                ),
            ),
            StatusCode::BAD_REQUEST,
            TokenError::InvalidGrant,
        ),
        (
            // RFC 6749 §5.2: failed client authentication.
            "wrong_basic_secret_is_invalid_client_with_401",
            with_basic(form(token, "grant_type=client_credentials")),
            StatusCode::UNAUTHORIZED,
            TokenError::InvalidClient,
        ),
        (
            "wrong_client_secret_in_the_form_is_invalid_client",
            form(
                token,
                &format!(
                    "grant_type=client_credentials&client_id=my-client&client_secret={WRONG_PASSWORD}"
                ),
            ),
            StatusCode::BAD_REQUEST,
            TokenError::InvalidClient,
        ),
        (
            "duplicate_parameter_is_invalid_request",
            form(
                token,
                &format!(
                    "grant_type=client_credentials&grant_type=password&client_id=my-client&username=deployer&password={password}"
                ),
            ),
            StatusCode::BAD_REQUEST,
            TokenError::InvalidRequest("parameter grant_type is repeated"),
        ),
        (
            "unknown_grant_type_is_unsupported_grant_type",
            form(
                token,
                &format!(
                    "grant_type=refresh_token&client_id=my-client&client_secret={CLIENT_SECRET}"
                ),
            ),
            StatusCode::BAD_REQUEST,
            TokenError::UnsupportedGrantType,
        ),
        (
            "introspection_by_a_wrong_secret_is_invalid_client",
            form(
                "/application/o/introspect/",
                &format!("token=a.b.c&client_id=my-client&client_secret={WRONG_PASSWORD}"),
            ),
            StatusCode::BAD_REQUEST,
            TokenError::InvalidClient,
        ),
    ];
    let secrets = [WRONG_PASSWORD, &password, CLIENT_SECRET, &basic];
    for (rule, request, status, expected) in rows {
        let (response, body) = send(layer.clone().layer(inner()), request).await;
        assert_eq!(response.status(), status, "{rule}");
        assert_eq!(token_error(&response, &body, &secrets), expected, "{rule}");
    }
}

#[tokio::test]
async fn verifier_that_cannot_decide_carries_temporarily_unavailable() {
    let (layer, _) = layer();
    let layer = layer.verifier(service_fn(|_: ClientAuthentication| async {
        Err::<Principal, _>(VerifyError::Unavailable(Box::new(std::io::Error::other(
            "the directory is down",
        ))))
    }));
    let body =
        format!("grant_type=client_credentials&client_id=my-client&client_secret={CLIENT_SECRET}");
    let (response, body) = send(layer.layer(inner()), form("/application/o/token/", &body)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        token_error(&response, &body, &[CLIENT_SECRET]),
        TokenError::TemporarilyUnavailable
    );
}

#[tokio::test]
async fn locked_out_answer_carries_too_many_attempts() {
    let (layer, _) = layer();
    let layer = layer.attempt_limiter(
        MemoryAttemptLimiter::new(),
        AttemptLimits::default()
            .with_client_limit(Some(FailureLimit::new(1, Duration::from_secs(60)))),
    );
    let service = layer.layer(inner());
    let body = format!(
        "grant_type=client_credentials&client_id=my-client&username=deployer&password={WRONG_PASSWORD}"
    );
    let (first, _) = send(service.clone(), form("/application/o/token/", &body)).await;
    assert_eq!(first.status(), StatusCode::BAD_REQUEST);
    let (response, body) = send(service, form("/application/o/token/", &body)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let error = token_error(&response, &body, &[WRONG_PASSWORD]);
    assert!(matches!(error, TokenError::TooManyAttempts(_)), "{error:?}");
}

#[tokio::test]
async fn success_carries_no_token_error() {
    let (layer, password) = layer();
    let body = format!(
        "grant_type=client_credentials&client_id=my-client&username=deployer&password={password}"
    );
    let (response, _) = send(layer.layer(inner()), form("/application/o/token/", &body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.extensions().get::<TokenError>().is_none());
}

#[tokio::test]
async fn an_outer_layer_reads_the_token_error() {
    let (layer, _) = layer();
    let seen: Arc<Mutex<Vec<TokenError>>> = Arc::default();
    let log = seen.clone();
    let service = ServiceBuilder::new()
        .map_response(move |response: Response<ResponseBody<Full<Bytes>>>| {
            if let Some(error) = response.extensions().get::<TokenError>() {
                log.lock().unwrap().push(*error);
            }
            response
        })
        .layer(layer)
        .service(inner());
    let body = format!(
        "grant_type=client_credentials&client_id=my-client&username=deployer&password={WRONG_PASSWORD}"
    );
    send(service.clone(), form("/application/o/token/", &body)).await;
    send(
        service,
        form("/application/o/token/", "grant_type=refresh_token"),
    )
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        [TokenError::InvalidGrant, TokenError::UnsupportedGrantType]
    );
}
