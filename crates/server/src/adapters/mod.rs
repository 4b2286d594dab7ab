//! Implementations of app ports that need no database: password hashing, access tokens, the
//! sandbox payment gateway, object storage, email, the event broker and the shared rate
//! limiter.

pub mod hasher;
pub mod mail;
pub mod nats;
pub mod payments;
pub mod ratelimit;
pub mod storage;
pub mod tokens;
