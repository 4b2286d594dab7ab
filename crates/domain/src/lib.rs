//! The pure rules and types of inkcart.
//!
//! Nothing here performs I/O, spawns tasks or knows about HTTP or SQL: values are parsed into
//! types that cannot hold invalid data ("parse, don't validate"), and the rules that decide what
//! is allowed live next to the types they talk about.

pub mod blog;
pub mod email;
pub mod error;
pub mod ids;
pub mod password;
pub mod shop;
pub mod time;
pub mod user;

pub use email::Email;
pub use error::FieldError;
pub use ids::{
    CommentId, EmailTokenId, EventId, JobId, OrderId, PaymentId, PostId, ProductId, RefreshTokenId,
    UserId,
};
pub use password::Password;
pub use user::{Actor, Role, Tier, User, UserName};
