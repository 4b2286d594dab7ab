//! The database of inkcart: one code path for SQLite and PostgreSQL through SeaORM.
//!
//! [`Db`] opens either backend from configuration, [`migration::Migrator`] creates the same
//! schema on both, and [`SqlStore`] implements the repository ports of `inkcart-app`. Where the
//! SQL of the two engines differs, the repositories ask the dialect (`dialect.rs`).

pub mod bulk;
mod connect;
mod dialect;
mod entity;
mod error;
mod lite;
pub mod migration;
mod pg;
mod repo;
#[cfg(feature = "testing")]
pub mod testing;

pub use connect::{Backend, Db, DbOptions};
pub use repo::SqlStore;
