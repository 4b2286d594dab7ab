//! Malformed requests of every kind get the error envelope, never a bare status or a 500.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use axum::routing::get;
use inkcart_http::AppState;
use serde_json::json;

use crate::api_test;
use crate::support::TestApp;

fn raw(
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder.body(body.into()).unwrap()
}

api_test!(
    async fn an_unknown_route_is_a_404_envelope(app) {
        app.get("/api/v1/nothing-here", None)
            .await
            .assert_error(404, "NotFound", "Route not found");
        let root = app.get("/", None).await;
        root.assert_error(404, "NotFound", "Route not found");
        root.assert_code("not_found");
    }
);

api_test!(
    async fn a_wrong_method_is_a_405_envelope_with_allow(app) {
        let r = app.call(Method::DELETE, "/api/v1/auth/login", None, None).await;
        r.assert_error(405, "MethodNotAllowed", "Method not allowed");
        assert_eq!(r.header("allow"), Some("POST"));
    }
);

api_test!(
    async fn malformed_json_is_a_400_envelope(app) {
        for body in ["{\"email\": ", "not json", "{\"email\":\"a@b.io\",}", "", "{} {}"] {
            let r = app
                .send(raw(Method::POST, "/api/v1/users", Some("application/json"), body))
                .await;
            assert_eq!(r.status, 400, "{body:?}: {}", r.text);
            assert_eq!(r.body["error"], "BadRequest", "{body:?}");
            assert_eq!(r.body["code"], "malformed_body", "{body:?}");
            assert!(r.body["message"].as_str().unwrap().starts_with("Malformed JSON"));
        }
    }
);

api_test!(
    async fn a_json_endpoint_without_a_json_content_type_is_a_415_envelope(app) {
        let body = json!({"email": "a@b.io", "password": "Secret123"}).to_string();
        for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            let r = app.send(raw(Method::POST, "/api/v1/users", ct, body.clone())).await;
            r.assert_error(
                415,
                "UnsupportedMediaType",
                "Expected a request body with Content-Type: application/json",
            );
        }
        let r = app
            .send(raw(Method::POST, "/api/v1/users", Some("application/json; charset=utf-8"), body))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
);

api_test!(
    async fn a_body_over_the_limit_is_a_413_envelope_and_writes_nothing(app, |c| c.body_limit_bytes = 256) {
        let body = json!({"email": "big@b.io", "password": "Secret123", "name": "x".repeat(300)}).to_string();
        let r = app.send(raw(Method::POST, "/api/v1/users", Some("application/json"), body)).await;
        r.assert_error(413, "PayloadTooLarge", "Request body is too large");
        let login = app
            .post("/api/v1/auth/login", None, json!({"email": "big@b.io", "password": "Secret123"}))
            .await;
        assert_eq!(login.status, 401);
    }
);

api_test!(
    async fn every_response_carries_a_request_id_and_echoes_the_clients(app) {
        let generated = app.get("/health/live", None).await;
        let id = generated.header("x-request-id").unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let echoed = app
            .send(
                Request::builder()
                    .uri("/api/v1/nothing")
                    .header("x-request-id", "client-chosen-42")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(echoed.header("x-request-id"), Some("client-chosen-42"));
    }
);

api_test!(
    async fn responses_carry_the_security_headers(app) {
        for r in [app.get("/health/live", None).await, app.get("/missing", None).await] {
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(r.header("x-frame-options"), Some("DENY"));
            assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
            assert!(r.header("content-security-policy").unwrap().contains("default-src 'none'"));
            assert_eq!(r.header("strict-transport-security"), None);
        }
    }
);

api_test!(
    async fn hsts_is_sent_when_configured(app, |c| c.hsts = true) {
        let r = app.get("/health/live", None).await;
        assert_eq!(r.header("strict-transport-security"), Some("max-age=31536000; includeSubDomains"));
    }
);

api_test!(
    async fn cors_allows_only_the_configured_origins(app, |c| c.cors_origins = vec!["https://app.example.com".into()]) {
        let preflight = |origin: &str| {
            Request::builder()
                .method(Method::OPTIONS)
                .uri("/api/v1/users")
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type,authorization")
                .body(Body::empty())
                .unwrap()
        };
        let allowed = app.send(preflight("https://app.example.com")).await;
        assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example.com"));
        assert!(allowed.header("access-control-allow-methods").unwrap().contains("POST"));
        let refused = app.send(preflight("https://evil.example.com")).await;
        assert_eq!(refused.header("access-control-allow-origin"), None);
    }
);

api_test!(
    async fn without_configured_origins_no_cors_headers_are_sent(app) {
        let r = app
            .send(
                Request::builder()
                    .uri("/health/live")
                    .header("origin", "https://app.example.com")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.header("access-control-allow-origin"), None);
    }
);

api_test!(
    async fn a_database_outage_is_a_503_not_a_500(app) {
        app.db.db.clone().close().await;
        let r = app
            .post("/api/v1/auth/login", None, json!({"email": "a@b.io", "password": "Secret123"}))
            .await;
        r.assert_error(503, "ServiceUnavailable", "Database unavailable");
    }
);

/// Fails the way a bug does, with a detail that must not reach the client.
fn failing_lookup() -> &'static str {
    panic!("boom: db password is hunter2")
}

fn misbehaving_routes() -> Router<AppState> {
    Router::new()
        .route("/test/panic", get(|| async { failing_lookup() }))
        .route(
            "/test/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                "late"
            }),
        )
}

async fn with_misbehaving_routes(configure: impl Fn(&mut inkcart::config::Config)) -> Vec<TestApp> {
    let mut apps = Vec::new();
    apps.push(TestApp::with_routes(
        inkcart_store::testing::sqlite().await,
        &configure,
        misbehaving_routes(),
    ));
    if let Some(db) = inkcart_store::testing::postgres().await {
        apps.push(TestApp::with_routes(db, &configure, misbehaving_routes()));
    }
    apps
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_envelope_that_hides_the_cause() {
    for app in with_misbehaving_routes(|_: &mut inkcart::config::Config| {}).await {
        let r = app.get("/test/panic", None).await;
        r.assert_error(500, "InternalServerError", "Internal server error");
        assert!(!r.text.contains("hunter2"));
        assert!(r.header("x-request-id").is_some());
        // The server keeps serving.
        assert_eq!(app.get("/health/live", None).await.status, 200);
    }
}

#[tokio::test]
async fn a_request_over_the_timeout_is_a_503_envelope() {
    let app = TestApp::with_routes(
        inkcart_store::testing::sqlite().await,
        |c| c.request_timeout = std::time::Duration::from_millis(200),
        misbehaving_routes(),
    );
    let r = app.get("/test/slow", None).await;
    r.assert_error(503, "ServiceUnavailable", "Request timed out");
}
