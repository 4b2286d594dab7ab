//! SeaORM entities: the tables as Rust types. They stay inside this crate; repositories map
//! them to domain types.

pub mod comments;
pub mod cron_runs;
pub mod email_tokens;
pub mod idempotency_keys;
pub mod job_effects;
pub mod jobs;
pub mod order_items;
pub mod orders;
pub mod outbox_events;
pub mod payments;
pub mod post_tags;
pub mod posts;
pub mod products;
pub mod published_post_counts;
pub mod refresh_tokens;
pub mod tags;
pub mod users;
