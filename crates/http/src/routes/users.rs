use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inkcart_app::identity::{SignUp, UserChanges};
use inkcart_app::page::{Direction, PageRequest, Sort};
use inkcart_app::ports::{UserQuery, UserSortField};
use inkcart_domain::UserId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::dto::{Paged, RoleDto, SEARCH_MAX, TierDto, UserBody, check_len, double_option, ts};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "user@example.com", "password": "Secret123", "name": "Ada Lovelace"}))]
pub struct SignUpRequest {
    pub email: String,
    /// 8 to 128 characters with an upper-case letter, a lower-case letter and a digit.
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `PUT`: the full editable state. `role` and `tier` may be sent only by an admin (or unchanged).
/// A new `email` or a `password` needs `currentPassword`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplaceUserRequest {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub role: Option<RoleDto>,
    #[serde(default)]
    pub tier: Option<TierDto>,
    /// The caller's own password: required to change the email or the password (an admin
    /// changing another account gives their own).
    #[serde(default)]
    pub current_password: Option<String>,
}

/// `PATCH`: any subset of the fields; `name: null` clears the name. A new `email` or a
/// `password` needs `currentPassword`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchUserRequest {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub role: Option<RoleDto>,
    #[serde(default)]
    pub tier: Option<TierDto>,
    /// The caller's own password: required to change the email or the password (an admin
    /// changing another account gives their own).
    #[serde(default)]
    pub current_password: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsersParams {
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 10_000_000)]
    pub page: Option<u64>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// Case-insensitive part of the name (admins: of the email or the name).
    #[param(max_length = 200)]
    pub search: Option<String>,
    /// Only users with this role (admins only).
    pub role: Option<RoleDto>,
    /// `createdAt`, `email` (admins only) or `name`; prefix `-` for descending (default
    /// `-createdAt`).
    #[param(pattern = "^-?(createdAt|email|name)$")]
    pub sort: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostSummary {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub excerpt: String,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub published_at: chrono::DateTime<chrono::Utc>,
}

/// v2 of a user: the account with their latest published posts.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserWithPosts {
    #[serde(flatten)]
    pub user: UserBody,
    /// Published posts, newest first, at most 20.
    pub posts: Vec<PostSummary>,
}

const SORTS: &[(&str, UserSortField)] = &[
    ("createdAt", UserSortField::CreatedAt),
    ("email", UserSortField::Email),
    ("name", UserSortField::Name),
];

/// Signs up a new account (role `viewer`, tier `guest`).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = SignUpRequest, responses(
    (status = 201, body = UserBody, headers(("location" = String, description = "URL of the new user"))),
    (status = 400, body = ErrorBody, description = "Invalid email, weak password, malformed JSON"),
    (status = 409, body = ErrorBody, description = "User already exists"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn sign_up(
    State(state): State<AppState>,
    Json(body): Json<SignUpRequest>,
) -> ApiResult<Response> {
    let user = state
        .app
        .identity()
        .sign_up(SignUp {
            email: body.email,
            password: body.password,
            name: body.name,
        })
        .await?;
    let location = format!("/api/v1/users/{}", user.id);
    let mut response = (StatusCode::CREATED, Json(UserBody::full(user))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/profile", tag = "users", security(("bearer" = [])), responses(
    (status = 200, body = UserBody),
    (status = 401, body = ErrorBody, description = "No valid token, or its account was deleted"),
))]
pub async fn profile(auth: AuthUser) -> Json<UserBody> {
    // The extractor has just read the account.
    Json(UserBody::full(auth.user))
}

