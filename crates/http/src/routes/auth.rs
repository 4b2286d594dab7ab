use axum::extract::State;
use axum::http::StatusCode;
use inkcart_app::identity::{Login, Session};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::dto::RoleDto;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, ClientIp, Json};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "user@example.com", "password": "Secret123"}))]
pub struct LoginRequest {
    #[schema(min_length = 1)]
    pub email: String,
    #[schema(min_length = 1)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    #[schema(min_length = 1)]
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginUser {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: RoleDto,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// The access token (JWT) for `Authorization: Bearer`.
    pub token: String,
    /// The opaque refresh token; spend it at `/api/v1/auth/refresh`.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: LoginUser,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// Logs in with email and password.
///
/// Failed attempts are limited per (client address, email): past the limit the answer is 429
/// with `Retry-After`, even for the right password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = LoginResponse),
    (status = 400, body = ErrorBody, description = "Malformed or invalid body"),
    (status = 401, body = ErrorBody, description = "Invalid credentials"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 429, body = ErrorBody, description = "Too many failed attempts", headers(("retry-after" = u64))),
))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    Json(body): Json<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let session = state
        .app
        .identity()
        .login(Login {
            email: body.email,
            password: body.password,
            client_ip,
        })
        .await?;
    let Session {
        access,
        refresh_token,
        user,
    } = session;
    Ok(Json(LoginResponse {
        token: access.token,
        refresh_token,
        expires_in: access.expires_in.as_secs(),
        user: LoginUser {
            id: user.id.as_uuid(),
            email: user.email.into_string(),
            name: user.name.map(|n| n.as_str().to_owned()),
            role: user.role.into(),
        },
    }))
}

/// Exchanges a refresh token for a new pair; the presented token is spent.
///
/// Presenting a spent token again is treated as theft: its whole session family is revoked,
/// including the newer token.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "Invalid, expired, revoked or reused token"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let session = state.app.identity().refresh(&body.refresh_token).await?;
    Ok(Json(TokenResponse {
        token: session.access.token,
        refresh_token: session.refresh_token,
        expires_in: session.access.expires_in.as_secs(),
    }))
}

/// Ends the session of the given refresh token.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    security(("bearer" = [])), responses(
    (status = 204, description = "The session is revoked"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn logout(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<StatusCode> {
    state
        .app
        .identity()
        .logout(auth.actor, &body.refresh_token)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller.
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "Every session is revoked"),
    (status = 401, body = ErrorBody),
))]
pub async fn logout_all(State(state): State<AppState>, auth: AuthUser) -> ApiResult<StatusCode> {
    state.app.identity().logout_all(auth.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    pub status: &'static str,
}

/// Sends a new email verification link to the caller (at most once a minute).
#[utoipa::path(post, path = "/api/v1/auth/verify-email/request", tag = "auth", security(("bearer" = [])), responses(
    (status = 202, body = Accepted, description = "The email is on its way"),
    (status = 401, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "The email is already verified"),
    (status = 429, body = ErrorBody, description = "Asked less than a minute ago", headers(("retry-after" = u64))),
))]
pub async fn request_verification(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    state
        .app
        .identity()
        .request_email_verification(auth.actor)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the email's link.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Verified {
    pub verified: bool,
}

/// Confirms an email address with the token from the verification email.
#[utoipa::path(post, path = "/api/v1/auth/verify-email/confirm", tag = "auth", request_body = TokenRequest, responses(
    (status = 200, body = Verified),
    (status = 400, body = ErrorBody, description = "Unknown, used or expired token"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn confirm_verification(
    State(state): State<AppState>,
    Json(body): Json<TokenRequest>,
) -> ApiResult<Json<Verified>> {
    state.app.identity().confirm_email(&body.token).await?;
    Ok(Json(Verified { verified: true }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "user@example.com"}))]
pub struct ResetRequest {
    pub email: String,
}

/// Starts a password reset. Always 202, whether or not the email belongs to an account.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/request", tag = "auth", request_body = ResetRequest, responses(
    (status = 202, body = Accepted),
    (status = 400, body = ErrorBody, description = "Not an email address"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn request_reset(
    State(state): State<AppState>,
    Json(body): Json<ResetRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    state
        .app
        .identity()
        .request_password_reset(&body.email)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResetConfirm {
    pub token: String,
    /// The password policy applies.
    pub new_password: String,
}

/// Sets a new password with the token from the reset email; every session ends.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm, responses(
    (status = 204, description = "The password is changed"),
    (status = 400, body = ErrorBody, description = "Unknown, used or expired token, or a weak password"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn confirm_reset(
    State(state): State<AppState>,
    Json(body): Json<ResetConfirm>,
) -> ApiResult<StatusCode> {
    state
        .app
        .identity()
        .confirm_password_reset(&body.token, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
