//! The `inkcart` binary's library: configuration, telemetry, the wiring of the store and
//! adapters into the use cases and the router, and the demo data of `seed-demo`. `main.rs` only
//! parses the command line.

pub mod config;
pub mod demo;
pub mod listen;
pub mod seed;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use inkcart_adapters::hasher::Argon2Hasher;
use inkcart_adapters::mail::{FileMailer, SmtpMailer};
use inkcart_adapters::nats::NatsPublisher;
use inkcart_adapters::payments::SandboxGateway;
use inkcart_adapters::ratelimit::RedisRateLimiter;
use inkcart_adapters::redis_queue::RedisJobQueue;
use inkcart_adapters::storage::{S3Settings, Storage};
use inkcart_adapters::tokens::JwtIssuer;
use inkcart_app::ports::{
    Clock, EventPublisher, JobQueue, Mailer, ObjectStorage, RateLimiter, SystemClock,
};
use inkcart_app::ratelimit::InMemoryRateLimiter;
use inkcart_app::throttle::InMemoryLoginThrottle;
use inkcart_app::{App, Deps, Settings};
use inkcart_http::{AppState, HttpConfig};
use inkcart_store::{Db, DbOptions, SqlStore};
use tokio::net::TcpListener;

use crate::config::{Config, JobQueueConfig, StorageConfig};

/// How to open the database that `config` describes.
pub fn db_options(config: &Config) -> DbOptions {
    DbOptions {
        url: config.database_url.clone(),
        data_dir: config.data_dir.clone(),
        max_connections: config.db_max_connections,
        acquire_timeout: config.db_acquire_timeout,
    }
}

/// Opens the configured database and applies pending migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&db_options(config)).await?;
    db.migrate().await?;
    Ok(db)
}

/// The use cases over `db`, with the configured adapters (no event broker; the job queue in
/// the database).
pub fn build_app(config: &Config, db: Db) -> anyhow::Result<App> {
    build_app_with(config, db, Arc::new(SystemClock), Connected::default())
}

/// [`build_app`] with another clock (tests move time forward with it).
pub fn build_app_with_clock(config: &Config, db: Db, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
    build_app_with(config, db, clock, Connected::default())
}

/// The adapters that need a connection made first (see [`connect`]).
#[derive(Default)]
#[allow(
    missing_debug_implementations,
    reason = "holds trait objects without Debug"
)]
pub struct Connected {
    pub publisher: Option<Arc<dyn EventPublisher>>,
    /// `None`: the job queue in the database.
    pub queue: Option<Arc<dyn JobQueue>>,
    /// `None`: request budgets in this process.
    pub rate_limiter: Option<Arc<dyn RateLimiter>>,
}

/// Connects the configured event broker and Redis job queue, if any.
pub async fn connect(config: &Config, db: &Db) -> anyhow::Result<Connected> {
    let queue: Option<Arc<dyn JobQueue>> = match (&config.job_queue, &config.redis_url) {
        (JobQueueConfig::Database, _) => None,
        (JobQueueConfig::Redis, Some(url)) => {
            let queue =
                RedisJobQueue::connect(url, "inkcart:jobs:", Arc::new(SqlStore::new(db.clone())))
                    .await
                    .with_context(|| format!("cannot connect to Redis at {url}"))?;
            tracing::info!("job queue on Redis");
            Some(Arc::new(queue))
        }
        (JobQueueConfig::Redis, None) => anyhow::bail!("INKCART_JOB_QUEUE=redis needs REDIS_URL"),
    };
    Ok(Connected {
        publisher: connect_publisher(config).await?,
        queue,
        rate_limiter: connect_rate_limiter(config).await?,
    })
}

