//! The endpoint itself: its configuration and the handling of the requests
//! it answers (token, JWKS, metadata), independent of the tower plumbing.

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use secrecy::ExposeSecret;
use tower_service::Service;
use tracing::Span;
use tracing::field::{Empty, display};

use super::assertion::{self, JWT_BEARER};
use super::attempts::{self, AddressSource, AttemptGuard};
use super::authorize::{Provenance, authorize};
use super::claims::{self, AccessTokenClaims, Actor, IdTokenClaims};
use super::directory::Directory;
use super::federation;
use super::introspection::{self, Revocations};
use super::request::{self, BasicCredentials, TokenRequest, present, present_secret};
use super::{
    Application, ClientAuthentication, Credentials, GrantType, Principal, TokenError, VerifyError,
    metadata, response,
};
use crate::keys::KeyRing;
use crate::observe::{self, AUDIT_TARGET, REJECTIONS, TOKENS_ISSUED};
use crate::store::MemoryRevocationList;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a request path means to the endpoint.
#[derive(Clone)]
pub(crate) enum Route {
    Token,
    Introspect,
    Revoke,
    Jwks,
    Discovery(Arc<Application>),
}

impl Route {
    /// The `endpoint` label of its metrics.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Route::Token => "token",
            Route::Introspect => "introspect",
            Route::Revoke => "revoke",
            Route::Jwks => "jwks",
            Route::Discovery(_) => "discovery",
        }
    }
}

/// Everything the endpoint needs to answer, shared by every clone.
#[derive(Clone)]
pub(crate) struct EndpointConfig {
    pub(crate) base_url: String,
    pub(crate) keys: KeyRing,
    pub(crate) applications: HashMap<String, Arc<Application>>,
    pub(crate) token_path: String,
    pub(crate) introspection_path: String,
    pub(crate) revocation_path: String,
    pub(crate) revocations: Arc<dyn Revocations>,
    /// Accounts and bindings, for authorization and trades.
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) attempts: Option<AttemptGuard>,
    pub(crate) client_address: AddressSource,
    pub(crate) issuer_path: String,
    pub(crate) jwks_path: String,
    pub(crate) discovery_path: String,
    pub(crate) routes: HashMap<String, Route>,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Option<Duration>,
    pub(crate) id_token: bool,
    pub(crate) at_jwt_typ: bool,
    pub(crate) subject_salt: String,
    /// Whether requests are counted, timed and traced (audit events are
    /// always emitted).
    pub(crate) instrument: bool,
}

impl EndpointConfig {
    pub(crate) fn new(base_url: String, keys: KeyRing, directory: Arc<dyn Directory>) -> Self {
        let mut config = Self {
            directory,
            subject_salt: base_url.clone(),
            base_url,
            keys,
            applications: HashMap::new(),
            token_path: "/application/o/token/".into(),
            introspection_path: "/application/o/introspect/".into(),
            revocation_path: "/application/o/revoke/".into(),
            revocations: Arc::new(MemoryRevocationList::new()),
            attempts: None,
            client_address: attempts::socket_addr_extension(),
            issuer_path: "/application/o/{slug}/".into(),
            jwks_path: "/application/o/{slug}/jwks/".into(),
            discovery_path: "/application/o/{slug}/.well-known/openid-configuration".into(),
            routes: HashMap::new(),
            body_limit: 64 * 1024,
            body_timeout: None,
            id_token: true,
            at_jwt_typ: true,
            instrument: true,
        };
        config.rebuild_routes();
        config
    }

    /// The issuer URL of an application (`iss` of its tokens).
    pub(crate) fn issuer(&self, slug: &str) -> String {
        format!(
            "{}{}",
            self.base_url,
            self.issuer_path.replace("{slug}", slug)
        )
    }

    pub(crate) fn url(&self, path_template: &str, slug: &str) -> String {
        format!("{}{}", self.base_url, path_template.replace("{slug}", slug))
    }

