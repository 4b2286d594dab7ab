//! Hardening: the server and its resources. Slow and oversized connections over a real socket,
//! image decompression bombs and the decoding bound, the client address behind proxies,
//! response headers, and a PostgreSQL outage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, header};
use inkcart::listen::ServerLimits;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tower::ServiceExt as _;

use crate::api_test;
use crate::support::{Login, TestApp, TestResponse, test_config};

/// A generous bound for answers that must come "at once" or after a short timeout: a
/// failure guard, not a measurement.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A real server on a real socket.

struct Served {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _app: TestApp,
}

impl Served {
    async fn start(
        configure: impl FnOnce(&mut inkcart::config::Config),
        limits: ServerLimits,
    ) -> Self {
        let app = TestApp::new(inkcart_store::testing::sqlite().await, configure);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = app.router.clone();
        let task = tokio::spawn(async move {
            inkcart::listen::serve(
                listener,
                router,
                async move {
                    let _ = stopped.await;
                },
                &limits,
            )
            .await
        });
        Self {
            addr,
            stop: Some(stop),
            task,
            _app: app,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// A normal request on a new connection: it must be answered.
    async fn assert_live(&self) {
        let mut stream = self.connect().await;
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: inkcart\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut stream).await;
        assert_eq!(response.status, 200, "{}", response.text);
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

fn short_limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    }
}

#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    text: String,
}

impl RawResponse {
    fn body(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    #[track_caller]
    fn assert_error(&self, status: u16, error: &str, message: &str) {
        assert_eq!(self.status, status, "{}\r\n\r\n{}", self.head, self.text);
        let body = self.body();
        assert_eq!(body["error"], error, "{}", self.text);
        assert_eq!(body["message"], message, "{}", self.text);
        assert_eq!(body["statusCode"], status, "{}", self.text);
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{}",
            self.head
        );
    }
}

/// Reads one HTTP/1.1 response (head, then a `Content-Length` body), within [`PATIENCE`].
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    tokio::time::timeout(PATIENCE, async {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = stream.read(&mut chunk).await.expect("read a response");
            assert!(n > 0, "the connection closed before a response: {bytes:?}");
            bytes.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = bytes[head_end + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut chunk).await.expect("read a body");
            assert!(n > 0, "the connection closed inside a body");
            body.extend_from_slice(&chunk[..n]);
        }
        RawResponse {
            status,
            head,
            text: String::from_utf8_lossy(&body).into_owned(),
        }
    })
    .await
    .expect("a response in time")
}

