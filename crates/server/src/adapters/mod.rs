//! Implementations of app ports that need no database: password hashing, access tokens, the
//! sandbox payment gateway, object storage, email and the event broker.

pub mod hasher;
pub mod mail;
pub mod nats;
pub mod payments;
pub mod storage;
pub mod tokens;
