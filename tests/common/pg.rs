//! A fresh PostgreSQL database per test, on the server at
//! `TOWER_M2M_AUTH_PG_URL` (.ci/run starts one and sets it).

use sqlx::postgres::{PgConnectOptions, PgPool};

/// An environment variable the PostgreSQL tests cannot run without.
pub fn required(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("set {variable} for the PostgreSQL tests (.ci/run starts a server and sets it)")
    })
}

/// Creates an empty database on the test server; its URL.
pub async fn fresh_database() -> String {
    let url = required("TOWER_M2M_AUTH_PG_URL");
    let options: PgConnectOptions = url.parse().unwrap();
    let name = format!("m2m_test_{}", uuid::Uuid::new_v4().simple());
    let maintenance = PgPool::connect_with(options).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&maintenance)
        .await
        .unwrap();
    maintenance.close().await;
    with_database(&url, &name)
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (rest, query) = rest
        .split_once('?')
        .map_or((rest, None), |(r, q)| (r, Some(q)));
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{authority}/{name}{query}")
}
