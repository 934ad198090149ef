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
//!   single-use JWT assertion costs).

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool};
use support::{bench_request, endpoint, es256_pem};
use tower_m2m_auth::issuer::{Application, TokenEndpointLayer};
use tower_m2m_auth::keys::{KeyRing, SigningKey};
use tower_m2m_auth::store::{
    AccountAdmin, Binding, CredentialStore, MemoryReplayCache, MemoryStore, PgStore, ReplayCache,
    ServiceAccount, SqliteStore, TokenDigest,
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

/// Recording a new key in the replay cache.
fn first_use<R: ReplayCache>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    replay: &R,
) {
    let next = AtomicU64::new(0);
    group.bench_function(name, |b| {
        b.to_async(runtime).iter(|| async {
            let key = format!("jti-{}", next.fetch_add(1, Ordering::Relaxed));
            assert!(replay.first_use(&key, FAR_FUTURE).await.unwrap());
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
    first_use(&mut group, &runtime, "memory", &memory_replay);
    first_use(&mut group, &runtime, "sqlite", &sqlite.0);
    if let Some((store, _)) = &postgres {
        first_use(&mut group, &runtime, "postgres", store);
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
