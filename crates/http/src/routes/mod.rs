pub mod auth;
pub mod health;
pub mod orders;
pub mod products;
pub mod users;
