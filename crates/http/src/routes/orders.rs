use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use inkcart_app::page::{Direction, PageRequest, Sort};
use inkcart_app::ports::{DailySales, OrderQuery, OrderSortField, Payment, TopProduct};
use inkcart_app::shop::{Idempotency, OrderMove, Outcome};
use inkcart_domain::UserId;
use inkcart_domain::shop::{Order, OrderStatus, RequestedLine};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::dto::{Paged, ts};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query, TokenUser, from_value, is_json, parse_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatusDto {
    Pending,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

impl From<OrderStatus> for OrderStatusDto {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Pending => Self::Pending,
            OrderStatus::Paid => Self::Paid,
            OrderStatus::Shipped => Self::Shipped,
            OrderStatus::Delivered => Self::Delivered,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<OrderStatusDto> for OrderStatus {
    fn from(s: OrderStatusDto) -> Self {
        match s {
            OrderStatusDto::Pending => Self::Pending,
            OrderStatusDto::Paid => Self::Paid,
            OrderStatusDto::Shipped => Self::Shipped,
            OrderStatusDto::Delivered => Self::Delivered,
            OrderStatusDto::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemBody {
    pub product_id: Uuid,
    /// The product's name.
    pub name: String,
    pub quantity: i32,
    /// The price when the order was placed.
    #[schema(example = "19.99")]
    pub unit_price: String,
    #[schema(example = "39.98")]
    pub line_total: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderBody {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatusDto,
    pub items: Vec<OrderItemBody>,
    #[schema(example = "39.98")]
    pub subtotal: String,
    /// The buyer's tier discount (premium 20 %, regular 10 %, guest 0), rounded half-up.
    #[schema(example = "4.00")]
    pub discount: String,
    #[schema(example = "35.98")]
    pub total: String,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<&Order> for OrderBody {
    fn from(o: &Order) -> Self {
        Self {
            id: o.id.into(),
            user_id: o.user_id.as_uuid(),
            status: o.status.into(),
            items: o
                .items
                .iter()
                .map(|i| OrderItemBody {
                    product_id: i.product_id.into(),
                    name: i.name.clone(),
                    quantity: i.quantity,
                    unit_price: i.unit_price.to_string(),
                    line_total: i.line_total.to_string(),
                })
                .collect(),
            subtotal: o.subtotal.to_string(),
            discount: o.discount.to_string(),
            total: o.total.to_string(),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderLineRequest {
    pub product_id: Uuid,
    /// A positive whole number.
    #[schema(value_type = i64, minimum = 1)]
    pub quantity: serde_json::Number,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"items": [{"productId": "019abcde-0000-7000-8000-000000000002", "quantity": 2}]}))]
pub struct CreateOrderRequest {
    /// At most 100 lines.
    #[serde(default, deserialize_with = "crate::dto::objects")]
    #[schema(max_items = 100)]
    pub items: Vec<OrderLineRequest>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PayRequest {
    /// A card token for the gateway. The sandbox declines `tok_chargeDeclined*`.
    #[serde(default)]
    pub payment_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListOrdersParams {
    #[param(minimum = 1, maximum = 10_000_000)]
    pub page: Option<u64>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    pub status: Option<OrderStatusDto>,
    /// Admins only: one buyer's orders.
    pub user_id: Option<Uuid>,
    /// `createdAt` or `total`; prefix `-` for descending (default `-createdAt`).
    #[param(pattern = "^-?(createdAt|total)$")]
    pub sort: Option<String>,
}

const SORTS: &[(&str, OrderSortField)] = &[
    ("createdAt", OrderSortField::CreatedAt),
    ("total", OrderSortField::Total),
];

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The `Idempotency-Key` header, when sent: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(|k| Some(k.to_owned()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })
}

/// A fingerprint of a request: method, path and the body as canonical JSON (object keys sorted,
/// so that the same document hashes the same however its keys are ordered).
fn request_hash(method: &str, path: &str, body: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    fn canonical(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push(':');
                    canonical(&map[key], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = format!("{method} {path}\n");
    canonical(body, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The idempotency key, the hash a key compares repeats by, and the order's body.
fn order_request(
    headers: &HeaderMap,
    raw: Result<Json<serde_json::Value>, ApiError>,
) -> ApiResult<(Option<String>, Option<String>, CreateOrderRequest)> {
    let Json(raw) = raw?;
    let key = idempotency_key(headers)?;
    // Only a request with a key is compared with its repeats.
    let hash = key
        .as_ref()
        .map(|_| request_hash("POST", "/api/v1/orders", &raw));
    Ok((key, hash, from_value(raw)?))
}

/// The order as the answer of `status`; a replayed one says so in `idempotent-replayed`.
fn respond(outcome: Outcome, status: StatusCode) -> Response {
    let mut response = (status, Json(OrderBody::from(outcome.order()))).into_response();
    if matches!(outcome, Outcome::Replayed(_)) {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Places an order. Optional `Idempotency-Key`: a repeat with the same body answers what the
/// first request answered; with another body, 422; while the first still runs, 409.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes retries safe: one order per key (24 h); 1 to 255 visible ASCII characters")),
    security(("bearer" = [])), responses(
    (status = 201, body = OrderBody, description = "Placed (or, with `idempotent-replayed: true`, placed earlier)"),
    (status = 400, body = ErrorBody, description = "The order rules: `Cart is empty`, `Invalid quantity for <name>`, `Minimum order amount is $10`, …"),
    (status = 401, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "Insufficient stock for <name> (nothing was reserved), or the key is in flight"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 422, body = ErrorBody, description = "The key was used with a different body"),
))]
pub async fn create(
    State(state): State<AppState>,
    // The buyer's account is read with the order's products, not before (a 401 all the same
    // when it is gone).
    buyer: TokenUser,
    headers: HeaderMap,
    raw: Result<Json<serde_json::Value>, ApiError>,
) -> ApiResult<Response> {
    let (key, hash, body) = match order_request(&headers, raw) {
        Ok(request) => request,
        Err(err) => return Err(buyer.or_gone(&state, err).await),
    };
    let lines = body
        .items
        .into_iter()
        .map(|l| RequestedLine {
            product_id: l.product_id.into(),
            // Fractions and out-of-range numbers break the quantity rule like 0 does.
            quantity: l.quantity.as_i64().unwrap_or(0),
        })
        .collect();
    let idempotency = key
        .as_deref()
        .zip(hash.as_deref())
        .map(|(key, request_hash)| Idempotency { key, request_hash });
    let outcome = state
        .app
        .shop()
        .create_order(buyer.id, lines, idempotency)
        .await?;
    Ok(respond(outcome, StatusCode::CREATED))
}

/// The caller's orders, newest first; admins see everyone's.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(ListOrdersParams), security(("bearer" = [])), responses(
    (status = 200, body = Paged<OrderBody>),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "userId of someone else, by a non-admin"),
))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(params): Query<ListOrdersParams>,
) -> ApiResult<Json<Paged<OrderBody>>> {
    let query = OrderQuery {
        page: PageRequest::new(params.page, params.limit)?,
        user_id: params.user_id.map(UserId::from_uuid),
        status: params.status.map(Into::into),
        sort: Sort::parse(
            params.sort.as_deref(),
            SORTS,
            Sort {
                field: OrderSortField::CreatedAt,
                direction: Direction::Desc,
            },
        )?,
    };
    let page = state.app.shop().list_orders(auth.actor, query).await?;
    Ok(Json(Paged::from_page(page, |o| OrderBody::from(&o))))
}

/// One order with its items and product names (its buyer or an admin).
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = OrderBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody, description = "No such order, or not yours"),
))]
pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<OrderBody>> {
    Ok(Json(OrderBody::from(
        &state.app.shop().get_order(auth.actor, id.into()).await?,
    )))
}

/// Pays a pending order through the configured gateway (the buyer only). A decline answers
/// 402 and leaves the order pending. Optional `Idempotency-Key` as for placing orders.
#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "orders", params(("id" = Uuid, Path),
    ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes retries safe; 1 to 255 visible ASCII characters")),
    request_body(content = Option<PayRequest>, description = "Optional; JSON when sent"),
    security(("bearer" = [])), responses(
    (status = 200, body = OrderBody, description = "Paid"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 402, body = ErrorBody, description = "Payment declined; the order stays pending"),
    (status = 403, body = ErrorBody, description = "Not the buyer"), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "Not pending, or the key is in flight"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
))]
pub async fn pay(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    // No body, or `null` (the document's optional body), pays without a token.
    let raw: serde_json::Value =
        if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
            serde_json::Value::Object(serde_json::Map::new())
        } else if is_json(&headers) {
            parse_json(&body)?
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a request body with Content-Type: application/json",
            ));
        };
    let path = format!("/api/v1/orders/{id}/pay");
    // Only a request with a key is compared with its repeats.
    let hash = key.as_ref().map(|_| request_hash("POST", &path, &raw));
    let request: PayRequest = from_value(raw)?;
    let idempotency = key
        .as_deref()
        .zip(hash.as_deref())
        .map(|(key, request_hash)| Idempotency { key, request_hash });
    let outcome = state
        .app
        .shop()
        .pay_order(auth.actor, id.into(), request.payment_token, idempotency)
        .await?;
    Ok(respond(outcome, StatusCode::OK))
}

