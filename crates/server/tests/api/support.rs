use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use inkcart::config::{Config, Secret};
use inkcart_app::ports::{Clock, SystemClock};
use inkcart_http::AppState;
use inkcart_store::testing::TestDb;
use serde_json::Value;
use tower::ServiceExt as _;

pub const PASSWORD: &str = "Secret123";

/// The real clock plus an offset that a test can move forward.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_secs: std::sync::atomic::AtomicI64,
}

impl TestClock {
    pub fn advance(&self, by: std::time::Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap();
        self.offset_secs
            .fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let offset = self.offset_secs.load(std::sync::atomic::Ordering::SeqCst);
        SystemClock.now() + chrono::Duration::seconds(offset)
    }
}
pub const JWT_SECRET: [u8; 32] = [42; 32];

/// Declares an HTTP test that runs on SQLite and on PostgreSQL, each with a fresh database:
/// `api_test!(async fn name(app) { ... })`.
#[macro_export]
macro_rules! api_test {
    (async fn $name:ident($app:ident) $body:block) => {
        $crate::api_test!(async fn $name($app, |_config| {}) $body);
    };
    (async fn $name:ident($app:ident, $configure:expr) $body:block) => {
        mod $name {
            #[allow(unused_imports, reason = "the test body sees the enclosing module's items")]
            use super::*;

            async fn run($app: $crate::support::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = inkcart_store::testing::sqlite().await;
                run($crate::support::TestApp::new(db, $configure)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = inkcart_store::testing::postgres().await {
                    run($crate::support::TestApp::new(db, $configure)).await;
                }
            }
        }
    };
}

pub fn test_config() -> Config {
    Config {
        jwt_secret: Some(Secret::new(JWT_SECRET.to_vec())),
        // Tests of other features send many requests from one address (and as one user) in a
        // moment, which is what rate limits are there to stop. The rate-limit tests turn them
        // back on (`hardening::auth`).
        rate_limits: None,
        ..Config::default()
    }
}

/// The application under test: the production router over a fresh database.
pub struct TestApp {
    pub router: Router,
    pub db: TestDb,
    /// The data dir (uploads land here with local storage), removed with the app.
    _data_dir: tempfile::TempDir,
    pub state: AppState,
    pub clock: Arc<TestClock>,
}

/// A response, with its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the error envelope of API.md.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error: &str, message: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(self.body["error"], error, "body: {}", self.text);
        assert_eq!(self.body["message"], message, "body: {}", self.text);
        assert_eq!(self.body["statusCode"], status, "body: {}", self.text);
        let code = self.body["code"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "every error has a snake_case code; body: {}",
            self.text
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "errors are JSON"
        );
    }

    /// Asserts the machine-readable `code` of an error envelope.
    #[track_caller]
    pub fn assert_code(&self, code: &str) {
        assert_eq!(self.body["code"], code, "body: {}", self.text);
    }

    /// The fields named in a validation error.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The tokens of a logged-in user.
#[derive(Debug, Clone)]
pub struct Login {
    pub id: String,
    pub token: String,
    pub refresh: String,
}

/// Logs go to the test output only with `TEST_LOG=1`.
fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    std::env::var("INKCART_LOG").unwrap_or_else(|_| "debug,sqlx=info".to_owned()),
                )
                .with_test_writer()
                .try_init();
        }
    });
}

impl TestApp {
    pub fn new(db: TestDb, configure: impl FnOnce(&mut Config)) -> Self {
        Self::with_routes(db, configure, Router::new())
    }

    pub fn with_routes(
        db: TestDb,
        configure: impl FnOnce(&mut Config),
        extra: Router<AppState>,
    ) -> Self {
        Self::with_parts(db, configure, extra, inkcart::Connected::default())
    }

    /// [`TestApp::new`] with adapters connected beforehand (a shared rate limiter, say).
    pub fn with_connected(
        db: TestDb,
        configure: impl FnOnce(&mut Config),
        connected: inkcart::Connected,
    ) -> Self {
        Self::with_parts(db, configure, Router::new(), connected)
    }

