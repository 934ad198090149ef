//! Group commit of the SQL stores' request-path writes: writes arriving
//! together share one transaction and one commit, each is answered only
//! after that commit, a failed commit fails every write of its batch, a
//! replayed `jti` is refused even within one batch, and nothing
//! acknowledged is lost to a SIGKILL.
//!
//! PostgreSQL tests need `TOWER_M2M_AUTH_PG_URL` (`.ci/run` sets it).

#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::any;
use futures_util::future::join_all;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower_m2m_auth::issuer::TokenEndpointLayer;
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::store::{ReplayCache, RevocationList, SqlDialect, SqlStore};

use common::jwks::External;
use common::post_assertion_to;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Hundreds of concurrent first uses (a hundred keys twice) are each
/// answered correctly, and share far fewer commits than there are writes.
async fn concurrent_first_uses_share_commits<D: SqlDialect>(store: SqlStore<D>) {
    let expires = unix_now() + 300;
    let before = store.write_commits();
    let keys: Vec<String> = (0..400)
        .map(|i| format!("jti-{i}"))
        .chain((0..100).map(|i| format!("jti-{i}")))
        .collect();
    let tasks: Vec<_> = keys
        .iter()
        .cloned()
        .map(|key| {
            let store = store.clone();
            tokio::spawn(async move { (key.clone(), store.first_use(&key, expires).await) })
        })
        .collect();
    let mut accepted = std::collections::HashMap::<String, usize>::new();
    for task in tasks {
        let (key, first) = task.await.unwrap();
        *accepted.entry(key).or_default() += usize::from(first.unwrap());
    }
    assert_eq!(accepted.len(), 400);
    assert!(accepted.values().all(|&n| n == 1), "each key accepted once");
    let commits = store.write_commits() - before;
    println!("{} writes in {commits} commits", keys.len());
    assert!(commits >= 1);
    assert!(
        commits * 4 <= keys.len() as u64,
        "{commits} commits for {} writes: not batched",
        keys.len()
    );
    // Every one is recorded: each is refused again.
    let again = join_all(keys[..400].iter().map(|key| store.first_use(key, expires))).await;
    assert!(again.into_iter().all(|first| !first.unwrap()));
}

/// `writes` started together in one task, while the writer is held (see
/// `hold_writer`: on a current-thread runtime the writer task runs only
/// once all of them are queued, and the writer thread of an SQLite file
/// waits for them), so they form one batch. Their answers, and the number
/// of commits they took.
async fn one_batch<D: SqlDialect, T, F: Future<Output = T>>(
    store: &SqlStore<D>,
    writes: impl IntoIterator<Item = F>,
) -> (Vec<T>, u64) {
    let before = store.write_commits();
    let held = store.hold_writer();
    // (The writes are queued in the first poll; the hold is released in
    // the next.)
    let (answers, ()) = tokio::join!(join_all(writes), async move {
        tokio::task::yield_now().await;
        drop(held);
    });
    (answers, store.write_commits() - before)
}

/// Two (and more) copies of one `jti` in one batch: exactly one accepted.
async fn copies_of_one_jti_in_one_batch_one_accepted<D: SqlDialect>(store: SqlStore<D>) {
    let expires = unix_now() + 300;
    // (The writer task starts with a first write.)
    assert!(store.first_use("jti-warm-up", expires).await.unwrap());
    for copies in [2, 8] {
        let twin = format!("jti-twin-{copies}");
        let keys = (0..copies)
            .map(|_| twin.clone())
            .chain((0..4).map(|i| format!("jti-{copies}-other-{i}")))
            .collect::<Vec<_>>();
        let (answers, commits) =
            one_batch(&store, keys.iter().map(|key| store.first_use(key, expires))).await;
        assert_eq!(commits, 1, "one batch");
        let answers: Vec<bool> = answers.into_iter().map(Result::unwrap).collect();
        let twins = answers[..copies].iter().filter(|&&first| first).count();
        assert_eq!(twins, 1, "{copies} copies of one jti: {answers:?}");
        assert!(answers[copies..].iter().all(|&first| first));
    }
    // Revoking one token twice in a batch: both answered, the later expiry kept.
    let (answers, commits) = one_batch(
        &store,
        [unix_now() - 10, expires].map(|exp| store.revoke("at-twice", exp)),
    )
    .await;
    assert_eq!(commits, 1);
    assert!(answers.into_iter().all(|answer| answer.is_ok()));
    assert!(store.is_revoked("at-twice").await.unwrap());
}

