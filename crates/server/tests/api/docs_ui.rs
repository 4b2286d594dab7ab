//! Swagger UI in a real browser (Debian's chromium, driven through chromedriver), offline.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::support::TestApp;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn browser_required() -> bool {
    std::env::var("INKCART_REQUIRE_BROWSER").is_ok_and(|v| v == "1" || v == "true")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_lists_every_operation_and_graphiql_renders_offline_in_a_real_browser() {
    inkcart::install_crypto_provider();
    let chromedriver =
        std::env::var("INKCART_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
    let driver_port = free_port();
    let Ok(child) = Command::new(&chromedriver)
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        assert!(
            !browser_required(),
            "INKCART_REQUIRE_BROWSER=1 but {chromedriver} cannot be started"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n*** chromedriver not found: skipping the browser test (apt install chromium chromium-driver) ***\n"
        );
        return;
    };
    let _driver = Driver(child);

    let app = TestApp::new(inkcart_store::testing::sqlite().await, |_| {});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(inkcart::serve(
        listener,
        app.router.clone(),
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(5),
    ));

    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": std::env::var("INKCART_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", format!("--user-data-dir={}", profile.path().display())
            ]
        }),
    );
    let started = Instant::now();
    let client = loop {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
        {
            Ok(client) => break client,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "chromedriver did not answer: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    client
        .goto(&format!("http://{addr}/api-docs"))
        .await
        .unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(".opblock-summary-path"))
        .await
        .unwrap();
    let mut operations = Vec::new();
    for element in client.find_all(Locator::Css(".opblock")).await.unwrap() {
        let method = element
            .find(Locator::Css(".opblock-summary-method"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let path = element
            .find(Locator::Css(".opblock-summary-path"))
            .await
            .unwrap()
            .attr("data-path")
            .await
            .unwrap()
            .unwrap_or_default();
        operations.push(format!("{} {path}", method.to_lowercase()));
    }
    for expected in [
        "post /api/v1/auth/login",
        "get /api/v1/posts",
        "post /api/v1/orders/{id}/pay",
        "post /api/v1/uploads",
        "post /graphql",
    ] {
        assert!(
            operations.iter().any(|o| o == expected),
            "{expected} is not listed: {operations:?}"
        );
    }
    let documented = serde_json::to_value(inkcart_http::openapi()).unwrap()["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum::<usize>();
    assert_eq!(
        operations.len(),
        documented,
        "the page lists {} of {documented} operations",
        operations.len()
    );
    // "Authorize" takes a bearer token.
    client.find(Locator::Css(".btn.authorize")).await.unwrap();
    // Nothing was fetched from anywhere but this server.
    let hosts = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).host);",
            vec![],
        )
        .await
        .unwrap();
    for host in hosts.as_array().unwrap() {
        assert_eq!(
            host.as_str().unwrap(),
            addr.to_string(),
            "the docs page loaded something from {host}"
        );
    }

    // GraphiQL, the same way: rendered from the binary's own files.
    client
        .goto(&format!("http://{addr}/graphql"))
        .await
        .unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(".graphiql-container"))
        .await
        .unwrap();
    let hosts = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).host);",
            vec![],
        )
        .await
        .unwrap();
    for host in hosts.as_array().unwrap() {
        assert_eq!(
            host.as_str().unwrap(),
            addr.to_string(),
            "GraphiQL loaded something from {host}"
        );
    }
    client.close().await.unwrap();
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
