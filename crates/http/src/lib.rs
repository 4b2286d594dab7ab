//! The HTTP face of inkcart: one [`router`] used by the server and by the tests alike.
//!
//! Every REST route is registered through `utoipa-axum`, so a route cannot exist without its
//! OpenAPI entry. Handlers parse input with the extractors of [`extract`] (whose rejections use
//! the error envelope), call one use case of `inkcart-app`, and map its result.

pub mod dto;
pub mod error;
pub mod extract;
pub mod graphql;
pub mod middleware;
pub mod proxy;
pub mod ratelimit;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Response, StatusCode, header};
use inkcart_app::App;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;

/// What the HTTP layer needs from configuration.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Largest accepted upload, in bytes.
    pub upload_limit: usize,
    /// Longest time a request may take before it is answered with 503.
    pub request_timeout: Duration,
    /// Origins allowed by CORS (`*` for any); empty for none.
    pub cors_origins: Vec<String>,
    /// Send `Strict-Transport-Security`.
    pub hsts: bool,
    /// Whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed (only proxies you control).
    pub proxies: proxy::TrustedProxies,
    /// Largest request head (request line and headers), in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// A request body must arrive whole within this time of its head; otherwise 408.
    pub body_read_timeout: Duration,
    /// Bytes of request bodies held in memory at once, all requests together; past it 503.
    pub body_memory_bytes: usize,
    /// Redirect requests that a trusted proxy received over plain http to https.
    pub https_redirect: bool,
    /// Where those redirects go (`https://host[:port]`); `None`: the request's host.
    pub https_origin: Option<String>,
    /// Serve GraphiQL at `GET /graphql` (development).
    pub graphiql: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            upload_limit: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            hsts: false,
            proxies: proxy::TrustedProxies::default(),
            max_header_bytes: 16 * 1024,
            body_read_timeout: Duration::from_secs(20),
            body_memory_bytes: 256 * 1024 * 1024,
            https_redirect: false,
            https_origin: None,
            graphiql: true,
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    pub http: Arc<HttpConfig>,
    pub graphql: graphql::Endpoint,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(app: Arc<App>, http: HttpConfig, graphql: &graphql::GraphqlConfig) -> Self {
        Self {
            app,
            http: Arc::new(http),
            graphql: graphql::Endpoint::new(graphql),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "inkcart",
        description = "A backend for a blog and a shop: identity, posts, products and orders.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Login, token refresh, logout"),
        (name = "users", description = "Accounts and profiles"),
        (name = "posts", description = "The blog: posts, comments, tags, search"),
        (name = "uploads", description = "Images"),
        (name = "products", description = "The catalogue"),
        (name = "orders", description = "Orders, payment and fulfilment"),
        (name = "reports", description = "Sales reports (admins)"),
        (name = "graphql", description = "The same use cases through GraphQL"),
        (name = "admin", description = "Operations (admins)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every documented route, with its OpenAPI entry.
fn api() -> OpenApiRouter<AppState> {
    use routes::{admin, auth, health, orders, posts, products, uploads, users};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(users::sign_up, users::list))
        .routes(routes!(
            users::get,
            users::replace,
            users::patch,
            users::delete
        ))
        .routes(routes!(users::get_v2))
        .routes(routes!(users::profile))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::logout_all))
        .routes(routes!(auth::request_verification))
        .routes(routes!(auth::confirm_verification))
        .routes(routes!(auth::request_reset))
        .routes(routes!(auth::confirm_reset))
        .routes(routes!(admin::jobs))
        .routes(routes!(admin::retry))
        .routes(routes!(posts::list, posts::create))
        .routes(routes!(
            posts::get,
            posts::replace,
            posts::patch,
            posts::delete
        ))
        .routes(routes!(posts::comments, posts::add_comment))
        .routes(routes!(posts::delete_comment))
        .routes(routes!(posts::tags))
        .routes(routes!(uploads::file))
        .routes(routes!(products::list, products::create))
        .routes(routes!(
            products::get,
            products::replace,
            products::patch,
            products::delete
        ))
        .routes(routes!(orders::create, orders::list))
        .routes(routes!(orders::get))
        .routes(routes!(orders::pay))
        .routes(routes!(orders::cancel))
        .routes(routes!(orders::ship))
        .routes(routes!(orders::deliver))
        .routes(routes!(orders::payments))
        .routes(routes!(orders::top_products))
        .routes(routes!(orders::sales))
        .routes(routes!(graphql::graphql, graphql::graphiql))
}

/// The OpenAPI document of the REST API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().into_openapi();
    doc.merge(uploads_api().into_openapi());
    ratelimit::document(&mut doc);
    no_nul_in_strings(doc)
}

