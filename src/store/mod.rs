//! Where service accounts and their app-password tokens live.
//!
//! The issuer's default credential verifier reads a [`CredentialStore`]. Tokens
//! are never stored, only their SHA-256 [`TokenDigest`]: app passwords are
//! random, high-entropy secrets, so a fast hash is enough and a slow password
//! hash would only hand attackers a denial-of-service lever.
//!
//! One concept a file: the account types (`account.rs`, `external.rs`), the
//! traits a store implements ([`CredentialStore`], [`AccountAdmin`],
//! [`ReplayCache`], [`RevocationList`], [`AttemptLimiter`]) and the stores:
//! [`MemoryStore`], one SQL store ([`SqlStore`]) for SQLite and PostgreSQL,
//! and `RedisStore`.
//!
//! This module knows nothing of HTTP or OAuth2.

mod account;
mod admin;
mod credential;
mod digest;
mod erased;
mod expiring;
mod external;
mod limiter;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod replay;
mod revocation;
pub(crate) mod snapshot;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use account::{
    AUTOMATIC_ID_PREFIX, AccountCredential, AppPassword, Binding, JWT_ID_PREFIX, ServiceAccount,
};
pub(crate) use account::{is_scope_token, scope_list};
pub use admin::{AccountAdmin, AdminError};
pub use credential::{CredentialStore, StoreError};
pub use digest::TokenDigest;
pub use erased::AnyStore;
pub(crate) use erased::{ErasedCredentials, ErasedReplay, ErasedRevocations};
pub use external::ExternalAccount;
pub use limiter::{
    Admission, AttemptKey, AttemptKeyKind, AttemptLimiter, FailureLimit, MemoryAttemptLimiter,
};
pub use memory::MemoryStore;
pub use replay::{MemoryReplayCache, ReplayCache};
pub use revocation::{MemoryRevocationList, RevocationList};
#[cfg(feature = "postgres")]
pub use sql::PgStore;
#[cfg(feature = "sqlite")]
pub use sql::SqliteStore;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{SqlDialect, SqlStore};