    /// Recomputes the path table after a change of applications or paths.
    pub(crate) fn rebuild_routes(&mut self) {
        self.resolve_federation();
        let mut routes = HashMap::new();
        routes.insert(self.token_path.clone(), Route::Token);
        routes.insert(self.introspection_path.clone(), Route::Introspect);
        routes.insert(self.revocation_path.clone(), Route::Revoke);
        for application in self.applications.values() {
            let slug = application.slug();
            routes.insert(self.jwks_path.replace("{slug}", slug), Route::Jwks);
            let discovery = Route::Discovery(application.clone());
            routes.insert(
                self.discovery_path.replace("{slug}", slug),
                discovery.clone(),
            );
            // RFC 8414 §3.1: the well-known suffix goes before the issuer's path.
            let issuer_path = self.issuer_path.replace("{slug}", slug);
            let rfc8414 = format!("/.well-known/oauth-authorization-server{issuer_path}");
            routes.insert(rfc8414.trim_end_matches('/').to_owned(), discovery.clone());
            routes.insert(rfc8414, discovery);
        }
        self.routes = routes;
    }

    /// Sets each application's issuer URL from the current paths (so the
    /// builder's call order does not matter), and resolves its federated
    /// `client_id`s to the issuer and audience of the tokens this endpoint
    /// mints for them.
    fn resolve_federation(&mut self) {
        let issuers: HashMap<String, String> = self
            .applications
            .values()
            .map(|app| (app.client_id().to_owned(), self.issuer(app.slug())))
            .collect();
        for application in self.applications.values_mut() {
            let issuer = &issuers[application.client_id()];
            if application.issuer != *issuer {
                Arc::make_mut(application).issuer = issuer.clone();
            }
        }
        for application in self.applications.values_mut() {
            let resolved: Vec<(String, String)> = application
                .assertions
                .federated_clients
                .iter()
                .filter_map(|client_id| {
                    let issuer = issuers.get(client_id)?;
                    Some((issuer.clone(), client_id.clone()))
                })
                .collect();
            if resolved != application.assertions.federated {
                Arc::make_mut(application).assertions.federated = resolved;
            }
        }
    }

    pub(crate) fn route(&self, path: &str) -> Option<&Route> {
        self.routes.get(path)
    }

    /// The span of one request to `route` (OpenTelemetry field names where
    /// they exist); fields unknown yet are filled in as the request goes.
    pub(crate) fn span(&self, route: &Route) -> Span {
        let http_route = match route {
            Route::Token => self.token_path.as_str(),
            Route::Introspect => self.introspection_path.as_str(),
            Route::Revoke => self.revocation_path.as_str(),
            Route::Jwks => self.jwks_path.as_str(),
            Route::Discovery(_) => self.discovery_path.as_str(),
        };
        tracing::info_span!(
            "tower_m2m_auth.issuer",
            otel.name = route.name(),
            otel.status_code = Empty,
            http.route = http_route,
            client.address = Empty,
            oauth2.client_id = Empty,
            oauth2.auth_method = Empty,
            oauth2.outcome = Empty,
            oauth2.reason = Empty,
            error.type = Empty,
        )
    }
}

/// Answers a request to one of the endpoint's paths.
pub(crate) async fn handle<V, B>(
    config: Arc<EndpointConfig>,
    route: Route,
    verifier: V,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let start = config.instrument.then(std::time::Instant::now);
    let name = route.name();
    let head = request.method() == Method::HEAD;
    let used_basic = uses_basic(&request);
    let instrument = config.instrument;
    let answer = |result: Result<Response<Full<Bytes>>, TokenError>| match result {
        Ok(response) => {
            if instrument {
                Span::current().record("oauth2.outcome", "ok");
            }
            response
        }
        Err(error) => {
            tracing::debug!(error = %error, "request to the token endpoint rejected");
            if instrument {
                observe_rejection(name, &error);
            }
            response::error(error, used_basic)
        }
    };
    let response = match route {
        Route::Token | Route::Introspect | Route::Revoke if request.method() != Method::POST => {
            response::method_not_allowed("POST")
        }
        Route::Token => answer(issue(&config, verifier, request).await.map(response::token)),
        // Boxed, so that token requests do not carry their futures' size.
        Route::Introspect => {
            answer(Box::pin(introspection::introspect(&config, verifier, request)).await)
        }
        Route::Revoke => answer(Box::pin(introspection::revoke(&config, verifier, request)).await),
        Route::Jwks | Route::Discovery(_) if !(head || request.method() == Method::GET) => {
            response::method_not_allowed("GET, HEAD")
        }
        Route::Jwks => response::public_json(config.keys.jwks_json(), head),
        Route::Discovery(application) => {
            response::public_json(metadata::discovery(&config, &application), head)
        }
    };
    if let Some(start) = start {
        observe::record_duration(name, start);
    }
    response
}

