//! The SQL stores' read cache loses no freshness: after a login that warmed
//! the cache on two instances sharing one database, a revoked app password,
//! a disabled or deleted account or a removed binding is refused on the very
//! next request on both, whoever made the change (the admin API of one
//! instance, hand-written SQL, or, for SQLite, another process); a new app
//! password or binding is accepted at once. PostgreSQL: while an instance
//! cannot hear announcements it does not serve from the cache.
//!
//! Every request goes over real HTTP to a token endpoint per instance.
//! PostgreSQL tests need `TOWER_M2M_AUTH_PG_URL` (`.ci/run` sets it).

#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod common;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use secrecy::{ExposeSecret, SecretString};
use tower_m2m_auth::issuer::{Application, TokenEndpointLayer};
use tower_m2m_auth::keys::{Algorithm, KeyRing, SigningKey};
use tower_m2m_auth::store::{
    AccountAdmin, AppPassword, Binding, CredentialStore, ServiceAccount, SqlDialect, SqlStore,
    TokenDigest,
};

const CLIENT_ID: &str = "fresh-client";

/// Deletes the account `$1` (and with it its app passwords and bindings).
const DELETE: &str = "DELETE FROM m2m_service_accounts WHERE username = $1";

/// A token endpoint over `store` on 127.0.0.1; its token URL.
async fn serve<S: CredentialStore + Clone>(store: S) -> String {
    let keys = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
    let base = common::serve(|base| {
        let layer = TokenEndpointLayer::new(base, keys, store)
            .unwrap()
            .application(Application::new(CLIENT_ID, "fresh"))
            .unwrap();
        Router::new()
            .route("/{*path}", any(|| async { "inner" }))
            .layer(layer)
    })
    .await;
    format!("{base}/application/o/token/")
}

/// The status of a static login as `username` with `token` at `url`.
async fn login(url: &str, username: &str, token: &str) -> u16 {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("username", username),
        ("password", token),
    ];
    let response = common::http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// Two instances of one store, each behind its own token endpoint.
struct Instances<D: SqlDialect> {
    a: SqlStore<D>,
    b: SqlStore<D>,
    urls: [String; 2],
}

impl<D: SqlDialect> Instances<D> {
    async fn new(a: SqlStore<D>, b: SqlStore<D>) -> Self {
        let urls = [serve(a.clone()).await, serve(b.clone()).await];
        Self { a, b, urls }
    }

    /// A new account `username`, bound to the test application; its token.
    async fn account(&self, username: &str) -> SecretString {
        let (_, token) = self
            .a
            .create_service_account(ServiceAccount::new(username), None)
            .await
            .unwrap();
        self.a
            .bind_account(username, Binding::new(CLIENT_ID, ["read"]))
            .await
            .unwrap();
        token
    }

    /// The status of a login on each instance, twice (the second from the
    /// cache, if it may serve).
    async fn logins(&self, username: &str, token: &SecretString) -> [u16; 2] {
        let mut statuses = [0; 2];
        for (url, status) in self.urls.iter().zip(&mut statuses) {
            *status = login(url, username, token.expose_secret()).await;
            let again = login(url, username, token.expose_secret()).await;
            assert_eq!(*status, again, "a repeated login at {url}");
        }
        statuses
    }
}

/// After warming both instances, `change` (given the instances, the
/// username and its token) is seen by the very next login on both.
async fn refused_after<D, F, Fut>(instances: &Instances<D>, username: &str, change: F)
where
    D: SqlDialect,
    F: FnOnce(String, SecretString) -> Fut,
    Fut: Future<Output = ()>,
{
    let token = instances.account(username).await;
    assert_eq!(instances.logins(username, &token).await, [200, 200]);
    change(username.to_owned(), token.clone()).await;
    for url in &instances.urls {
        let status = login(url, username, token.expose_secret()).await;
        assert!(matches!(status, 400 | 401), "{username} at {url}: {status}");
    }
}

