//! Implementations of app ports that talk to the outside world: password hashing, access
//! tokens, the sandbox payment gateway, object storage, email, the event broker, the shared
//! rate limiter and the Redis job queue. None of them reaches the database: what one needs from
//! it comes through a port.

pub mod hasher;
pub mod mail;
pub mod nats;
pub mod payments;
pub mod ratelimit;
pub mod redis_queue;
pub mod storage;
pub mod tokens;
