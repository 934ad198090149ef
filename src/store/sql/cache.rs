//! The SQL store's read cache: the answers of its credential lookups, kept
//! in memory and served only while the store's credentials are unchanged.
//!
//! Each entry holds the generation (`changes.rs`) it was read under and is
//! served only while the generation is still that one: a change anywhere in
//! the accounts, app passwords or bindings makes every entry stale at once,
//! found or not found alike (a new app password or binding is accepted at
//! once). Without a generation (PostgreSQL not listening, SQLite in memory)
//! every lookup reads the database. Keys are the lookups' arguments: app
//! passwords by their digest, never by the token. Each kind of lookup keeps
//! at most [`CAPACITY`] entries.

use std::future::Future;
use std::hash::Hash;

use quick_cache::sync::Cache;

use super::changes::Changes;
use crate::store::snapshot::{self, SourceId};
use crate::store::{AccountCredential, Binding, ServiceAccount, StoreError};

/// Entries per kind of lookup.
pub(crate) const CAPACITY: usize = 10_000;

/// The cached lookups of one store, and where their generation comes from.
#[derive(Debug)]
pub(crate) struct Reads {
    /// Where the generation comes from.
    pub(crate) changes: Changes,
    /// Names `changes` in a request's snapshot.
    source: SourceId,
    /// `app_password` by (username, digest).
    pub(crate) app_passwords: Entries<(String, [u8; 32]), Option<AccountCredential>>,
    /// `binding` by (account id, client id).
    pub(crate) bindings: Entries<(String, String), Option<Binding>>,
    /// `account` by username.
    pub(crate) accounts: Entries<String, Option<ServiceAccount>>,
    /// Accounts by id (input-JWT identities).
    pub(crate) accounts_by_id: Entries<String, Option<ServiceAccount>>,
}

impl Reads {
    /// Empty, with the generation from `changes`.
    pub(crate) fn new(changes: Changes) -> Self {
        Self {
            changes,
            source: SourceId::new(),
            app_passwords: Entries::new(),
            bindings: Entries::new(),
            accounts: Entries::new(),
            accounts_by_id: Entries::new(),
        }
    }

    /// The answer to one lookup of `entries` by `key`: from the cache if it
    /// holds one of the current generation, else from `read`.
    pub(crate) async fn get<K, V, F>(
        &self,
        entries: &Entries<K, V>,
        key: K,
        read: impl FnOnce() -> F,
    ) -> Result<V, StoreError>
    where
        K: Eq + Hash + Clone,
        V: Clone,
        F: Future<Output = Result<V, StoreError>>,
    {
        let current = || self.changes.generation();
        let seen = || snapshot::generation(self.source, current);
        entries.get_or_read(seen, current, key, read).await
    }
}

/// The answers of one kind of lookup, each tagged with its generation.
pub(crate) struct Entries<K, V>(Cache<K, (u64, V)>);

impl<K: Eq + Hash, V: Clone> std::fmt::Debug for Entries<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("len", &self.0.len())
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Entries<K, V> {
    fn new() -> Self {
        Self(Cache::new(CAPACITY))
    }

    /// The cached answer for `key` if it was read under the generation
    /// `seen` (this request's, see `store::snapshot`); else `read`'s,
    /// recorded only if the `current` generation is still that one (a read
    /// that raced a change is answered but not kept).
    async fn get_or_read<F>(
        &self,
        seen: impl FnOnce() -> Result<Option<u64>, StoreError>,
        current: impl FnOnce() -> Result<Option<u64>, StoreError>,
        key: K,
        read: impl FnOnce() -> F,
    ) -> Result<V, StoreError>
    where
        F: Future<Output = Result<V, StoreError>>,
    {
        let Some(before) = seen()? else {
            return read().await;
        };
        if let Some((tag, value)) = self.0.get(&key)
            && tag == before
        {
            return Ok(value);
        }
        let value = read().await?;
        if current()? == Some(before) {
            self.0.insert(key, (before, value.clone()));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A lookup through `entries` under the generation in `generation`,
    /// whose read answers `answer` and then moves the generation to `after`.
    async fn lookup(
        entries: &Entries<&'static str, u32>,
        generation: &Cell<Option<u64>>,
        answer: u32,
        after: Option<u64>,
    ) -> u32 {
        entries
            .get_or_read(
                || Ok(generation.get()),
                || Ok(generation.get()),
                "key",
                || async {
                    generation.set(after);
                    Ok(answer)
                },
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_read_while_the_generation_changed_is_not_kept() {
        let entries = Entries::new();
        let generation = Cell::new(Some(1));
        // The read raced a change (generation 1 → 2): answered, not kept.
        assert_eq!(lookup(&entries, &generation, 10, Some(2)).await, 10);
        // So the next lookup reads again, and keeps its answer…
        assert_eq!(lookup(&entries, &generation, 20, Some(2)).await, 20);
        // …which is served while the generation stays.
        assert_eq!(lookup(&entries, &generation, 30, Some(2)).await, 20);
    }

    #[tokio::test]
    async fn an_answer_of_an_older_generation_is_never_served() {
        let entries = Entries::new();
        let generation = Cell::new(Some(1));
        assert_eq!(lookup(&entries, &generation, 10, Some(1)).await, 10);
        generation.set(Some(2));
        assert_eq!(lookup(&entries, &generation, 20, Some(2)).await, 20);
    }

    #[tokio::test]
    async fn without_a_generation_every_lookup_reads() {
        let entries = Entries::new();
        let generation = Cell::new(None);
        assert_eq!(lookup(&entries, &generation, 10, None).await, 10);
        assert_eq!(lookup(&entries, &generation, 20, None).await, 20);
        // Not even an answer read just before listening stopped is kept.
        generation.set(Some(3));
        assert_eq!(lookup(&entries, &generation, 30, None).await, 30);
        generation.set(Some(3));
        assert_eq!(lookup(&entries, &generation, 40, Some(3)).await, 40);
    }
}