    fn with_parts(
        db: TestDb,
        configure: impl FnOnce(&mut Config),
        extra: Router<AppState>,
        connected: inkcart::Connected,
    ) -> Self {
        init_test_logging();
        let data_dir = tempfile::tempdir().expect("data dir");
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            ..test_config()
        };
        configure(&mut config);
        let clock = Arc::new(TestClock::default());
        let app = inkcart::build_app_with(&config, db.db.clone(), clock.clone(), connected)
            .expect("build the app");
        let state = AppState::new(
            Arc::new(app),
            inkcart::http_config(&config),
            &inkcart::graphql_config(&config),
        );
        let router = inkcart_http::router_with(state.clone(), extra);
        Self {
            router,
            db,
            _data_dir: data_dir,
            state,
            clock,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).expect("request")).await
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> TestResponse {
        self.call(Method::GET, uri, token, None).await
    }

    pub async fn post(&self, uri: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.call(Method::POST, uri, token, Some(body)).await
    }

    pub async fn sign_up(&self, email: &str, name: Option<&str>) -> Value {
        let mut body = serde_json::json!({"email": email, "password": PASSWORD});
        if let Some(name) = name {
            body["name"] = name.into();
        }
        let response = self.post("/api/v1/users", None, body).await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "sign-up failed: {}",
            response.text
        );
        response.body
    }

    pub async fn login_as(&self, email: &str, password: &str) -> Login {
        let response = self
            .post(
                "/api/v1/auth/login",
                None,
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "login failed: {}",
            response.text
        );
        Login {
            id: response.body["user"]["id"]
                .as_str()
                .expect("user id")
                .to_owned(),
            token: response.body["token"].as_str().expect("token").to_owned(),
            refresh: response.body["refreshToken"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
        }
    }

    /// Signs up and logs in a viewer.
    pub async fn viewer(&self, email: &str) -> Login {
        self.sign_up(email, None).await;
        self.login_as(email, PASSWORD).await
    }

    /// An admin, made the way an operator makes one (`inkcart create-admin`).
    pub async fn admin(&self) -> Login {
        self.state
            .app
            .identity()
            .ensure_admin("admin@example.com", PASSWORD)
            .await
            .expect("admin");
        self.login_as("admin@example.com", PASSWORD).await
    }

    /// An editor (promoted by the admin through the API).
    pub async fn editor(&self) -> Login {
        self.user_with_role("editor@example.com", "editor").await
    }

    /// A product made by an editor through the API.
    pub async fn product(&self, token: &str, name: &str, price: &str, stock: i64) -> Value {
        let response = self
            .post(
                "/api/v1/products",
                Some(token),
                serde_json::json!({"name": name, "price": price, "stock": stock}),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
        response.body
    }

    /// `n` buyers, written straight to the store (skipping password hashing) with access
    /// tokens of their own: for tests that need many users at once.
    pub async fn quick_buyers(&self, n: usize) -> Vec<Login> {
        use inkcart_app::ports::{Store as _, TokenIssuer as _, UserRepo as _};
        let store = inkcart_store::SqlStore::new(self.db.db.clone());
        let issuer = inkcart_adapters::tokens::JwtIssuer::new(&JWT_SECRET);
        let mut logins = Vec::with_capacity(n);
        let mut tx = store.begin().await.expect("tx");
        for i in 0..n {
            let now = SystemClock.now();
            let user = inkcart_domain::User {
                id: inkcart_domain::UserId::from_uuid(uuid::Uuid::now_v7()),
                email: inkcart_domain::Email::parse(&format!("buyer{i}@example.com"))
                    .expect("email"),
                name: None,
                role: inkcart_domain::Role::Viewer,
                tier: inkcart_domain::Tier::Guest,
                email_verified: false,
                created_at: now,
                updated_at: now,
            };
            store
                .insert(tx.as_mut(), &user, "not-a-usable-hash")
                .await
                .expect("insert buyer");
            let token = issuer
                .issue(&user, now, std::time::Duration::from_secs(900))
                .expect("token");
            logins.push(Login {
                id: user.id.to_string(),
                token: token.token,
                refresh: String::new(),
            });
        }
        tx.commit().await.expect("commit");
        logins
    }

    /// A user with `role`, promoted by the admin through the API.
    pub async fn user_with_role(&self, email: &str, role: &str) -> Login {
        let user = self.viewer(email).await;
        let admin = self.admin().await;
        let response = self
            .call(
                Method::PATCH,
                &format!("/api/v1/users/{}", user.id),
                Some(&admin.token),
                Some(serde_json::json!({"role": role})),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        // A new token carries the new role.
        self.login_as(email, PASSWORD).await
    }
}

/// A mail as received: recipient, subject and plain-text body.
#[derive(Debug, Clone)]
pub struct SentMail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Reads the `.eml` files of a directory, oldest first.
pub fn read_mail(dir: &std::path::Path) -> Vec<SentMail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<std::path::PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).expect("read mail");
            let message = mail_parser::MessageParser::default()
                .parse(&bytes)
                .expect("parse mail");
            let to = message
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .unwrap_or_default()
                .to_owned();
            SentMail {
                to,
                subject: message.subject().unwrap_or_default().to_owned(),
                text: message.body_text(0).unwrap_or_default().into_owned(),
            }
        })
        .collect()
}

