use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inkcart_app::page::{Direction, PageRequest, Sort};
use inkcart_app::ports::{ProductQuery, ProductSortField, Removal};
use inkcart_app::shop::ProductInput;
use inkcart_domain::FieldError;
use inkcart_domain::shop::{Money, Product};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::dto::{Paged, SEARCH_MAX, check_len, double_option, shared_json, ts};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};

/// A product. Money is a decimal string with two places.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "019abcde-0000-7000-8000-000000000002",
    "name": "Enamel mug",
    "description": "Holds 350 ml.",
    "price": "19.99",
    "stock": 42,
    "active": true,
    "createdAt": "2026-11-27T10:30:00.123Z",
    "updatedAt": "2026-11-27T10:30:00.123Z"
}))]
pub struct ProductBody {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    #[schema(example = "19.99", pattern = r"^\d+\.\d{2}$")]
    pub price: String,
    pub stock: i32,
    /// Inactive products are kept for old orders but cannot be ordered.
    pub active: bool,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Product> for ProductBody {
    fn from(p: Product) -> Self {
        Self {
            id: p.id.into(),
            name: p.name,
            description: p.description,
            price: p.price.to_string(),
            stock: p.stock,
            active: p.active,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Enamel mug", "description": "Holds 350 ml.", "price": "19.99", "stock": 42}))]
pub struct CreateProductRequest {
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$",
        max_length = 200
    )]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A decimal string with at most two places (`"19.99"`); never a number.
    #[schema(example = "19.99")]
    pub price: String,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: Option<i64>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// `PUT`: name, price and stock are required; a missing description clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceProductRequest {
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$",
        max_length = 200
    )]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub price: String,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
    #[serde(default)]
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchProductRequest {
    #[serde(default)]
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$",
        max_length = 200
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub price: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: Option<i64>,
    #[serde(default)]
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListProductsParams {
    #[param(minimum = 1, maximum = 10_000_000)]
    pub page: Option<u64>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// Case-insensitive part of the name or description.
    #[param(max_length = 200)]
    pub search: Option<String>,
    /// Lowest price, as a decimal string.
    #[param(example = "10.00")]
    pub min_price: Option<String>,
    /// Highest price, as a decimal string.
    #[param(example = "50.00")]
    pub max_price: Option<String>,
    /// `true`: only products in stock; `false`: only sold-out ones.
    pub in_stock: Option<bool>,
    /// `createdAt`, `price` or `name`; prefix `-` for descending (default `-createdAt`).
    #[param(pattern = "^-?(createdAt|price|name)$")]
    pub sort: Option<String>,
}

const SORTS: &[(&str, ProductSortField)] = &[
    ("createdAt", ProductSortField::CreatedAt),
    ("price", ProductSortField::Price),
    ("name", ProductSortField::Name),
];

fn money_param(field: &str, raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<Money> {
    raw.and_then(|r| {
        Money::parse(r)
            .map_err(|e| errors.push(FieldError::new(field, format!("{field} {e}"))))
            .ok()
    })
}

/// Lists active products, with filters and sorting.
#[utoipa::path(get, path = "/api/v1/products", tag = "products", params(ListProductsParams), responses(
    (status = 200, body = Paged<ProductBody>),
    (status = 400, body = ErrorBody, description = "Bad page, limit, price, or sort"),
))]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListProductsParams>,
) -> ApiResult<Json<Paged<ProductBody>>> {
    let mut errors = Vec::new();
    check_len("search", params.search.as_deref(), SEARCH_MAX, &mut errors);
    let min_price = money_param("minPrice", params.min_price.as_deref(), &mut errors);
    let max_price = money_param("maxPrice", params.max_price.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let query = ProductQuery {
        page: PageRequest::new(params.page, params.limit)?,
        search: params.search,
        min_price,
        max_price,
        in_stock: params.in_stock,
        sort: Sort::parse(
            params.sort.as_deref(),
            SORTS,
            Sort {
                field: ProductSortField::CreatedAt,
                direction: Direction::Desc,
            },
        )?,
    };
    let page = state.app.shop().list_products(&query).await?;
    Ok(Json(Paged::from_page(page, ProductBody::from)))
}

fn etag(product: &Product) -> String {
    format!(
        "\"{}-{:x}\"",
        product.id.as_uuid().simple(),
        product.updated_at.timestamp_micros()
    )
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

pub const PRODUCT_CACHE_CONTROL: &str = "public, max-age=30";

/// One product. Answers with an `ETag`; a matching `If-None-Match` gets 304 without a body.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "products", params(("id" = Uuid, Path),
    ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer")), responses(
    (status = 200, body = ProductBody, headers(("etag" = String), ("cache-control" = String))),
    (status = 304, description = "Not modified since the given ETag"),
    (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let product = state.app.shop().get_product(id.into()).await?;
    let tag = etag(&product);
    let cache_headers = [
        (
            header::ETAG,
            HeaderValue::from_str(&tag).map_err(ApiError::internal)?,
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(PRODUCT_CACHE_CONTROL),
        ),
    ];
    if matches_etag(&headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers).into_response());
    }
    let body = shared_json(&product, |product| ProductBody::from(product.clone()))?;
    Ok((cache_headers, body).into_response())
}