/// No text the server takes may hold NUL (PostgreSQL text cannot store it, and the extractors
/// refuse it): every string schema without a pattern, format or enum of its own says so with a
/// pattern. Patterns written by hand exclude NUL themselves. The GraphQL request is the
/// exception: a NUL in its document or operation name is answered as any other bad document,
/// with a GraphQL error in a 200 (and a NUL in a variable's string is a `ValidationError`).
fn no_nul_in_strings(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use serde_json::Value;
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                let is_string = match map.get("type") {
                    Some(Value::String(t)) => t == "string",
                    Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
                    _ => false,
                };
                let constrained = ["pattern", "format", "enum", "const"]
                    .iter()
                    .any(|key| map.contains_key(*key));
                if is_string && !constrained {
                    map.insert("pattern".to_owned(), Value::from(NO_NUL));
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    let schemas = value
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut);
    let graphql = schemas.and_then(|schemas| schemas.remove(GRAPHQL_REQUEST));
    walk(&mut value);
    if let (Some(graphql), Some(schemas)) = (
        graphql,
        value
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut),
    ) {
        schemas.insert(GRAPHQL_REQUEST.to_owned(), graphql);
    }
    serde_json::from_value(value).unwrap_or(doc)
}

/// The pattern of text without NUL.
pub const NO_NUL: &str = "^[^\\u0000]*$";

/// The schema of `POST /graphql`'s body, whose strings may hold NUL ([`no_nul_in_strings`]).
const GRAPHQL_REQUEST: &str = "GraphqlRequestBody";

fn uploads_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(routes::uploads::upload))
}

/// The docs pages need more than the API's `default-src 'none'`: Swagger UI's own scripts and
/// styles (served from the binary; nothing comes from elsewhere).
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                        img-src 'self' data:; connect-src 'self'; font-src 'self' data:; \
                        frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Swagger UI at `/api-docs` (assets compiled in, validator off) and the document at
/// `/api-docs/openapi.json`.
fn docs_ui(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    let config = utoipa_swagger_ui::Config::from("/api-docs/openapi.json")
        .validator_url("none")
        .persist_authorization(true)
        .try_it_out_enabled(true)
        .display_operation_id(false);
    let ui = utoipa_swagger_ui::SwaggerUi::new("/api-docs")
        .url("/api-docs/openapi.json", openapi)
        .config(config);
    Router::<AppState>::from(ui).layer(SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(DOCS_CSP),
    ))
}

async fn route_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Route not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

/// The whole HTTP application: routes, fallbacks and the middleware stack.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes behind the same middleware (tests use it for routes that
/// panic or hang on purpose).
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let (api, openapi) = api().split_for_parts();
    let config = Arc::clone(&state.http);
    // Uploads get their own, larger body limit.
    let (uploads, upload_doc) = uploads_api()
        .layer(DefaultBodyLimit::max(config.upload_limit))
        .split_for_parts();
    let mut openapi = openapi;
    openapi.merge(upload_doc);
    ratelimit::document(&mut openapi);
    let openapi = no_nul_in_strings(openapi);
    let api = api.merge(uploads).merge(extra);

    let limits = state.clone();
    let router = api
        .route(
            "/graphql/assets/{file}",
            axum::routing::get(graphql::graphiql_asset),
        )
        .merge(docs_ui(openapi))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    // One stack, added with one `layer` call: axum boxes each route once per `layer` call and
    // clones the boxes on every request, so a layer per header would cost an allocation each.
    // Outermost first.
    let security_headers: Arc<[(HeaderName, HeaderValue)]> =
        middleware::security_headers(config.hsts).into();
    let stack = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(
            middleware::X_REQUEST_ID.clone(),
            MakeRequestUuid,
        ))
        .layer(axum::middleware::from_fn(middleware::access_log))
        .layer(PropagateRequestIdLayer::new(
            middleware::X_REQUEST_ID.clone(),
        ))
        .layer(MapResponseLayer::new(move |mut response: Response<_>| {
            middleware::add_headers(response.headers_mut(), &security_headers);
            response
        }))
        .option_layer(middleware::cors(&config.cors_origins))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(MapResponseLayer::new(middleware::envelope_errors))
        .layer(axum::middleware::from_fn_with_state(
            middleware::Edge::new(Arc::clone(&config)),
            middleware::edge,
        ))
        .layer(axum::middleware::from_fn_with_state(
            config.request_timeout,
            middleware::timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            ratelimit::rate_limit,
        ))
        .layer(DefaultBodyLimit::max(config.body_limit));
    router.layer(stack)
}
