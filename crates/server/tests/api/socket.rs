//! The real server on a real socket.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use inkcart_http::AppState;
use tokio::sync::{Notify, oneshot};

use crate::support::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_ones() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let routes: Router<AppState> = Router::new().route(
        "/test/hold",
        get({
            let (entered, release) = (entered.clone(), release.clone());
            move || async move {
                entered.notify_one();
                release.notified().await;
                "finished"
            }
        }),
    );
    let app = TestApp::with_routes(inkcart_store::testing::sqlite().await, |_| {}, routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(inkcart::serve(
        listener,
        app.router.clone(),
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(30),
    ));

    let client = reqwest::Client::new();
    let live = client
        .get(format!("http://{addr}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get(format!("http://{addr}/test/hold")).send().await }
    });
    entered.notified().await;
    stop_tx.send(()).unwrap();

    // The listener closes: a new connection is refused while the old request is still held.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "the server kept accepting connections after shutdown began"
    );
    assert!(
        !server.is_finished(),
        "the server stopped before the in-flight request ended"
    );

    release.notify_one();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops once the request is done")
        .unwrap()
        .unwrap();
}

/// `inkcart serve` on a new SQLite file in `dir`, on a port of the system's choosing; the
/// process and the address it listens on.
fn spawn_server(dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_inkcart"))
        .arg("serve")
        .env_clear()
        .env("INKCART_DATA_DIR", dir)
        .env("PORT", "0")
        .env("INKCART_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start inkcart serve");
    let stdout = child.stdout.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, rest)) = line.split_once("listening on http://") {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == ':'))
                    .unwrap_or(rest.len());
                let _ = found.send(rest[..end].to_owned());
            }
        }
    });
    let address = address
        .recv_timeout(Duration::from_secs(60))
        .expect("the server never said where it listens");
    (child, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_by_sigterm_leaves_its_sqlite_file_whole_and_its_wal_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = spawn_server(dir.path());
    let created = reqwest::Client::new()
        .post(format!("http://{address}/api/v1/users"))
        .json(&serde_json::json!({
            "email": "ada@example.com", "password": crate::support::PASSWORD, "name": "Ada"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let signal = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success(), "{exited}");

    // Opening a file whose WAL holds frames reads every one of them first; and the file alone
    // (a copy, as a backup of it would be) holds the account.
    let wal = dir.path().join("inkcart.db-wal");
    let left = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(left, 0, "the WAL still holds {left} bytes");
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("inkcart.db"),
        copy.path().join("inkcart.db"),
    )
    .unwrap();
    let file = rusqlite::Connection::open(copy.path().join("inkcart.db")).unwrap();
    let accounts: i64 = file
        .query_row(
            "SELECT count(*) FROM users WHERE email = 'ada@example.com'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(accounts, 1);
}