/// The three status routes: one use case, answered alike.
async fn move_order(
    state: &AppState,
    auth: AuthUser,
    id: Uuid,
    to: OrderMove,
) -> ApiResult<Json<OrderBody>> {
    let order = state
        .app
        .shop()
        .move_order(auth.actor, id.into(), to)
        .await?;
    Ok(Json(OrderBody::from(&order)))
}

/// Cancels a pending order (its buyer, or an admin); the stock goes back.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = OrderBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "The order is not pending"),
))]
pub async fn cancel(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<OrderBody>> {
    move_order(&state, auth, id, OrderMove::Cancel).await
}

/// Ships a paid order with items (editors and admins).
#[utoipa::path(post, path = "/api/v1/orders/{id}/ship", tag = "orders", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = OrderBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Not paid, or no items"),
))]
pub async fn ship(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<OrderBody>> {
    move_order(&state, auth, id, OrderMove::Ship).await
}

/// Marks a shipped order delivered (editors and admins).
#[utoipa::path(post, path = "/api/v1/orders/{id}/deliver", tag = "orders", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = OrderBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Not shipped"),
))]
pub async fn deliver(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<OrderBody>> {
    move_order(&state, auth, id, OrderMove::Deliver).await
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentBody {
    pub id: Uuid,
    pub gateway: String,
    pub reference: String,
    #[schema(example = "35.98")]
    pub amount: String,
    /// `succeeded`, or `refunded` when the order was cancelled while the charge ran.
    pub status: String,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Payment> for PaymentBody {
    fn from(p: Payment) -> Self {
        Self {
            id: p.id.into(),
            gateway: p.gateway,
            reference: p.reference,
            amount: p.amount.to_string(),
            status: p.status,
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DataList<T: ToSchema> {
    pub data: Vec<T>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPaymentsParams {
    /// How many payments, oldest first (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// The payments recorded for an order (its buyer or an admin), oldest first.
#[utoipa::path(get, path = "/api/v1/orders/{id}/payments", tag = "orders", params(("id" = Uuid, Path), ListPaymentsParams), security(("bearer" = [])), responses(
    (status = 200, body = DataList<PaymentBody>),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
pub async fn payments(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
    Query(params): Query<ListPaymentsParams>,
) -> ApiResult<Json<DataList<PaymentBody>>> {
    let limit = PageRequest::new(None, params.limit)?.limit;
    let payments = state
        .app
        .shop()
        .order_payments(auth.actor, id.into(), limit)
        .await?;
    Ok(Json(DataList {
        data: payments.into_iter().map(PaymentBody::from).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopProductBody {
    pub product_id: Uuid,
    pub name: String,
    pub total_sold: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TopProductsParams {
    /// How many products (1 to 100, default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// Best sellers by units over paid, shipped and delivered orders (admins only).
#[utoipa::path(get, path = "/api/v1/reports/top-products", tag = "reports", params(TopProductsParams), security(("bearer" = [])), responses(
    (status = 200, body = DataList<TopProductBody>),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
))]
pub async fn top_products(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(params): Query<TopProductsParams>,
) -> ApiResult<Json<DataList<TopProductBody>>> {
    let rows = state
        .app
        .shop()
        .top_products(auth.actor, params.limit.unwrap_or(10))
        .await?;
    Ok(Json(DataList {
        data: rows
            .into_iter()
            .map(|r: TopProduct| TopProductBody {
                product_id: r.product_id.into(),
                name: r.name,
                total_sold: r.total_sold,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DailySalesBody {
    #[schema(value_type = String, format = Date, example = "2026-11-27")]
    pub date: NaiveDate,
    pub orders: i64,
    #[schema(example = "1234.50")]
    pub revenue: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SalesParams {
    /// First day (UTC), `YYYY-MM-DD` from 0001-01-01 to 9999-12-31; default 29 days before
    /// `to`.
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<NaiveDate>,
    /// Last day (UTC), `YYYY-MM-DD` from 0001-01-01 to 9999-12-31; default today.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
}

/// Orders and revenue per day (paid, shipped and delivered orders), every day of the range
/// listed (admins only): at most 366 days, within 0001-01-01 to 9999-12-31.
#[utoipa::path(get, path = "/api/v1/reports/sales", tag = "reports", params(SalesParams), security(("bearer" = [])), responses(
    (status = 200, body = DataList<DailySalesBody>),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
))]
pub async fn sales(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(params): Query<SalesParams>,
) -> ApiResult<Json<DataList<DailySalesBody>>> {
    let to = params.to.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let from = params
        .from
        .unwrap_or_else(|| inkcart_domain::time::clamp_days(to, -29));
    let days = state.app.shop().daily_sales(auth.actor, from, to).await?;
    Ok(Json(DataList {
        data: days
            .into_iter()
            .map(|d: DailySales| DailySalesBody {
                date: d.date,
                orders: d.orders,
                revenue: d.revenue.to_string(),
            })
            .collect(),
    }))
}
