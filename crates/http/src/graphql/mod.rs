//! GraphQL at `/graphql`: the guide's schema (users, posts, comments) with tags, products and
//! orders, over the same use cases as REST. Related data is batched by DataLoaders, so a query
//! for many posts with their authors and comments runs a fixed number of SQL statements.

mod cost;
mod document;
mod guard;
mod loaders;
mod types;

use async_graphql::dataloader::DataLoader;
use async_graphql::{EmptySubscription, ErrorExtensions as _, Schema};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use inkcart_app::error::messages;
use inkcart_app::{AppError, ErrorCode};
use inkcart_domain::{Actor, User};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody, error_name};
use crate::extract::{ClientIp, Json};

pub use guard::CheckedRequest;
pub use types::{MutationRoot, QueryRoot};

pub type InkcartSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// A per-request loader with a cache, so that lists can feed it up front (see
/// `types::prefetch`) and later lookups cost nothing.
pub(crate) type Loader<T> = DataLoader<T, async_graphql::dataloader::HashMapCache>;

fn loader<T: Send + Sync + 'static>(inner: T) -> Loader<T> {
    DataLoader::with_cache(
        inner,
        tokio::spawn,
        async_graphql::dataloader::HashMapCache::default(),
    )
}

/// Limits of the GraphQL endpoint (see `docs/configuration.md`).
#[derive(Debug, Clone)]
pub struct GraphqlConfig {
    /// Deepest nesting of selections a query may have.
    pub depth_limit: usize,
    /// Most a query may cost, in units of about 100 bytes of response or of rows read (see
    /// `cost`).
    pub complexity_limit: usize,
    pub introspection: bool,
    /// Longest document (the `query` text), in bytes.
    pub max_document_bytes: usize,
    /// Longest `variables`, in bytes of compact JSON.
    pub max_variables_bytes: usize,
    /// Deepest nesting of brackets in the document, of selections once fragments are
    /// expanded, and of lists and objects in the variables.
    pub max_nesting: usize,
    /// Most nodes of the document with fragments expanded, and most values in the variables.
    pub max_nodes: usize,
    /// Most root mutation fields one request may run.
    pub max_mutations: usize,
}

/// The highest `max_nesting` accepted: the parser and validation recurse once per level or
/// more, on the 2 MiB stacks of the runtime's threads.
pub const MAX_NESTING_CEILING: usize = 64;

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            depth_limit: 10,
            complexity_limit: 50_000,
            introspection: true,
            max_document_bytes: 32 * 1024,
            max_variables_bytes: 512 * 1024,
            max_nesting: 32,
            max_nodes: 10_000,
            max_mutations: 5,
        }
    }
}

