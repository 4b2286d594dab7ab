//! Implementations of app ports that need no database: password hashing, access tokens, the
//! sandbox payment gateway and object storage.

pub mod hasher;
pub mod payments;
pub mod storage;
pub mod tokens;
