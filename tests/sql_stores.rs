//! What only the SQL stores promise: tokens are stored hashed, data survives
//! a restart, the replay cache and revocation list are shared by every
//! instance on one database, and a database outage is a 503, not a panic,
//! until the database is back.
//!
//! PostgreSQL tests need `TOWER_M2M_AUTH_PG_URL` (a role allowed to create
//! databases; each test makes its own), and the outage test
//! `TOWER_M2M_AUTH_PG_CTL`, a `pg_ctl` command line for that server to which
//! `stop -m fast` / `start` are appended. `.ci/run` starts a throwaway server
//! and sets both.

#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use secrecy::{ExposeSecret, SecretString};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_m2m_auth::issuer::{Application, TokenEndpointLayer};
use tower_m2m_auth::keys::{Algorithm, KeyRing, SigningKey};
use tower_m2m_auth::store::{
    AccountAdmin, Binding, CredentialStore, ReplayCache, RevocationList, ServiceAccount,
    SqlDialect, SqlStore, TokenDigest,
};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An in-process token endpoint over `store`.
fn endpoint<S: CredentialStore + Clone>(
    store: S,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Error = Infallible>>,
    Error = Infallible,
> + Clone {
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let layer = TokenEndpointLayer::new("https://auth.example.com", keys, store)
        .unwrap()
        .application(Application::new("sql-client", "sql"))
        .unwrap();
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }))
}