/// The key whose insert makes the commit fail (see `poison` in each
/// dialect's module): the statement runs, and only the commit is refused.
const POISON: &str = "poison";

/// A commit that fails (a deferred constraint, checked at COMMIT) fails
/// every write of its batch: none is acknowledged, none is recorded.
async fn a_failed_commit_fails_every_write_of_its_batch<D: SqlDialect>(store: SqlStore<D>) {
    let expires = unix_now() + 300;
    assert!(store.first_use("jti-warm-up", expires).await.unwrap());
    let mut keys = vec![POISON.to_owned()];
    keys.extend((0..20).map(|i| format!("jti-innocent-{i}")));
    let (answers, commits) =
        one_batch(&store, keys.iter().map(|key| store.first_use(key, expires))).await;
    assert_eq!(commits, 0, "nothing committed");
    for (key, answer) in keys.iter().zip(answers) {
        let error = answer.expect_err(key);
        assert!(error.to_string().contains("not committed"), "{error}");
    }
    // None was recorded: each is accepted now, in a batch of its own.
    for key in &keys[1..] {
        assert!(store.first_use(key, expires).await.unwrap(), "{key}");
    }
    // A key PostgreSQL cannot hold (NUL) is refused alone, before it can
    // join, and fail, a batch.
    let (answers, commits) = one_batch(
        &store,
        ["jti-\0-nul", "jti-beside-nul"].map(|key| store.first_use(key, expires)),
    )
    .await;
    assert!(answers[0].is_err());
    assert!(answers[1].as_ref().unwrap());
    assert_eq!(commits, 1);
    // A revocation in a failing batch fails too.
    let (answers, _) = one_batch(
        &store,
        [
            Box::pin(async { store.first_use(POISON, expires).await.map(|_| ()) })
                as std::pin::Pin<Box<dyn Future<Output = _>>>,
            Box::pin(store.revoke("at-innocent", expires)),
        ],
    )
    .await;
    assert!(answers.iter().all(Result::is_err));
    assert!(!store.is_revoked("at-innocent").await.unwrap());
}

/// A token endpoint on 127.0.0.1 over `store` (accounts and replay cache)
/// with the CI application of `external` (single-use assertions); its
/// token URL.
async fn serve<D: SqlDialect>(store: SqlStore<D>, external: &External) -> String {
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let base = common::serve(|base| {
        let layer = TokenEndpointLayer::new(base, keys, store.clone())
            .unwrap()
            .replay_cache(store)
            .application(external.ci_application("ci-client"))
            .unwrap();
        Router::new()
            .route("/{*path}", any(|| async { "inner" }))
            .layer(layer)
    })
    .await;
    format!("{base}/application/o/token/")
}