/// The schema, with its limits. Per-request data (the caller, the loaders) is added by the
/// handler.
pub fn schema(config: &GraphqlConfig) -> InkcartSchema {
    let mut builder = Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .limit_depth(config.depth_limit)
        .limit_complexity(config.complexity_limit)
        // async-graphql's own count of nested selections, which the checks before it have
        // already bounded.
        .limit_recursive_depth(config.max_nesting.min(MAX_NESTING_CEILING));
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema and the checks the handler runs before it.
#[derive(Clone)]
pub struct Endpoint {
    schema: InkcartSchema,
    limits: guard::Limits,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn new(config: &GraphqlConfig) -> Self {
        Self {
            schema: schema(config),
            limits: guard::Limits {
                max_document_bytes: config.max_document_bytes,
                max_variables_bytes: config.max_variables_bytes,
                max_nesting: config.max_nesting.min(MAX_NESTING_CEILING),
                max_nodes: config.max_nodes,
                max_mutations: config.max_mutations,
            },
        }
    }
}

/// The schema in SDL, for the snapshot that makes every change a reviewed diff.
pub fn sdl() -> String {
    schema(&GraphqlConfig::default()).sdl()
}

/// A use-case error as a GraphQL error, with the REST error name in `extensions.code`. The
/// cause of an internal error is logged here, as REST's access log does, and never sent.
pub(crate) fn gql_error(err: AppError) -> async_graphql::Error {
    let api = crate::error::ApiError::from(err);
    if let Some(cause) = api.cause() {
        tracing::error!(
            cause,
            status = api.status().as_u16(),
            "a GraphQL field failed"
        );
    }
    let code = error_name(api.status(), api.field_errors().is_some());
    let reason = api.code().as_str();
    let fields = api.field_errors().cloned();
    async_graphql::Error::new(api.message().to_owned()).extend_with(|_, ext| {
        ext.set("code", code);
        ext.set("reason", reason);
        if let Some(fields) = &fields {
            let list: Vec<async_graphql::Value> = fields
                .iter()
                .map(|f| {
                    let mut map = async_graphql::indexmap::IndexMap::new();
                    map.insert(
                        async_graphql::Name::new("field"),
                        async_graphql::Value::from(f.field.clone()),
                    );
                    map.insert(
                        async_graphql::Name::new("message"),
                        async_graphql::Value::from(f.message.clone()),
                    );
                    async_graphql::Value::Object(map)
                })
                .collect();
            ext.set("errors", list);
        }
    })
}

/// Who is asking, from the bearer token (as for REST): the account as authentication read it.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Option<User>);

impl Caller {
    pub(crate) fn actor(&self) -> Option<Actor> {
        self.0.as_ref().map(User::actor)
    }

    pub(crate) fn require(&self) -> async_graphql::Result<Actor> {
        self.account().map(User::actor)
    }

    /// The caller's account; a 401 without a token.
    pub(crate) fn account(&self) -> async_graphql::Result<&User> {
        self.0.as_ref().ok_or_else(|| {
            gql_error(AppError::Unauthorized(
                ErrorCode::NoToken,
                messages::NO_TOKEN.to_owned(),
            ))
        })
    }
}

/// A GraphQL request: `{"query": "...", "variables": {...}, "operationName": "..."}`.
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "describes the request for the OpenAPI document only"
)]
pub struct GraphqlRequestBody {
    #[schema(example = "query { posts { id title author { name } } }")]
    pub query: String,
    #[schema(value_type = Option<Object>)]
    pub variables: Option<serde_json::Value>,
    #[serde(rename = "operationName")]
    pub operation_name: Option<String>,
}

/// `{"data": ..., "errors": [{"message", "extensions": {"code"}}]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphqlResponseBody {
    #[schema(value_type = Option<Object>)]
    pub data: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<serde_json::Value>,
}

/// Runs a GraphQL query or mutation. Bearer auth as for REST; errors carry the REST error name
/// in `extensions.code`.
///
/// The request is checked before it runs; a refusal is a GraphQL error with `data: null`:
/// a document or variables over their size limit (`PayloadTooLarge`); brackets nested deeper
/// than the limit, counted before parsing, selections nested too deep or too many nodes once
/// fragments are expanded, too complex a query (lists cost their largest page), more root
/// mutation fields than the cap, a syntax or validation error (`BadRequest`); a string argument
/// or variable holding a NUL character (`ValidationError`, naming it in `extensions.errors`).
/// Only a body that is not one JSON object with a string `query` (a JSON array, i.e. a batch,
/// included) is a 4xx envelope. Every list is paged: `limit` has a default and a maximum on
/// nested lists too.
#[utoipa::path(post, path = "/graphql", tag = "graphql", request_body = GraphqlRequestBody, security((), ("bearer" = [])), responses(
    (status = 200, body = GraphqlResponseBody, description = "A GraphQL response, or the refusal of the request as a GraphQL error; every error has `extensions.code`"),
    (status = 400, body = ErrorBody, description = "Malformed JSON, a batch (JSON array), or no string `query`"),
    (status = 401, body = ErrorBody, description = "A token was sent and is not valid"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 429, body = ErrorBody, description = "A rate limit is reached (each root mutation field counts as a request of its kind)", headers(("retry-after" = u64))),
))]
pub async fn graphql(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<async_graphql::Response>> {
    if !crate::extract::is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected a request body with Content-Type: application/json",
        ));
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "Failed to read the request body")
        }
    })?;
    let raw = guard::read_body(&body)?;
    drop(body);
    let caller = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(_) => {
            // Same rules as REST: a token that is sent must be valid.
            let mut parts = axum::http::Request::new(()).into_parts().0;
            parts.headers = headers.clone();
            let auth = <crate::extract::AuthUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                &mut parts, &state,
            )
            .await?;
            Some(auth.user)
        }
    };
    let checked = match guard::check(&state.graphql.limits, raw) {
        Ok(checked) => checked,
        Err(errors) => return Ok(Json(async_graphql::Response::from_errors(errors))),
    };
    // Each root mutation field the operation runs (at most `max_mutations`) costs what a
    // request of its kind would: `createUser` is a sign-up.
    let actor = caller.as_ref().map(User::actor);
    crate::ratelimit::charge_mutations(&state, actor, &client_ip, checked.mutation_fields())
        .await?;
    Ok(Json(run(&state, caller, checked).await))
}

