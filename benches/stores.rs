//! The cost of each credential store, in one run: memory, SQLite (a file)
//! and PostgreSQL (when `TOWER_M2M_AUTH_PG_URL` is set; a fresh database,
//! dropped afterwards).
//!
//! `cargo bench --bench stores --features sqlite,postgres`
//!
//! - `token_request/<store>`: a whole token request through the endpoint
//!   (username + app password, one ES256 signature), as in
//!   `benches/token_endpoint.rs`.
//! - `app_password_lookup/<store>`: the store's one indexed lookup alone
//!   (SQL stores: from the read cache).
//! - `read_path/<store>`: a static login's reads, `app_password` and
//!   `binding` (SQL stores: read-cache hits, the counter read included).
//! - `read_path_miss/<store>`: the same two reads, each a read-cache miss
//!   (a digest and a binding never asked for: found in no store).
//! - `replay_first_use/<store>`: recording a new `jti` (a write; what each
//!   single-use JWT assertion costs), one at a time: one commit each.
//! - `replay_first_use_x32/<store>`: 32 new `jti`s recorded concurrently
//!   (the load of 32 clients), per iteration; the SQL stores group-commit
//!   them in one transaction. `<store>_unbatched`: the same 32 writes as
//!   32 autocommit statements on the pool, as the store ran them before
//!   group commit (on SQLite the connections contend for the write lock).
//!   Divide by 32 for the cost per write.
//!
//! The SQLite file is in WAL mode with `synchronous = FULL` (every commit
//! synced), as `SqliteStore::connect` opens it.

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Pool;
use sqlx::postgres::{PgConnectOptions, PgPool};
use support::{bench_request, endpoint, es256_pem};
use tower_m2m_auth::issuer::{Application, TokenEndpointLayer};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::store::{
    AccountAdmin, Binding, CredentialStore, MemoryReplayCache, MemoryStore, PgStore, ReplayCache,
    ServiceAccount, SqlDialect, SqlStore, SqliteStore, TokenDigest,
};

/// Far enough ahead that no replay-cache entry expires during the run.
const FAR_FUTURE: u64 = 4_000_000_000;

/// A service account in `store`, bound to the bench application; its token.
fn account<S: AccountAdmin>(runtime: &tokio::runtime::Runtime, store: &S) -> SecretString {
    let token = runtime
        .block_on(store.create_service_account(ServiceAccount::new("svc-bench"), None))
        .unwrap()
        .1;
    runtime
        .block_on(store.bind_account("svc-bench", Binding::new("bench-client", ["read"])))
        .unwrap();
    token
}

/// A whole token request through the endpoint over `store`.
fn token_request<S: CredentialStore + Clone>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    pem: &str,
    name: &str,
    (store, token): &(S, SecretString),
) {
    let keys = KeyRing::new(SigningKey::from_pem(pem.as_bytes()).unwrap());
    let layer = TokenEndpointLayer::new("https://auth.example.com", keys, store.clone())
        .unwrap()
        .application(Application::new("bench-client", "bench").with_allowed_scopes(["read"]))
        .unwrap();
    let mut service = endpoint(layer);
    let body = Bytes::from(format!(
        "grant_type=client_credentials&client_id=bench-client&username=svc-bench&password={}&scope=read",
        token.expose_secret()
    ));
    bench_request(group, runtime, name, &mut service, body);
}

/// The store's lookup of an account with one of its app passwords, and
/// with `binding` also of its binding to the application: a static login's
/// reads (SQL stores: from the read cache, after the first iteration).
fn lookup<S: CredentialStore>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    (store, token): &(S, SecretString),
    binding: bool,
) {
    let digest = TokenDigest::of(token.expose_secret());
    group.bench_function(name, |b| {
        b.to_async(runtime).iter(|| async {
            let found = store.app_password("svc-bench", &digest).await.unwrap();
            let id = &found.unwrap().account.id;
            if binding {
                assert!(store.binding(id, "bench-client").await.unwrap().is_some());
            }
        })
    });
}

/// The same reads, each missing the read cache: an app password and a
/// binding never asked for before (found in no store).
fn read_path_miss<S: CredentialStore>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    store: &S,
) {
    let next = AtomicU64::new(0);
    group.bench_function(name, |b| {
        b.to_async(runtime).iter(|| async {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let digest = TokenDigest::of(&format!("never-issued-{n}"));
            assert!(
                store
                    .app_password("svc-bench", &digest)
                    .await
                    .unwrap()
                    .is_none()
            );
            let client = format!("client-{n}");
            assert!(
                store
                    .binding("no-such-id", &client)
                    .await
                    .unwrap()
                    .is_none()
            );
        })
    });
}

/// How many writes `replay_first_use_x32` sends at once.
const AT_ONCE: u64 = 32;

/// Recording `at_once` new keys in the replay cache, concurrently, per
/// iteration.
fn first_use<R: ReplayCache>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    replay: &R,
    at_once: u64,
) {
    let next = AtomicU64::new(0);
    group.bench_function(name, |b| {
        b.to_async(runtime).iter(|| async {
            let first = next.fetch_add(at_once, Ordering::Relaxed);
            let keys: Vec<String> = (first..first + at_once)
                .map(|i| format!("jti-{at_once}-{i}"))
                .collect();
            let answers = join_all(keys.iter().map(|key| replay.first_use(key, FAR_FUTURE))).await;
            assert!(answers.into_iter().all(|first| first.unwrap()));
        })
    });
}

