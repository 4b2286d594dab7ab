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