/// Waits until the server closes the connection (end of stream or a reset), reading and
/// dropping whatever it sends first.
async fn assert_closed_by_server(stream: &mut TcpStream) {
    tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_byte_by_byte_is_cut_after_the_header_read_timeout() {
    let server = Served::start(|_| {}, short_limits()).await;
    let mut slow = server.connect().await;
    // The head is never finished: a byte, then another, the way a slowloris client sends it.
    let mut cut = false;
    for byte in b"GET /health/live HTTP/1.1\r\nHost: inkcart\r\nX-Slow: 1".iter() {
        if slow.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !cut {
        assert_closed_by_server(&mut slow).await;
    }
    server.assert_live().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let server = Served::start(|_| {}, short_limits()).await;
    let mut silent = server.connect().await;
    assert_closed_by_server(&mut silent).await;
    // An HTTP/2 client that opens the connection and then no stream is closed as well.
    let mut h2 = server.connect().await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap(); // an empty SETTINGS frame
    assert_closed_by_server(&mut h2).await;
    server.assert_live().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let server = Served::start(|_| {}, short_limits()).await;
    let mut idle = server.connect().await;
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: inkcart\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle).await.status, 200);
    assert_closed_by_server(&mut idle).await;
    server.assert_live().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_gets_a_408() {
    let server = Served::start(
        |c| c.body_read_timeout = Duration::from_secs(1),
        ServerLimits::default(),
    )
    .await;
    let mut slow = server.connect().await;
    slow.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: inkcart\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    // Nothing more is sent.
    let response = read_response(&mut slow).await;
    response.assert_error(
        408,
        "RequestTimeout",
        "Request body was not received in time",
    );
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    server.assert_live().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_a_413_before_the_body_is_sent() {
    let server = Served::start(|_| {}, ServerLimits::default()).await;
    let cases = [
        // 50 MB declared for a JSON route (limit 1 MiB).
        ("/api/v1/users", 50_000_000_u64),
        // 5 MB: over the JSON limit, under the upload limit; still a JSON route.
        ("/api/v1/auth/login", 5_000_000),
        ("/graphql", 50_000_000),
        // 50 MB declared for an upload (limit 10 MiB).
        ("/api/v1/uploads", 50_000_000),
    ];
    for (path, length) in cases {
        let mut stream = server.connect().await;
        // Only the head: an answer that waited for the body would never come.
        stream
            .write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: inkcart\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let response = read_response(&mut stream).await;
        response.assert_error(413, "PayloadTooLarge", "Request body is too large");
        assert_eq!(
            response.header("connection").as_deref(),
            Some("close"),
            "{path}"
        );
    }
    server.assert_live().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_a_waiting_connection_is_served_when_one_closes() {
    let server = Served::start(
        |_| {},
        ServerLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(120),
            ..ServerLimits::default()
        },
    )
    .await;
    // Two kept-alive connections take both slots (each answered, so each was accepted).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = server.connect().await;
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: inkcart\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut stream).await.status, 200);
        held.push(stream);
    }
    // A third waits in the listen queue: its request is not answered while both are held.
    let mut waiting = server.connect().await;
    waiting
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: inkcart\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "a third connection was served past the cap of two"
    );
    // One closes: the waiting connection is served.
    drop(held.pop());
    let response = read_response(&mut waiting).await;
    assert_eq!(response.status, 200, "{}", response.text);
    drop(held);
    server.assert_live().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_a_431_with_the_envelope_up_to_twice_the_limit_and_a_bare_one_beyond() {
    let server = Served::start(|_| {}, ServerLimits::default()).await;
    // 20 KiB of headers: over the 16 KiB limit, within what hyper reads (32 KiB).
    let mut stream = server.connect().await;
    let filler = "a".repeat(1000);
    let mut head = String::from("GET /health/live HTTP/1.1\r\nHost: inkcart\r\n");
    for i in 0..20 {
        head.push_str(&format!("X-Filler-{i}: {filler}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    read_response(&mut stream).await.assert_error(
        431,
        "RequestHeaderFieldsTooLarge",
        "Request headers are too large",
    );
    // 40 KiB: hyper stops reading and answers by itself, without a body (the documented
    // limitation), then closes.
    let mut stream = server.connect().await;
    let mut head = String::from("GET /health/live HTTP/1.1\r\nHost: inkcart\r\n");
    for i in 0..40 {
        head.push_str(&format!("X-Filler-{i}: {filler}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 431, "{}", response.head);
    assert_eq!(response.text, "");
    server.assert_live().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_gets_the_http_library_s_bare_400_and_the_server_goes_on() {
    let server = Served::start(|_| {}, ServerLimits::default()).await;
    let mut stream = server.connect().await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: inkcart\r\nthis is not a header\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 400, "{}", response.head);
    assert_eq!(response.text, "");
    server.assert_live().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Uploads: decompression bombs and the decoding bound.

/// The CRC of a PNG chunk (type and data).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A PNG whose header claims 11,500 × 11,500 pixels (529 MB decoded) over a few bytes of data:
/// the review's bomb, as far as anything that reads its header can tell.
fn png_bomb() -> Vec<u8> {
    let mut bytes = png(8, 8);
    bytes[16..20].copy_from_slice(&11_500u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&11_500u32.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

const BOUNDARY: &str = "inkcart-hardening-boundary";

async fn upload(app: &TestApp, user: &Login, bytes: &[u8]) -> TestResponse {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    app.send(
        Request::builder()
            .method("POST")
            .uri("/api/v1/uploads")
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header(header::AUTHORIZATION, format!("Bearer {}", user.token))
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

/// A request whose JSON body the test streams in chunks: `feed` returns once the server has
/// taken the previous chunk (the channel holds one), so what the server holds is known without
/// waiting on time.
struct Streamed {
    chunks: tokio::sync::mpsc::Sender<Result<axum::body::Bytes, std::io::Error>>,
    answer: tokio::task::JoinHandle<u16>,
}

impl Streamed {
    fn start(app: &TestApp, uri: &str, length: usize) -> Self {
        let (chunks, receiver) = tokio::sync::mpsc::channel(1);
        let body = Body::from_stream(futures::stream::unfold(receiver, |mut r| async move {
            r.recv().await.map(|chunk| (chunk, r))
        }));
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, length)
            .body(body)
            .unwrap();
        let router = app.router.clone();
        let answer =
            tokio::spawn(async move { router.oneshot(request).await.unwrap().status().as_u16() });
        Self { chunks, answer }
    }

    /// Sends `bytes`, then waits until the server has read and counted them.
    async fn feed(&self, bytes: Vec<u8>) {
        self.chunks.send(Ok(bytes.into())).await.unwrap();
        // The channel holds one chunk. A first empty chunk fits as soon as the server has taken
        // `bytes` from the channel, which may be before it counted them against the budget; a
        // second fits only once the server has taken the first, which it asks for after
        // counting `bytes`. (With one, a loaded machine let the third request in before the
        // second was counted: it waited for its missing bytes and timed out, 408.)
        for _ in 0..2 {
            let _ = self.chunks.send(Ok(axum::body::Bytes::new())).await;
        }
    }
}

api_test!(
    async fn request_bodies_beyond_the_memory_budget_are_refused_while_the_others_go_on(app, |c| {
        c.body_limit_bytes = 1024 * 1024;
        c.upload_limit_bytes = 1024 * 1024;
        c.body_memory_bytes = 2 * 1024 * 1024;
    }) {
        // A sign-up body of 900 KB: a JSON object whose name is too long.
        let body = |filler: &str| {
            format!(r#"{{"email":"a@example.com","password":"Secret123","name":"{}"}}"#, filler.repeat(900_000))
                .into_bytes()
        };
        let full = body("x");
        let (head, tail) = full.split_at(full.len() - 10);
        // Two bodies of 900 KB are held at once, each short of its last bytes.
        let first = Streamed::start(&app, "/api/v1/users", full.len());
        first.feed(head.to_vec()).await;
        let second = Streamed::start(&app, "/api/v1/users", full.len());
        second.feed(head.to_vec()).await;
        // A third does not fit in 2 MiB: 503 at once, while the others are still arriving.
        let third = Streamed::start(&app, "/api/v1/users", full.len());
        third.chunks.send(Ok(head.to_vec().into())).await.unwrap();
        assert_eq!(third.answer.await.unwrap(), 503);
        // The first two complete and are answered on their merits (a name that long is a 400).
        first.feed(tail.to_vec()).await;
        drop(first.chunks);
        assert_eq!(first.answer.await.unwrap(), 400);
        second.feed(tail.to_vec()).await;
        drop(second.chunks);
        assert_eq!(second.answer.await.unwrap(), 400);
        // Their bytes went back to the budget: two more fit again.
        for _ in 0..2 {
            let again = Streamed::start(&app, "/api/v1/users", full.len());
            again.feed(full.clone()).await;
            drop(again.chunks);
            assert_eq!(again.answer.await.unwrap(), 400);
        }
        let r = app
            .post("/api/v1/users", None, json!({"email": "ok@example.com", "password": "Secret123"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
);

api_test!(
    async fn a_request_target_longer_than_the_head_limit_is_a_414(app) {
        let long = format!("/api/v1/products?search={}", "a".repeat(20_000));
        let r = app.get(&long, None).await;
        r.assert_error(414, "URITooLong", "Request URI is too long");
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(app.get("/api/v1/products?search=mug", None).await.status, 200);
    }
);

api_test!(
    async fn a_png_bomb_is_refused_from_its_header_without_being_decoded(app) {
        let user = app.viewer("bomber@example.com").await;
        let decoding = || app.state.app.uploads().image_decoding().stats();
        for _ in 0..4 {
            upload(&app, &user, &png_bomb()).await.assert_error(
                413,
                "PayloadTooLarge",
                "The image is 11500×11500 pixels (132.3 megapixels); at most 40.0 megapixels are accepted",
            );
        }
        assert_eq!(decoding().started, 0, "a bomb reached the decoder");
        let normal = upload(&app, &user, &png(64, 48)).await;
        assert_eq!(normal.status, 201, "{}", normal.text);
        assert_eq!((normal.body["width"].as_u64(), normal.body["height"].as_u64()), (Some(64), Some(48)));
        assert_eq!(decoding().started, 1);
    }
);

api_test!(
    async fn concurrent_uploads_never_decode_more_images_at_once_than_the_bound(app, |c| {
        c.upload_decode_concurrency = 2;
        c.upload_decode_wait = Duration::from_secs(60);
    }) {
        let user = app.viewer("busy@example.com").await;
        let image = png(700, 700);
        let uploads = (0..8).map(|_| upload(&app, &user, &image));
        for response in futures::future::join_all(uploads).await {
            assert_eq!(response.status, 201, "{}", response.text);
        }
        let stats = app.state.app.uploads().image_decoding().stats();
        assert_eq!(stats.started, 8);
        assert!(stats.peak <= 2, "{} images were decoded at once", stats.peak);
        assert_eq!(stats.active, 0);
        let normal = upload(&app, &user, &png(10, 10)).await;
        assert_eq!(normal.status, 201, "{}", normal.text);
    }
);

api_test!(
    async fn with_every_decoding_slot_taken_an_upload_gets_a_503_with_retry_after(app, |c| {
        c.upload_decode_concurrency = 1;
        c.upload_decode_wait = Duration::ZERO;
    }) {
        let user = app.viewer("patient@example.com").await;
        // The only slot is taken, as by a long decode.
        let held = app.state.app.uploads().image_decoding().slot().await.unwrap();
        let busy = upload(&app, &user, &png(32, 32)).await;
        busy.assert_error(503, "ServiceUnavailable", "Too many images are being processed; try again shortly");
        assert_eq!(busy.header("retry-after"), Some("2"));
        assert_eq!(app.state.app.uploads().image_decoding().stats().started, 0);
        drop(held);
        let normal = upload(&app, &user, &png(32, 32)).await;
        assert_eq!(normal.status, 201, "{}", normal.text);
    }
);

// ---------------------------------------------------------------------------------------------
// The client address behind proxies.

/// A request as it reaches inkcart from `peer`.
fn from_peer(mut request: Request<Body>, peer: &str) -> Request<Body> {
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

fn login_request(email: &str, password: &str, forwarded_for: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", forwarded_for)
        .body(Body::from(
            json!({"email": email, "password": password}).to_string(),
        ))
        .unwrap()
}

api_test!(
    async fn a_forged_first_forwarded_hop_does_not_change_the_address_the_login_throttle_sees(app, |c| {
        c.trust_proxy = true;
        c.login_max_failures = 2;
    }) {
        app.sign_up("victim@example.com", None).await;
        // Behind one proxy (127.0.0.1) that appends the real client, 203.0.113.7, the client
        // forges a different first hop on every attempt.
        for i in 1..=2 {
            let forged = format!("198.51.100.{i}, 203.0.113.7");
            let r = app
                .send(from_peer(login_request("victim@example.com", "wrong-password", &forged), "127.0.0.1"))
                .await;
            assert_eq!(r.status, 401, "{}", r.text);
        }
        let third = app
            .send(from_peer(
                login_request("victim@example.com", crate::support::PASSWORD, "198.51.100.3, 203.0.113.7"),
                "127.0.0.1",
            ))
            .await;
        assert_eq!(third.status, 429, "the throttle saw a new address: {}", third.text);
        // Another client behind the same proxy is not blocked.
        let other = app
            .send(from_peer(
                login_request("victim@example.com", crate::support::PASSWORD, "203.0.113.8"),
                "127.0.0.1",
            ))
            .await;
        assert_eq!(other.status, 200, "{}", other.text);
    }
);

// ---------------------------------------------------------------------------------------------
// Response headers.

api_test!(
    async fn responses_that_carry_tokens_or_personal_data_are_marked_no_store(app) {
        let signed_up = app
            .post("/api/v1/users", None, json!({"email": "private@example.com", "password": crate::support::PASSWORD}))
            .await;
        assert_eq!(signed_up.status, 201);
        assert_eq!(signed_up.header("cache-control"), Some("no-store"));
        let login = app
            .post("/api/v1/auth/login", None, json!({"email": "private@example.com", "password": crate::support::PASSWORD}))
            .await;
        assert_eq!(login.status, 200);
        assert_eq!(login.header("cache-control"), Some("no-store"));
        let token = login.body["token"].as_str().unwrap().to_owned();
        let id = login.body["user"]["id"].as_str().unwrap().to_owned();
        for path in [
            "/api/v1/profile".to_owned(),
            format!("/api/v1/users/{id}"),
            format!("/api/v2/users/{id}"),
            "/api/v1/orders".to_owned(),
        ] {
            let r = app.get(&path, Some(&token)).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text);
            assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        }
        let refreshed = app
            .post("/api/v1/auth/refresh", None, json!({"refreshToken": login.body["refreshToken"]}))
            .await;
        assert_eq!(refreshed.header("cache-control"), Some("no-store"), "{}", refreshed.text);
        let graphql = app
            .post("/graphql", Some(&token), json!({"query": "{ users { id } }"}))
            .await;
        assert_eq!(graphql.status, 200, "{}", graphql.text);
        assert_eq!(graphql.header("cache-control"), Some("no-store"));
        // Errors on those routes too.
        let denied = app.get("/api/v1/profile", Some("not-a-token")).await;
        assert_eq!(denied.status, 401);
        assert_eq!(denied.header("cache-control"), Some("no-store"));
        // Public data keeps its own caching.
        let posts = app.get("/api/v1/posts", None).await;
        assert_eq!(posts.status, 200);
        assert_eq!(posts.header("cache-control"), None);
    }
);

api_test!(
    async fn behind_a_tls_proxy_plain_http_requests_are_redirected_to_https_but_health_checks_are_not(app, |c| {
        c.trust_proxy = true;
        c.https_redirect = true;
        c.public_url = "https://shop.example.com".to_owned();
    }) {
        let request = |path: &str, proto: &str| {
            from_peer(
                Request::builder()
                    .uri(path)
                    .header(header::HOST, "internal:3000")
                    .header("x-forwarded-proto", proto)
                    .body(Body::empty())
                    .unwrap(),
                "127.0.0.1",
            )
        };
        let plain = app.send(request("/api/v1/posts?limit=5", "http")).await;
        assert_eq!(plain.status, 308);
        assert_eq!(plain.header("location"), Some("https://shop.example.com/api/v1/posts?limit=5"));
        let health = app.send(request("/health/live", "http")).await;
        assert_eq!(health.status, 200);
        let ready = app.send(request("/health/ready", "http")).await;
        assert_eq!(ready.status, 200);
        let secure = app.send(request("/api/v1/posts?limit=5", "https")).await;
        assert_eq!(secure.status, 200, "{}", secure.text);
    }
);

api_test!(
    async fn a_forwarded_scheme_from_an_untrusted_peer_is_ignored(app, |c| {
        c.trust_proxy = true;
        c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        c.https_redirect = true;
    }) {
        let request = |peer: &str| {
            from_peer(
                Request::builder()
                    .uri("/api/v1/posts")
                    .header(header::HOST, "shop.example.com:8080")
                    .header("x-forwarded-proto", "http")
                    .body(Body::empty())
                    .unwrap(),
                peer,
            )
        };
        let untrusted = app.send(request("192.0.2.1")).await;
        assert_eq!(untrusted.status, 200, "{}", untrusted.text);
        // From a listed proxy, and without an https public URL: the request's host, port 443.
        let trusted = app.send(request("10.1.2.3")).await;
        assert_eq!(trusted.status, 308);
        assert_eq!(trusted.header("location"), Some("https://shop.example.com/api/v1/posts"));
    }
);

// ---------------------------------------------------------------------------------------------
// A PostgreSQL outage.

/// How the proxy in front of PostgreSQL behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    /// Connections are refused, as by a stopped server.
    Refused,
    /// Connections are accepted and never answered, as across a network partition.
    Silent,
}

/// A TCP proxy in front of PostgreSQL that the test can cut and restore, leaving the server
/// itself (shared with other tests) alone. Cutting it also drops the connections it carries.
struct CuttableProxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
    applied: watch::Receiver<Link>,
    /// Each carried connection holds a permit: all back means none is left.
    pipes: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

const MAX_PIPES: u32 = 1024;

impl CuttableProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (link, link_rx) = watch::channel(Link::Up);
        let (applied_tx, applied) = watch::channel(Link::Up);
        let pipes = Arc::new(Semaphore::new(MAX_PIPES as usize));
        let task = tokio::spawn(Self::run(
            listener,
            upstream,
            link_rx,
            applied_tx,
            Arc::clone(&pipes),
        ));
        Self {
            addr,
            link,
            applied,
            pipes,
            task,
        }
    }

    async fn run(
        mut listener: TcpListener,
        upstream: SocketAddr,
        mut link: watch::Receiver<Link>,
        applied: watch::Sender<Link>,
        pipes: Arc<Semaphore>,
    ) {
        let addr = listener.local_addr().unwrap();
        let mut silent = Vec::new();
        loop {
            let mode = *link.borrow_and_update();
            if mode == Link::Refused {
                // No listener, no connection: the port refuses until it is bound again.
                drop(listener);
                silent.clear();
                applied.send_replace(mode);
                let _ = link.wait_for(|l| *l != Link::Refused).await;
                listener = TcpListener::bind(addr).await.unwrap();
                continue;
            }
            if mode == Link::Up {
                silent.clear();
            }
            applied.send_replace(mode);
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut client, _)) = accepted else { return };
                    if mode == Link::Silent {
                        silent.push(client);
                        continue;
                    }
                    let Ok(permit) = Arc::clone(&pipes).acquire_owned().await else { return };
                    let mut cut = link.clone();
                    tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut.wait_for(|l| *l != Link::Up) => {}
                            }
                        }
                        drop(permit);
                    });
                }
                _ = link.changed() => {}
            }
        }
    }

    /// Switches the link and waits until the proxy behaves so (cut: no connection left).
    async fn set(&mut self, link: Link) {
        self.link.send_replace(link);
        self.applied.wait_for(|l| *l == link).await.unwrap();
        if link != Link::Up {
            drop(self.pipes.acquire_many(MAX_PIPES).await.unwrap());
        }
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` with its host and port replaced by `addr`, and the address it named.
async fn through(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let (userinfo, host_port) = authority
        .rsplit_once('@')
        .map_or(("", authority), |(u, h)| (u, h));
    let upstream = tokio::net::lookup_host(host_port)
        .await
        .unwrap()
        .next()
        .unwrap();
    let userinfo = if userinfo.is_empty() {
        String::new()
    } else {
        format!("{userinfo}@")
    };
    (format!("{scheme}://{userinfo}{addr}/{path}"), upstream)
}

/// What a test behind the proxy holds: the test database and the data dir live as long as it.
type BehindProxy = (
    CuttableProxy,
    axum::Router,
    inkcart_store::testing::TestDb,
    tempfile::TempDir,
);

/// The app on a PostgreSQL test database reached through a [`CuttableProxy`], with its read
/// caches off so that every read reaches the database.
async fn app_behind_proxy() -> Option<BehindProxy> {
    let db = inkcart_store::testing::postgres().await?;
    // The database's own URL tells where PostgreSQL is; the app reaches it through the proxy.
    let placeholder: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (_, upstream) = through(&db.url(), placeholder).await;
    let proxy = CuttableProxy::start(upstream).await;
    let (url, _) = through(&db.url(), proxy.addr).await;
    let data_dir = tempfile::tempdir().unwrap();
    let config = inkcart::config::Config {
        database_url: Some(url),
        data_dir: data_dir.path().to_path_buf(),
        post_cache_ttl: Duration::ZERO,
        search_cache_ttl: Duration::ZERO,
        ..test_config()
    };
    let app_db = inkcart::open_database(&config).await.unwrap();
    let router = inkcart::router_for(
        &config,
        Arc::new(inkcart::build_app(&config, app_db).unwrap()),
    );
    Some((proxy, router, db, data_dir))
}

/// A GET through the router: status, JSON body (null when not JSON) and how long it took.
async fn get_through(router: &axum::Router, path: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = router
        .clone()
        .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgresql_is_unreachable_requests_fail_fast_and_readiness_says_so_then_recover_at_once()
 {
    let Some((mut proxy, router, _db, _data_dir)) = app_behind_proxy().await else {
        return;
    };
    let get = |path: &'static str| {
        let router = router.clone();
        async move { get_through(&router, path).await }
    };
    assert_eq!(get("/api/v1/posts").await.0, 200);
    assert_eq!(get("/health/ready").await.0, 200);

    // Well under the 10 s every request used to wait (the default acquire timeout is 2 s).
    let bound = Duration::from_secs(8);
    for link in [Link::Refused, Link::Silent] {
        proxy.set(link).await;
        let (status, body, took) = get("/api/v1/posts").await;
        assert_eq!(status, 503, "{link:?}: {body}");
        assert_eq!(body["error"], "ServiceUnavailable");
        assert_eq!(body["message"], "Database unavailable");
        assert_eq!(body["statusCode"], 503);
        assert!(
            took < bound,
            "{link:?}: a request waited {took:?} for the database"
        );
        let (status, body, took) = get("/health/ready").await;
        assert_eq!(status, 503, "{link:?}: {body}");
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["checks"]["database"], "unreachable");
        assert!(took < bound, "{link:?}: readiness took {took:?}");
        // The process itself is fine.
        assert_eq!(get("/health/live").await.0, 200);
    }

    proxy.set(Link::Up).await;
    let (status, body, _) = get("/api/v1/posts").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get("/health/ready").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_postgresql_connection_that_died_while_idle_is_replaced_before_a_request_gets_it()
{
    let Some((mut proxy, router, _db, _data_dir)) = app_behind_proxy().await else {
        return;
    };
    assert_eq!(get_through(&router, "/api/v1/posts").await.0, 200);
    // The connection that served it goes back to the pool; then the link drops it (as a server
    // restart or a proxy's idle cut would) and comes back at once.
    proxy.set(Link::Refused).await;
    proxy.set(Link::Up).await;
    // A connection idle this long is tested before it is lent (store's `PING_IDLE_AFTER`, 1 s):
    // the dead one is found there and a new one opened, so the request never sees it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body, _) = get_through(&router, "/api/v1/posts").await;
    assert_eq!(status, 200, "{body}");
}
