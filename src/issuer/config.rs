//! The endpoint's configuration, shared by every stage: keys, applications,
//! stores, paths and limits; the path table computed from them; and the rules
//! a configuration must satisfy, checked when the layer is built.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::Span;
use tracing::field::Empty;

use super::application::Application;
use super::attempts::{self, AddressSource, AttemptGuard};
use super::directory::{Directory, Replays, Revocations};
use super::error::ConfigError;
use crate::keys::KeyRing;
use crate::keys::dpop::{DpopNonces, DpopRules, normalize_htu};
use crate::store::{MemoryReplayCache, MemoryRevocationList};

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
    /// The token endpoint's URL: an audience that names this server.
    pub(crate) token_url: String,
    pub(crate) introspection_path: String,
    pub(crate) revocation_path: String,
    pub(crate) revocations: Arc<dyn Revocations>,
    /// The `jti`s of single-use input JWTs seen.
    pub(crate) replay: Arc<dyn Replays>,
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
    pub(crate) dpop: DpopEndpoint,
}

/// The endpoint's DPoP settings (RFC 9449).
#[derive(Clone, Default)]
pub(crate) struct DpopEndpoint {
    pub(crate) rules: DpopRules,
    /// Server nonces, when proofs must carry one.
    pub(crate) nonces: Option<DpopNonces>,
    /// The token endpoint's URL, normalized: the `htu` of its proofs.
    pub(crate) htu: String,
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
            token_url: String::new(),
            introspection_path: "/application/o/introspect/".into(),
            revocation_path: "/application/o/revoke/".into(),
            revocations: Arc::new(MemoryRevocationList::new()),
            replay: Arc::new(MemoryReplayCache::new()),
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
            dpop: DpopEndpoint::default(),
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
        self.token_url = format!("{}{}", self.base_url, self.token_path);
        self.dpop.htu = normalize_htu(&self.token_url).unwrap_or_else(|| self.token_url.clone());
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

/// The rules one application must satisfy by itself.
pub(crate) fn check_application(application: &Application) -> Result<(), ConfigError> {
    application
        .check()
        .map_err(|error| ConfigError::Application {
            client_id: application.client_id().to_owned(),
            error,
        })?;
    let rules = &application.assertions;
    if rules.keys.has_remote()
        && rules.policies.is_empty()
        && rules.audiences.is_empty()
        && !rules.unpinned
    {
        return Err(ConfigError::UnpinnedJwks(
            application.client_id().to_owned(),
        ));
    }
    Ok(())
}

/// No application trusts one of the endpoint's own issuers as an external
/// issuer: its tokens would be taken as input JWTs, past every check that
/// federation makes of this issuer's tokens (type, revocation, DPoP
/// binding, the account behind them). Federation is the way to accept them.
pub(crate) fn check_trusted_issuers(config: &EndpointConfig) -> Result<(), ConfigError> {
    let own = |iss: &str| {
        let iss = iss.trim_end_matches('/');
        config
            .applications
            .values()
            .find(|app| app.issuer().trim_end_matches('/') == iss)
    };
    let mut applications: Vec<&Arc<Application>> = config.applications.values().collect();
    applications.sort_unstable_by_key(|app| app.client_id());
    for application in applications {
        for trusted in application.assertions.keys.issuers() {
            if let Some(owner) = own(trusted.iss()) {
                return Err(ConfigError::TrustsOwnIssuer {
                    client_id: application.client_id().to_owned(),
                    owner: owner.client_id().to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Every federated `client_id` names another application, and no chain of
/// federations comes back to where it started.
pub(crate) fn check_federation(
    applications: &HashMap<String, Arc<Application>>,
) -> Result<(), ConfigError> {
    for application in applications.values() {
        for federated in &application.assertions.federated_clients {
            if federated == application.client_id() {
                return Err(ConfigError::SelfFederation(federated.clone()));
            }
            if !applications.contains_key(federated) {
                return Err(ConfigError::UnknownFederatedApplication {
                    client_id: application.client_id().to_owned(),
                    federated: federated.clone(),
                });
            }
        }
    }
    // Depth-first search for a back edge; `path` is the chain being walked.
    fn visit<'a>(
        client_id: &'a str,
        applications: &'a HashMap<String, Arc<Application>>,
        done: &mut HashSet<&'a str>,
        path: &mut Vec<&'a str>,
    ) -> Result<(), ConfigError> {
        if let Some(start) = path.iter().position(|id| *id == client_id) {
            let cycle = path[start..].iter().map(|id| (*id).to_owned()).collect();
            return Err(ConfigError::FederationCycle(cycle));
        }
        if !done.insert(client_id) {
            return Ok(());
        }
        path.push(client_id);
        for next in &applications[client_id].assertions.federated_clients {
            visit(next, applications, done, path)?;
        }
        path.pop();
        Ok(())
    }
    let mut done = HashSet::new();
    let mut ids: Vec<&str> = applications.keys().map(String::as_str).collect();
    ids.sort_unstable();
    for client_id in ids {
        visit(client_id, applications, &mut done, &mut Vec::new())?;
    }
    Ok(())
}

pub(crate) fn checked_path(path: &str, per_application: bool) -> Result<String, ConfigError> {
    if !path.starts_with('/') || (per_application && !path.contains("{slug}")) {
        return Err(ConfigError::Path(path.to_owned()));
    }
    Ok(path.to_owned())
}
