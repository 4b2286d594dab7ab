//! SeaORM entities: the tables as Rust types. They stay inside this crate; repositories map
//! them to domain types.

pub mod refresh_tokens;
pub mod users;