/// Lists users, paginated, searchable and sortable. Others' accounts show their public fields
/// only, except to admins.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListUsersParams), security(("bearer" = [])), responses(
    (status = 200, body = Paged<UserBody>),
    (status = 400, body = ErrorBody, description = "Bad page, limit, role or sort"),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "A role filter or an email sort by a non-admin"),
))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(params): Query<ListUsersParams>,
) -> ApiResult<Json<Paged<UserBody>>> {
    let mut errors = Vec::new();
    check_len("search", params.search.as_deref(), SEARCH_MAX, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let query = UserQuery {
        page: PageRequest::new(params.page, params.limit)?,
        search: params.search,
        search_email: false,
        role: params.role.map(Into::into),
        sort: Sort::parse(
            params.sort.as_deref(),
            SORTS,
            Sort {
                field: UserSortField::CreatedAt,
                direction: Direction::Desc,
            },
        )?,
    };
    let page = state.app.identity().list_users(auth.actor, &query).await?;
    Ok(Json(Paged::from_page(page, |u| {
        UserBody::for_viewer(u, &auth.actor)
    })))
}

/// One user: every field to the user and admins, the public ones to others.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = UserBody),
    (status = 400, body = ErrorBody, description = "The id is not a UUID"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<UserBody>> {
    let user = state.app.identity().get_user(UserId::from_uuid(id)).await?;
    Ok(Json(UserBody::for_viewer(user, &auth.actor)))
}

/// Replaces a user's email and name (and password, when sent). Self or admin. A new email or
/// password needs the caller's `currentPassword`; a new email is unverified until the link
/// mailed to it is followed, and the previous address is told of the change.
#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = ReplaceUserRequest, security(("bearer" = [])), responses(
    (status = 200, body = UserBody),
    (status = 400, body = ErrorBody, description = "Invalid fields, or a missing or wrong `currentPassword`"),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "Not your account, or a role/tier change by a non-admin"),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The email belongs to another user"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 429, body = ErrorBody, description = "Too many wrong current passwords, or the email changed less than a minute ago", headers(("retry-after" = u64))),
))]
pub async fn replace(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<ReplaceUserRequest>,
) -> ApiResult<Json<UserBody>> {
    let rest = UserChanges {
        password: body.password,
        role: body.role.map(Into::into),
        tier: body.tier.map(Into::into),
        current_password: body.current_password,
        ..UserChanges::default()
    };
    let user = state
        .app
        .identity()
        .replace_user(
            auth.actor,
            UserId::from_uuid(id),
            body.email,
            body.name,
            rest,
        )
        .await?;
    // The caller is the account's owner or an admin.
    Ok(Json(UserBody::full(user)))
}

/// Changes some fields of a user. Self or admin; `role` and `tier` admin only. A new email or
/// password needs the caller's `currentPassword`. A new password ends every session of the
/// account; a new email is unverified until the link mailed to it is followed, and the previous
/// address is told of the change.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = PatchUserRequest, security(("bearer" = [])), responses(
    (status = 200, body = UserBody),
    (status = 400, body = ErrorBody, description = "Invalid fields, or a missing or wrong `currentPassword`"),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "Not your account, or a role/tier change by a non-admin"),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The email belongs to another user"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 429, body = ErrorBody, description = "Too many wrong current passwords, or the email changed less than a minute ago", headers(("retry-after" = u64))),
))]
pub async fn patch(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<PatchUserRequest>,
) -> ApiResult<Json<UserBody>> {
    let changes = UserChanges {
        email: body.email,
        name: body.name,
        password: body.password,
        role: body.role.map(Into::into),
        tier: body.tier.map(Into::into),
        current_password: body.current_password,
    };
    let user = state
        .app
        .identity()
        .update_user(auth.actor, UserId::from_uuid(id), changes)
        .await?;
    // The caller is the account's owner or an admin.
    Ok(Json(UserBody::full(user)))
}

/// Deletes a user (admins only).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
))]
pub async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    state
        .app
        .identity()
        .delete_user(auth.actor, UserId::from_uuid(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// v2: a user with their latest published posts (the account's fields as for v1).
#[utoipa::path(get, path = "/api/v2/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = UserWithPosts),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
pub async fn get_v2(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<UserWithPosts>> {
    let user = state.app.identity().get_user(UserId::from_uuid(id)).await?;
    let posts = state.app.blog().posts_by(user.id, 20).await?;
    Ok(Json(UserWithPosts {
        user: UserBody::for_viewer(user, &auth.actor),
        posts: posts
            .into_iter()
            .map(|p| PostSummary {
                id: p.id.into(),
                slug: p.slug,
                title: p.title,
                excerpt: p.excerpt,
                published_at: p.published_at.unwrap_or(p.created_at),
            })
            .collect(),
    }))
}
