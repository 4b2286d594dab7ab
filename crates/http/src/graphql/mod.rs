//! GraphQL at `/graphql`: the guide's schema (users, posts, comments) with tags, products and
//! orders, over the same use cases as REST. Related data is batched by DataLoaders, so a query
//! for many posts with their authors and comments runs a fixed number of SQL statements.

mod loaders;
mod types;

use async_graphql::dataloader::DataLoader;
use async_graphql::{EmptySubscription, ErrorExtensions as _, Schema};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use inkcart_app::AppError;
use inkcart_app::error::messages;
use inkcart_domain::Actor;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody, error_name};
use crate::extract::{ClientIp, Json};

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

/// Limits of the GraphQL endpoint.
#[derive(Debug, Clone)]
pub struct GraphqlConfig {
    /// Deepest nesting a query may have.
    pub depth_limit: usize,
    /// Most fields (weighted) a query may ask for.
    pub complexity_limit: usize,
    pub introspection: bool,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            depth_limit: 10,
            complexity_limit: 2_000,
            introspection: true,
        }
    }
}

/// The schema, with its limits. Per-request data (the caller, the loaders) is added by the
/// handler.
pub fn schema(config: &GraphqlConfig) -> InkcartSchema {
    let mut builder = Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .limit_depth(config.depth_limit)
        .limit_complexity(config.complexity_limit);
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema in SDL, for the snapshot that makes every change a reviewed diff.
pub fn sdl() -> String {
    schema(&GraphqlConfig::default()).sdl()
}

/// A use-case error as a GraphQL error, with the REST error name in `extensions.code`.
pub(crate) fn gql_error(err: AppError) -> async_graphql::Error {
    let api = crate::error::ApiError::from(err);
    let code = error_name(api.status(), api.field_errors().is_some());
    let fields = api.field_errors().cloned();
    async_graphql::Error::new(api.message().to_owned()).extend_with(|_, ext| {
        ext.set("code", code);
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

/// Who is asking, from the bearer token (as for REST).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller(pub Option<Actor>);

impl Caller {
    pub(crate) fn require(self) -> async_graphql::Result<Actor> {
        self.0
            .ok_or_else(|| gql_error(AppError::Unauthorized(messages::NO_TOKEN.to_owned())))
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
#[utoipa::path(post, path = "/graphql", tag = "graphql", request_body = GraphqlRequestBody, security((), ("bearer" = [])), responses(
    (status = 200, body = GraphqlResponseBody, description = "A GraphQL response (errors included, with `extensions.code`)"),
    (status = 400, body = ErrorBody, description = "Malformed JSON"),
    (status = 401, body = ErrorBody, description = "A token was sent and is not valid"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 429, body = ErrorBody, description = "A rate limit is reached (each root mutation field counts as a request of its kind)", headers(("retry-after" = u64))),
))]
pub async fn graphql(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    Json(mut request): Json<async_graphql::Request>,
) -> ApiResult<Json<async_graphql::Response>> {
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
            Some(auth.actor)
        }
    };
    // Each root mutation field costs what a request of its kind would (after the document
    // guards: this parses the document).
    crate::ratelimit::charge_graphql(&state, caller, &client_ip, &mut request).await?;
    let app = state.app.clone();
    let request = request
        .data(Caller(caller))
        .data(state.clone())
        .data(loader(loaders::Users(app.clone())))
        .data(loader(loaders::CommentAuthors(app.clone())))
        .data(loader(loaders::PostsByAuthor(app.clone())))
        .data(loader(loaders::CommentsByPost(app.clone())))
        .data(loader(loaders::PostContents(app)));
    Ok(Json(state.graphql.execute(request).await))
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

/// `GET /graphql`: GraphiQL, in development.
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
