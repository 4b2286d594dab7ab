//! HTTP integration tests: the real router, in-process, on SQLite and on PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

mod blog;
mod contract;
mod demo;
mod docs_ui;
mod errors;
mod graphql;
mod hardening;
mod health;
mod identity;
mod jobs;
mod shop;
mod shop_races;
mod socket;
mod uploads;
mod workers;
