//! An in-memory credential store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use std::time::SystemTime;

use secrecy::SecretString;

use super::{
    AccountAdmin, AccountCredential, AdminError, AppPassword, Binding, CredentialStore,
    ExternalAccount, ServiceAccount, StoreError, TokenDigest,
};

/// A [`CredentialStore`] held in memory: for tests, demos, and accounts that
/// come from configuration. Clones share the same data.
///
/// ```
/// use tower_m2m_auth::store::{AppPassword, MemoryStore, ServiceAccount, TokenDigest};
///
/// let store = MemoryStore::new();
/// let account = ServiceAccount::new("ci-deployer");
/// let (token, password) = AppPassword::generate(&account.id);
/// store.insert_account(account);
/// store.insert_app_password(password);
/// // hand `token` to the client once; only its digest is kept.
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Accounts by username.
    accounts: HashMap<String, ServiceAccount>,
    /// App passwords by digest.
    passwords: HashMap<[u8; 32], AppPassword>,
    /// Accounts of input-JWT identities: id to username.
    external: HashMap<String, String>,
    /// Bindings by account id, then `client_id`: the scopes allowed there.
    bindings: HashMap<String, HashMap<String, Vec<String>>>,
}

impl Inner {
    /// The id of the service account `username`: not an input-JWT identity.
    fn service_account_id(&self, username: &str) -> Result<String, AdminError> {
        match self.accounts.get(username) {
            None => Err(AdminError::NoSuchAccount(username.to_owned())),
            Some(account) if account.is_jwt_identity() => {
                Err(AdminError::NameOfJwtIdentity(username.to_owned()))
            }
            Some(account) => Ok(account.id.clone()),
        }
    }

    /// Whether an account other than `username` has this id or UUID.
    fn id_taken(&self, account: &ServiceAccount) -> bool {
        self.accounts.values().any(|other| {
            other.username != account.username
                && (other.id == account.id || other.uuid == account.uuid)
        })
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces (by username) a service account, unchecked: for
    /// accounts the embedding program sets up itself. For checked changes
    /// (reserved names and ids, input-JWT identities never replaced) use
    /// [`AccountAdmin::import_service_account`] or
    /// [`AccountAdmin::create_service_account`].
    pub fn insert_account(&self, account: ServiceAccount) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.accounts.insert(account.username.clone(), account);
    }

    /// Adds an app password (it names its account by id).
    pub fn insert_app_password(&self, password: AppPassword) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner
            .passwords
            .insert(*password.digest.as_bytes(), password);
    }

    /// Removes the app password with this digest; returns whether it existed.
    pub fn remove_app_password(&self, digest: &TokenDigest) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.passwords.remove(digest.as_bytes()).is_some()
    }

    /// Enables or disables the account `username`; returns whether it exists.
    pub fn set_active(&self, username: &str, active: bool) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match inner.accounts.get_mut(username) {
            Some(account) => {
                account.active = active;
                true
            }
            None => false,
        }
    }

    /// Binds the account `username` to an application (replacing an earlier
    /// binding there); returns whether it was bound: `false` if there is no
    /// such account, it is an input-JWT identity, or the binding fails
    /// [`Binding::check`] ([`AccountAdmin::bind_account`] says which).
    pub fn bind(&self, username: &str, binding: Binding) -> bool {
        self.try_bind(username, binding).is_ok()
    }

    fn try_bind(&self, username: &str, binding: Binding) -> Result<(), AdminError> {
        binding.check()?;
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let id = inner.service_account_id(username)?;
        inner
            .bindings
            .entry(id)
            .or_default()
            .insert(binding.client_id, binding.scopes);
        Ok(())
    }

    fn lookup(&self, username: &str, digest: &TokenDigest) -> Option<AccountCredential> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let account = inner.accounts.get(username)?;
        let password = inner.passwords.get(digest.as_bytes())?;
        (password.account_id == account.id)
            .then(|| AccountCredential::new(account.clone(), password.clone()))
    }
}

impl CredentialStore for MemoryStore {
    async fn app_password(
        &self,
        username: &str,
        digest: &TokenDigest,
    ) -> Result<Option<AccountCredential>, StoreError> {
        Ok(self.lookup(username, digest))
    }

    /// Records are kept as long as the store lives (nothing is purged).
    async fn external_account(
        &self,
        account: &ExternalAccount,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        self.record_external(account).map(Some)
    }

    async fn account(&self, username: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        Ok(inner.accounts.get(username).cloned())
    }

    async fn binding(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> Result<Option<Binding>, StoreError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        Ok(inner
            .bindings
            .get(account_id)
            .and_then(|bindings| bindings.get(client_id))
            .map(|scopes| Binding::new(client_id, scopes.iter().cloned())))
    }
}