/// Status and body of a token request as `username` with `token`.
async fn token_request<E, B>(endpoint: &E, username: &str, token: &SecretString) -> (u16, String)
where
    E: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let body = format!(
        "grant_type=client_credentials&client_id=sql-client&username={username}&password={}",
        token.expose_secret()
    );
    let request = Request::post("/application/o/token/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = endpoint.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Two instances share one database: a `jti` used through one is refused by
/// the other, until it expires.
async fn replay_is_refused_across_instances<A: ReplayCache, B: ReplayCache>(a: &A, b: &B) {
    let live = unix_now() + 300;
    assert!(a.first_use("jti-shared", live).await.unwrap());
    assert!(!b.first_use("jti-shared", live).await.unwrap());
    assert!(!a.first_use("jti-shared", live).await.unwrap());
    assert!(b.first_use("jti-other", live).await.unwrap());
    // An expired entry no longer blocks its key.
    assert!(a.first_use("jti-old", unix_now() - 10).await.unwrap());
    assert!(b.first_use("jti-old", live).await.unwrap());
    assert!(!a.first_use("jti-old", live).await.unwrap());
    // A key forgotten through one instance is a first use again, once, at
    // either; forgetting a key nobody used changes nothing.
    a.forget("jti-shared").await.unwrap();
    assert!(b.first_use("jti-shared", live).await.unwrap());
    assert!(!a.first_use("jti-shared", live).await.unwrap());
    b.forget("jti-never-used").await.unwrap();
    assert!(!b.first_use("jti-other", live).await.unwrap());
}

/// Many concurrent first uses of one key, through two instances: one wins.
async fn concurrent_first_use_has_one_winner<S: ReplayCache + Clone>(a: S, b: S) {
    let expires = unix_now() + 300;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.first_use("jti-race", expires).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
}

/// A token revoked through one instance is revoked for the other.
async fn revocation_is_seen_across_instances<A: RevocationList, B: RevocationList>(a: &A, b: &B) {
    assert!(!b.is_revoked("at-1").await.unwrap());
    a.revoke("at-1", unix_now() + 300).await.unwrap();
    assert!(b.is_revoked("at-1").await.unwrap());
    assert!(!b.is_revoked("at-2").await.unwrap());
    // Revoking again with an earlier expiry keeps the later one.
    b.revoke("at-1", unix_now() - 10).await.unwrap();
    assert!(a.is_revoked("at-1").await.unwrap());
    // An entry past its token's expiry is no longer reported.
    a.revoke("at-expired", unix_now() - 10).await.unwrap();
    assert!(!b.is_revoked("at-expired").await.unwrap());
}

/// An app password's expiry comes back as stored, to the microsecond, and
/// only with the account that owns it.
async fn expiry_is_kept_to_the_microsecond<S: CredentialStore + AccountAdmin>(store: &S) {
    let expires = UNIX_EPOCH + Duration::from_micros(4_000_000_000_123_456);
    let (account, token) = store
        .create_service_account(ServiceAccount::new("svc-expiry"), Some(expires))
        .await
        .unwrap();
    let digest = TokenDigest::of(token.expose_secret());
    let found = store
        .app_password("svc-expiry", &digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.account, account);
    assert_eq!(found.password.account_id, account.id);
    assert_eq!(found.password.expires, Some(expires));
    store
        .create_service_account(ServiceAccount::new("svc-other"), None)
        .await
        .unwrap();
    assert!(
        store
            .app_password("svc-other", &digest)
            .await
            .unwrap()
            .is_none()
    );
}

/// Bindings and account state changed through one instance are seen by
/// another on its next lookup (its read cache invalidated), scopes exactly
/// as bound.
async fn bindings_are_seen_across_instances<A, B>(a: &A, b: &B)
where
    A: CredentialStore + AccountAdmin,
    B: CredentialStore + AccountAdmin,
{
    let (account, _) = a
        .create_service_account(ServiceAccount::new("svc-shared"), None)
        .await
        .unwrap();
    assert_eq!(b.binding(&account.id, "ops-api").await.unwrap(), None);
    let scopes = ["read", "deploy:prod", "https://api.example/x"];
    a.bind_account("svc-shared", Binding::new("ops-api", scopes))
        .await
        .unwrap();
    assert_eq!(
        b.binding(&account.id, "ops-api").await.unwrap(),
        Some(Binding::new("ops-api", scopes))
    );
    b.bind_account("svc-shared", Binding::new("ops-api", ["read"]))
        .await
        .unwrap();
    assert_eq!(
        a.binding(&account.id, "ops-api").await.unwrap(),
        Some(Binding::new("ops-api", ["read"]))
    );
    assert_eq!(
        a.list_bindings("svc-shared").await.unwrap(),
        [Binding::new("ops-api", ["read"])]
    );
    assert!(b.unbind_account("svc-shared", "ops-api").await.unwrap());
    assert_eq!(a.binding(&account.id, "ops-api").await.unwrap(), None);
    assert!(a.set_account_active("svc-shared", false).await.unwrap());
    assert!(!b.account("svc-shared").await.unwrap().unwrap().active);
}

/// How many expired rows (`stale-…`) a test seeds into the replay cache:
/// several of SQLite's purge chunks of 1,024 keys (PostgreSQL purges them at
/// once).
const STALE_ROWS: i64 = 5_000;

/// Seeds [`STALE_ROWS`] expired rows into `store`'s replay cache with
/// `seed` (its dialect's SQL: `$1` rows named `stale-…`, expiring at `$2`).
/// Then 1,280 first uses of new keys (`fresh-…`), 64 at a time so that they
/// share commits, each recorded; the writer purges before every 128th, 10
/// times. Every stale row is gone, every new key there.
async fn purges_leave_only_new_keys<D: SqlDialect>(store: &SqlStore<D>, seed: &'static str)
where
    for<'c> &'c sqlx::Pool<D>: sqlx::Executor<'c, Database = D>,
    i64: for<'q> sqlx::Encode<'q, D> + sqlx::Type<D>,
    (i64, i64): for<'r> sqlx::FromRow<'r, D::Row>,
{
    sqlx::query(seed)
        .bind(STALE_ROWS)
        .bind(unix_now() as i64 - 10)
        .execute(store.pool())
        .await
        .unwrap();
    let expires = unix_now() + 600;
    let keys: Vec<String> = (0..1280).map(|i| format!("fresh-{i:05}")).collect();
    for group in keys.chunks(64) {
        let uses = group.iter().map(|key| store.first_use(key, expires));
        for recorded in futures_util::future::join_all(uses).await {
            assert!(recorded.unwrap());
        }
    }
    store.purges_done().await;
    let left: (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE key LIKE 'stale-%'), \
         count(*) FILTER (WHERE key LIKE 'fresh-%') FROM m2m_replay_cache",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(left, (0, 1280));
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::PathBuf;

    use sqlx::Row;
    use tower_m2m_auth::store::SqliteStore;

    use super::*;

    fn fresh_path() -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sql-stores-{}.db", uuid::Uuid::new_v4()))
    }

    async fn open(path: &std::path::Path) -> SqliteStore {
        SqliteStore::connect(path.to_str().unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn tokens_are_stored_only_as_digests() {
        let path = fresh_path();
        let store = open(&path).await;
        let (account, token) = store
            .create_service_account(ServiceAccount::new("svc-hashed"), None)
            .await
            .unwrap();
        let second = store.add_app_password("svc-hashed", None).await.unwrap();

        let rows = sqlx::query("SELECT digest, account_id FROM m2m_app_passwords")
            .fetch_all(store.pool())
            .await
            .unwrap();
        let mut stored: Vec<Vec<u8>> = rows.iter().map(|row| row.get("digest")).collect();
        stored.sort();
        let mut expected = vec![
            TokenDigest::of(token.expose_secret()).as_bytes().to_vec(),
            TokenDigest::of(second.expose_secret()).as_bytes().to_vec(),
        ];
        expected.sort();
        assert_eq!(stored, expected);
        assert!(
            rows.iter()
                .all(|row| row.get::<String, _>("account_id") == account.id)
        );

        // Not in any table, nor anywhere in the files (database and WAL).
        store.pool().close().await;
        let mut files = Vec::new();
        for suffix in ["", "-wal"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            files.extend(std::fs::read(&name).unwrap_or_default());
        }
        let contains = |needle: &[u8]| files.windows(needle.len()).any(|w| w == needle);
        assert!(contains(&expected[0]), "the digest is in the file");
        for token in [&token, &second] {
            assert!(!contains(token.expose_secret().as_bytes()));
        }
    }

    #[tokio::test]
    async fn expiry_is_kept_and_lookups_match_the_owner() {
        expiry_is_kept_to_the_microsecond(&open(&fresh_path()).await).await;
    }

    #[tokio::test]
    async fn accounts_and_tokens_survive_a_restart() {
        let path = fresh_path();
        let store = open(&path).await;
        let (_, token) = store
            .create_service_account(ServiceAccount::new("svc-durable"), None)
            .await
            .unwrap();
        store
            .bind_account("svc-durable", Binding::new("sql-client", ["read"]))
            .await
            .unwrap();
        store.revoke("at-durable", unix_now() + 300).await.unwrap();
        store.pool().close().await;
        drop(store);

        let reopened = open(&path).await;
        let endpoint = endpoint(reopened.clone());
        assert_eq!(token_request(&endpoint, "svc-durable", &token).await.0, 200);
        assert!(reopened.is_revoked("at-durable").await.unwrap());
    }

    #[tokio::test]
    async fn replay_cache_is_shared_by_instances_on_one_file() {
        let path = fresh_path();
        let (a, b) = (open(&path).await, open(&path).await);
        replay_is_refused_across_instances(&a, &b).await;
        concurrent_first_use_has_one_winner(a, b).await;
    }

    #[tokio::test]
    async fn revocation_list_is_shared_by_instances_on_one_file() {
        let path = fresh_path();
        revocation_is_seen_across_instances(&open(&path).await, &open(&path).await).await;
    }

    #[tokio::test]
    async fn bindings_are_shared_by_instances_on_one_file() {
        let path = fresh_path();
        bindings_are_seen_across_instances(&open(&path).await, &open(&path).await).await;
    }

    #[tokio::test]
    async fn expired_rows_are_purged() {
        let path = fresh_path();
        let first = open(&path).await;
        let past = unix_now() - 10;
        first.first_use("jti-stale", past).await.unwrap();
        first.revoke("at-stale", past).await.unwrap();
        // A new instance purges on its first insert.
        let second = open(&path).await;
        second
            .first_use("jti-fresh", unix_now() + 60)
            .await
            .unwrap();
        let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM m2m_replay_cache")
            .fetch_all(second.pool())
            .await
            .unwrap();
        assert_eq!(keys, ["jti-fresh"]);
        let revoked: i64 = sqlx::query_scalar("SELECT count(*) FROM m2m_revoked_tokens")
            .fetch_one(second.pool())
            .await
            .unwrap();
        assert_eq!(revoked, 0);
    }

    #[tokio::test]
    async fn a_replay_cache_of_many_chunks_is_purged_round_by_round() {
        let store = open(&fresh_path()).await;
        let seed = "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
            INSERT INTO m2m_replay_cache (key, expires) SELECT printf('stale-%05d', i), $2 FROM n";
        purges_leave_only_new_keys(&store, seed).await;
    }

    #[tokio::test]
    async fn a_url_is_used_as_given() {
        let path = fresh_path();
        let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        store
            .create_service_account(ServiceAccount::new("svc-url"), None)
            .await
            .unwrap();
        assert!(path.exists());
    }

    #[tokio::test]
    async fn an_unreadable_database_is_a_store_error() {
        let directory = fresh_path();
        std::fs::create_dir(&directory).unwrap();
        // A directory is not a database file.
        assert!(
            SqliteStore::connect(directory.to_str().unwrap())
                .await
                .is_err()
        );
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::process::Command;
    use std::time::Instant;

    use tokio::sync::{RwLock, RwLockReadGuard};
    use tower_m2m_auth::store::PgStore;

    use super::*;
    use crate::common::pg::{fresh_database, required, with_database};

    /// The outage test stops the one server; the others hold a read lock.
    static SERVER: RwLock<()> = RwLock::const_new(());

    /// Two instances on one fresh database, while the server runs.
    async fn two_instances() -> (RwLockReadGuard<'static, ()>, PgStore, PgStore) {
        let server = SERVER.read().await;
        let url = fresh_database().await;
        let a = PgStore::connect(&url).await.unwrap();
        (server, a, PgStore::connect(&url).await.unwrap())
    }

    #[test]
    fn the_database_is_replaced_in_urls() {
        assert_eq!(
            with_database(
                "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable",
                "x"
            ),
            "postgres://u:p@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[tokio::test]
    async fn tokens_are_stored_only_as_digests() {
        let _server = SERVER.read().await;
        let store = PgStore::connect(&fresh_database().await).await.unwrap();
        let (account, token) = store
            .create_service_account(ServiceAccount::new("svc-hashed"), None)
            .await
            .unwrap();
        let stored: Vec<(Vec<u8>, String)> =
            sqlx::query_as("SELECT digest, account_id FROM m2m_app_passwords")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(
            stored,
            [(
                TokenDigest::of(token.expose_secret()).as_bytes().to_vec(),
                account.id
            )]
        );
        // No row of any table holds the token, as text or as bytes.
        for table in [
            "m2m_service_accounts",
            "m2m_app_passwords",
            "m2m_replay_cache",
            "m2m_revoked_tokens",
        ] {
            let hits: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} AS t \
                 WHERE strpos(t::text, $1) > 0 OR strpos(t::text, encode(convert_to($1, 'UTF8'), 'hex')) > 0"
            )))
            .bind(token.expose_secret())
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(hits, 0, "{table}");
        }
    }

    #[tokio::test]
    async fn expiry_is_kept_and_lookups_match_the_owner() {
        let _server = SERVER.read().await;
        let store = PgStore::connect(&fresh_database().await).await.unwrap();
        expiry_is_kept_to_the_microsecond(&store).await;
    }

    #[tokio::test]
    async fn replay_cache_is_shared_by_instances() {
        let (_server, a, b) = two_instances().await;
        replay_is_refused_across_instances(&a, &b).await;
        concurrent_first_use_has_one_winner(a, b).await;
    }

    #[tokio::test]
    async fn a_replay_cache_of_many_chunks_is_purged_round_by_round() {
        let _server = SERVER.read().await;
        let store = PgStore::connect(&fresh_database().await).await.unwrap();
        let seed = "INSERT INTO m2m_replay_cache (key, expires) \
            SELECT 'stale-' || lpad(i::text, 5, '0'), $2 FROM generate_series(1, $1) AS i";
        purges_leave_only_new_keys(&store, seed).await;
    }

    /// A purge of revocations passes over the expired rows another
    /// transaction holds (here a test's, as another instance's batch or an
    /// admin command would), instead of waiting for its commit: writes go
    /// on, the other expired rows go, the held one stays for a later purge.
    #[tokio::test]
    async fn a_purge_passes_over_rows_another_transaction_holds() {
        let _server = SERVER.read().await;
        let store = PgStore::connect(&fresh_database().await).await.unwrap();
        let pool = store.pool();
        sqlx::query(
            "INSERT INTO m2m_revoked_tokens (jti, expires) \
             SELECT 'old-' || i, $1 FROM generate_series(1, 3) AS i",
        )
        .bind(unix_now() as i64 - 10)
        .execute(pool)
        .await
        .unwrap();
        let mut holder = pool.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM m2m_revoked_tokens WHERE jti = 'old-2' FOR UPDATE")
            .execute(&mut *holder)
            .await
            .unwrap();

        // 256 first uses: the writer purges before the 128th (and 256th).
        let expires = unix_now() + 600;
        let uses = (0..256).map(|i| {
            let store = store.clone();
            async move { store.first_use(&format!("fresh-{i}"), expires).await }
        });
        let recorded = tokio::time::timeout(
            Duration::from_secs(20),
            futures_util::future::join_all(uses),
        )
        .await
        .expect("the writer waited for the rows another transaction holds");
        assert!(recorded.into_iter().all(|recorded| recorded.unwrap()));
        tokio::time::timeout(Duration::from_secs(20), store.purges_done())
            .await
            .expect("the purge waited for the rows another transaction holds");

        let left: Vec<String> =
            sqlx::query_scalar("SELECT jti FROM m2m_revoked_tokens ORDER BY jti")
                .fetch_all(pool)
                .await
                .unwrap();
        assert_eq!(left, ["old-2"]);
        holder.rollback().await.unwrap();
    }

    #[tokio::test]
    async fn revocation_list_is_shared_by_instances() {
        let (_server, a, b) = two_instances().await;
        revocation_is_seen_across_instances(&a, &b).await;
    }

    #[tokio::test]
    async fn bindings_are_shared_by_instances() {
        let (_server, a, b) = two_instances().await;
        bindings_are_seen_across_instances(&a, &b).await;
    }

    #[tokio::test]
    async fn instances_starting_together_migrate_once() {
        let _server = SERVER.read().await;
        let url = fresh_database().await;
        let stores = futures_util::future::join_all((0..4).map(|_| PgStore::connect(&url))).await;
        let stores: Vec<PgStore> = stores.into_iter().map(Result::unwrap).collect();
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _tower_m2m_auth_migrations")
            .fetch_one(stores[0].pool())
            .await
            .unwrap();
        assert_eq!(applied, 6, "0001 to 0006, each applied once");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_store_error() {
        // Nothing listens on port 1.
        let started = Instant::now();
        assert!(
            PgStore::connect("postgres://nobody@127.0.0.1:1/none")
                .await
                .is_err()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// Runs the server's `pg_ctl` with `action`.
    fn pg_ctl(action: &str) -> bool {
        let command = format!("{} {action}", required("TOWER_M2M_AUTH_PG_CTL"));
        Command::new("sh")
            .args(["-c", &command])
            .status()
            .unwrap()
            .success()
    }

    /// Starts the server again if the test fails while it is stopped.
    struct StartOnDrop;

    impl Drop for StartOnDrop {
        fn drop(&mut self) {
            pg_ctl("start >/dev/null 2>&1");
        }
    }

    #[tokio::test]
    async fn an_outage_answers_503_and_the_store_recovers() {
        required("TOWER_M2M_AUTH_PG_CTL");
        let _server = SERVER.write().await;
        let store = PgStore::connect(&fresh_database().await).await.unwrap();
        let endpoint = endpoint(store.clone());
        let (_, token) = store
            .create_service_account(ServiceAccount::new("svc-outage"), None)
            .await
            .unwrap();
        store
            .bind_account("svc-outage", Binding::new("sql-client", ["read"]))
            .await
            .unwrap();
        let second = store.add_app_password("svc-outage", None).await.unwrap();
        store.revoke("at-outage", unix_now() + 600).await.unwrap();
        assert!(
            store
                .first_use("jti-outage", unix_now() + 600)
                .await
                .unwrap()
        );
        assert_eq!(token_request(&endpoint, "svc-outage", &token).await.0, 200);

        let restart = StartOnDrop;
        assert!(pg_ctl("stop -m fast"), "pg_ctl stop failed");
        // The store stops serving from its read cache as soon as its change
        // listener notices the lost connection (no change can be heard).
        for _ in 0..500 {
            if !store.read_cache_active() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!store.read_cache_active());

        // Every call fails, within the pool's acquire timeout (3 s).
        let started = Instant::now();
        let digest = TokenDigest::of(token.expose_secret());
        let (lookup, (status, body), replay, revoked) = tokio::join!(
            store.app_password("svc-outage", &digest),
            token_request(&endpoint, "svc-outage", &token),
            store.first_use("jti-down", unix_now() + 600),
            store.is_revoked("at-outage"),
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(10),
            "failed after {elapsed:?}"
        );
        println!("after {elapsed:?}: {}", lookup.unwrap_err());
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("temporarily_unavailable"), "{body}");
        assert!(replay.is_err());
        assert!(revoked.is_err());

        assert!(pg_ctl("start"), "pg_ctl start failed");
        std::mem::forget(restart);

        // Back at once, with nothing written before the outage lost.
        assert_eq!(token_request(&endpoint, "svc-outage", &token).await.0, 200);
        assert_eq!(token_request(&endpoint, "svc-outage", &second).await.0, 200);
        assert!(store.is_revoked("at-outage").await.unwrap());
        assert!(
            !store
                .first_use("jti-outage", unix_now() + 600)
                .await
                .unwrap()
        );
        let accounts = store.list_service_accounts().await.unwrap();
        assert_eq!(accounts.len(), 1);

        // A restart nobody noticed: the pooled connections are stale, and
        // are replaced on the next request.
        let restart = StartOnDrop;
        assert!(pg_ctl("restart -m fast"), "pg_ctl restart failed");
        std::mem::forget(restart);
        assert_eq!(token_request(&endpoint, "svc-outage", &token).await.0, 200);
    }
}
