//! `[[service_accounts]]`: accounts, tokens and bindings that the store
//! receives at every start.

use std::collections::HashSet;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::{ApplicationConfig, BuildError, parse_digest};
use crate::store::{AccountAdmin, AnyStore, AppPassword, Binding, ServiceAccount, TokenDigest};

/// Namespace of the name-based UUIDs given to configured service accounts,
/// so that their `sub` stays the same across restarts.
const ACCOUNT_NAMESPACE: Uuid = Uuid::from_u128(0x5b1c_0a52_8f3e_4c4e_9d47_2f6a_86c1_e0d3);

/// One `[[service_accounts]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceAccountConfig {
    /// Its username (printable ASCII, no spaces).
    pub username: String,
    /// Display name (default: the username).
    pub name: Option<String>,
    /// Whether it may authenticate (default `true`).
    #[serde(default = "default_active")]
    pub active: bool,
    /// Its app-password tokens.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// The applications where it may get tokens.
    #[serde(default)]
    pub bindings: Vec<BindingConfig>,
}

fn default_active() -> bool {
    true
}

/// A binding of a configured service account: the application where it may
/// get tokens, and the scopes it may get there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BindingConfig {
    /// The application's `client_id` (a configured one).
    pub client_id: String,
    /// The scopes it may get there.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// An app-password token of a service account: the token or its SHA-256,
/// and an optional expiry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenConfig {
    /// The token itself (for demos; prefer `sha256`).
    pub token: Option<String>,
    /// Its SHA-256, 64 hex digits.
    pub sha256: Option<String>,
    /// When it expires: an RFC 3339 date-time with offset (a TOML date-time
    /// or a string).
    #[serde(default, deserialize_with = "rfc3339")]
    pub expires: Option<SystemTime>,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_unix: Option<u64>,
}

/// A configured account with its tokens and bindings, checked.
pub(super) struct Configured {
    account: ServiceAccount,
    passwords: Vec<AppPassword>,
    bindings: Vec<Binding>,
}

impl ServiceAccountConfig {
    /// The account, with an id and UUID derived from its username so that
    /// hashed subjects survive restarts.
    fn account(&self) -> ServiceAccount {
        let uuid = Uuid::new_v5(&ACCOUNT_NAMESPACE, self.username.as_bytes());
        ServiceAccount::new(&self.username)
            .with_uuid(uuid)
            .with_id(uuid.to_string())
            .with_name(self.name.as_deref().unwrap_or(&self.username))
            .with_active(self.active)
    }

    /// Whether one of its tokens has this digest.
    pub(super) fn declares(&self, digest: &TokenDigest) -> bool {
        let account_id = self.account().id;
        self.tokens.iter().any(|token| {
            token
                .app_password(&account_id)
                .is_ok_and(|p| p.digest == *digest)
        })
    }
}

impl TokenConfig {
    /// The stored form of this token, for the account `account_id`.
    fn app_password(&self, account_id: &str) -> Result<AppPassword, String> {
        let digest = match (&self.token, &self.sha256) {
            (Some(_), Some(_)) => return Err("give token or sha256, not both".into()),
            (None, None) => return Err("give token or sha256".into()),
            (Some(token), None) if token.is_empty() => return Err("token is empty".into()),
            (Some(token), None) => TokenDigest::of(token),
            (None, Some(hex)) => parse_digest("sha256", hex)?,
        };
        let password = AppPassword::new(account_id, digest);
        let expires = match (self.expires, self.expires_unix) {
            (Some(_), Some(_)) => return Err("give expires or expires_unix, not both".into()),
            (Some(at), None) => Some(at),
            (None, Some(seconds)) => {
                Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
            }
            (None, None) => None,
        };
        Ok(match expires {
            Some(expires) => password.with_expires(expires),
            None => password,
        })
    }
}

/// An RFC 3339 date-time with offset: a string, or TOML's date-time (which
/// serde sees as a one-entry map holding its text).
fn rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SystemTime>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = SystemTime;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 date-time with offset, e.g. 2030-01-01T00:00:00Z")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SystemTime, E> {
            let at: jiff::Timestamp = text.parse().map_err(|_| {
                E::custom(format!(
                    "expires = {text} needs a date, a time and an offset, e.g. 2030-01-01T00:00:00Z"
                ))
            })?;
            Ok(SystemTime::from(at))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<SystemTime, A::Error> {
            match map.next_entry::<String, String>()? {
                Some((_, text)) => self.visit_str(&text),
                None => Err(serde::de::Error::custom("an empty date-time")),
            }
        }
    }
    deserializer.deserialize_any(Visitor).map(Some)
}