/// The most errors one response lists.
const MAX_ERRORS: usize = 100;

/// Runs a checked request with the caller and fresh loaders.
async fn run(
    state: &AppState,
    caller: Option<User>,
    checked: CheckedRequest,
) -> async_graphql::Response {
    let (identity, blog) = (state.app.identity(), state.app.blog());
    let request = checked
        .into_request()
        .data(Caller(caller))
        .data(state.clone())
        .data(loader(loaders::Users(identity.clone())))
        .data(loader(loaders::CommentAuthors(identity.clone())))
        .data(loader(loaders::PostsByAuthor(blog.clone())))
        .data(loader(loaders::CommentsByPost(blog.clone())))
        .data(loader(loaders::PostContents(blog.clone())));
    let mut response = state.graphql.schema.execute(request).await;
    // Validation reports every conflict it finds; a client needs the first few.
    response.errors.truncate(MAX_ERRORS);
    response.errors = std::mem::take(&mut response.errors)
        .into_iter()
        .map(guard::labelled)
        .collect();
    response
}

/// The GraphiQL page and its files, compiled in (see `assets/graphiql/README.md`).
const GRAPHIQL_HTML: &str = include_str!("../../assets/graphiql/index.html");
const GRAPHIQL_FILES: &[(&str, &str, &[u8])] = &[
    (
        "graphiql.min.js",
        "text/javascript",
        include_bytes!("../../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css",
        include_bytes!("../../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript",
        include_bytes!("../../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript",
        include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    ),
    (
        "init.js",
        "text/javascript",
        include_bytes!("../../assets/graphiql/init.js"),
    ),
];

/// GraphiQL's page: its own scripts and styles only, requests to this server only.
const GRAPHIQL_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                            img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                            frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn graphiql_off() -> crate::error::ApiError {
    crate::error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "GraphiQL is served in development only",
    )
}

/// The GraphiQL explorer, an HTML page that sends its queries to `POST /graphql`. Served in
/// development only (`INKCART_ENV=development`).
#[utoipa::path(get, path = "/graphql", tag = "graphql", security(()), responses(
    (status = 200, content_type = "text/html", body = String, description = "The GraphiQL page"),
    (status = 404, body = ErrorBody, description = "GraphiQL is off (production)"),
))]
pub async fn graphiql(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if !state.http.graphiql {
        return graphiql_off().into_response();
    }
    (
        [(header::CONTENT_SECURITY_POLICY, GRAPHIQL_CSP)],
        axum::response::Html(GRAPHIQL_HTML),
    )
        .into_response()
}

/// GraphiQL's scripts and styles.
pub async fn graphiql_asset(
    State(state): State<AppState>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let found = GRAPHIQL_FILES.iter().find(|(name, _, _)| *name == file);
    match found {
        Some((_, content_type, bytes)) if state.http.graphiql => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        _ => graphiql_off().into_response(),
    }
}
