//! The layers every response passes through: request ids, logging, security headers, CORS,
//! timeouts, panics, and the error envelope for errors produced outside our handlers.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody as _};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use http_body_util::BodyExt as _;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::{DeadlineBody, TimeoutError};
use tracing::Instrument as _;

use crate::HttpConfig;
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

/// Adds each header the response does not set itself.
pub fn add_headers(headers: &mut HeaderMap, defaults: &[(HeaderName, HeaderValue)]) {
    headers.reserve(defaults.len());
    for (name, value) in defaults {
        headers.entry(name.clone()).or_insert_with(|| value.clone());
    }
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
                crate::ratelimit::RATELIMIT_LIMIT.clone(),
                crate::ratelimit::RATELIMIT_REMAINING.clone(),
                crate::ratelimit::RATELIMIT_RESET.clone(),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// One log line per response, carrying the request id, method, path, status and latency; 5xx
/// lines carry the hidden cause. What handlers log runs in a `request` span with the same
/// fields, at debug level: a span per request costs more than the rest of a cached read, so it
/// is there when asked for (`INKCART_LOG=debug`) and free otherwise.
pub async fn access_log(request: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let request_id = request.headers().get(&X_REQUEST_ID).cloned();
    let request_id = request_id
        .as_ref()
        .and_then(|id| id.to_str().ok())
        .unwrap_or("-");
    let span = tracing::debug_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %uri.path(),
    );
    let response = next.run(request).instrument(span).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (method, path) = (method.as_str(), uri.path());
    if response.status().is_server_error() {
        let cause = response
            .extensions()
            .get::<ErrorCause>()
            .map_or("-", |c| &c.0);
        tracing::error!(
            request_id,
            method,
            path,
            status,
            latency_ms,
            cause,
            "request failed"
        );
    } else {
        tracing::info!(
            request_id,
            method,
            path,
            status,
            latency_ms,
            "request finished"
        );
    }
    response
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
pub fn envelope_errors(response: Response<Body>) -> Response<Body> {
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

/// The state of [`edge`]: the configuration and the budget of request bodies held in memory.
#[derive(Debug, Clone)]
pub struct Edge {
    pub config: Arc<HttpConfig>,
    pub bodies: Arc<BodyBudget>,
}

impl Edge {
    pub fn new(config: Arc<HttpConfig>) -> Self {
        let bodies = Arc::new(BodyBudget::new(config.body_memory_bytes));
        Self { config, bodies }
    }
}

/// What every request passes before routing: plain-http requests behind a TLS-terminating proxy
/// are redirected; an oversized request target (414) or head (431) or a declared body over the
/// limit (413) is answered at once, without reading the body; the body must then arrive within
/// the body-read timeout (408), and fit, with every other body being received or held, in the
/// body memory budget (503). Responses that may carry tokens or personal data are marked
/// `no-store`.
pub async fn edge(State(edge): State<Edge>, request: Request, next: Next) -> Response<Body> {
    let config = &edge.config;
    if let Some(redirect) = https_redirect(config, &request) {
        return redirect;
    }
    if request
        .uri()
        .path_and_query()
        .is_some_and(|target| target.as_str().len() > config.max_header_bytes)
    {
        return closing(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "Request URI is too long",
        ));
    }
    if head_size(&request) > config.max_header_bytes {
        return closing(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request headers are too large",
        ));
    }
    let limit = if request.uri().path() == crate::routes::uploads::UPLOADS_PATH {
        config.upload_limit
    } else {
        config.body_limit
    };
    if declared_length(request.headers()).is_some_and(|len| len > limit as u64) {
        return closing(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body is too large",
        ));
    }
    let no_store = no_store(&request);
    let (request, timed_out) = with_body_deadline(request, config.body_read_timeout);
    let (request, held) = BodyBudget::hold(&edge.bodies, request);
    let mut response = next.run(request).await;
    if timed_out.is_some_and(|flag| flag.load(Ordering::Acquire)) {
        // Whatever the handler made of the failed read, the client was too slow.
        response = closing(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "Request body was not received in time",
        ));
    } else if held.as_ref().is_some_and(Held::refused) {
        response = closing(ApiError::busy(
            "The server is receiving too many request bodies at once; try again shortly",
            1,
        ));
    }
    // The body the handler read is gone with it: its bytes return to the budget.
    drop(held);
    match no_store {
        NoStore::Always => {
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        NoStore::Unless => {
            response
                .headers_mut()
                .entry(header::CACHE_CONTROL)
                .or_insert_with(|| HeaderValue::from_static("no-store"));
        }
        NoStore::No => {}
    }
    response
}

