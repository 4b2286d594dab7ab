//! Implementations of app ports that need no database: password hashing, access tokens and
//! the sandbox payment gateway.

pub mod hasher;
pub mod payments;
pub mod tokens;
