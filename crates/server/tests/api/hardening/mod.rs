//! The hardening suite: one test per class of abuse an anonymous or ill-meaning client can try
//! (nesting that would exhaust a parser's stack, small requests that would cost unbounded
//! memory, slow or oversized connections, input the databases cannot store, races and stale
//! credentials, floods), each on SQLite and PostgreSQL. Every test ends with a normal request
//! that must still be answered.

mod auth;
mod graphql;
mod input;
mod server;