/// The changes an admin makes that must take effect on the next request,
/// through the admin API of instance `a`, or (deletion, which has none) by
/// `delete` in SQL.
async fn every_change_is_seen_on_the_next_request<D, F, Fut>(instances: &Instances<D>, delete: F)
where
    D: SqlDialect,
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let a = &instances.a;
    refused_after(instances, "svc-revoked", |_, token| async move {
        let digest = TokenDigest::of(token.expose_secret());
        assert!(a.revoke_app_password(&digest).await.unwrap());
    })
    .await;
    refused_after(instances, "svc-disabled", |username, _| async move {
        assert!(a.set_account_active(&username, false).await.unwrap());
    })
    .await;
    refused_after(instances, "svc-unbound", |username, _| async move {
        assert!(a.unbind_account(&username, CLIENT_ID).await.unwrap());
    })
    .await;
    refused_after(instances, "svc-deleted", |username, _| delete(username)).await;
}

/// A refusal is not kept past the change that lifts it: an app password
/// imported, a binding added, an account enabled are accepted at once.
async fn new_credentials_are_accepted_at_once<D: SqlDialect>(instances: &Instances<D>) {
    let a = &instances.a;
    let token = instances.account("svc-new").await;
    let new = "imported-app-password-0123456789abcdef";
    let new_token = SecretString::from(new);
    assert_eq!(instances.logins("svc-new", &new_token).await, [400, 400]);
    let password = AppPassword::new("", TokenDigest::of(new));
    assert!(a.import_app_password("svc-new", password).await.unwrap());
    assert_eq!(instances.logins("svc-new", &new_token).await, [200, 200]);

    assert!(a.unbind_account("svc-new", CLIENT_ID).await.unwrap());
    let refused = instances.logins("svc-new", &token).await;
    a.bind_account("svc-new", Binding::new(CLIENT_ID, ["read"]))
        .await
        .unwrap();
    assert_eq!(instances.logins("svc-new", &token).await, [200, 200]);

    a.set_account_active("svc-new", false).await.unwrap();
    assert_eq!(instances.logins("svc-new", &token).await, refused);
    a.set_account_active("svc-new", true).await.unwrap();
    assert_eq!(instances.logins("svc-new", &token).await, [200, 200]);
}

/// Polls `condition` every 20 ms for up to 15 s.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..750 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never: {what}");
}

/// The tests both dialects run, on the two instances `$instances` (an
/// expression to await) gives.
macro_rules! dialect_tests {
    ($db:ty, $instances:expr) => {
        /// [`every_change_is_seen_on_the_next_request`], deleting in SQL.
        async fn every_change(instances: &Instances<$db>) {
            let pool = instances.a.pool().clone();
            every_change_is_seen_on_the_next_request(instances, |username| async move {
                sqlx::query(DELETE)
                    .bind(username)
                    .execute(&pool)
                    .await
                    .unwrap();
            })
            .await;
        }

        #[tokio::test]
        async fn every_change_is_refused_on_the_next_request_of_every_instance() {
            every_change(&$instances.await).await;
        }

        #[tokio::test]
        async fn new_credentials_are_accepted_on_the_next_request() {
            new_credentials_are_accepted_at_once(&$instances.await).await;
        }
    };
}

mod sqlite {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use tower_m2m_auth::store::SqliteStore;

    use super::*;

    /// Set in the environment of the child process the tests start.
    const CHILD: &str = "M2M_FRESHNESS_CHILD";

