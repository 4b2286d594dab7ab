use inkcart_domain::FieldError;
use thiserror::Error;

/// Declares the error codes once: the enum, its names and the list of all come from one table.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $code:ident => $name:literal,)*) => {
        /// A machine-readable reason for an error, stable across releases: clients branch on it
        /// instead of on the human message. Carried as `code` in the REST envelope and as
        /// `reason` in a GraphQL error's extensions. Every status has a generic code; the rest
        /// name a rule of their own.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, in the order declared.
            pub const ALL: &'static [Self] = &[$(Self::$code,)*];

            /// The code as clients see it (`slug_taken`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$code => $name,)*
                }
            }
        }
    };
}

// Each code once, with the name clients see.
error_codes! {
    // ---- generic, one per status ----
    BadRequest => "bad_request",
    ValidationFailed => "validation_failed",
    Unauthorized => "unauthorized",
    PaymentRequired => "payment_required",
    Forbidden => "forbidden",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    RequestTimeout => "request_timeout",
    Conflict => "conflict",
    PayloadTooLarge => "payload_too_large",
    UriTooLong => "uri_too_long",
    UnsupportedMediaType => "unsupported_media_type",
    Unprocessable => "unprocessable",
    RateLimited => "rate_limited",
    RequestHeaderFieldsTooLarge => "request_header_fields_too_large",
    Unavailable => "unavailable",
    Internal => "internal",
    // ---- 400 ----
    /// The body is not JSON, or not the JSON the operation takes.
    MalformedBody => "malformed_body",
    /// An order broke one of the order rules (empty cart, quantity, minimum amount, …).
    OrderRulesBroken => "order_rules_broken",
    /// An email verification or password reset token that is unknown, used or expired.
    InvalidEmailToken => "invalid_email_token",
    /// An upload that is not one of the accepted image formats, or cannot be decoded.
    NotAnImage => "not_an_image",
    // ---- 401 ----
    NoToken => "no_token",
    InvalidToken => "invalid_token",
    InvalidCredentials => "invalid_credentials",
    // ---- 402 ----
    PaymentDeclined => "payment_declined",
    // ---- 403 ----
    InsufficientPermissions => "insufficient_permissions",
    NotOwner => "not_owner",
    // ---- 409 ----
    EmailTaken => "email_taken",
    SlugTaken => "slug_taken",
    InsufficientStock => "insufficient_stock",
    /// An order status change the order's state does not allow (cancel a shipped order, …).
    InvalidTransition => "invalid_transition",
    EmailAlreadyVerified => "email_already_verified",
    UserHasOrders => "user_has_orders",
    CommentsClosed => "comments_closed",
    IdempotencyKeyInFlight => "idempotency_key_in_flight",
    JobNotRetryable => "job_not_retryable",
    // ---- 422 ----
    IdempotencyKeyReused => "idempotency_key_reused",
    // ---- 429 ----
    TooManyLoginAttempts => "too_many_login_attempts",
    TooManyPasswordAttempts => "too_many_password_attempts",
    // ---- 503 ----
    Busy => "busy",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one error type of the use cases. The HTTP and GraphQL faces map each variant to a status
/// and a stable error name, and [`AppError::code`] to the machine-readable reason; only
/// `Internal` hides its detail from the caller.
#[derive(Debug, Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    #[error("{1}")]
    Conflict(ErrorCode, String),
    #[error("Validation failed")]
    Validation(Vec<FieldError>),
    /// Business rules broken by the input: like `Validation`, but the first rule's message is
    /// the error's message (`Cart is empty`, `Minimum order amount is $10`).
    #[error("{}", .0.first().map_or("Validation failed", |e| e.message.as_str()))]
    Rules(Vec<FieldError>),
    /// A rule broken by the input as a whole rather than by one field.
    #[error("{1}")]
    BadRequest(ErrorCode, String),
    #[error("{1}")]
    Unauthorized(ErrorCode, String),
    #[error("{1}")]
    Forbidden(ErrorCode, String),
    /// The payment gateway declined.
    #[error("{0}")]
    PaymentRequired(String),
    /// Understood but refused as it stands (an idempotency key reused with another body).
    #[error("{1}")]
    Unprocessable(ErrorCode, String),
    #[error("{message}")]
    RateLimited {
        code: ErrorCode,
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    /// The input is larger than the server is willing to process (bytes, pixels).
    #[error("{0}")]
    TooLarge(String),
    /// Every slot for this kind of work is taken: try again after a while.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// The machine-readable reason of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Validation(_) => ErrorCode::ValidationFailed,
            Self::Rules(_) => ErrorCode::OrderRulesBroken,
            Self::PaymentRequired(_) => ErrorCode::PaymentDeclined,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::TooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::Busy { .. } => ErrorCode::Busy,
            Self::Internal(_) => ErrorCode::Internal,
            Self::Conflict(code, _)
            | Self::BadRequest(code, _)
            | Self::Unauthorized(code, _)
            | Self::Forbidden(code, _)
            | Self::Unprocessable(code, _)
            | Self::RateLimited { code, .. } => *code,
        }
    }

    pub fn not_found(resource: &str) -> Self {
        Self::NotFound(format!("{resource} not found"))
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Conflict(code, message.into())
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn invalid_token() -> Self {
        Self::Unauthorized(ErrorCode::InvalidToken, messages::INVALID_TOKEN.to_owned())
    }

    pub fn insufficient_permissions() -> Self {
        Self::Forbidden(
            ErrorCode::InsufficientPermissions,
            messages::INSUFFICIENT_PERMISSIONS.to_owned(),
        )
    }

    /// Someone else's post, comment or order.
    pub fn not_owner() -> Self {
        Self::Forbidden(ErrorCode::NotOwner, messages::OWN_RESOURCES_ONLY.to_owned())
    }

    pub fn internal(context: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{context}"))
    }
}

/// Messages that the contract (API.md) fixes word for word.
pub mod messages {
    pub const NO_TOKEN: &str = "No token provided";
    pub const INVALID_TOKEN: &str = "Invalid or expired token";
    pub const INVALID_CREDENTIALS: &str = "Invalid credentials";
    pub const INSUFFICIENT_PERMISSIONS: &str = "Insufficient permissions";
    pub const OWN_RESOURCES_ONLY: &str = "Can only edit your own resources";
    pub const SLUG_EXISTS: &str = "Slug already exists";
    pub const PAYMENT_DECLINED: &str = "Payment declined";
    pub const IDEMPOTENCY_IN_FLIGHT: &str =
        "A request with this Idempotency-Key is still being processed";
    pub const IDEMPOTENCY_MISMATCH: &str = "This Idempotency-Key was used with a different request";
    pub const TOO_MANY_LOGIN_ATTEMPTS: &str =
        "Too many failed login attempts, please try again later";
    pub const TOO_MANY_PASSWORD_ATTEMPTS: &str = "Too many wrong passwords, please try again later";
    pub const TOO_MANY_REQUESTS: &str = "Too many requests, please try again later";
    pub const CURRENT_PASSWORD_REQUIRED: &str =
        "The current password is required to change the email or the password";
    pub const CURRENT_PASSWORD_WRONG: &str = "The current password is not correct";

    /// An order line that could not be taken: its product is short, inactive or gone.
    pub fn insufficient_stock(product: &str) -> String {
        format!("Insufficient stock for {product}")
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_error_code_has_its_own_snake_case_name() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} is used twice");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        assert_eq!(seen.len(), ErrorCode::ALL.len());
    }
}
