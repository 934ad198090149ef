//! One look at each store's change generation per request: the lookups an
//! endpoint makes for one request (an app password, then the binding) see
//! the credentials as of the first of them.
//!
//! A SQL store answers lookups from its read cache only under the current
//! generation of its credentials (`sql/cache.rs`), which SQLite reads from
//! the database file on every lookup. Within [`scope`], each store reads it
//! once and its later lookups reuse it: a change committed before the
//! request began is always seen; one committed while it runs is seen by
//! some or none of its lookups, as if the request had run just before it.
//! Outside a scope every lookup reads the generation.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

tokio::task_local! {
    /// The generation each store (by [`SourceId`]) read first in this scope.
    static SEEN: RefCell<Vec<(SourceId, u64)>>;
}

/// Names one source of generations (one store's change counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceId(u64);

// (Only the SQL stores read generations.)
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
impl SourceId {
    /// A name no other source has.
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Runs `future` as one request: each store's generation is read once.
pub(crate) async fn scope<F: Future>(future: F) -> F::Output {
    SEEN.scope(RefCell::default(), future).await
}

/// The generation of `source`: the one read earlier in this scope, or
/// `read`'s (then kept for the rest of the scope). `None` (no generation:
/// the cache is off) is never kept.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn generation<E>(
    source: SourceId,
    read: impl FnOnce() -> Result<Option<u64>, E>,
) -> Result<Option<u64>, E> {
    let seen = SEEN.try_with(|seen| {
        let seen = seen.borrow();
        seen.iter()
            .find(|(id, _)| *id == source)
            .map(|&(_, generation)| generation)
    });
    match seen {
        Ok(Some(generation)) => Ok(Some(generation)),
        Ok(None) => {
            let generation = read()?;
            if let Some(generation) = generation {
                let _ = SEEN.try_with(|seen| seen.borrow_mut().push((source, generation)));
            }
            Ok(generation)
        }
        // Not in a scope.
        Err(_) => read(),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn a_scope_reads_each_source_once_and_the_next_scope_reads_again() {
        let (a, b) = (SourceId::new(), SourceId::new());
        let reads = Cell::new(0);
        let counter = Cell::new(7);
        let read = || -> Result<Option<u64>, ()> {
            reads.set(reads.get() + 1);
            Ok(Some(counter.get()))
        };
        scope(async {
            assert_eq!(generation(a, read), Ok(Some(7)));
            // A change while the request runs: not seen by its later lookups.
            counter.set(8);
            assert_eq!(generation(a, read), Ok(Some(7)));
            // Another store reads its own.
            assert_eq!(generation(b, read), Ok(Some(8)));
        })
        .await;
        assert_eq!(reads.get(), 2);
        // The next request sees the change.
        scope(async { assert_eq!(generation(a, read), Ok(Some(8))) }).await;
        // Outside a scope, every lookup reads.
        assert_eq!(generation(a, read), Ok(Some(8)));
        assert_eq!(reads.get(), 4);
    }

    #[tokio::test]
    async fn no_generation_is_never_kept() {
        let source = SourceId::new();
        let answers = RefCell::new(vec![Some(3), None]);
        let read = || -> Result<Option<u64>, ()> { Ok(answers.borrow_mut().pop().unwrap()) };
        scope(async {
            assert_eq!(generation(source, read), Ok(None));
            assert_eq!(generation(source, read), Ok(Some(3)));
        })
        .await;
    }
}