/// Counts a refused request and notes why on its span.
fn observe_rejection(endpoint: &'static str, error: &TokenError) {
    metrics::counter!(REJECTIONS, "endpoint" => endpoint, "reason" => error.reason()).increment(1);
    let span = Span::current();
    span.record("oauth2.outcome", "rejected");
    span.record("oauth2.reason", error.reason());
    span.record("error.type", error.code());
    if matches!(
        error,
        TokenError::ServerError | TokenError::TemporarilyUnavailable
    ) {
        span.record("otel.status_code", "ERROR");
    }
}

/// How a client authenticated, as the `auth_method` label and field say it
/// (`federation` is decided later, when a JWT turns out to be a trade).
fn auth_method(credentials: &Credentials) -> &'static str {
    match credentials {
        Credentials::Password { .. } => "app_password",
        Credentials::ClientSecret(secret) if assertion::is_compact_jws(secret.expose_secret()) => {
            "jwt"
        }
        Credentials::ClientSecret(_) => "client_secret",
        Credentials::Assertion(_) => "jwt",
    }
}

/// The audit event of a refused credential. A `client_id` that names no
/// application is shown quoted and cut to 64 characters: it came from the
/// client.
fn audit_rejected(
    application: Option<&Application>,
    client_id: &str,
    reason: &'static str,
    method: &'static str,
    address: Option<IpAddr>,
) {
    let unknown = application
        .is_none()
        .then(|| client_id.chars().take(64).collect::<String>());
    tracing::warn!(
        target: AUDIT_TARGET,
        event = "credential_rejected",
        application = application.map_or("", |app| app.client_id()),
        unknown_client_id = unknown.as_deref().map(tracing::field::debug),
        auth_method = method,
        reason,
        client.address = address.map(display),
        "credential rejected"
    );
}

/// Whether the client authenticated with HTTP Basic.
fn uses_basic<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().get(..6))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
}

/// A form POST to one of the endpoint's paths, read under the size limit.
pub(crate) struct Form {
    pub(crate) basic: Option<BasicCredentials>,
    pub(crate) fields: TokenRequest,
    /// The client's address, when the endpoint knows it (for the attempt
    /// limiter and the audit events).
    pub(crate) address: Option<IpAddr>,
}

pub(crate) async fn read_form<B>(
    config: &EndpointConfig,
    request: Request<B>,
) -> Result<Form, TokenError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    if !request::is_form(&parts.headers) {
        return Err(TokenError::InvalidRequest(
            "the content type must be application/x-www-form-urlencoded",
        ));
    }
    let basic = request::basic_credentials(&parts.headers)?;
    let body = read_body(config, &parts.headers, body).await?;
    let fields = TokenRequest::from_form(&body)?;
    let address = (config.client_address)(&parts);
    Ok(Form {
        basic,
        fields,
        address,
    })
}

/// A client that authenticated and may get a token at `application`.
pub(crate) struct Authenticated {
    pub(crate) application: Arc<Application>,
    pub(crate) principal: Principal,
    /// The granted scopes, space-separated.
    pub(crate) scope: String,
    /// For a trade: the traded token's `exp`, which the new token must not pass.
    pub(crate) expires_by: Option<u64>,
    /// How the client authenticated (the `auth_method` label).
    pub(crate) method: &'static str,
    /// The client's address, if known.
    pub(crate) address: Option<IpAddr>,
}