/// The same writes as [`first_use`] with `AT_ONCE`, each its own autocommit
/// statement on a pooled connection: the store's write path before group
/// commit (the statement text of `FIRST_USE` in `src/store/sql/statements.rs`).
fn first_use_unbatched<D: SqlDialect>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    store: &SqlStore<D>,
) where
    for<'c> &'c Pool<D>: sqlx::Executor<'c, Database = D>,
    for<'q> String: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> i64: sqlx::Encode<'q, D> + sqlx::Type<D>,
{
    const FIRST_USE: &str = "INSERT INTO m2m_replay_cache (key, expires) VALUES ($1, $2) \
        ON CONFLICT (key) DO UPDATE SET expires = excluded.expires \
        WHERE m2m_replay_cache.expires < $3";
    let next = AtomicU64::new(0);
    group.bench_function(name, |b| {
        b.to_async(runtime).iter(|| async {
            let first = next.fetch_add(AT_ONCE, Ordering::Relaxed);
            let writes = (first..first + AT_ONCE).map(|i| {
                sqlx::query(FIRST_USE)
                    .bind(format!("jti-unbatched-{i}"))
                    .bind(FAR_FUTURE as i64)
                    .bind(0_i64)
                    .execute(store.pool())
            });
            for done in join_all(writes).await {
                done.unwrap();
            }
        })
    });
}

/// A fresh database on the server at `url`, and its store.
async fn fresh_postgres(url: &str, name: &str) -> PgStore {
    let options: PgConnectOptions = url.parse().unwrap();
    let maintenance = PgPool::connect_with(options.clone()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&maintenance)
        .await
        .unwrap();
    maintenance.close().await;
    let pool = PgPool::connect_with(options.database(name)).await.unwrap();
    PgStore::from_pool(pool).await.unwrap()
}

async fn drop_postgres(url: &str, name: &str) {
    let maintenance = PgPool::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&maintenance)
    .await
    .unwrap();
    maintenance.close().await;
}

fn stores(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pem = es256_pem();
    let suffix = uuid::Uuid::new_v4().simple().to_string();

    let memory = MemoryStore::new();
    let memory = (memory.clone(), account(&runtime, &memory));
    let memory_replay = MemoryReplayCache::new();

    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-stores-{suffix}.db"));
    let sqlite = runtime
        .block_on(SqliteStore::connect(path.to_str().unwrap()))
        .unwrap();
    let sqlite = (sqlite.clone(), account(&runtime, &sqlite));

    let pg_url = std::env::var("TOWER_M2M_AUTH_PG_URL").ok();
    if pg_url.is_none() {
        eprintln!("TOWER_M2M_AUTH_PG_URL is unset: PostgreSQL is not measured");
    }
    let pg_database = format!("m2m_bench_{suffix}");
    let postgres = pg_url.as_deref().map(|url| {
        let store = runtime.block_on(fresh_postgres(url, &pg_database));
        let token = account(&runtime, &store);
        (store, token)
    });

    let mut group = c.benchmark_group("token_request");
    token_request(&mut group, &runtime, &pem, "memory", &memory);
    token_request(&mut group, &runtime, &pem, "sqlite", &sqlite);
    if let Some(postgres) = &postgres {
        token_request(&mut group, &runtime, &pem, "postgres", postgres);
    }
    group.finish();

    let mut group = c.benchmark_group("replay_first_use_x32");
    group.throughput(Throughput::Elements(AT_ONCE));
    first_use(&mut group, &runtime, "memory", &memory_replay, AT_ONCE);
    first_use(&mut group, &runtime, "sqlite", &sqlite.0, AT_ONCE);
    first_use_unbatched(&mut group, &runtime, "sqlite_unbatched", &sqlite.0);
    if let Some((store, _)) = &postgres {
        first_use(&mut group, &runtime, "postgres", store, AT_ONCE);
        first_use_unbatched(&mut group, &runtime, "postgres_unbatched", store);
    }
    group.finish();

    let mut group = c.benchmark_group("app_password_lookup");
    lookup(&mut group, &runtime, "memory", &memory, false);
    lookup(&mut group, &runtime, "sqlite", &sqlite, false);
    if let Some(postgres) = &postgres {
        lookup(&mut group, &runtime, "postgres", postgres, false);
    }
    group.finish();

    let mut group = c.benchmark_group("read_path");
    lookup(&mut group, &runtime, "memory", &memory, true);
    lookup(&mut group, &runtime, "sqlite", &sqlite, true);
    if let Some(postgres) = &postgres {
        lookup(&mut group, &runtime, "postgres", postgres, true);
    }
    group.finish();

    let mut group = c.benchmark_group("read_path_miss");
    read_path_miss(&mut group, &runtime, "memory", &memory.0);
    read_path_miss(&mut group, &runtime, "sqlite", &sqlite.0);
    if let Some((store, _)) = &postgres {
        read_path_miss(&mut group, &runtime, "postgres", store);
    }
    group.finish();

    let mut group = c.benchmark_group("replay_first_use");
    first_use(&mut group, &runtime, "memory", &memory_replay, 1);
    first_use(&mut group, &runtime, "sqlite", &sqlite.0, 1);
    if let Some((store, _)) = &postgres {
        first_use(&mut group, &runtime, "postgres", store, 1);
    }
    group.finish();

    runtime.block_on(sqlite.0.pool().close());
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    if let (Some((store, _)), Some(url)) = (postgres, pg_url) {
        runtime.block_on(async {
            store.pool().close().await;
            drop_postgres(&url, &pg_database).await;
        });
    }
}

criterion_group!(benches, stores);
criterion_main!(benches);
