//! [`AnyStore`]: one store type for whichever store a host picks at run time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;

use super::{
    AccountAdmin, AccountCredential, AdminError, AppPassword, Binding, CredentialStore,
    ExternalAccount, MemoryReplayCache, MemoryRevocationList, MemoryStore, ReplayCache,
    RevocationList, ServiceAccount, StoreError, TokenDigest,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A type-erased store, cheap to clone: accounts and their administration,
/// the replay cache and the revocation list of any store (memory, SQLite,
/// PostgreSQL, your own), behind one type. So a host can choose its store
/// from its configuration and still name one endpoint type,
/// `TokenEndpointLayer<StoreVerifier<AnyStore>>`.
///
/// ```
/// use tower_m2m_auth::store::{AnyStore, MemoryReplayCache, MemoryRevocationList, MemoryStore};
///
/// // One type whatever the configuration names, e.g.
/// // `AnyStore::new(SqliteStore::connect("auth.db").await?)` (feature `sqlite`).
/// let stores: [AnyStore; 2] = [
///     AnyStore::memory(),
///     AnyStore::from_parts(MemoryStore::new(), MemoryReplayCache::new(), MemoryRevocationList::new()),
/// ];
/// # let _ = stores;
/// ```
///
/// Each call costs one boxed future over calling the store itself.
#[derive(Clone)]
pub struct AnyStore {
    accounts: Arc<dyn ErasedAccounts>,
    replay: Arc<dyn ErasedReplay>,
    revocations: Arc<dyn ErasedRevocations>,
}

impl AnyStore {
    /// A store that is all four at once (the SQL stores are).
    pub fn new<S>(store: S) -> Self
    where
        S: CredentialStore + AccountAdmin + ReplayCache + RevocationList,
    {
        let store = Arc::new(store);
        Self {
            accounts: store.clone(),
            replay: store.clone(),
            revocations: store,
        }
    }

    /// A store made of three parts: accounts, replay cache, revocation list.
    pub fn from_parts(
        accounts: impl CredentialStore + AccountAdmin,
        replay: impl ReplayCache,
        revocations: impl RevocationList,
    ) -> Self {
        Self {
            accounts: Arc::new(accounts),
            replay: Arc::new(replay),
            revocations: Arc::new(revocations),
        }
    }

    /// Everything in memory, for one instance, lost at exit.
    pub fn memory() -> Self {
        Self::from_parts(
            MemoryStore::new(),
            MemoryReplayCache::new(),
            MemoryRevocationList::new(),
        )
    }
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyStore").finish_non_exhaustive()
    }
}

/// The object-safe mirror of [`CredentialStore`].
pub(crate) trait ErasedCredentials: Send + Sync + 'static {
    fn app_password<'a>(
        &'a self,
        username: &'a str,
        digest: &'a TokenDigest,
    ) -> BoxFuture<'a, Result<Option<AccountCredential>, StoreError>>;
    fn external_account<'a>(
        &'a self,
        account: &'a ExternalAccount,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, StoreError>>;
    fn account<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, StoreError>>;
    fn binding<'a>(
        &'a self,
        account_id: &'a str,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Binding>, StoreError>>;
}

/// The object-safe mirror of [`AccountAdmin`], with the accounts' lookups.
trait ErasedAccounts: ErasedCredentials {
    fn create_service_account(
        &self,
        account: ServiceAccount,
        expires: Option<SystemTime>,
    ) -> BoxFuture<'_, Result<(ServiceAccount, SecretString), AdminError>>;
    fn list_service_accounts(&self) -> BoxFuture<'_, Result<Vec<ServiceAccount>, StoreError>>;
    fn add_app_password<'a>(
        &'a self,
        username: &'a str,
        expires: Option<SystemTime>,
    ) -> BoxFuture<'a, Result<SecretString, AdminError>>;
    fn revoke_app_password<'a>(
        &'a self,
        digest: &'a TokenDigest,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn set_account_active<'a>(
        &'a self,
        username: &'a str,
        active: bool,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn import_service_account(
        &self,
        account: ServiceAccount,
    ) -> BoxFuture<'_, Result<ServiceAccount, AdminError>>;
    fn import_app_password<'a>(
        &'a self,
        username: &'a str,
        password: AppPassword,
    ) -> BoxFuture<'a, Result<bool, AdminError>>;
    fn bind_account<'a>(
        &'a self,
        username: &'a str,
        binding: Binding,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    fn unbind_account<'a>(
        &'a self,
        username: &'a str,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, AdminError>>;
    fn list_bindings<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Binding>, AdminError>>;
}

/// The object-safe mirror of [`ReplayCache`].
pub(crate) trait ErasedReplay: Send + Sync + 'static {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn forget<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// The object-safe mirror of [`RevocationList`].
pub(crate) trait ErasedRevocations: Send + Sync + 'static {
    fn revoke<'a>(&'a self, jti: &'a str, expires_at: u64)
    -> BoxFuture<'a, Result<(), StoreError>>;
    fn is_revoked<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// Forwards each method of a mirror trait to the real trait, boxing its future.