/// Request budgets in Redis when `REDIS_URL` is set (every instance shares them), otherwise
/// `None` (each instance keeps its own).
pub async fn connect_rate_limiter(config: &Config) -> anyhow::Result<Option<Arc<dyn RateLimiter>>> {
    let (Some(url), Some(_)) = (&config.redis_url, &config.rate_limits) else {
        return Ok(None);
    };
    let limiter = RedisRateLimiter::connect(url, &config.rate_limit_prefix)
        .await
        .with_context(|| format!("REDIS_URL `{url}` is not usable for rate limits"))?;
    tracing::info!("rate limits shared through Redis");
    Ok(Some(Arc::new(limiter)))
}

/// Connects to the configured event broker, if any.
pub async fn connect_publisher(config: &Config) -> anyhow::Result<Option<Arc<dyn EventPublisher>>> {
    match &config.nats_url {
        None => Ok(None),
        Some(url) => {
            let publisher = NatsPublisher::connect(url)
                .await
                .with_context(|| format!("cannot connect to NATS at {url}"))?;
            tracing::info!(%url, "publishing events to NATS JetStream");
            Ok(Some(Arc::new(publisher)))
        }
    }
}

/// The configured mailer: SMTP, or `.eml` files in `<data dir>/mail`.
pub fn mailer(config: &Config) -> anyhow::Result<Arc<dyn Mailer>> {
    let from: lettre::message::Mailbox = config
        .mail_from
        .parse()
        .with_context(|| format!("INKCART_MAIL_FROM `{}` is not an address", config.mail_from))?;
    Ok(match &config.smtp {
        Some(smtp) => Arc::new(SmtpMailer::new(smtp, from)?),
        None => Arc::new(FileMailer::new(config.data_dir.join("mail"), from)?),
    })
}

/// The use cases over `db` with every adapter given.
pub fn build_app_with(
    config: &Config,
    db: Db,
    clock: Arc<dyn Clock>,
    connected: Connected,
) -> anyhow::Result<App> {
    let secret = config
        .jwt_secret
        .as_ref()
        .context("no JWT secret: call Config::ensure_jwt_secret first")?;
    let store = Arc::new(SqlStore::new(db));
    let deps = Deps {
        store: store.clone(),
        users: store.clone(),
        sessions: store.clone(),
        products: store.clone(),
        orders: store.clone(),
        idempotency: store.clone(),
        payments: Arc::new(SandboxGateway),
        posts: store.clone(),
        storage: storage(config)?,
        outbox: store.clone(),
        jobs: connected.queue.unwrap_or_else(|| store.clone()),
        email_tokens: store.clone(),
        mailer: mailer(config)?,
        publisher: connected.publisher,
        hasher: Arc::new(Argon2Hasher),
        tokens: Arc::new(JwtIssuer::new(secret.expose())),
        clock,
        login_throttle: Arc::new(InMemoryLoginThrottle::new(
            config.login_max_failures,
            config.login_window,
        )),
        rate_limiter: connected
            .rate_limiter
            .unwrap_or_else(|| Arc::new(InMemoryRateLimiter::default())),
    };
    Ok(App::new(
        deps,
        Settings {
            access_token_ttl: config.access_token_ttl,
            refresh_token_ttl: config.refresh_token_ttl,
            product_cache_ttl: config.product_cache_ttl,
            post_cache_ttl: config.post_cache_ttl,
            search_cache_ttl: config.search_cache_ttl,
            public_url: config.public_url.clone(),
            job_max_attempts: config.job_max_attempts,
            job_lease: config.job_lease,
            job_backoff: config.job_backoff,
            rate_limits: config.rate_limits,
            image_limits: inkcart_app::uploads::ImageLimits {
                max_pixels: config.upload_max_pixels,
                decode_concurrency: config.upload_decode_concurrency,
                decode_wait: config.upload_decode_wait,
            },
            ..Settings::default()
        },
    ))
}