/// Authenticates the client of `form` and authorizes it at the application
/// it names: a token of a federated application is traded by the endpoint
/// itself, other credentials go to the verifier (which sees the `requested`
/// scopes clamped to the application's); then the account's binding to the
/// application is checked and narrows the scopes.
/// With an attempt limiter, the request takes its failure slots first (429
/// for a locked-out address or `client_id`, before anything is looked up);
/// they stay taken only if authentication or authorization failed.
pub(crate) async fn authenticate<V>(
    config: &EndpointConfig,
    verifier: V,
    form: Form,
    grant_type: GrantType,
    requested: &str,
) -> Result<Authenticated, TokenError>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
{
    let (client_id, credentials) = client_authentication(&form.fields, form.basic)?;
    let method = auth_method(&credentials);
    let address = form.address;
    let application = config.applications.get(&client_id);
    if config.instrument {
        let span = Span::current();
        if let Some(application) = application {
            span.record("oauth2.client_id", application.client_id());
        }
        span.record("oauth2.auth_method", method);
        if let Some(address) = address {
            span.record("client.address", display(address));
        }
    }
    let attempt = match &config.attempts {
        Some(guard) => {
            match guard
                .admit(address, application.map(|app| app.client_id()))
                .await
            {
                Ok(attempt) => Some(attempt),
                Err(error) => {
                    if let TokenError::TooManyAttempts(_) = error {
                        let app = application.map(|app| &**app);
                        audit_rejected(app, &client_id, error.reason(), method, address);
                    }
                    return Err(error);
                }
            }
        }
        None => None,
    };
    let Some(application) = application.cloned() else {
        if let Some(attempt) = attempt {
            attempt.end(true).await;
        }
        audit_rejected(None, &client_id, "unknown_client", method, address);
        return Err(TokenError::InvalidClient);
    };
    let mut scopes: Vec<String> = application
        .clamp_scopes(requested)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let outcome = authenticate_at(
        config,
        verifier,
        &application,
        credentials,
        grant_type,
        &mut scopes,
    )
    .await;
    if let Some(attempt) = attempt {
        // Only rejected credentials (and refused authorization) count; a
        // verifier or store that could not answer (503) does not.
        attempt
            .end(matches!(outcome, Err(VerifyError::Rejected(_))))
            .await;
    }
    match outcome {
        Ok((principal, expires_by)) => {
            // Only a trade sets a limit on the new token's `exp`.
            let method = if expires_by.is_some() {
                "federation"
            } else {
                method
            };
            if config.instrument && expires_by.is_some() {
                Span::current().record("oauth2.auth_method", method);
            }
            Ok(Authenticated {
                scope: scopes.join(" "),
                application,
                principal,
                expires_by,
                method,
                address,
            })
        }
        Err(error) => {
            tracing::debug!(client_id = %application.client_id(), %error, "client not authenticated");
            if let VerifyError::Rejected(rejection) = &error {
                audit_rejected(
                    Some(&application),
                    &client_id,
                    rejection.reason(),
                    method,
                    address,
                );
            }
            Err(verify_error(error))
        }
    }
}

/// Who the client is (by trade or by the verifier), and whether it may get
/// a token at `application`; narrows `scopes`.
async fn authenticate_at<V>(
    config: &EndpointConfig,
    mut verifier: V,
    application: &Arc<Application>,
    credentials: Credentials,
    grant_type: GrantType,
    scopes: &mut Vec<String>,
) -> Result<(Principal, Option<u64>), VerifyError>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
{
    let jwt = match &credentials {
        Credentials::Assertion(jwt) => Some(jwt.expose_secret()),
        Credentials::ClientSecret(secret) if assertion::is_compact_jws(secret.expose_secret()) => {
            Some(secret.expose_secret())
        }
        _ => None,
    };
    if let Some(jwt) = jwt
        && let Some(source) = federation::source(config, application, jwt)
    {
        // Boxed: trades are rare, and their future is large.
        let trade = Box::pin(federation::trade(config, application, source, jwt)).await?;
        scopes.retain(|scope| trade.scopes.contains(scope));
        authorize(
            config,
            application,
            &trade.principal,
            Provenance::Trade,
            scopes,
        )
        .await?;
        return Ok((trade.principal, Some(trade.expires)));
    }
    poll_fn(|cx| verifier.poll_ready(cx)).await?;
    let request = ClientAuthentication::new(application.clone(), credentials, grant_type)
        .with_scopes(scopes.clone());
    let principal = verifier.call(request).await?;
    authorize(config, application, &principal, Provenance::Login, scopes).await?;
    Ok((principal, None))
}