/// An error answered before the body was read: the connection closes after it, so that the
/// client does not send a body nobody reads.
fn closing(error: ApiError) -> Response<Body> {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The size of the request head as sent: request line and header lines.
fn head_size(request: &Request) -> usize {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    request.method().as_str().len() + target + " HTTP/1.1\r\n".len() + headers + 2
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Bytes of request bodies that may be in memory at once, across all requests: what a body
/// brings in is counted as it arrives and given back when its request is answered (or
/// abandoned). A body that does not fit is cut off, and its request answered 503, so that many
/// large bodies at once (uploads, JSON) cannot take the process's memory.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes counted now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Counts `request`'s body against the budget; the returned [`Held`] gives the bytes back
    /// when dropped.
    fn hold(budget: &Arc<Self>, request: Request) -> (Request, Option<Held>) {
        if request.body().is_end_stream() {
            return (request, None);
        }
        let held = Held {
            budget: Arc::clone(budget),
            counted: Arc::new(Counted::default()),
        };
        let counted = Arc::clone(&held.counted);
        let budget = Arc::clone(budget);
        let request = request.map(|body| {
            Body::new(Budgeted {
                inner: body,
                budget,
                counted,
            })
        });
        (request, Some(held))
    }
}

#[derive(Debug, Default)]
struct Counted {
    bytes: AtomicUsize,
    refused: AtomicBool,
}

/// One request's share of the [`BodyBudget`].
#[derive(Debug)]
struct Held {
    budget: Arc<BodyBudget>,
    counted: Arc<Counted>,
}

impl Held {
    fn refused(&self) -> bool {
        self.counted.refused.load(Ordering::Acquire)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget
            .give_back(self.counted.bytes.swap(0, Ordering::AcqRel));
    }
}

/// The error of a body cut off by the budget.
#[derive(Debug)]
struct OverBudget;

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request bodies over the memory budget")
    }
}

impl std::error::Error for OverBudget {}

/// A request body whose data frames are counted against the budget as they arrive.
struct Budgeted {
    inner: Body,
    budget: Arc<BodyBudget>,
    counted: Arc<Counted>,
}

impl axum::body::HttpBody for Budgeted {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame
            .as_ref()
            .map(|f| f.as_ref().map(http_body::Frame::data_ref))
            && let Some(data) = data
        {
            let bytes = data.len();
            if !self.budget.take(bytes) {
                self.counted.refused.store(true, Ordering::Release);
                return std::task::Poll::Ready(Some(Err(OverBudget.into())));
            }
            self.counted.bytes.fetch_add(bytes, Ordering::AcqRel);
        }
        std::task::Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps a request body in a deadline counted from now; the flag tells whether it expired.
fn with_body_deadline(request: Request, timeout: Duration) -> (Request, Option<Arc<AtomicBool>>) {
    if request.body().is_end_stream() {
        return (request, None);
    }
    let flag = Arc::new(AtomicBool::new(false));
    let expired = Arc::clone(&flag);
    let request = request.map(|body| {
        Body::new(DeadlineBody::new(timeout, body).map_err(move |err| {
            if err.is::<TimeoutError>() {
                expired.store(true, Ordering::Release);
            }
            err
        }))
    });
    (request, Some(flag))
}

enum NoStore {
    /// Tokens or personal data whatever the handler says.
    Always,
    /// Signed-in requests: unless the handler set its own `Cache-Control` (public data).
    Unless,
    No,
}

fn no_store(request: &Request) -> NoStore {
    let path = request.uri().path();
    let personal = path.starts_with("/api/v1/auth/")
        || path == "/api/v1/profile"
        || path == "/api/v1/users"
        || path.starts_with("/api/v1/users/")
        || path.starts_with("/api/v2/users/")
        || path == "/graphql";
    if personal {
        NoStore::Always
    } else if request.headers().contains_key(header::AUTHORIZATION) {
        NoStore::Unless
    } else {
        NoStore::No
    }
}

/// A permanent redirect to https for a request that a trusted proxy received over plain http.
/// Health checks are left alone (load balancers probe them over http).
fn https_redirect(config: &HttpConfig, request: &Request) -> Option<Response<Body>> {
    if !config.https_redirect || request.uri().path().starts_with("/health/") {
        return None;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if config
        .proxies
        .forwarded_proto(peer, request.headers())
        .as_deref()
        != Some("http")
    {
        return None;
    }
    let origin = match &config.https_origin {
        Some(origin) => origin.clone(),
        None => {
            let host = request.headers().get(header::HOST)?.to_str().ok()?;
            let authority: axum::http::uri::Authority = host.parse().ok()?;
            format!("https://{}", authority.host())
        }
    };
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = HeaderValue::from_str(&format!("{origin}{target}")).ok()?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    Some(response)
}