/// The configured object storage for uploads.
pub fn storage(config: &Config) -> anyhow::Result<Arc<dyn ObjectStorage>> {
    Ok(match &config.storage {
        StorageConfig::Local { dir } => {
            let dir = dir.clone().unwrap_or_else(|| config.data_dir.join("files"));
            Arc::new(Storage::local(&dir, &config.public_url)?)
        }
        StorageConfig::S3 {
            endpoint,
            bucket,
            region,
            access_key_id,
            secret_access_key,
            path_style,
            public_url,
        } => Arc::new(Storage::s3(
            &S3Settings {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                region: region.clone(),
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                path_style: *path_style,
            },
            public_url.as_deref(),
        )?),
    })
}

/// Pins aws-lc-rs as rustls's crypto provider for the whole process, so that a dependency that
/// brings `ring` along can never leave rustls unable to choose (it panics then).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// How the job worker of `config` runs.
pub fn worker_config(config: &Config) -> inkcart_jobs::WorkerConfig {
    inkcart_jobs::WorkerConfig {
        concurrency: config.worker_concurrency,
        poll_interval: config.worker_poll,
        job_timeout: config.job_timeout,
        shutdown_grace: config.shutdown_grace,
        heartbeat: config.job_lease / 3,
    }
}

/// The GraphQL limits of `config`.
pub fn graphql_config(config: &Config) -> inkcart_http::graphql::GraphqlConfig {
    inkcart_http::graphql::GraphqlConfig {
        depth_limit: config.graphql_depth_limit,
        complexity_limit: config.graphql_complexity_limit,
        introspection: config.graphql_introspection,
        max_document_bytes: config.graphql_max_document_bytes,
        max_variables_bytes: config.graphql_max_variables_bytes,
        max_nesting: config.graphql_max_nesting,
        max_nodes: config.graphql_max_nodes,
        max_mutations: config.graphql_max_mutations,
    }
}

/// The HTTP configuration part of `config`.
pub fn http_config(config: &Config) -> HttpConfig {
    HttpConfig {
        body_limit: config.body_limit_bytes,
        upload_limit: config.upload_limit_bytes,
        request_timeout: config.request_timeout,
        cors_origins: config.cors_origins.clone(),
        hsts: config.hsts,
        proxies: inkcart_http::proxy::TrustedProxies::new(
            config.trust_proxy,
            config.trusted_proxies.clone(),
        ),
        max_header_bytes: config.max_header_bytes,
        body_read_timeout: config.body_read_timeout,
        body_memory_bytes: config.body_memory_bytes,
        https_redirect: config.https_redirect,
        https_origin: https_origin(&config.public_url),
        graphiql: config.env == crate::config::Environment::Development,
    }
}

/// The scheme and authority of the public URL, when it is an https URL: where plain-http
/// requests are redirected.
fn https_origin(public_url: &str) -> Option<String> {
    let uri: axum::http::Uri = public_url.parse().ok()?;
    (uri.scheme_str() == Some("https"))
        .then(|| uri.authority().map(|a| format!("https://{a}")))
        .flatten()
}

/// The connection limits of `config`.
pub fn server_limits(config: &Config) -> listen::ServerLimits {
    listen::ServerLimits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
        max_header_bytes: config.max_header_bytes,
        http2_max_streams: config.http2_max_streams,
        grace: config.shutdown_grace,
    }
}

/// The complete router over the use cases of `app`.
pub fn router_for(config: &Config, app: Arc<App>) -> axum::Router {
    if config.rate_limits.is_none() {
        tracing::warn!(
            "INKCART_RATE_LIMITS=off: no request is rate limited (load tests and local development only)"
        );
    }
    inkcart_http::router(AppState::new(
        app,
        http_config(config),
        &graphql_config(config),
    ))
}

/// Serves `router` on `listener` with the default connection limits until `shutdown` resolves,
/// then stops accepting connections and lets in-flight requests finish, for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    let limits = listen::ServerLimits {
        grace,
        ..listen::ServerLimits::default()
    };
    listen::serve(listener, router, shutdown, &limits).await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