async fn issue<V, B>(
    config: &EndpointConfig,
    verifier: V,
    request: Request<B>,
) -> Result<Vec<u8>, TokenError>
where
    V: Service<ClientAuthentication, Response = Principal, Error = VerifyError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let form = read_form(config, request).await?;
    let grant_type = match present(&form.fields.grant_type) {
        None => {
            return Err(TokenError::InvalidRequest(
                "parameter grant_type is missing",
            ));
        }
        Some("client_credentials") => GrantType::ClientCredentials,
        Some("password") => GrantType::Password,
        Some(_) => return Err(TokenError::UnsupportedGrantType),
    };
    let requested = present(&form.fields.scope).unwrap_or("").to_owned();
    let authenticated = authenticate(config, verifier, form, grant_type, &requested).await?;
    let body = mint(config, &authenticated)?;
    if config.instrument {
        metrics::counter!(
            TOKENS_ISSUED,
            "application" => authenticated.application.client_id().to_owned(),
            "auth_method" => authenticated.method,
        )
        .increment(1);
    }
    Ok(body)
}

pub(crate) fn verify_error(error: VerifyError) -> TokenError {
    match error {
        VerifyError::Rejected(_) => TokenError::InvalidGrant,
        VerifyError::Unavailable(_) | VerifyError::KeysUnavailable => {
            TokenError::TemporarilyUnavailable
        }
    }
}

/// Reads the body, refusing more than the limit without reading further.
async fn read_body<B>(
    config: &EndpointConfig,
    headers: &http::HeaderMap,
    body: B,
) -> Result<Bytes, TokenError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > config.body_limit as u64) {
        return Err(TokenError::PayloadTooLarge);
    }
    let collect = Limited::new(body, config.body_limit).collect();
    let collected = match config.body_timeout {
        Some(limit) => tokio::time::timeout(limit, collect)
            .await
            .map_err(|_| TokenError::BodyTimeout)?,
        None => collect.await,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(TokenError::PayloadTooLarge),
        Err(_) => Err(TokenError::InvalidRequest(
            "the request body could not be read",
        )),
    }
}

/// Who the client says it is, and with what: RFC 6749 §2.3 allows one client
/// authentication method per request.
fn client_authentication(
    form: &TokenRequest,
    basic: Option<BasicCredentials>,
) -> Result<(String, Credentials), TokenError> {
    const TWO_METHODS: TokenError =
        TokenError::InvalidRequest("more than one client authentication method was used");
    let assertion_type = present(&form.client_assertion_type);
    let assertion = present_secret(&form.client_assertion);
    if assertion_type.is_some_and(|kind| kind != JWT_BEARER) {
        // authentik answers an unknown assertion type with invalid_grant.
        return Err(TokenError::InvalidGrant);
    }
    if assertion.is_some() && assertion_type.is_none() {
        return Err(TokenError::InvalidRequest(
            "parameter client_assertion_type is missing",
        ));
    }
    let (client_id, secret) = match basic {
        Some(basic) => {
            if present_secret(&form.client_secret).is_some() || assertion.is_some() {
                return Err(TWO_METHODS);
            }
            if present(&form.client_id).is_some_and(|id| id != basic.client_id) {
                return Err(TokenError::InvalidRequest(
                    "client_id differs from the HTTP Basic client id",
                ));
            }
            let secret =
                (!basic.client_secret.expose_secret().is_empty()).then_some(basic.client_secret);
            (basic.client_id, secret)
        }
        None => (
            present(&form.client_id)
                .ok_or(TokenError::InvalidRequest("parameter client_id is missing"))?
                .to_owned(),
            present_secret(&form.client_secret).cloned(),
        ),
    };
    if client_id.is_empty() {
        return Err(TokenError::InvalidRequest("parameter client_id is missing"));
    }
    if assertion_type.is_some() {
        // RFC 7523 §2.2, or the JWT in client_secret for clients that can
        // only set a password (authentik still wants the assertion type).
        if present(&form.username).is_some() {
            return Err(TWO_METHODS);
        }
        let jwt = match (assertion, secret) {
            (Some(assertion), None) => assertion.clone(),
            (None, Some(secret)) => secret,
            (Some(_), Some(_)) => return Err(TWO_METHODS),
            (None, None) => {
                return Err(TokenError::InvalidRequest(
                    "parameter client_assertion is missing",
                ));
            }
        };
        return Ok((client_id, Credentials::Assertion(jwt)));
    }
    let credentials = match (
        present(&form.username),
        present_secret(&form.password),
        secret,
    ) {
        (Some(_), _, Some(_)) => return Err(TWO_METHODS),
        (Some(username), Some(password), None) => Credentials::Password {
            username: username.to_owned(),
            password: password.clone(),
        },
        (Some(_), None, None) => {
            return Err(TokenError::InvalidRequest("parameter password is missing"));
        }
        (None, Some(_), _) => {
            return Err(TokenError::InvalidRequest("parameter username is missing"));
        }
        (None, None, Some(secret)) => Credentials::ClientSecret(secret),
        (None, None, None) => {
            return Err(TokenError::InvalidRequest(
                "no client credentials were given",
            ));
        }
    };
    Ok((client_id, credentials))
}