    fn fresh_path() -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("freshness-{}.db", uuid::Uuid::new_v4()))
    }

    async fn instances(path: &Path) -> Instances<sqlx::Sqlite> {
        let path = path.to_str().unwrap();
        let a = SqliteStore::connect(path).await.unwrap();
        let b = SqliteStore::connect(path).await.unwrap();
        assert!(a.read_cache_active() && b.read_cache_active());
        Instances::new(a, b).await
    }

    dialect_tests!(sqlx::Sqlite, instances(&fresh_path()));

    /// Runs this test binary's `child` test in a new process, which applies
    /// `change` to `username` in the database at `path`.
    fn in_another_process(path: &Path, change: &str, username: &str, token: &SecretString) {
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sqlite::child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, format!("{change} {username} {}", path.display()))
            .env("M2M_FRESHNESS_TOKEN", token.expose_secret())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Not a test of its own: the other process of the test below.
    #[tokio::test]
    async fn child() {
        let Ok(task) = std::env::var(CHILD) else {
            return;
        };
        let mut task = task.splitn(3, ' ');
        let (change, username, path) = (
            task.next().unwrap(),
            task.next().unwrap(),
            task.next().unwrap(),
        );
        let store = SqliteStore::connect(path).await.unwrap();
        match change {
            "revoke" => {
                let token = std::env::var("M2M_FRESHNESS_TOKEN").unwrap();
                let digest = TokenDigest::of(&token);
                assert!(store.revoke_app_password(&digest).await.unwrap());
            }
            "disable" => assert!(store.set_account_active(username, false).await.unwrap()),
            "unbind" => assert!(store.unbind_account(username, CLIENT_ID).await.unwrap()),
            other => panic!("unknown change {other}"),
        }
    }

    /// The example server's admin subcommands run as another process on
    /// the same file: their changes are seen on the next request too.
    #[tokio::test]
    async fn a_change_by_another_process_is_refused_on_the_next_request() {
        let path = fresh_path();
        let instances = instances(&path).await;
        for change in ["revoke", "disable", "unbind"] {
            let username = format!("svc-{change}");
            let path = path.clone();
            refused_after(&instances, &username, |username, token| async move {
                tokio::task::spawn_blocking(move || {
                    in_another_process(&path, change, &username, &token);
                })
                .await
                .unwrap();
            })
            .await;
        }
    }

    #[tokio::test]
    async fn an_in_memory_database_is_not_cached() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        assert!(!store.read_cache_active());
        every_change(&Instances::new(store.clone(), store).await).await;
    }
}

mod postgres {
    use std::str::FromStr;

    use sqlx::Connection;
    use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
    use tower_m2m_auth::store::PgStore;

    use super::*;
    use crate::common::pg::{fresh_database, required};

    /// The `application_name` of each store's change listener.
    const LISTENER: &str = "tower-m2m-auth change listener";

    async fn instances(url: &str) -> Instances<sqlx::Postgres> {
        let a = PgStore::connect(url).await.unwrap();
        let b = PgStore::connect(url).await.unwrap();
        assert!(a.read_cache_active() && b.read_cache_active());
        Instances::new(a, b).await
    }

    dialect_tests!(sqlx::Postgres, instances(&fresh_database().await));

