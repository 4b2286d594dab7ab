pub mod admin;
pub mod auth;
pub mod health;
pub mod orders;
pub mod posts;
pub mod products;
pub mod uploads;
pub mod users;
