//! Implementations of app ports that need a library but no database: password hashing and
//! access tokens.

pub mod hasher;
pub mod tokens;