/// The configured accounts, checked: unique usernames that stores accept,
/// no token configured twice, and bindings to configured applications only.
pub(super) fn configured(
    configs: &[ServiceAccountConfig],
    applications: &[ApplicationConfig],
) -> Result<Vec<Configured>, BuildError> {
    let mut accounts = Vec::with_capacity(configs.len());
    let mut usernames = HashSet::new();
    let mut digests = HashSet::new();
    for config in configs {
        let at = format!("[[service_accounts]] {:?}", config.username);
        let invalid = |reason: String| BuildError::invalid(&at, reason);
        if !usernames.insert(config.username.as_str()) {
            return Err(invalid("username is used twice".into()));
        }
        let account = config.account();
        account.check().map_err(|source| BuildError::Account {
            at: at.clone(),
            source,
        })?;
        let mut passwords = Vec::with_capacity(config.tokens.len());
        for (index, token) in config.tokens.iter().enumerate() {
            let invalid = |reason: String| invalid(format!("token #{}: {reason}", index + 1));
            let password = token.app_password(&account.id).map_err(invalid)?;
            // The store keys tokens by digest: a repeated token would
            // silently move to the later account.
            if !digests.insert(*password.digest.as_bytes()) {
                return Err(invalid("this token is configured twice".into()));
            }
            if password
                .expires
                .is_some_and(|expires| expires <= SystemTime::now())
            {
                tracing::warn!(username = %config.username, token = index + 1, "app-password token has expired");
            }
            passwords.push(password);
        }
        let mut bindings: Vec<Binding> = Vec::with_capacity(config.bindings.len());
        for binding in &config.bindings {
            let invalid =
                |reason: String| invalid(format!("binding {:?}: {reason}", binding.client_id));
            if bindings.iter().any(|b| b.client_id == binding.client_id) {
                return Err(invalid("this application is bound twice".into()));
            }
            let binding = Binding::new(&binding.client_id, binding.scopes.iter().cloned());
            check_binding(applications, &binding).map_err(invalid)?;
            bindings.push(binding);
        }
        accounts.push(Configured {
            account,
            passwords,
            bindings,
        });
    }
    Ok(accounts)
}

/// A valid binding naming a configured application (a typo would bind
/// nothing); scopes the application does not allow are never granted: a
/// warning.
pub(super) fn check_binding(
    applications: &[ApplicationConfig],
    binding: &Binding,
) -> Result<(), String> {
    binding.check().map_err(|error| error.to_string())?;
    let Some(application) = applications
        .iter()
        .find(|a| a.client_id == binding.client_id)
    else {
        let known: Vec<&str> = applications.iter().map(|a| a.client_id.as_str()).collect();
        return Err(format!(
            "no [[applications]] has client_id {:?} (configured: {})",
            binding.client_id,
            known.join(", ")
        ));
    };
    let unknown: Vec<&str> = binding
        .scopes
        .iter()
        .filter(|scope| !application.scopes.contains(scope))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        tracing::warn!(
            client_id = binding.client_id,
            scopes = unknown.join(" "),
            "bound scopes that the application does not allow are never granted"
        );
    }
    Ok(())
}

/// Brings the configured accounts and tokens into the store. What is there
/// already stays as it is: a restart changes nothing, and a disabled account
/// stays disabled. A configured token that was revoked is imported again,
/// though. Configured bindings are applied every time (the configuration's
/// scopes win); bindings made at run time to other applications stay.
pub(super) async fn import(store: &AnyStore, accounts: &[Configured]) -> Result<(), BuildError> {
    let mut new_tokens = 0;
    for configured in accounts {
        let username = configured.account.username.as_str();
        let error = |what: String, source| BuildError::Account {
            at: format!("[[service_accounts]] {username:?}{what}"),
            source,
        };
        let stored = store
            .import_service_account(configured.account.clone())
            .await
            .map_err(|source| error(String::new(), source))?;
        if (&stored.name, stored.active) != (&configured.account.name, configured.account.active) {
            tracing::warn!(
                username,
                name = stored.name,
                active = stored.active,
                "service account: the store's name and active flag win over the configuration's"
            );
        }
        for (index, password) in configured.passwords.iter().enumerate() {
            match store.import_app_password(username, password.clone()).await {
                Ok(true) => new_tokens += 1,
                Ok(false) => {}
                Err(source) => return Err(error(format!(" token #{}", index + 1), source)),
            }
        }
        for binding in &configured.bindings {
            store
                .bind_account(username, binding.clone())
                .await
                .map_err(|source| error(format!(" binding {:?}", binding.client_id), source))?;
        }
    }
    tracing::info!(
        service_accounts = accounts.len(),
        new_tokens,
        "configured service accounts imported"
    );
    Ok(())
}