macro_rules! forward {
    ($trait:ident; $($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(
            fn $name<'a>(&'a self, $($arg: $ty),*) -> BoxFuture<'a, $out> {
                Box::pin($trait::$name(self, $($arg),*))
            }
        )*
    };
}

impl<S: CredentialStore> ErasedCredentials for S {
    forward! { CredentialStore;
        app_password(username: &'a str, digest: &'a TokenDigest)
            -> Result<Option<AccountCredential>, StoreError>;
        external_account(account: &'a ExternalAccount) -> Result<Option<ServiceAccount>, StoreError>;
        account(username: &'a str) -> Result<Option<ServiceAccount>, StoreError>;
        binding(account_id: &'a str, client_id: &'a str) -> Result<Option<Binding>, StoreError>;
    }
}

impl<S: CredentialStore + AccountAdmin> ErasedAccounts for S {
    forward! { AccountAdmin;
        create_service_account(account: ServiceAccount, expires: Option<SystemTime>)
            -> Result<(ServiceAccount, SecretString), AdminError>;
        list_service_accounts() -> Result<Vec<ServiceAccount>, StoreError>;
        add_app_password(username: &'a str, expires: Option<SystemTime>)
            -> Result<SecretString, AdminError>;
        revoke_app_password(digest: &'a TokenDigest) -> Result<bool, StoreError>;
        set_account_active(username: &'a str, active: bool) -> Result<bool, StoreError>;
        import_service_account(account: ServiceAccount) -> Result<ServiceAccount, AdminError>;
        import_app_password(username: &'a str, password: AppPassword) -> Result<bool, AdminError>;
        bind_account(username: &'a str, binding: Binding) -> Result<(), AdminError>;
        unbind_account(username: &'a str, client_id: &'a str) -> Result<bool, AdminError>;
        list_bindings(username: &'a str) -> Result<Vec<Binding>, AdminError>;
    }
}

impl<S: ReplayCache> ErasedReplay for S {
    forward! { ReplayCache;
        first_use(key: &'a str, expires_at: u64) -> Result<bool, StoreError>;
        forget(key: &'a str) -> Result<(), StoreError>;
    }
}

impl<S: RevocationList> ErasedRevocations for S {
    forward! { RevocationList;
        revoke(jti: &'a str, expires_at: u64) -> Result<(), StoreError>;
        is_revoked(jti: &'a str) -> Result<bool, StoreError>;
    }
}

/// Implements a public store trait for [`AnyStore`] by calling the mirror
/// trait on one of its parts.
macro_rules! delegate {
    ($part:ident; $($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(
            fn $name(&self, $($arg: $ty),*) -> impl Future<Output = $out> + Send {
                async move { self.$part.$name($($arg),*).await }
            }
        )*
    };
}

impl CredentialStore for AnyStore {
    delegate! { accounts;
        app_password(username: &str, digest: &TokenDigest)
            -> Result<Option<AccountCredential>, StoreError>;
        external_account(account: &ExternalAccount) -> Result<Option<ServiceAccount>, StoreError>;
        account(username: &str) -> Result<Option<ServiceAccount>, StoreError>;
        binding(account_id: &str, client_id: &str) -> Result<Option<Binding>, StoreError>;
    }
}

impl AccountAdmin for AnyStore {
    delegate! { accounts;
        create_service_account(account: ServiceAccount, expires: Option<SystemTime>)
            -> Result<(ServiceAccount, SecretString), AdminError>;
        list_service_accounts() -> Result<Vec<ServiceAccount>, StoreError>;
        add_app_password(username: &str, expires: Option<SystemTime>)
            -> Result<SecretString, AdminError>;
        revoke_app_password(digest: &TokenDigest) -> Result<bool, StoreError>;
        set_account_active(username: &str, active: bool) -> Result<bool, StoreError>;
        import_service_account(account: ServiceAccount) -> Result<ServiceAccount, AdminError>;
        import_app_password(username: &str, password: AppPassword) -> Result<bool, AdminError>;
        bind_account(username: &str, binding: Binding) -> Result<(), AdminError>;
        unbind_account(username: &str, client_id: &str) -> Result<bool, AdminError>;
        list_bindings(username: &str) -> Result<Vec<Binding>, AdminError>;
    }
}

impl ReplayCache for AnyStore {
    delegate! { replay;
        first_use(key: &str, expires_at: u64) -> Result<bool, StoreError>;
        forget(key: &str) -> Result<(), StoreError>;
    }
}

impl RevocationList for AnyStore {
    delegate! { revocations;
        revoke(jti: &str, expires_at: u64) -> Result<(), StoreError>;
        is_revoked(jti: &str) -> Result<bool, StoreError>;
    }
}