/// Mints the access token (and ID token) and serializes the response body.
/// A traded token's successor expires no later than it.
fn mint(config: &EndpointConfig, authenticated: &Authenticated) -> Result<Vec<u8>, TokenError> {
    let Authenticated {
        application,
        principal,
        scope,
        expires_by,
        method,
        address,
    } = authenticated;
    let scope = scope.as_str();
    let now = claims::now();
    let mut exp = now.saturating_add(application.token_lifetime().as_secs());
    if let Some(limit) = *expires_by {
        exp = exp.min(limit);
    }
    let lifetime = exp.saturating_sub(now);
    let iss = application.issuer.as_str();
    let sub = claims::subject(application, principal, &config.subject_salt);
    let jti = claims::token_id().ok_or(TokenError::ServerError)?;
    let access = AccessTokenClaims {
        iss,
        sub: &sub,
        aud: application.client_id(),
        exp,
        iat: now,
        auth_time: now,
        jti: &jti,
        client_id: application.client_id(),
        azp: application.client_id(),
        scope,
        preferred_username: &principal.username,
        act: principal.external.as_ref().map(|external| Actor {
            iss: &external.issuer,
            sub: &external.subject,
        }),
    };
    let typ = config.at_jwt_typ.then_some("at+jwt");
    let (access_token, id_token) = config
        .keys
        .with_active(|key| {
            let access_token = key.sign_jwt(typ, &access)?;
            let id_token = if config.id_token {
                let jti = claims::token_id().ok_or(crate::keys::KeyError::Signing)?;
                Some(key.sign_jwt(
                    Some("JWT"),
                    &IdTokenClaims {
                        iss,
                        sub: &sub,
                        aud: application.client_id(),
                        exp,
                        iat: now,
                        auth_time: now,
                        jti: &jti,
                        preferred_username: &principal.username,
                    },
                )?)
            } else {
                None
            };
            Ok::<_, crate::keys::KeyError>((access_token, id_token))
        })
        .map_err(|error| {
            tracing::error!(%error, "token signing failed");
            TokenError::ServerError
        })?;
    let act = principal.external.as_ref();
    tracing::info!(
        target: AUDIT_TARGET,
        event = "token_issued",
        application = application.client_id(),
        account = %principal.username,
        account_id = %principal.id,
        auth_method = *method,
        scope,
        jti = %jti,
        exp,
        act_iss = act.map(|external| external.issuer.as_str()),
        act_sub = act.map(|external| external.subject.as_str()),
        client.address = address.map(display),
        "token issued"
    );
    Ok(response::token_body(
        &access_token,
        lifetime,
        scope,
        id_token.as_deref(),
    ))
}
