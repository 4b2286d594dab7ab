use inkcart_app::AppError;
use inkcart_app::error::ErrorCode;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Unique constraints and what their violation means to an API client. SQLite names the
/// columns instead of the constraint, so both spellings are listed.
const UNIQUE_CONSTRAINTS: &[(&str, &str, ErrorCode, &str)] = &[
    (
        "users_email_key",
        "users.email",
        ErrorCode::EmailTaken,
        "User already exists",
    ),
    (
        "posts_slug_key",
        "posts.slug",
        ErrorCode::SlugTaken,
        inkcart_app::error::messages::SLUG_EXISTS,
    ),
];

/// Maps a database error to the use-case error: known unique violations become conflicts,
/// connection trouble becomes `Unavailable`, anything else is internal (logged, not shown).
pub(crate) fn db_err(err: DbErr) -> AppError {
    if let Some(SqlErr::UniqueConstraintViolation(message)) = err.sql_err()
        && let Some(conflict) = unique_conflict(&message)
    {
        return conflict;
    }
    match &err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(RuntimeErr::SqlxError(_)) => {
            tracing::error!(error = %err, "database unavailable");
            AppError::Unavailable("Database unavailable".to_owned())
        }
        DbErr::Query(RuntimeErr::SqlxError(cause)) | DbErr::Exec(RuntimeErr::SqlxError(cause))
            if connection_lost(cause) =>
        {
            tracing::error!(error = %err, "database connection lost");
            AppError::Unavailable("Database unavailable".to_owned())
        }
        _ => AppError::Internal(anyhow::Error::new(err).context("database error")),
    }
}

/// A statement that failed because its connection did: the server went away while the
/// connection sat in the pool or during the statement. A connection in use a moment before is
/// lent without a test (`connect.rs`), so a server that restarts (or a cut link) shows here
/// first; sqlx then drops the connection instead of lending it again. (A pool that times out
/// or is closed is reported by sea-orm as `ConnectionAcquire`, above.)
fn connection_lost(err: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    matches!(err, E::Io(_) | E::Tls(_) | E::WorkerCrashed)
}

/// The conflict a unique violation means to a client, when it is one of [`UNIQUE_CONSTRAINTS`].
pub(crate) fn unique_conflict(message: &str) -> Option<AppError> {
    UNIQUE_CONSTRAINTS
        .iter()
        .find(|(pg, sqlite, _, _)| message.contains(pg) || message.contains(sqlite))
        .map(|(_, _, code, meaning)| AppError::conflict(*code, *meaning))
}

/// A foreign-key violation on either database. SQLite reports a `RESTRICT` action as a
/// trigger error (extended code 1811) rather than 787, so its message is checked too.
pub(crate) fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    ) || err.to_string().contains("FOREIGN KEY constraint failed")
}
