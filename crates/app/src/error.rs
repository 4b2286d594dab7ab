use inkcart_domain::FieldError;
use thiserror::Error;

/// The one error type of the use cases. The HTTP and GraphQL faces map each variant to a status
/// and a stable error name; only `Internal` hides its detail from the caller.
#[derive(Debug, Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Validation failed")]
    Validation(Vec<FieldError>),
    /// Business rules broken by the input: like `Validation`, but the first rule's message is
    /// the error's message (`Cart is empty`, `Minimum order amount is $10`).
    #[error("{}", .0.first().map_or("Validation failed", |e| e.message.as_str()))]
    Rules(Vec<FieldError>),
    /// A rule broken by the input as a whole rather than by one field.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// The payment gateway declined.
    #[error("{0}")]
    PaymentRequired(String),
    /// Understood but refused as it stands (an idempotency key reused with another body).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{message}")]
    RateLimited {
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
    pub fn not_found(resource: &str) -> Self {
        Self::NotFound(format!("{resource} not found"))
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn invalid_token() -> Self {
        Self::Unauthorized(messages::INVALID_TOKEN.to_owned())
    }

    pub fn insufficient_permissions() -> Self {
        Self::Forbidden(messages::INSUFFICIENT_PERMISSIONS.to_owned())
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
}