/// Status and `error` of a token request with `jwt` as client assertion.
async fn exchange(url: &str, jwt: &str) -> (u16, Value) {
    let response = post_assertion_to(url, "ci-client", jwt).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Over real HTTP with single-use assertions on the SQL store: new
/// assertions sent together all pass (sharing commits), a replay is
/// refused, and of two copies sent at once exactly one passes.
async fn replayed_assertion_is_refused_over_http<D: SqlDialect>(store: SqlStore<D>) {
    let external = External::new(Algorithm::ES256);
    let url = serve(store.clone(), &external).await;
    let mint = || {
        let now = unix_now();
        external.mint(&json!({
            "iss": "https://ci.example",
            "sub": "repo:org/app:ref:refs/heads/main",
            "exp": now + 300,
            "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
        }))
    };
    let fresh: Vec<String> = (0..32).map(|_| mint()).collect();
    let answers = join_all(fresh.iter().map(|jwt| exchange(&url, jwt))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let (status, body) = exchange(&url, &fresh[0]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client"))
    );

    for _ in 0..10 {
        let jwt = mint();
        let both = join_all([exchange(&url, &jwt), exchange(&url, &jwt)]).await;
        let mut statuses: Vec<u16> = both.iter().map(|(status, _)| *status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400], "{both:?}");
        let refused = both.iter().find(|(status, _)| *status == 400).unwrap();
        assert_eq!(refused.1["error"], "invalid_client");
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    use tower_m2m_auth::store::SqliteStore;

    use super::*;

    /// A new database file in the target's temporary directory, deleted
    /// with its WAL and shared-memory files when dropped.
    struct DbFile(PathBuf);

    impl DbFile {
        fn new() -> Self {
            Self(
                PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("group-commit-{}.db", uuid::Uuid::new_v4())),
            )
        }
    }

    impl Drop for DbFile {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut name = self.0.clone().into_os_string();
                name.push(suffix);
                let _ = std::fs::remove_file(name);
            }
        }
    }

    async fn open(path: &std::path::Path) -> SqliteStore {
        SqliteStore::connect(path.to_str().unwrap()).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_uses_are_answered_and_share_commits() {
        concurrent_first_uses_share_commits(open(&DbFile::new().0).await).await;
    }

    #[tokio::test]
    async fn two_copies_of_one_jti_in_one_batch_one_accepted() {
        copies_of_one_jti_in_one_batch_one_accepted(open(&DbFile::new().0).await).await;
    }

    /// A deferred foreign key that an insert of [`POISON`] breaks: SQLite
    /// checks it at COMMIT, which fails.
    async fn poison(store: &SqliteStore) {
        sqlx::raw_sql(
            "CREATE TABLE poison_parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE poison_child (parent INTEGER \
                 REFERENCES poison_parent (id) DEFERRABLE INITIALLY DEFERRED); \
             CREATE TRIGGER poison AFTER INSERT ON m2m_replay_cache \
                 WHEN NEW.key = 'poison' BEGIN INSERT INTO poison_child VALUES (1); END;",
        )
        .execute(store.pool())
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_write_of_its_batch() {
        let file = DbFile::new();
        let store = open(&file.0).await;
        poison(&store).await;
        super::a_failed_commit_fails_every_write_of_its_batch(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replayed_assertion_is_refused_over_http() {
        super::replayed_assertion_is_refused_over_http(open(&DbFile::new().0).await).await;
    }

    /// A statement that fails on the writer thread (a trigger refuses one
    /// revocation) fails every write of its batch: the first use and the
    /// revocation run before it in that transaction are not recorded.
    #[tokio::test]
    async fn a_failed_statement_fails_every_write_of_its_batch() {
        let file = DbFile::new();
        let store = open(&file.0).await;
        sqlx::raw_sql(
            "CREATE TRIGGER poison_revocation BEFORE INSERT ON m2m_revoked_tokens \
                 WHEN NEW.jti = 'at-poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let expires = unix_now() + 300;
        let (answers, commits) = one_batch(
            &store,
            [
                Box::pin(async { store.first_use("jti-beside", expires).await.map(|_| ()) })
                    as std::pin::Pin<Box<dyn Future<Output = _>>>,
                Box::pin(store.revoke("at-poison", expires)),
                Box::pin(store.revoke("at-beside", expires)),
            ],
        )
        .await;
        assert_eq!(commits, 0, "nothing committed");
        for answer in answers {
            let error = answer.unwrap_err();
            assert!(error.to_string().contains("not committed"), "{error}");
        }
        assert!(!store.is_revoked("at-beside").await.unwrap());
        assert!(store.first_use("jti-beside", expires).await.unwrap());
    }

    /// The writer thread holds no clone of its store: once the last clone
    /// is dropped (and the pool closed), it ends and closes its connection,
    /// the file's last, which removes the WAL file.
    #[tokio::test]
    async fn the_writer_thread_ends_with_the_last_clone_of_its_store() {
        let file = DbFile::new();
        let store = open(&file.0).await;
        let clone = store.clone();
        let expires = unix_now() + 300;
        assert!(store.first_use("jti-1", expires).await.unwrap());
        let pool = store.pool().clone();
        drop(store);
        assert!(clone.first_use("jti-2", expires).await.unwrap());
        drop(clone);
        pool.close().await;
        let mut wal = file.0.clone().into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        for _ in 0..100 {
            if !wal.exists() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the WAL file is still open after 5 s: the writer thread did not end");
    }

    /// A store used from a second runtime after the one that first used it
    /// has shut down: its writer (a thread, which needs no runtime) still
    /// answers.
    #[test]
    fn the_writer_outlives_the_runtime_that_started_it() {
        let file = DbFile::new();
        let path = &file.0;
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let expires = unix_now() + 300;
        let first = runtime();
        let store = first.block_on(open(path));
        assert!(first.block_on(store.first_use("jti-1", expires)).unwrap());
        drop(first);
        let second = runtime();
        assert!(second.block_on(store.first_use("jti-2", expires)).unwrap());
        assert!(!second.block_on(store.first_use("jti-1", expires)).unwrap());
    }

    /// Set (to a database path) in the child process of
    /// [`every_acknowledged_jti_survives_a_sigkill`].
    const CHILD_DB: &str = "GROUP_COMMIT_CHILD_DB";

    /// The child process of [`every_acknowledged_jti_survives_a_sigkill`]
    /// (in a normal run, without `CHILD_DB`, it does nothing): 32 writers
    /// record new jtis on the database at `CHILD_DB` and print `ack <jti>`
    /// for each acknowledged one, until the process is killed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_child_process() {
        let Ok(path) = std::env::var(CHILD_DB) else {
            return;
        };
        let store = open(path.as_ref()).await;
        let writers = (0..32).map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let jti = format!("jti-{writer}-{i}");
                    if store.first_use(&jti, unix_now() + 3600).await.unwrap() {
                        println!("ack {jti}");
                    }
                }
            })
        });
        join_all(writers).await;
    }

    /// SIGKILL while batches commit, then reopen: every jti whose first use
    /// was acknowledged is there (refused as a replay), and the file is
    /// intact.
    #[test]
    fn every_acknowledged_jti_survives_a_sigkill() {
        let file = DbFile::new();
        let path = &file.0;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sqlite::sigkill_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acknowledged = Vec::new();
        while acknowledged.len() < 3000 {
            let line = lines.next().expect("the child stopped writing").unwrap();
            if let Some(jti) = line.strip_prefix("ack ") {
                acknowledged.push(jti.to_owned());
            }
        }
        child.kill().unwrap(); // SIGKILL
        // Acknowledgements printed before the kill, still in the pipe.
        for line in lines {
            if let Some(jti) = line.unwrap().strip_prefix("ack ") {
                acknowledged.push(jti.to_owned());
            }
        }
        child.wait().unwrap();
        println!(
            "{} jtis acknowledged before the SIGKILL",
            acknowledged.len()
        );

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = open(path).await;
            let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(integrity, "ok");
            let expires = unix_now() + 3600;
            let replays = join_all(acknowledged.iter().map(|jti| store.first_use(jti, expires)));
            for (jti, first) in acknowledged.iter().zip(replays.await) {
                assert!(!first.unwrap(), "{jti} was acknowledged, then lost");
            }
        });
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use tower_m2m_auth::store::PgStore;

    use super::*;
    use crate::common::pg::fresh_database;

    async fn open() -> PgStore {
        PgStore::connect(&fresh_database().await).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_uses_are_answered_and_share_commits() {
        concurrent_first_uses_share_commits(open().await).await;
    }

    #[tokio::test]
    async fn two_copies_of_one_jti_in_one_batch_one_accepted() {
        copies_of_one_jti_in_one_batch_one_accepted(open().await).await;
    }

    /// Two instances on one database, each batching the same keys at
    /// once: every key accepted exactly once, and no batch fails (batches
    /// lock rows in key order, so they cannot deadlock).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_batching_the_same_keys_do_not_deadlock() {
        let url = fresh_database().await;
        let a = PgStore::connect(&url).await.unwrap();
        let b = PgStore::connect(&url).await.unwrap();
        let expires = unix_now() + 300;
        let keys: Vec<String> = (0..200).map(|i| format!("jti-{i}")).collect();
        let (first, second) = tokio::join!(
            join_all(keys.iter().map(|key| a.first_use(key, expires))),
            join_all(keys.iter().rev().map(|key| b.first_use(key, expires))),
        );
        for (i, (x, y)) in first.into_iter().zip(second.into_iter().rev()).enumerate() {
            let accepted = usize::from(x.unwrap()) + usize::from(y.unwrap());
            assert_eq!(accepted, 1, "jti-{i}");
        }
    }

    /// A deferred foreign key that an insert of [`POISON`] breaks:
    /// PostgreSQL checks it at COMMIT, which fails.
    async fn poison(store: &PgStore) {
        sqlx::raw_sql(
            "CREATE TABLE poison_parent (id int PRIMARY KEY); \
             CREATE TABLE poison_child (parent int \
                 REFERENCES poison_parent (id) DEFERRABLE INITIALLY DEFERRED); \
             CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.key = 'poison' THEN INSERT INTO poison_child VALUES (1); END IF; \
                 RETURN NEW; END $$; \
             CREATE TRIGGER poison AFTER INSERT ON m2m_replay_cache \
                 FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .execute(store.pool())
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_write_of_its_batch() {
        let store = open().await;
        poison(&store).await;
        super::a_failed_commit_fails_every_write_of_its_batch(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replayed_assertion_is_refused_over_http() {
        super::replayed_assertion_is_refused_over_http(open().await).await;
    }
}
