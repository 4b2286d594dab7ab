//! inkcart's use cases and the ports they need.
//!
//! Every rule that involves more than one value or an outside system is decided here, then
//! carried out through the traits in [`ports`], which the store, the HTTP layer's wiring and the
//! adapters implement. The HTTP and GraphQL faces call these use cases and nothing below them.

pub mod error;
pub mod health;
pub mod identity;
pub mod page;
pub mod ports;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

pub use error::{AppError, AppResult};

/// Tunable values of the use cases, taken from configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of an access token (JWT).
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token.
    pub refresh_token_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// The outside world, as the use cases see it.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn ports::Store>,
    pub users: Arc<dyn ports::UserRepo>,
    pub sessions: Arc<dyn ports::SessionRepo>,
    pub hasher: Arc<dyn ports::PasswordHasher>,
    pub tokens: Arc<dyn ports::TokenIssuer>,
    pub clock: Arc<dyn ports::Clock>,
    pub login_throttle: Arc<dyn ports::LoginThrottle>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").finish_non_exhaustive()
    }
}

/// The application: every use case, as methods grouped by feature module.
#[derive(Debug, Clone)]
pub struct App {
    deps: Deps,
    settings: Settings,
}

impl App {
    pub fn new(deps: Deps, settings: Settings) -> Self {
        Self { deps, settings }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
