//! The error envelope of API.md: `{"error","message","statusCode","code","errors"?}` for every
//! error.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inkcart_app::{AppError, ErrorCode};
use inkcart_domain::FieldError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"error": "Conflict", "message": "User already exists", "statusCode": 409, "code": "email_taken"}))]
pub struct ErrorBody {
    /// Stable, machine-readable error name (`ValidationError`, `NotFound`, …).
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    pub status_code: u16,
    /// Stable, machine-readable reason (`slug_taken`, `insufficient_stock`, …): finer than
    /// `error`, and what a client branches on. docs/api.md lists them.
    pub code: &'static str,
    /// One entry per invalid field (validation errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldErrorBody>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldErrorBody {
    pub field: String,
    pub message: String,
}

/// The hidden cause of a 5xx, carried to the logging middleware in a response extension so
/// that it is logged with the request id but never sent to the client.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub Arc<str>);

/// An error on its way to becoming an envelope response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    errors: Option<Vec<FieldError>>,
    retry_after: Option<u64>,
    cause: Option<String>,
    /// For a 429 of the rate limiter: the budget that refused, for its headers (boxed: errors
    /// travel in every `Result` of the handlers).
    rate_limit: Option<Box<inkcart_app::ports::Verdict>>,
}

pub const INTERNAL_MESSAGE: &str = "Internal server error";

impl ApiError {
    /// An error with the generic code of its status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code: generic_code(status),
            message: message.into(),
            errors: None,
            retry_after: None,
            cause: None,
            rate_limit: None,
        }
    }

    /// A 429 for a request that a rate-limit budget refused (`RateLimit-*` headers follow from
    /// the verdict, added by the rate-limit middleware).
    pub fn rate_limited(verdict: inkcart_app::ports::Verdict) -> Self {
        Self {
            retry_after: Some(crate::ratelimit::ceil_secs(verdict.retry_after).max(1)),
            rate_limit: Some(Box::new(verdict)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                inkcart_app::error::messages::TOO_MANY_REQUESTS,
            )
        }
    }

    /// A 503 for a request the server has no room for now, with `Retry-After`.
    pub fn busy(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            code: ErrorCode::Busy,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self {
            errors: Some(errors),
            code: ErrorCode::ValidationFailed,
            ..Self::new(StatusCode::BAD_REQUEST, "Validation failed")
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self {
            cause: Some(cause.to_string()),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
        }
    }

    /// The same error with a finer machine-readable code.
    #[must_use]
    pub fn with_code(self, code: ErrorCode) -> Self {
        Self { code, ..self }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn field_errors(&self) -> Option<&Vec<FieldError>> {
        self.errors.as_ref()
    }

    /// The hidden cause of a 5xx, for the log.
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }
}

/// The code of an error that has no finer one: one per status.
pub fn generic_code(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        402 => ErrorCode::PaymentRequired,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::Unprocessable,
        429 => ErrorCode::RateLimited,
        431 => ErrorCode::RequestHeaderFieldsTooLarge,
        503 => ErrorCode::Unavailable,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

/// The `error` name for a status, as API.md lists them.
pub fn error_name(status: StatusCode, has_field_errors: bool) -> &'static str {
    match status.as_u16() {
        400 if has_field_errors => "ValidationError",
        400 => "BadRequest",
        401 => "Unauthorized",
        402 => "PaymentRequired",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        408 => "RequestTimeout",
        409 => "Conflict",
        413 => "PayloadTooLarge",
        414 => "URITooLong",
        415 => "UnsupportedMediaType",
        422 => "UnprocessableEntity",
        431 => "RequestHeaderFieldsTooLarge",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        s if s >= 500 => "InternalServerError",
        _ => "BadRequest",
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        let code = err.code();
        let api = match err {
            AppError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, m),
            AppError::Conflict(_, m) => Self::new(StatusCode::CONFLICT, m),
            AppError::Validation(errors) => Self::validation(errors),
            AppError::Rules(errors) => Self {
                message: errors
                    .first()
                    .map_or_else(|| "Validation failed".to_owned(), |e| e.message.clone()),
                ..Self::validation(errors)
            },
            AppError::BadRequest(_, m) => Self::new(StatusCode::BAD_REQUEST, m),
            AppError::Unauthorized(_, m) => Self::new(StatusCode::UNAUTHORIZED, m),
            AppError::Forbidden(_, m) => Self::new(StatusCode::FORBIDDEN, m),
            AppError::PaymentRequired(m) => Self::new(StatusCode::PAYMENT_REQUIRED, m),
            AppError::Unprocessable(_, m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            AppError::RateLimited {
                code: _,
                message,
                retry_after_secs,
            } => Self {
                retry_after: Some(retry_after_secs),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
            },
            AppError::Unavailable(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, m),
            AppError::TooLarge(m) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, m),
            AppError::Busy {
                message,
                retry_after_secs,
            } => Self::busy(message, retry_after_secs),
            AppError::Internal(e) => Self::internal(format!("{e:#}")),
        };
        api.with_code(code)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: error_name(self.status, self.errors.is_some()).to_owned(),
            message: self.message,
            status_code: self.status.as_u16(),
            code: self.code.as_str(),
            errors: self.errors.map(|errors| {
                errors
                    .into_iter()
                    .map(|e| FieldErrorBody {
                        field: e.field,
                        message: e.message,
                    })
                    .collect()
            }),
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(ErrorCause(cause.into()));
        }
        if let Some(verdict) = self.rate_limit {
            response.extensions_mut().insert(*verdict);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
