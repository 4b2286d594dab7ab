//! The layers every response passes through: request ids, logging, security headers, CORS,
//! timeouts, panics, and the error envelope for errors produced outside our handlers.

use std::any::Any;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, Response, StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::RequestId;
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;

use crate::error::{ApiError, ErrorCause, INTERNAL_MESSAGE};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The headers helmet() sets by default, adapted to a JSON API: nothing may be framed, sniffed,
/// or loaded from elsewhere. Pages that need more (the docs UI) set their own CSP.
pub fn security_headers(hsts: bool) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("origin-agent-cluster"),
            HeaderValue::from_static("?1"),
        ),
        (
            HeaderName::from_static("x-dns-prefetch-control"),
            HeaderValue::from_static("off"),
        ),
        (
            HeaderName::from_static("x-permitted-cross-domain-policies"),
            HeaderValue::from_static("none"),
        ),
        (header::X_XSS_PROTECTION, HeaderValue::from_static("0")),
    ];
    if hsts {
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    headers
}

/// CORS for the configured origins; `*` allows any origin (without credentials). No origins →
/// no CORS headers at all (same-origin only).
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
                X_REQUEST_ID.clone(),
            ])
            .expose_headers([
                X_REQUEST_ID.clone(),
                header::RETRY_AFTER,
                header::ETAG,
                header::LOCATION,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// A span per request carrying its id, so that every log line inside names the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            path = %request.uri().path(),
        )
    }
}

/// One line per response; 5xx lines carry the hidden cause.
#[derive(Debug, Clone, Copy)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        if response.status().is_server_error() {
            let cause = response
                .extensions()
                .get::<ErrorCause>()
                .map_or("-", |c| &c.0);
            tracing::error!(status, latency_ms, cause, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request finished");
        }
    }
}

/// Answers a panic in a handler with a 500 envelope; the panic message goes to the log.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("panic with a non-string payload");
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}

/// Ends a request that runs longer than the configured timeout with a 503 envelope.
pub async fn timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response<Body> {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Request timed out").into_response()
        }
    }
}

/// Error responses made outside our handlers (by axum's routing or a tower layer) come without
/// a JSON body; give them the envelope, keeping their status and headers.
pub async fn envelope_errors(request: Request, next: Next) -> Response<Body> {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let message = match status {
        StatusCode::NOT_FOUND => "Route not found",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "Request body is too large",
        StatusCode::REQUEST_TIMEOUT => "Request timed out",
        s if s.is_server_error() => INTERNAL_MESSAGE,
        s => s.canonical_reason().unwrap_or("Request failed"),
    };
    let (parts, _) = response.into_parts();
    let mut rebuilt = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().append(name.clone(), value.clone());
        }
    }
    rebuilt.extensions_mut().extend(parts.extensions);
    rebuilt
}