/// Creates a product (editors and admins).
#[utoipa::path(post, path = "/api/v1/products", tag = "products", request_body = CreateProductRequest, security(("bearer" = [])), responses(
    (status = 201, body = ProductBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<CreateProductRequest>,
) -> ApiResult<(StatusCode, Json<ProductBody>)> {
    let product = state
        .app
        .shop()
        .create_product(
            auth.actor,
            ProductInput {
                name: Some(body.name),
                description: Some(body.description),
                price: Some(body.price),
                stock: body.stock,
                active: body.active,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(product.into())))
}

/// Replaces a product's fields (editors and admins).
#[utoipa::path(put, path = "/api/v1/products/{id}", tag = "products", params(("id" = Uuid, Path)), request_body = ReplaceProductRequest, security(("bearer" = [])), responses(
    (status = 200, body = ProductBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn replace(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<ReplaceProductRequest>,
) -> ApiResult<Json<ProductBody>> {
    let input = ProductInput {
        name: Some(body.name),
        description: Some(body.description),
        price: Some(body.price),
        stock: Some(body.stock),
        active: body.active,
    };
    Ok(Json(
        state
            .app
            .shop()
            .update_product(auth.actor, id.into(), input)
            .await?
            .into(),
    ))
}

/// Changes some fields of a product (editors and admins).
#[utoipa::path(patch, path = "/api/v1/products/{id}", tag = "products", params(("id" = Uuid, Path)), request_body = PatchProductRequest, security(("bearer" = [])), responses(
    (status = 200, body = ProductBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn patch(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<PatchProductRequest>,
) -> ApiResult<Json<ProductBody>> {
    let input = ProductInput {
        name: body.name,
        description: body.description,
        price: body.price,
        stock: body.stock,
        active: body.active,
    };
    Ok(Json(
        state
            .app
            .shop()
            .update_product(auth.actor, id.into(), input)
            .await?
            .into(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// `deleted`, or `deactivated` when orders reference the product.
    #[schema(example = "deactivated")]
    pub result: &'static str,
}

/// Deletes a product (admins only). A product that orders reference is deactivated instead,
/// and the answer says so.
#[utoipa::path(delete, path = "/api/v1/products/{id}", tag = "products", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 200, body = Removed, description = "Deactivated: orders reference it"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody),
))]
pub async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    Ok(
        match state
            .app
            .shop()
            .delete_product(auth.actor, id.into())
            .await?
        {
            Removal::Deleted => StatusCode::NO_CONTENT.into_response(),
            Removal::Deactivated => Json(Removed {
                result: "deactivated",
            })
            .into_response(),
        },
    )
}