    /// Runs `sql` on the server's maintenance database.
    async fn maintenance(sql: String) {
        let pool = PgPool::connect(&required("TOWER_M2M_AUTH_PG_URL"))
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    /// A change made in SQL without triggers (`session_replication_role =
    /// replica`): nothing is announced.
    async fn unannounced(store: &PgStore, sql: &str, username: &str) {
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(username)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// Sends `signal` to the processes `pids`.
    fn signal(pids: &[i32], signal: &str) {
        for pid in pids {
            let status = std::process::Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill -{signal} {pid}");
        }
    }

    /// Lets frozen backends go on, even if the test fails.
    struct Thaw(Vec<i32>);

    impl Drop for Thaw {
        fn drop(&mut self) {
            signal(&self.0, "CONT");
        }
    }

    /// A listener that goes silent without its connection closing (its
    /// backend frozen with SIGSTOP, as in a network partition) counts as
    /// not listening once it heard nothing for 3 s; an admin change made
    /// meanwhile returns only once that holds for every such listener (its
    /// row unrenewed for 5 s), and is then refused everywhere; the stores
    /// listen again on new connections.
    #[tokio::test]
    async fn a_silent_listener_is_noticed_within_three_heartbeats() {
        let url = fresh_database().await;
        let database = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        let instances = instances(&url).await;
        let token = instances.account("svc-frozen").await;
        assert_eq!(instances.logins("svc-frozen", &token).await, [200, 200]);

        let maintenance = PgPool::connect(&required("TOWER_M2M_AUTH_PG_URL"))
            .await
            .unwrap();
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
        )
        .bind(database)
        .bind(LISTENER)
        .fetch_all(&maintenance)
        .await
        .unwrap();
        assert_eq!(pids.len(), 2, "one listener per store");
        signal(&pids, "STOP");
        let thaw = Thaw(pids);

        // The change returns only once neither silent listener can still
        // serve from its cache (their rows unrenewed for 5 s).
        let started = std::time::Instant::now();
        assert!(
            instances
                .a
                .set_account_active("svc-frozen", false)
                .await
                .unwrap()
        );
        let returned = started.elapsed();
        let mut statuses = Vec::new();
        for url in &instances.urls {
            statuses.push(login(url, "svc-frozen", token.expose_secret()).await);
        }
        assert_eq!(statuses, [400, 400], "after {returned:?}");
        assert!(returned < Duration::from_secs(7), "{returned:?}");
        println!("the change returned after {returned:?}, refused everywhere");
        drop(thaw);
        eventually("both stores listen again", || {
            instances.a.read_cache_active() && instances.b.read_cache_active()
        })
        .await;
        assert_eq!(instances.logins("svc-frozen", &token).await, [400, 400]);
        maintenance.close().await;
    }

    /// A listener that is behind, as a stand-in: a connection under the
    /// listeners' `application_name` whose row in `m2m_listeners` has heard
    /// none of the changes.
    async fn listener_behind(url: &str, renewed: &str) -> PgConnection {
        let options = PgConnectOptions::from_str(url)
            .unwrap()
            .application_name(LISTENER);
        let mut connection = PgConnection::connect_with(&options).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO m2m_listeners (pid, heard, renewed) \
             VALUES (pg_backend_pid(), 0, {renewed})"
        )))
        .execute(&mut connection)
        .await
        .unwrap();
        connection
    }

    /// Whether `change` is still waiting after 500 ms; then it must end
    /// within 5 s of `release`.
    async fn held_until<F, R>(change: F, release: R)
    where
        F: Future<Output = bool> + Send + 'static,
        R: Future<Output = ()>,
    {
        let change = tokio::spawn(change);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !change.is_finished(),
            "returned before every listener heard it"
        );
        release.await;
        let changed = tokio::time::timeout(Duration::from_secs(5), change)
            .await
            .expect("still waiting 5 s after the listener was released");
        assert!(changed.unwrap());
    }

    /// An admin change returns only once every live listener said it heard
    /// it: one that is behind holds it until it answers, its backend is
    /// gone, or its row went unrenewed for 5 s (by then it no longer
    /// serves from its cache).
    #[tokio::test]
    async fn an_admin_change_returns_once_every_listener_heard_it() {
        let url = fresh_database().await;
        let store = PgStore::connect(&url).await.unwrap();
        assert!(store.read_cache_active());
        let admin = store.clone();
        let created = async move {
            let account = ServiceAccount::new("svc-held");
            admin.create_service_account(account, None).await.is_ok()
        };

        // It answers that it heard every change.
        let mut behind = listener_behind(&url, "now()").await;
        let answer = sqlx::query(
            "UPDATE m2m_listeners SET heard = (SELECT value FROM m2m_changes), \
             renewed = now() WHERE pid = pg_backend_pid()",
        );
        held_until(created, async {
            answer.execute(&mut behind).await.unwrap();
        })
        .await;

        // Its backend goes away (long before its lease ends).
        let admin = store.clone();
        let disabled = async move { admin.set_account_active("svc-held", false).await.unwrap() };
        held_until(disabled, async {
            behind.close().await.unwrap();
        })
        .await;

        // Its row was last renewed 3 s ago: its lease ends in about 2 s.
        let _behind = listener_behind(&url, "now() - interval '3 seconds'").await;
        let admin = store.clone();
        let enabled = async move { admin.set_account_active("svc-held", true).await.unwrap() };
        held_until(enabled, async {}).await;
    }

    /// A store that cannot listen itself (its role may not write its row
    /// in `m2m_listeners`) still waits for the instances that do: an admin
    /// command's store is often one that just started.
    #[tokio::test]
    async fn a_store_that_does_not_listen_still_waits_for_the_listeners() {
        let url = fresh_database().await;
        let owner = PgStore::connect(&url).await.unwrap();
        let role = format!("m2m_deaf_{}", uuid::Uuid::new_v4().simple());
        for sql in [
            format!("CREATE ROLE {role} LOGIN PASSWORD 'deaf'"),
            format!("GRANT USAGE, CREATE ON SCHEMA public TO {role}"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
            ),
            format!("REVOKE INSERT, UPDATE ON m2m_listeners FROM {role}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(owner.pool())
                .await
                .unwrap();
        }
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .username(&role)
            .password("deaf");
        let pool = PgPool::connect_with(options).await.unwrap();
        let deaf = PgStore::from_pool(pool).await.unwrap();
        assert!(!deaf.read_cache_active(), "its listener cannot register");

        let behind = listener_behind(&url, "now()").await;
        let admin = deaf.clone();
        let created = async move {
            let account = ServiceAccount::new("svc-deaf");
            admin.create_service_account(account, None).await.is_ok()
        };
        // Held until that listener's backend goes away.
        held_until(created, async { behind.close().await.unwrap() }).await;
        deaf.pool().close().await;
        drop(deaf);
        for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(owner.pool())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn while_not_listening_the_cache_is_bypassed_and_after_reconnecting_it_serves() {
        let url = fresh_database().await;
        let database = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        let instances = instances(&url).await;
        let store = instances.a.clone();
        let first = instances.account("svc-listener-a").await;
        let second = instances.account("svc-listener-b").await;
        assert_eq!(instances.logins("svc-listener-a", &first).await, [200, 200]);
        assert_eq!(
            instances.logins("svc-listener-b", &second).await,
            [200, 200]
        );

        // The listeners' connections killed, and no new one allowed.
        maintenance(format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false")).await;
        maintenance(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND application_name = '{LISTENER}'"
        ))
        .await;
        eventually("both stores stop serving from the cache", || {
            !instances.a.read_cache_active() && !instances.b.read_cache_active()
        })
        .await;

        // A change nobody announces is still seen: every lookup reads.
        let disable = "UPDATE m2m_service_accounts SET active = FALSE WHERE username = $1";
        unannounced(&store, disable, "svc-listener-a").await;
        assert_eq!(instances.logins("svc-listener-a", &first).await, [400, 400]);
        assert_eq!(
            instances.logins("svc-listener-b", &second).await,
            [200, 200]
        );

        // Listening again, the stores serve from the cache: an unannounced
        // change (which the triggers never allow) would go unseen.
        maintenance(format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true")).await;
        eventually("both stores listen again", || {
            instances.a.read_cache_active() && instances.b.read_cache_active()
        })
        .await;
        assert_eq!(
            instances.logins("svc-listener-b", &second).await,
            [200, 200]
        );
        unannounced(&store, disable, "svc-listener-b").await;
        assert_eq!(
            instances.logins("svc-listener-b", &second).await,
            [200, 200]
        );
        // An announced change is seen at once.
        assert!(
            instances
                .a
                .set_account_active("svc-listener-b", false)
                .await
                .unwrap()
        );
        assert_eq!(
            instances.logins("svc-listener-b", &second).await,
            [400, 400]
        );
    }
}