impl MemoryStore {
    fn record_external(&self, account: &ExternalAccount) -> Result<ServiceAccount, StoreError> {
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some(username) = inner.external.get(&account.id)
                && let Some(stored) = inner.accounts.get(username)
                && stored.id == account.id
                && !account.extends(stored.expires)
            {
                return Ok(stored.clone());
            }
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let Inner {
            accounts, external, ..
        } = &mut *inner;
        if let Some(username) = external.get(&account.id)
            && let Some(stored) = accounts.get_mut(username.as_str())
            && stored.id == account.id
        {
            if account.extends(stored.expires) {
                stored.expires = account.expires;
            }
            return Ok(stored.clone());
        }
        // New (or its username was since given to another account by
        // `insert_account`): never take over an account.
        let taken = |username: &str| {
            accounts.get(username).is_some_and(|a| a.id != account.id)
                || accounts.values().any(|a| a.uuid == account.uuid)
        };
        let username = account
            .candidate_usernames()
            .into_iter()
            .find(|username| !taken(username))
            .ok_or_else(|| {
                StoreError(
                    format!(
                        "no free username for the input-JWT account {:?}",
                        account.username
                    )
                    .into(),
                )
            })?;
        let stored = account.to_service_account(&username);
        accounts.insert(username.clone(), stored.clone());
        external.insert(account.id.clone(), username);
        Ok(stored)
    }
}

impl AccountAdmin for MemoryStore {
    async fn create_service_account(
        &self,
        mut account: ServiceAccount,
        expires: Option<SystemTime>,
    ) -> Result<(ServiceAccount, SecretString), AdminError> {
        account.check()?;
        account.expires = None;
        account.external_issuer = None;
        account.external_subject = None;
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match inner.accounts.get(&account.username) {
            Some(stored) if stored.is_jwt_identity() => {
                return Err(AdminError::NameOfJwtIdentity(account.username));
            }
            Some(_) => return Err(AdminError::AccountExists(account.username)),
            None if inner.id_taken(&account) => return Err(AdminError::IdTaken(account.username)),
            None => {}
        }
        let (token, mut password) = AppPassword::generate(&account.id);
        password.expires = expires;
        inner
            .passwords
            .insert(*password.digest.as_bytes(), password);
        inner
            .accounts
            .insert(account.username.clone(), account.clone());
        Ok((account, token))
    }

    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>, StoreError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut accounts: Vec<ServiceAccount> = inner.accounts.values().cloned().collect();
        accounts.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(accounts)
    }

    async fn add_app_password(
        &self,
        username: &str,
        expires: Option<SystemTime>,
    ) -> Result<SecretString, AdminError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let account_id = inner.service_account_id(username)?;
        let (token, mut password) = AppPassword::generate(account_id);
        password.expires = expires;
        inner
            .passwords
            .insert(*password.digest.as_bytes(), password);
        Ok(token)
    }

    async fn revoke_app_password(&self, digest: &TokenDigest) -> Result<bool, StoreError> {
        Ok(self.remove_app_password(digest))
    }

    async fn set_account_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        Ok(self.set_active(username, active))
    }

    async fn import_service_account(
        &self,
        mut account: ServiceAccount,
    ) -> Result<ServiceAccount, AdminError> {
        account.check()?;
        account.expires = None;
        account.external_issuer = None;
        account.external_subject = None;
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match inner.accounts.get(&account.username) {
            Some(stored) if stored.is_jwt_identity() => {
                Err(AdminError::NameOfJwtIdentity(account.username))
            }
            Some(stored) => Ok(stored.clone()),
            None if inner.id_taken(&account) => Err(AdminError::IdTaken(account.username)),
            None => {
                inner
                    .accounts
                    .insert(account.username.clone(), account.clone());
                Ok(account)
            }
        }
    }

    async fn import_app_password(
        &self,
        username: &str,
        mut password: AppPassword,
    ) -> Result<bool, AdminError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let account_id = inner.service_account_id(username)?;
        match inner.passwords.get(password.digest.as_bytes()) {
            Some(stored) if stored.account_id == account_id => Ok(false),
            Some(_) => Err(AdminError::PasswordOfAnotherAccount),
            None => {
                password.account_id = account_id;
                inner
                    .passwords
                    .insert(*password.digest.as_bytes(), password);
                Ok(true)
            }
        }
    }

    async fn bind_account(&self, username: &str, binding: Binding) -> Result<(), AdminError> {
        self.try_bind(username, binding)
    }

    async fn unbind_account(&self, username: &str, client_id: &str) -> Result<bool, AdminError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let id = inner
            .accounts
            .get(username)
            .ok_or_else(|| AdminError::NoSuchAccount(username.to_owned()))?
            .id
            .clone();
        Ok(inner
            .bindings
            .get_mut(&id)
            .is_some_and(|bindings| bindings.remove(client_id).is_some()))
    }

    async fn list_bindings(&self, username: &str) -> Result<Vec<Binding>, AdminError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let id = &inner
            .accounts
            .get(username)
            .ok_or_else(|| AdminError::NoSuchAccount(username.to_owned()))?
            .id;
        let mut bindings: Vec<Binding> = inner
            .bindings
            .get(id)
            .into_iter()
            .flatten()
            .map(|(client_id, scopes)| Binding::new(client_id.clone(), scopes.iter().cloned()))
            .collect();
        bindings.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(bindings)
    }
}
