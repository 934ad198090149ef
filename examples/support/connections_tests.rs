//! Tests of `connections.rs`: the limits hold over real connections.

use std::time::Instant as StdInstant;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Serves a one-route app within `limits` on 127.0.0.1; its address.
async fn server(limits: ConnectionLimits) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve(listener, app, limits, std::future::pending()));
    address
}

fn limits(idle: Duration, max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: idle,
        max_connections,
        shutdown_grace: Duration::from_secs(1),
    }
}

/// Reads until the server closes the connection; the bytes read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection");
    answer
}

// Found by scripts/slow_clients.py: a connection that sends nothing was
// held for ever, since hyper's header deadline starts with a request's
// first byte.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_deadline() {
    let address = server(limits(Duration::from_millis(300), 16)).await;
    let mut silent = TcpStream::connect(address).await.unwrap();
    let started = StdInstant::now();
    assert!(read_to_close(&mut silent).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_deadline() {
    let address = server(limits(Duration::from_millis(300), 16)).await;
    let mut client = TcpStream::connect(address).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut client).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn silent_connections_cannot_hold_every_slot_for_ever() {
    let address = server(limits(Duration::from_millis(300), 2)).await;
    // Both slots taken by clients that say nothing...
    let _silent = [
        TcpStream::connect(address).await.unwrap(),
        TcpStream::connect(address).await.unwrap(),
    ];
    // ...a real client still gets its answer once they are dropped.
    let mut client = TcpStream::connect(address).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut client).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}
