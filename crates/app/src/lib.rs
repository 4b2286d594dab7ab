//! inkcart's use cases and the ports they need.
//!
//! Every rule that involves more than one value or an outside system is decided here, then
//! carried out through the traits in [`ports`], which the store, the HTTP layer's wiring and the
//! adapters implement. The HTTP and GraphQL faces call these use cases and nothing below them.

pub mod blog;
mod cache;
pub mod error;
pub mod events;
pub mod health;
pub mod identity;
pub mod jobs;
pub mod mail;
pub mod page;
pub mod ports;
pub mod ratelimit;
pub mod shop;
pub mod throttle;
pub mod uploads;

use std::sync::Arc;
use std::time::Duration;

pub use blog::Blog;
pub use cache::Shared;
pub use error::{AppError, AppResult, ErrorCode};
pub use health::Health;
pub use identity::Identity;
pub use jobs::Background;
pub use ratelimit::RateLimits;
pub use shop::Shop;
pub use uploads::Uploads;

/// Tunable values of the use cases, taken from configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of an access token (JWT).
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token.
    pub refresh_token_ttl: Duration,
    /// How long a product stays in the in-process cache (writes through this process
    /// invalidate it at once; the lifetime bounds staleness from other instances). Zero: no
    /// product cache.
    pub product_cache_ttl: Duration,
    /// How long a published post and a page of the post list stay in the in-process caches
    /// (every blog write through this process clears them at once; the lifetime bounds
    /// staleness from other instances). Zero: no post caches.
    pub post_cache_ttl: Duration,
    /// How long a page of search results stays in the in-process cache (cleared with the post
    /// caches). Longer than a post's by default: a search page costs tens of milliseconds to
    /// rank, and a result a minute old from another instance's write is acceptable where a post
    /// page that old is not. Zero: search pages are not cached.
    pub search_cache_ttl: Duration,
    /// How long a stored idempotent response is replayed.
    pub idempotency_ttl: Duration,
    /// After how long an in-flight idempotent request is presumed dead and its key reusable.
    pub idempotency_abandon_after: Duration,
    /// The URL clients reach the server at (links in emails).
    pub public_url: String,
    /// Attempts before a job is dead.
    pub job_max_attempts: i32,
    /// How long a worker holds a job before another may take it (renewed while it runs).
    pub job_lease: Duration,
    /// The first retry delay; each later one doubles (with jitter).
    pub job_backoff: Duration,
    /// Request rate limits; `None`: off.
    pub rate_limits: Option<ratelimit::RateLimitPolicy>,
    /// How uploaded images may be decoded: a pixel budget and a bound on concurrent decodes.
    pub image_limits: uploads::ImageLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(7 * 24 * 60 * 60),
            product_cache_ttl: Duration::from_secs(30),
            post_cache_ttl: Duration::from_secs(5),
            search_cache_ttl: Duration::from_secs(60),
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            idempotency_abandon_after: Duration::from_secs(60),
            public_url: "http://127.0.0.1:3000".to_owned(),
            job_max_attempts: 5,
            job_lease: Duration::from_secs(60),
            job_backoff: Duration::from_secs(2),
            rate_limits: Some(ratelimit::RateLimitPolicy::default()),
            image_limits: uploads::ImageLimits::default(),
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
    pub rate_limiter: Arc<dyn ports::RateLimiter>,
    pub products: Arc<dyn ports::ProductRepo>,
    pub orders: Arc<dyn ports::OrderRepo>,
    pub idempotency: Arc<dyn ports::IdempotencyRepo>,
    pub payments: Arc<dyn ports::PaymentGateway>,
    pub posts: Arc<dyn ports::PostRepo>,
    pub storage: Arc<dyn ports::ObjectStorage>,
    pub outbox: Arc<dyn ports::Outbox>,
    pub jobs: Arc<dyn ports::JobQueue>,
    pub email_tokens: Arc<dyn ports::EmailTokenRepo>,
    pub mailer: Arc<dyn ports::Mailer>,
    /// The broker events are published to, when one is configured.
    pub publisher: Option<Arc<dyn ports::EventPublisher>>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").finish_non_exhaustive()
    }
}

/// The application: one service per feature, built once from the ports and the settings.
/// Each service holds only the ports it uses; a use case that needs another feature is given
/// the narrow part it needs (the event log, the post caches) when the services are built here.
// Payments, accounts (OIDC) and notifications join as services of their own, beside these.
#[derive(Clone, Debug)]
pub struct App {
    identity: identity::Identity,
    blog: blog::Blog,
    shop: shop::Shop,
    uploads: uploads::Uploads,
    background: jobs::Background,
    rate_limits: ratelimit::RateLimits,
    health: health::Health,
}

impl App {
    pub fn new(deps: Deps, settings: Settings) -> Self {
        let events = events::EventLog::new(Arc::clone(&deps.outbox), Arc::clone(&deps.clock));
        let post_caches = blog::PostCaches::new(&deps.posts, &settings);
        Self {
            identity: identity::Identity::new(
                &deps,
                &settings,
                events.clone(),
                post_caches.clone(),
            ),
            blog: blog::Blog::new(&deps, events.clone(), post_caches),
            shop: shop::Shop::new(&deps, &settings, events),
            uploads: uploads::Uploads::new(
                Arc::clone(&deps.storage),
                settings.image_limits.clone(),
            ),
            background: jobs::Background::new(&deps, &settings),
            rate_limits: ratelimit::RateLimits::new(
                Arc::clone(&deps.rate_limiter),
                Arc::clone(&deps.clock),
                settings.rate_limits,
            ),
            health: health::Health::new(deps.store),
        }
    }

    /// Accounts, sessions and tokens.
    pub fn identity(&self) -> &identity::Identity {
        &self.identity
    }

    /// Posts, comments, tags and search.
    pub fn blog(&self) -> &blog::Blog {
        &self.blog
    }

    /// Products, orders, payments and reports.
    pub fn shop(&self) -> &shop::Shop {
        &self.shop
    }

    /// Uploaded images and files.
    pub fn uploads(&self) -> &uploads::Uploads {
        &self.uploads
    }

    /// The outbox relay, the jobs and the schedules.
    pub fn background(&self) -> &jobs::Background {
        &self.background
    }

    /// Request rate limits.
    pub fn rate_limits(&self) -> &ratelimit::RateLimits {
        &self.rate_limits
    }

    /// Readiness checks.
    pub fn health(&self) -> &health::Health {
        &self.health
    }
}
