//! SeaORM entities: the tables as Rust types. They stay inside this crate; repositories map
//! them to domain types.

pub mod comments;
pub mod idempotency_keys;
pub mod order_items;
pub mod orders;
pub mod payments;
pub mod post_tags;
pub mod posts;
pub mod products;
pub mod refresh_tokens;
pub mod tags;
pub mod users;