/// The token in a link of a mail's text (`…?token=<token>`).
pub fn link_token(mail: &SentMail, path: &str) -> String {
    let start = mail
        .text
        .find(&format!("{path}?token="))
        .expect("a link in the mail")
        + path.len()
        + 7;
    mail.text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

impl TestApp {
    /// Runs the background work to the end, the way the worker does: events to jobs, then every
    /// due job. Panics when a job fails (a test that expects failures uses `drain_with_failures`).
    pub async fn drain(&self) {
        let failures = self.drain_with_failures().await;
        assert!(failures.is_empty(), "jobs failed: {failures:?}");
    }

    /// [`TestApp::drain`], returning the errors of the jobs that failed.
    pub async fn drain_with_failures(&self) -> Vec<String> {
        let jobs = self.state.app.background();
        let mut failures = Vec::new();
        loop {
            let dispatched = jobs.dispatch_events(1000).await.expect("dispatch");
            let due = jobs.claim_jobs("test-worker", 100).await.expect("claim");
            if dispatched == 0 && due.is_empty() {
                return failures;
            }
            for job in due {
                match jobs.run_job(&job).await {
                    Ok(()) => jobs.finish_job(&job, "test-worker").await.expect("finish"),
                    Err(e) => {
                        failures.push(format!("{}: {e}", job.kind));
                        jobs.fail_job(&job, "test-worker", &e.to_string())
                            .await
                            .expect("fail");
                    }
                }
            }
        }
    }

    /// The mail written to the data dir (no SMTP configured), oldest first.
    pub fn mail(&self) -> Vec<SentMail> {
        read_mail(&self._data_dir.path().join("mail"))
    }

    /// The data dir of this app.
    pub fn data_path(&self) -> &std::path::Path {
        self._data_dir.path()
    }
}

/// A real SMTP server (aiosmtpd, from PyPI) for the length of a test.
pub struct SmtpSink {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_required() -> bool {
    std::env::var("INKCART_REQUIRE_SMTP").is_ok_and(|v| v == "1" || v == "true")
}

/// A free local port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpSink {
    /// Starts the sink on `port`; `None` (after a message) when aiosmtpd is not installed.
    pub async fn start_on(port: u16) -> Option<Self> {
        use std::process::{Command, Stdio};
        let available = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            assert!(
                !smtp_required(),
                "INKCART_REQUIRE_SMTP=1 but aiosmtpd is not installed (pip install aiosmtpd)"
            );
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** aiosmtpd not installed: skipping an SMTP test (pip install aiosmtpd) ***\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("mail dir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/smtp_sink.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the SMTP sink");
        let sink = Self { child, dir };
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the SMTP sink did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Some(sink)
    }

    pub fn received(&self) -> Vec<SentMail> {
        read_mail(self.dir.path())
    }

    /// SMTP settings that reach this sink.
    pub fn settings(port: u16) -> inkcart_adapters::mail::SmtpSettings {
        inkcart_adapters::mail::SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port,
            tls: inkcart_adapters::mail::SmtpTls::None,
            username: None,
            password: None,
        }
    }
}
