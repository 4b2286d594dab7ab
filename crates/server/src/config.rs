//! Typed configuration from the environment and an optional `inkcart.toml`, validated at
//! start. Every key is listed in `docs/configuration.md`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inkcart_app::ports::Quota;
use inkcart_app::ratelimit::RateLimitPolicy;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The JWT signing secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: Environment,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub db_max_connections: u32,
    pub bind: IpAddr,
    pub port: u16,
    /// `None` in development until [`Config::ensure_jwt_secret`] has generated one.
    pub jwt_secret: Option<Secret>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub cors_origins: Vec<String>,
    pub hsts: bool,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub login_max_failures: u32,
    pub login_window: Duration,
    pub trust_proxy: bool,
    /// Zero: no product cache.
    pub product_cache_ttl: Duration,
    /// Lifetime of cached posts and post-list pages; zero: no post caches.
    pub post_cache_ttl: Duration,
    /// Life of a cached page of search results; zero turns that cache off.
    pub search_cache_ttl: Duration,
    /// The URL clients reach this server at (links in emails, local file URLs).
    pub public_url: String,
    pub upload_limit_bytes: usize,
    pub storage: StorageConfig,
    pub graphql_depth_limit: usize,
    pub graphql_complexity_limit: usize,
    pub graphql_introspection: bool,
    /// Longest GraphQL document (`query`), in bytes.
    pub graphql_max_document_bytes: usize,
    /// Longest GraphQL `variables`, in bytes of compact JSON.
    pub graphql_max_variables_bytes: usize,
    /// Deepest nesting in a GraphQL request (brackets before parsing, selections through
    /// fragments, variables); at most 64.
    pub graphql_max_nesting: usize,
    /// Most nodes of a GraphQL document with its fragments expanded (and values in its variables).
    pub graphql_max_nodes: usize,
    /// Most root mutation fields one GraphQL request may run.
    pub graphql_max_mutations: usize,
    /// SMTP server for outgoing mail; `None`: `.eml` files in `<data dir>/mail`.
    pub smtp: Option<inkcart_adapters::mail::SmtpSettings>,
    /// The sender of every email (`Name <address>`).
    pub mail_from: String,
    /// NATS server that outbox events are published to, if any.
    pub nats_url: Option<String>,
    pub worker_concurrency: usize,
    pub worker_poll: Duration,
    pub job_timeout: Duration,
    pub job_lease: Duration,
    pub job_max_attempts: i32,
    pub job_backoff: Duration,
    pub job_queue: JobQueueConfig,
    pub redis_url: Option<String>,
    /// Request rate limits; `None` when `INKCART_RATE_LIMITS=off`.
    pub rate_limits: Option<RateLimitPolicy>,
    /// Prefix of the rate-limit keys in Redis (several deployments may share one server).
    pub rate_limit_prefix: String,
    // Connections, bodies, proxies, outages and uploads: the limits that keep one client from
    // pinning or exhausting the server.
    /// A connection must deliver a whole request head within this time of opening or of its
    /// previous response (HTTP/1 keep-alive and idle HTTP/2 connections end after it too).
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this time of its head (408 otherwise).
    pub body_read_timeout: Duration,
    /// Bytes of request bodies held in memory at once, all requests together.
    pub body_memory_bytes: usize,
    /// Connections served at once; the next ones wait in the listen queue.
    pub max_connections: usize,
    /// Largest request head (request line and headers) answered normally (431 beyond).
    pub max_header_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_streams: u32,
    /// Proxies whose `X-Forwarded-*` headers are believed, with `trust_proxy`; empty: the
    /// socket peer only.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Redirect plain-http requests reported by a trusted proxy to https.
    pub https_redirect: bool,
    /// How long a request waits for a database connection before its 503.
    pub db_acquire_timeout: Duration,
    /// Largest image accepted for upload, in pixels (checked from the header, before decoding).
    pub upload_max_pixels: u64,
    /// Images decoded at once.
    pub upload_decode_concurrency: usize,
    /// How long an upload waits for a decoding slot before its 503.
    pub upload_decode_wait: Duration,
}

/// Where jobs wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobQueueConfig {
    /// The `jobs` table of the active database (enqueued in the transaction of the event).
    Database,
    /// Redis (`REDIS_URL`).
    Redis,
}

/// Where uploaded files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A directory (`None`: `<data dir>/files`).
    Local { dir: Option<PathBuf> },
    S3 {
        endpoint: Option<String>,
        bucket: String,
        region: String,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        path_style: bool,
        public_url: Option<String>,
    },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            env: Environment::Development,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            db_max_connections: 16,
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 3000,
            jwt_secret: None,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(7 * 24 * 3600),
            log_format: LogFormat::Text,
            log_filter: "info,sqlx=warn".to_owned(),
            cors_origins: Vec::new(),
            hsts: false,
            body_limit_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            login_max_failures: 5,
            login_window: Duration::from_secs(15 * 60),
            trust_proxy: false,
            product_cache_ttl: Duration::from_secs(30),
            post_cache_ttl: Duration::from_secs(5),
            search_cache_ttl: Duration::from_secs(60),
            public_url: "http://127.0.0.1:3000".to_owned(),
            upload_limit_bytes: 10 * 1024 * 1024,
            storage: StorageConfig::Local { dir: None },
            graphql_depth_limit: 10,
            graphql_complexity_limit: 50_000,
            graphql_introspection: true,
            graphql_max_document_bytes: 32 * 1024,
            graphql_max_variables_bytes: 512 * 1024,
            graphql_max_nesting: 32,
            graphql_max_nodes: 10_000,
            graphql_max_mutations: 5,
            smtp: None,
            mail_from: "inkcart <no-reply@localhost>".to_owned(),
            nats_url: None,
            worker_concurrency: 4,
            worker_poll: Duration::from_millis(500),
            job_timeout: Duration::from_secs(60),
            job_lease: Duration::from_secs(60),
            job_max_attempts: 5,
            job_backoff: Duration::from_secs(2),
            job_queue: JobQueueConfig::Database,
            redis_url: None,
            rate_limits: Some(RateLimitPolicy::default()),
            rate_limit_prefix: "inkcart:rl:".to_owned(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(20),
            body_memory_bytes: 256 * 1024 * 1024,
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            http2_max_streams: 100,
            trusted_proxies: Vec::new(),
            https_redirect: false,
            db_acquire_timeout: Duration::from_secs(2),
            upload_max_pixels: 40_000_000,
            upload_decode_concurrency: std::thread::available_parallelism().map_or(1, usize::from),
            upload_decode_wait: Duration::from_secs(5),
        }
    }
}

/// Every key as text, before validation. File keys and the environment variables
/// `INKCART_<KEY>` use these names; `DATABASE_URL` and `PORT` are also read as such.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    env: Option<String>,
    data_dir: Option<String>,
    database_url: Option<String>,
    db_max_connections: Option<String>,
    bind: Option<String>,
    port: Option<String>,
    jwt_secret: Option<String>,
    access_token_ttl_secs: Option<String>,
    refresh_token_ttl_secs: Option<String>,
    log_format: Option<String>,
    log: Option<String>,
    cors_origins: Option<String>,
    hsts: Option<String>,
    body_limit_bytes: Option<String>,
    request_timeout_secs: Option<String>,
    shutdown_grace_secs: Option<String>,
    login_max_failures: Option<String>,
    login_window_secs: Option<String>,
    trust_proxy: Option<String>,
    product_cache_ttl_secs: Option<String>,
    post_cache_ttl_secs: Option<String>,
    search_cache_ttl_secs: Option<String>,
    public_url: Option<String>,
    upload_limit_bytes: Option<String>,
    storage: Option<String>,
    storage_dir: Option<String>,
    s3_endpoint: Option<String>,
    s3_bucket: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_path_style: Option<String>,
    storage_public_url: Option<String>,
    graphql_depth_limit: Option<String>,
    graphql_complexity_limit: Option<String>,
    graphql_introspection: Option<String>,
    graphql_max_document_bytes: Option<String>,
    graphql_max_variables_bytes: Option<String>,
    graphql_max_nesting: Option<String>,
    graphql_max_nodes: Option<String>,
    graphql_max_mutations: Option<String>,
    smtp_host: Option<String>,
    smtp_port: Option<String>,
    smtp_tls: Option<String>,
    smtp_username: Option<String>,
    smtp_password: Option<String>,
    mail_from: Option<String>,
    nats_url: Option<String>,
    worker_concurrency: Option<String>,
    worker_poll_ms: Option<String>,
    job_timeout_secs: Option<String>,
    job_lease_secs: Option<String>,
    job_max_attempts: Option<String>,
    job_backoff_ms: Option<String>,
    job_queue: Option<String>,
    redis_url: Option<String>,
    rate_limits: Option<String>,
    rate_limit_ip: Option<String>,
    rate_limit_user: Option<String>,
    rate_limit_sign_up: Option<String>,
    rate_limit_login: Option<String>,
    rate_limit_refresh: Option<String>,
    rate_limit_password_reset: Option<String>,
    rate_limit_verification: Option<String>,
    rate_limit_prefix: Option<String>,
    header_read_timeout_secs: Option<String>,
    body_read_timeout_secs: Option<String>,
    body_memory_bytes: Option<String>,
    max_connections: Option<String>,
    max_header_bytes: Option<String>,
    http2_max_streams: Option<String>,
    trusted_proxies: Option<String>,
    https_redirect: Option<String>,
    db_acquire_timeout_ms: Option<String>,
    upload_max_pixels: Option<String>,
    upload_decode_concurrency: Option<String>,
    upload_decode_wait_ms: Option<String>,
}

const KEYS: &[&str] = &[
    "env",
    "data_dir",
    "database_url",
    "db_max_connections",
    "bind",
    "port",
    "jwt_secret",
    "access_token_ttl_secs",
    "refresh_token_ttl_secs",
    "log_format",
    "log",
    "cors_origins",
    "hsts",
    "body_limit_bytes",
    "request_timeout_secs",
    "shutdown_grace_secs",
    "login_max_failures",
    "login_window_secs",
    "trust_proxy",
    "product_cache_ttl_secs",
    "post_cache_ttl_secs",
    "search_cache_ttl_secs",
    "public_url",
    "upload_limit_bytes",
    "storage",
    "storage_dir",
    "s3_endpoint",
    "s3_bucket",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_path_style",
    "storage_public_url",
    "graphql_depth_limit",
    "graphql_complexity_limit",
    "graphql_introspection",
    "graphql_max_document_bytes",
    "graphql_max_variables_bytes",
    "graphql_max_nesting",
    "graphql_max_nodes",
    "graphql_max_mutations",
    "smtp_host",
    "smtp_port",
    "smtp_tls",
    "smtp_username",
    "smtp_password",
    "mail_from",
    "nats_url",
    "worker_concurrency",
    "worker_poll_ms",
    "job_timeout_secs",
    "job_lease_secs",
    "job_max_attempts",
    "job_backoff_ms",
    "job_queue",
    "redis_url",
    "rate_limits",
    "rate_limit_ip",
    "rate_limit_user",
    "rate_limit_sign_up",
    "rate_limit_login",
    "rate_limit_refresh",
    "rate_limit_password_reset",
    "rate_limit_verification",
    "rate_limit_prefix",
    "header_read_timeout_secs",
    "body_read_timeout_secs",
    "body_memory_bytes",
    "max_connections",
    "max_header_bytes",
    "http2_max_streams",
    "trusted_proxies",
    "https_redirect",
    "db_acquire_timeout_ms",
    "upload_max_pixels",
    "upload_decode_concurrency",
    "upload_decode_wait_ms",
];

/// The problems found in the configuration, one line per bad key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads the process environment and `inkcart.toml` (or the file `INKCART_CONFIG` names).
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load(&env)
    }

    /// Reads configuration from the given environment (and the file it points to).
    pub fn load(env: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let (file, required) = match env.get("INKCART_CONFIG") {
            Some(path) => (PathBuf::from(path), true),
            None => (PathBuf::from("inkcart.toml"), false),
        };
        let raw = read_raw(env, &file, required).map_err(|e| ConfigErrors(vec![e]))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: Raw) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let d = Self::default();
        let mut p = Parser {
            errors: &mut errors,
        };
        let env = match raw.env.as_deref().map(str::trim) {
            None | Some("development" | "dev") => Environment::Development,
            Some("production" | "prod") => Environment::Production,
            Some(other) => {
                p.bad("env", "INKCART_ENV", other, "development or production");
                Environment::Development
            }
        };
        let log_format = match raw.log_format.as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                p.bad("log_format", "INKCART_LOG_FORMAT", other, "text or json");
                LogFormat::Text
            }
        };
        let database_url = raw.database_url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &database_url {
            let ok = ["postgres://", "postgresql://", "sqlite:"]
                .iter()
                .any(|prefix| url.starts_with(prefix));
            if !ok {
                p.errors.push(
                    "DATABASE_URL: must start with postgres://, postgresql:// or sqlite: (unset it for the embedded SQLite database)"
                        .to_owned(),
                );
            }
        }
        let cors_origins: Vec<String> = raw
            .cors_origins
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        for origin in &cors_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                p.errors.push(format!(
                    "INKCART_CORS_ORIGINS: `{origin}` is not an origin (expected e.g. https://app.example.com, or *)"
                ));
            }
        }
        let storage = match raw.storage.as_deref().map(str::trim) {
            None | Some("local") => StorageConfig::Local {
                dir: raw.storage_dir.clone().map(PathBuf::from),
            },
            Some("s3") => {
                let bucket = raw.s3_bucket.clone().filter(|b| !b.trim().is_empty());
                if bucket.is_none() {
                    p.errors
                        .push("INKCART_S3_BUCKET: required when INKCART_STORAGE=s3".to_owned());
                }
                StorageConfig::S3 {
                    endpoint: raw.s3_endpoint.clone().filter(|e| !e.trim().is_empty()),
                    bucket: bucket.unwrap_or_default(),
                    region: raw
                        .s3_region
                        .clone()
                        .unwrap_or_else(|| "us-east-1".to_owned()),
                    access_key_id: raw.s3_access_key_id.clone(),
                    secret_access_key: raw.s3_secret_access_key.clone(),
                    path_style: p.bool(
                        "s3_path_style",
                        "INKCART_S3_PATH_STYLE",
                        raw.s3_path_style.as_deref(),
                        true,
                    ),
                    public_url: raw.storage_public_url.clone(),
                }
            }
            Some(other) => {
                p.bad("storage", "INKCART_STORAGE", other, "local or s3");
                StorageConfig::Local { dir: None }
            }
        };
        let public_url = raw.public_url.as_deref().map_or_else(
            || d.public_url.clone(),
            |u| u.trim().trim_end_matches('/').to_owned(),
        );
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            p.bad(
                "public_url",
                "INKCART_PUBLIC_URL",
                &public_url,
                "an http:// or https:// URL",
            );
        }
        let smtp = match raw
            .smtp_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            None => None,
            Some(host) => {
                use inkcart_adapters::mail::{SmtpSettings, SmtpTls};
                let tls = match raw.smtp_tls.as_deref().map(str::trim) {
                    None | Some("starttls") => SmtpTls::StartTls,
                    Some("tls") => SmtpTls::Tls,
                    Some("none") => SmtpTls::None,
                    Some(other) => {
                        p.bad(
                            "smtp_tls",
                            "INKCART_SMTP_TLS",
                            other,
                            "starttls, tls or none",
                        );
                        SmtpTls::StartTls
                    }
                };
                let default_port = match tls {
                    SmtpTls::StartTls => 587,
                    SmtpTls::Tls => 465,
                    SmtpTls::None => 25,
                };
                Some(SmtpSettings {
                    host: host.to_owned(),
                    port: p.parse(
                        "smtp_port",
                        "INKCART_SMTP_PORT",
                        raw.smtp_port.as_deref(),
                        default_port,
                        "a port number",
                    ),
                    tls,
                    username: raw.smtp_username.clone().filter(|u| !u.is_empty()),
                    password: raw.smtp_password.clone().filter(|u| !u.is_empty()),
                })
            }
        };
        let job_queue = match raw.job_queue.as_deref().map(str::trim) {
            None | Some("database") => JobQueueConfig::Database,
            Some("redis") => JobQueueConfig::Redis,
            Some(other) => {
                p.bad("job_queue", "INKCART_JOB_QUEUE", other, "database or redis");
                JobQueueConfig::Database
            }
        };
        let redis_url = raw.redis_url.clone().filter(|u| !u.trim().is_empty());
        if job_queue == JobQueueConfig::Redis && redis_url.is_none() {
            p.errors.push(
                "REDIS_URL: required when INKCART_JOB_QUEUE=redis (e.g. redis://127.0.0.1:6379)"
                    .to_owned(),
            );
        }
        let mail_from = raw.mail_from.clone().unwrap_or_else(|| d.mail_from.clone());
        if mail_from.parse::<lettre::message::Mailbox>().is_err() {
            p.bad(
                "mail_from",
                "INKCART_MAIL_FROM",
                &mail_from,
                "an address like `Shop <shop@example.com>`",
            );
        }
        let rate_limits = {
            let d = RateLimitPolicy::default();
            let policy = RateLimitPolicy {
                per_ip: p.quota(
                    "rate_limit_ip",
                    "INKCART_RATE_LIMIT_IP",
                    raw.rate_limit_ip.as_deref(),
                    d.per_ip,
                ),
                per_user: p.quota(
                    "rate_limit_user",
                    "INKCART_RATE_LIMIT_USER",
                    raw.rate_limit_user.as_deref(),
                    d.per_user,
                ),
                sign_up: p.quota(
                    "rate_limit_sign_up",
                    "INKCART_RATE_LIMIT_SIGN_UP",
                    raw.rate_limit_sign_up.as_deref(),
                    d.sign_up,
                ),
                login: p.quota(
                    "rate_limit_login",
                    "INKCART_RATE_LIMIT_LOGIN",
                    raw.rate_limit_login.as_deref(),
                    d.login,
                ),
                refresh: p.quota(
                    "rate_limit_refresh",
                    "INKCART_RATE_LIMIT_REFRESH",
                    raw.rate_limit_refresh.as_deref(),
                    d.refresh,
                ),
                password_reset: p.quota(
                    "rate_limit_password_reset",
                    "INKCART_RATE_LIMIT_PASSWORD_RESET",
                    raw.rate_limit_password_reset.as_deref(),
                    d.password_reset,
                ),
                verification: p.quota(
                    "rate_limit_verification",
                    "INKCART_RATE_LIMIT_VERIFICATION",
                    raw.rate_limit_verification.as_deref(),
                    d.verification,
                ),
            };
            p.bool(
                "rate_limits",
                "INKCART_RATE_LIMITS",
                raw.rate_limits.as_deref(),
                true,
            )
            .then_some(policy)
        };
        let rate_limit_prefix = raw
            .rate_limit_prefix
            .clone()
            .unwrap_or_else(|| d.rate_limit_prefix.clone());
        let mut trusted_proxies = Vec::new();
        for entry in raw
            .trusted_proxies
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            match entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
            {
                Ok(net) => trusted_proxies.push(net),
                Err(_) => p.bad(
                    "trusted_proxies",
                    "INKCART_TRUSTED_PROXIES",
                    entry,
                    "IP addresses or CIDR ranges separated by commas",
                ),
            }
        }
        let jwt_secret = raw
            .jwt_secret
            .filter(|s| !s.is_empty())
            .map(|s| Secret::new(s.into_bytes()));
        let config = Self {
            env,
            data_dir: raw.data_dir.map_or(d.data_dir, PathBuf::from),
            database_url,
            db_max_connections: p.num(
                "db_max_connections",
                "INKCART_DB_MAX_CONNECTIONS",
                raw.db_max_connections.as_deref(),
                d.db_max_connections,
                1,
            ),
            bind: p.parse(
                "bind",
                "INKCART_BIND",
                raw.bind.as_deref(),
                d.bind,
                "an IP address such as 127.0.0.1 or 0.0.0.0",
            ),
            port: p.parse(
                "port",
                "PORT",
                raw.port.as_deref(),
                d.port,
                "a port number (0-65535)",
            ),
            jwt_secret,
            access_token_ttl: p.secs(
                "access_token_ttl_secs",
                "INKCART_ACCESS_TOKEN_TTL_SECS",
                raw.access_token_ttl_secs.as_deref(),
                d.access_token_ttl,
            ),
            refresh_token_ttl: p.secs(
                "refresh_token_ttl_secs",
                "INKCART_REFRESH_TOKEN_TTL_SECS",
                raw.refresh_token_ttl_secs.as_deref(),
                d.refresh_token_ttl,
            ),
            log_format,
            log_filter: raw
                .log
                .filter(|l| !l.trim().is_empty())
                .unwrap_or(d.log_filter),
            cors_origins,
            // HSTS is on in production unless turned off.
            hsts: p.bool(
                "hsts",
                "INKCART_HSTS",
                raw.hsts.as_deref(),
                env == Environment::Production,
            ),
            body_limit_bytes: p.num(
                "body_limit_bytes",
                "INKCART_BODY_LIMIT_BYTES",
                raw.body_limit_bytes.as_deref(),
                d.body_limit_bytes,
                1,
            ),
            request_timeout: p.secs(
                "request_timeout_secs",
                "INKCART_REQUEST_TIMEOUT_SECS",
                raw.request_timeout_secs.as_deref(),
                d.request_timeout,
            ),
            shutdown_grace: p.secs(
                "shutdown_grace_secs",
                "INKCART_SHUTDOWN_GRACE_SECS",
                raw.shutdown_grace_secs.as_deref(),
                d.shutdown_grace,
            ),
            login_max_failures: p.num(
                "login_max_failures",
                "INKCART_LOGIN_MAX_FAILURES",
                raw.login_max_failures.as_deref(),
                d.login_max_failures,
                1,
            ),
            login_window: p.secs(
                "login_window_secs",
                "INKCART_LOGIN_WINDOW_SECS",
                raw.login_window_secs.as_deref(),
                d.login_window,
            ),
            public_url,
            storage,
            smtp,
            mail_from,
            job_queue,
            redis_url,
            nats_url: raw.nats_url.clone().filter(|u| !u.trim().is_empty()),
            worker_concurrency: p.num(
                "worker_concurrency",
                "INKCART_WORKER_CONCURRENCY",
                raw.worker_concurrency.as_deref(),
                d.worker_concurrency,
                1,
            ),
            worker_poll: Duration::from_millis(p.num(
                "worker_poll_ms",
                "INKCART_WORKER_POLL_MS",
                raw.worker_poll_ms.as_deref(),
                500,
                1,
            )),
            job_timeout: p.secs(
                "job_timeout_secs",
                "INKCART_JOB_TIMEOUT_SECS",
                raw.job_timeout_secs.as_deref(),
                d.job_timeout,
            ),
            job_lease: p.secs(
                "job_lease_secs",
                "INKCART_JOB_LEASE_SECS",
                raw.job_lease_secs.as_deref(),
                d.job_lease,
            ),
            job_max_attempts: p.num(
                "job_max_attempts",
                "INKCART_JOB_MAX_ATTEMPTS",
                raw.job_max_attempts.as_deref(),
                d.job_max_attempts,
                1,
            ),
            job_backoff: Duration::from_millis(p.num(
                "job_backoff_ms",
                "INKCART_JOB_BACKOFF_MS",
                raw.job_backoff_ms.as_deref(),
                2000,
                1,
            )),
            graphql_depth_limit: p.num(
                "graphql_depth_limit",
                "INKCART_GRAPHQL_DEPTH_LIMIT",
                raw.graphql_depth_limit.as_deref(),
                d.graphql_depth_limit,
                1,
            ),
            graphql_complexity_limit: p.num(
                "graphql_complexity_limit",
                "INKCART_GRAPHQL_COMPLEXITY_LIMIT",
                raw.graphql_complexity_limit.as_deref(),
                d.graphql_complexity_limit,
                1,
            ),
            // Introspection is off in production unless asked for.
            graphql_introspection: p.bool(
                "graphql_introspection",
                "INKCART_GRAPHQL_INTROSPECTION",
                raw.graphql_introspection.as_deref(),
                env == Environment::Development,
            ),
            graphql_max_document_bytes: p.num(
                "graphql_max_document_bytes",
                "INKCART_GRAPHQL_MAX_DOCUMENT_BYTES",
                raw.graphql_max_document_bytes.as_deref(),
                d.graphql_max_document_bytes,
                1,
            ),
            graphql_max_variables_bytes: p.num(
                "graphql_max_variables_bytes",
                "INKCART_GRAPHQL_MAX_VARIABLES_BYTES",
                raw.graphql_max_variables_bytes.as_deref(),
                d.graphql_max_variables_bytes,
                1,
            ),
            graphql_max_nesting: {
                // The parser and validation recurse once per level or more.
                let ceiling = inkcart_http::graphql::MAX_NESTING_CEILING;
                let nesting = p.num(
                    "graphql_max_nesting",
                    "INKCART_GRAPHQL_MAX_NESTING",
                    raw.graphql_max_nesting.as_deref(),
                    d.graphql_max_nesting,
                    1,
                );
                if nesting > ceiling {
                    p.bad(
                        "graphql_max_nesting",
                        "INKCART_GRAPHQL_MAX_NESTING",
                        &nesting.to_string(),
                        &format!("a whole number from 1 to {ceiling}"),
                    );
                    d.graphql_max_nesting
                } else {
                    nesting
                }
            },
            graphql_max_nodes: p.num(
                "graphql_max_nodes",
                "INKCART_GRAPHQL_MAX_NODES",
                raw.graphql_max_nodes.as_deref(),
                d.graphql_max_nodes,
                1,
            ),
            graphql_max_mutations: p.num(
                "graphql_max_mutations",
                "INKCART_GRAPHQL_MAX_MUTATIONS",
                raw.graphql_max_mutations.as_deref(),
                d.graphql_max_mutations,
                1,
            ),
            upload_limit_bytes: p.num(
                "upload_limit_bytes",
                "INKCART_UPLOAD_LIMIT_BYTES",
                raw.upload_limit_bytes.as_deref(),
                d.upload_limit_bytes,
                1,
            ),
            product_cache_ttl: p.cache_ttl(
                "product_cache_ttl_secs",
                "INKCART_PRODUCT_CACHE_TTL_SECS",
                raw.product_cache_ttl_secs.as_deref(),
                d.product_cache_ttl,
            ),
            post_cache_ttl: p.cache_ttl(
                "post_cache_ttl_secs",
                "INKCART_POST_CACHE_TTL_SECS",
                raw.post_cache_ttl_secs.as_deref(),
                d.post_cache_ttl,
            ),
            search_cache_ttl: p.cache_ttl(
                "search_cache_ttl_secs",
                "INKCART_SEARCH_CACHE_TTL_SECS",
                raw.search_cache_ttl_secs.as_deref(),
                d.search_cache_ttl,
            ),
            trust_proxy: p.bool(
                "trust_proxy",
                "INKCART_TRUST_PROXY",
                raw.trust_proxy.as_deref(),
                d.trust_proxy,
            ),
            rate_limits,
            rate_limit_prefix,
            header_read_timeout: p.secs(
                "header_read_timeout_secs",
                "INKCART_HEADER_READ_TIMEOUT_SECS",
                raw.header_read_timeout_secs.as_deref(),
                d.header_read_timeout,
            ),
            body_read_timeout: p.secs(
                "body_read_timeout_secs",
                "INKCART_BODY_READ_TIMEOUT_SECS",
                raw.body_read_timeout_secs.as_deref(),
                d.body_read_timeout,
            ),
            body_memory_bytes: p.num(
                "body_memory_bytes",
                "INKCART_BODY_MEMORY_BYTES",
                raw.body_memory_bytes.as_deref(),
                d.body_memory_bytes,
                1,
            ),
            max_connections: p.num(
                "max_connections",
                "INKCART_MAX_CONNECTIONS",
                raw.max_connections.as_deref(),
                d.max_connections,
                1,
            ),
            max_header_bytes: p.num(
                "max_header_bytes",
                "INKCART_MAX_HEADER_BYTES",
                raw.max_header_bytes.as_deref(),
                d.max_header_bytes,
                1024,
            ),
            http2_max_streams: p.num(
                "http2_max_streams",
                "INKCART_HTTP2_MAX_STREAMS",
                raw.http2_max_streams.as_deref(),
                d.http2_max_streams,
                1,
            ),
            trusted_proxies,
            // Redirecting to https is on in production unless turned off (it acts only on
            // requests a trusted proxy says came over plain http).
            https_redirect: p.bool(
                "https_redirect",
                "INKCART_HTTPS_REDIRECT",
                raw.https_redirect.as_deref(),
                env == Environment::Production,
            ),
            db_acquire_timeout: Duration::from_millis(p.num(
                "db_acquire_timeout_ms",
                "INKCART_DB_ACQUIRE_TIMEOUT_MS",
                raw.db_acquire_timeout_ms.as_deref(),
                2000,
                1,
            )),
            upload_max_pixels: p.num(
                "upload_max_pixels",
                "INKCART_UPLOAD_MAX_PIXELS",
                raw.upload_max_pixels.as_deref(),
                d.upload_max_pixels,
                1,
            ),
            upload_decode_concurrency: p.num(
                "upload_decode_concurrency",
                "INKCART_UPLOAD_DECODE_CONCURRENCY",
                raw.upload_decode_concurrency.as_deref(),
                d.upload_decode_concurrency,
                1,
            ),
            upload_decode_wait: Duration::from_millis(p.num(
                "upload_decode_wait_ms",
                "INKCART_UPLOAD_DECODE_WAIT_MS",
                raw.upload_decode_wait_ms.as_deref(),
                5000,
                0,
            )),
        };
        if config.body_memory_bytes < config.upload_limit_bytes.max(config.body_limit_bytes) {
            errors.push(format!(
                "INKCART_BODY_MEMORY_BYTES: must hold at least one largest body ({} bytes: the larger of INKCART_UPLOAD_LIMIT_BYTES and INKCART_BODY_LIMIT_BYTES)",
                config.upload_limit_bytes.max(config.body_limit_bytes)
            ));
        }
        if !config.trusted_proxies.is_empty() && !config.trust_proxy {
            errors.push(
                "INKCART_TRUSTED_PROXIES: set, but INKCART_TRUST_PROXY is off, so it would be ignored; turn trust_proxy on or unset the list".to_owned(),
            );
        }
        if config.env == Environment::Production {
            match &config.jwt_secret {
                None => errors.push(
                    "INKCART_JWT_SECRET: required in production (at least 32 bytes; e.g. `openssl rand -hex 32`)".to_owned(),
                ),
                Some(s) if s.expose().len() < 32 => errors.push(format!(
                    "INKCART_JWT_SECRET: must be at least 32 bytes in production (got {})",
                    s.expose().len()
                )),
                Some(_) => {}
            }
            if config.cors_origins.iter().any(|o| o == "*") {
                errors.push(
                    "INKCART_CORS_ORIGINS: a wildcard origin (*) is refused in production; list the allowed origins".to_owned(),
                );
            }
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// In development, without a configured secret, uses the one kept in
    /// `<data dir>/jwt-secret`, generating it (64 random bytes, hex) on first start.
    pub fn ensure_jwt_secret(&mut self) -> anyhow::Result<()> {
        if self.jwt_secret.is_some() {
            return Ok(());
        }
        anyhow::ensure!(
            self.env == Environment::Development,
            "INKCART_JWT_SECRET is required in production"
        );
        let path = self.data_dir.join("jwt-secret");
        let secret = match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().len() >= 32 => s.trim().to_owned(),
            _ => {
                std::fs::create_dir_all(&self.data_dir)?;
                let mut bytes = [0u8; 64];
                getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                write_private(&path, &hex)?;
                tracing::info!(path = %path.display(), "generated a development JWT secret");
                hex
            }
        };
        self.jwt_secret = Some(Secret::new(secret.into_bytes()));
        Ok(())
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

fn read_raw(env: &HashMap<String, String>, file: &Path, required: bool) -> Result<Raw, String> {
    let mut builder = config::Config::builder();
    if required || file.exists() {
        builder = builder.add_source(config::File::from(file).required(required));
    }
    let mut prefixed: HashMap<String, String> = HashMap::new();
    for key in KEYS {
        let var = format!("INKCART_{}", key.to_uppercase());
        if let Some(value) = env.get(&var) {
            prefixed.insert((*key).to_owned(), value.clone());
        }
    }
    // The conventional names win over the prefixed ones.
    for (var, key) in [
        ("DATABASE_URL", "database_url"),
        ("PORT", "port"),
        ("REDIS_URL", "redis_url"),
    ] {
        if let Some(value) = env.get(var) {
            prefixed.insert(key.to_owned(), value.clone());
        }
    }
    for (key, value) in prefixed {
        builder = builder
            .set_override(key, value)
            .map_err(|e| e.to_string())?;
    }
    let built = builder
        .build()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    built
        .try_deserialize::<Raw>()
        .map_err(|e| format!("{}: {e}", file.display()))
}

struct Parser<'a> {
    errors: &'a mut Vec<String>,
}

impl Parser<'_> {
    fn bad(&mut self, key: &str, var: &str, value: &str, expected: &str) {
        self.errors.push(format!(
            "{var} (or `{key}` in inkcart.toml): expected {expected}, got `{value}`"
        ));
    }

    fn parse<T: std::str::FromStr>(
        &mut self,
        key: &str,
        var: &str,
        raw: Option<&str>,
        default: T,
        expected: &str,
    ) -> T {
        match raw {
            None => default,
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                self.bad(key, var, v, expected);
                default
            }),
        }
    }

    fn num<T>(&mut self, key: &str, var: &str, raw: Option<&str>, default: T, min: T) -> T
    where
        T: std::str::FromStr + PartialOrd + Copy + fmt::Display,
    {
        let expected = format!("a whole number of at least {min}");
        let value = self.parse(key, var, raw, default, &expected);
        if value < min {
            self.bad(key, var, raw.unwrap_or_default(), &expected);
            return default;
        }
        value
    }

    fn secs(&mut self, key: &str, var: &str, raw: Option<&str>, default: Duration) -> Duration {
        Duration::from_secs(self.num(key, var, raw, default.as_secs(), 1))
    }

    /// A cache lifetime in whole seconds: `0` (no cache) up to a year.
    fn cache_ttl(
        &mut self,
        key: &str,
        var: &str,
        raw: Option<&str>,
        default: Duration,
    ) -> Duration {
        const MAX_SECS: u64 = 365 * 24 * 3600;
        let expected = format!("a whole number of seconds from 0 (off) to {MAX_SECS}");
        let secs = self.parse(key, var, raw, default.as_secs(), &expected);
        if secs > MAX_SECS {
            self.bad(key, var, raw.unwrap_or_default(), &expected);
            return default;
        }
        Duration::from_secs(secs)
    }

    /// A rate-limit quota: `<requests>/<period>`, the period a number of seconds, minutes,
    /// hours or days (`1200/1m`, `10/1h`, `5/30s`), from one second to one day.
    fn quota(&mut self, key: &str, var: &str, raw: Option<&str>, default: Quota) -> Quota {
        let Some(text) = raw else {
            return default;
        };
        let parsed = text.trim().split_once('/').and_then(|(limit, period)| {
            let limit: u32 = limit
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))?;
            let period = period.trim();
            let unit_at = period.find(|c: char| !c.is_ascii_digit())?;
            let (count, unit) = period.split_at(unit_at);
            let count: u64 = count.parse().ok()?;
            let secs = count.checked_mul(match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return None,
            })?;
            (1..=86_400).contains(&secs).then(|| Quota {
                limit,
                period: Duration::from_secs(secs),
            })
        });
        parsed.unwrap_or_else(|| {
            self.bad(
                key,
                var,
                text,
                "<requests>/<period> such as 1200/1m or 10/1h (1 to 1000000 requests, a period from 1s to 1d)",
            );
            default
        })
    }

    fn bool(&mut self, key: &str, var: &str, raw: Option<&str>, default: bool) -> bool {
        match raw.map(|v| v.trim().to_ascii_lowercase()) {
            None => default,
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    self.bad(key, var, &v, "true or false");
                    default
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let env = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load(&env)
    }

    #[test]
    fn with_nothing_set_the_defaults_apply() {
        let config = load(&[]).unwrap();
        assert_eq!(config.env, Environment::Development);
        assert_eq!(config.port, 3000);
        assert_eq!(config.bind.to_string(), "127.0.0.1");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.database_url.is_none());
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
    }

    #[test]
    fn environment_variables_set_the_keys() {
        let config = load(&[
            ("PORT", "8080"),
            ("INKCART_BIND", "0.0.0.0"),
            ("INKCART_DATA_DIR", "/var/lib/inkcart"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("INKCART_LOG_FORMAT", "json"),
            (
                "INKCART_CORS_ORIGINS",
                "https://a.example, https://b.example/",
            ),
            ("INKCART_HSTS", "true"),
        ])
        .unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.bind.to_string(), "0.0.0.0");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/inkcart"));
        assert_eq!(config.database_url.as_deref(), Some("postgres://u@h/db"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.cors_origins,
            ["https://a.example", "https://b.example"]
        );
        assert!(config.hsts);
    }

    #[test]
    fn every_bad_key_gets_its_own_message() {
        let errors = load(&[
            ("PORT", "eighty"),
            ("INKCART_ENV", "staging"),
            ("INKCART_BODY_LIMIT_BYTES", "0"),
            ("INKCART_HSTS", "maybe"),
            ("DATABASE_URL", "mysql://x"),
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("PORT") && e.contains("`eighty`"))
        );
        assert!(errors.iter().any(|e| e.starts_with("INKCART_ENV")));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("INKCART_BODY_LIMIT_BYTES"))
        );
        assert!(errors.iter().any(|e| e.starts_with("INKCART_HSTS")));
        assert!(errors.iter().any(|e| e.starts_with("DATABASE_URL")));
    }

    #[test]
    fn a_cache_lifetime_of_zero_turns_the_cache_off_and_a_bad_one_is_reported() {
        let config = load(&[]).unwrap();
        assert_eq!(config.post_cache_ttl, Duration::from_secs(5));
        assert_eq!(config.search_cache_ttl, Duration::from_secs(60));
        assert_eq!(config.product_cache_ttl, Duration::from_secs(30));
        let config = load(&[
            ("INKCART_POST_CACHE_TTL_SECS", "0"),
            ("INKCART_SEARCH_CACHE_TTL_SECS", "0"),
            ("INKCART_PRODUCT_CACHE_TTL_SECS", "0"),
        ])
        .unwrap();
        assert_eq!(config.post_cache_ttl, Duration::ZERO);
        assert_eq!(config.search_cache_ttl, Duration::ZERO);
        assert_eq!(config.product_cache_ttl, Duration::ZERO);
        assert_eq!(
            load(&[("INKCART_POST_CACHE_TTL_SECS", "60")])
                .unwrap()
                .post_cache_ttl,
            Duration::from_secs(60)
        );
        let errors = load(&[
            ("INKCART_POST_CACHE_TTL_SECS", "-1"),
            ("INKCART_SEARCH_CACHE_TTL_SECS", "1m"),
            ("INKCART_PRODUCT_CACHE_TTL_SECS", "99999999999"),
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 3, "{errors:#?}");
        for var in [
            "INKCART_POST_CACHE_TTL_SECS",
            "INKCART_SEARCH_CACHE_TTL_SECS",
            "INKCART_PRODUCT_CACHE_TTL_SECS",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(var)), "{errors:#?}");
        }
    }

    #[test]
    fn the_graphql_limits_have_defaults_and_the_nesting_stays_within_what_the_parser_survives() {
        let config = load(&[]).unwrap();
        assert_eq!(
            (
                config.graphql_complexity_limit,
                config.graphql_max_document_bytes,
                config.graphql_max_variables_bytes,
                config.graphql_max_nesting,
                config.graphql_max_nodes,
                config.graphql_max_mutations,
            ),
            (50_000, 32_768, 524_288, 32, 10_000, 5)
        );
        let config = load(&[
            ("INKCART_GRAPHQL_MAX_NESTING", "64"),
            ("INKCART_GRAPHQL_MAX_MUTATIONS", "1"),
        ])
        .unwrap();
        assert_eq!(
            (config.graphql_max_nesting, config.graphql_max_mutations),
            (64, 1)
        );
        let errors = load(&[
            ("INKCART_GRAPHQL_MAX_NESTING", "65"),
            ("INKCART_GRAPHQL_MAX_NODES", "0"),
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("from 1 to 64"), "{errors:#?}");
    }

    #[test]
    fn rate_limits_are_on_by_default_and_each_quota_can_be_set_or_turned_off() {
        let config = load(&[]).unwrap();
        assert_eq!(config.rate_limits, Some(RateLimitPolicy::default()));
        let config = load(&[
            ("INKCART_RATE_LIMIT_IP", "5/30s"),
            ("INKCART_RATE_LIMIT_LOGIN", " 3 / 2h "),
            ("INKCART_RATE_LIMIT_SIGN_UP", "1/1d"),
        ])
        .unwrap();
        let policy = config.rate_limits.unwrap();
        assert_eq!(
            policy.per_ip,
            Quota {
                limit: 5,
                period: Duration::from_secs(30)
            }
        );
        assert_eq!(policy.login.period, Duration::from_secs(7200));
        assert_eq!(policy.sign_up.period, Duration::from_secs(86_400));
        assert_eq!(policy.per_user, RateLimitPolicy::default().per_user);
        assert!(
            load(&[("INKCART_RATE_LIMITS", "off")])
                .unwrap()
                .rate_limits
                .is_none()
        );
        let errors = load(&[
            ("INKCART_RATE_LIMITS", "sometimes"),
            ("INKCART_RATE_LIMIT_IP", "0/1m"),
            ("INKCART_RATE_LIMIT_USER", "10/2d"),
            ("INKCART_RATE_LIMIT_REFRESH", "10/1w"),
            ("INKCART_RATE_LIMIT_VERIFICATION", "10"),
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    #[test]
    fn production_refuses_a_missing_or_short_secret_and_a_wildcard_origin() {
        let errors = load(&[("INKCART_ENV", "production")]).unwrap_err().0;
        assert!(errors[0].contains("INKCART_JWT_SECRET: required in production"));
        let errors = load(&[
            ("INKCART_ENV", "production"),
            ("INKCART_JWT_SECRET", "too-short"),
            ("INKCART_CORS_ORIGINS", "*"),
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 2, "{errors:#?}");
        let secret = "x".repeat(32);
        assert!(
            load(&[
                ("INKCART_ENV", "production"),
                ("INKCART_JWT_SECRET", &secret)
            ])
            .is_ok()
        );
    }

    #[test]
    fn hsts_and_the_https_redirect_are_on_in_production_unless_turned_off() {
        let dev = load(&[]).unwrap();
        assert!(!dev.hsts && !dev.https_redirect);
        let secret = "x".repeat(32);
        let prod = load(&[
            ("INKCART_ENV", "production"),
            ("INKCART_JWT_SECRET", &secret),
        ])
        .unwrap();
        assert!(prod.hsts && prod.https_redirect);
        let off = load(&[
            ("INKCART_ENV", "production"),
            ("INKCART_JWT_SECRET", &secret),
            ("INKCART_HSTS", "false"),
            ("INKCART_HTTPS_REDIRECT", "off"),
        ])
        .unwrap();
        assert!(!off.hsts && !off.https_redirect);
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges_and_need_trust_proxy() {
        let config = load(&[
            ("INKCART_TRUST_PROXY", "true"),
            (
                "INKCART_TRUSTED_PROXIES",
                "10.0.0.0/8, 192.0.2.10 ,2001:db8::/32",
            ),
        ])
        .unwrap();
        let nets: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.10/32", "2001:db8::/32"]);
        assert!(load(&[]).unwrap().trusted_proxies.is_empty());
        let errors = load(&[
            ("INKCART_TRUST_PROXY", "true"),
            ("INKCART_TRUSTED_PROXIES", "10.0.0.0/8, nginx"),
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("`nginx`"), "{errors:#?}");
        let errors = load(&[("INKCART_TRUSTED_PROXIES", "10.0.0.1")])
            .unwrap_err()
            .0;
        assert!(
            errors[0].starts_with("INKCART_TRUSTED_PROXIES"),
            "{errors:#?}"
        );
    }

    #[test]
    fn upload_limits_have_defaults_and_can_be_set() {
        let d = load(&[]).unwrap();
        assert_eq!(d.upload_max_pixels, 40_000_000);
        assert!(d.upload_decode_concurrency >= 1);
        assert_eq!(d.upload_decode_wait, Duration::from_secs(5));
        let c = load(&[
            ("INKCART_UPLOAD_MAX_PIXELS", "1000000"),
            ("INKCART_UPLOAD_DECODE_CONCURRENCY", "3"),
            ("INKCART_UPLOAD_DECODE_WAIT_MS", "0"),
        ])
        .unwrap();
        assert_eq!(c.upload_max_pixels, 1_000_000);
        assert_eq!(c.upload_decode_concurrency, 3);
        assert_eq!(c.upload_decode_wait, Duration::ZERO);
        let errors = load(&[
            ("INKCART_UPLOAD_MAX_PIXELS", "many"),
            ("INKCART_UPLOAD_DECODE_CONCURRENCY", "0"),
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 2, "{errors:#?}");
    }

    #[test]
    fn connection_limits_have_defaults_and_can_be_set() {
        let d = load(&[]).unwrap();
        assert_eq!(d.header_read_timeout, Duration::from_secs(10));
        assert_eq!(d.body_read_timeout, Duration::from_secs(20));
        assert_eq!(d.max_connections, 4096);
        assert_eq!(d.max_header_bytes, 16 * 1024);
        assert_eq!(d.http2_max_streams, 100);
        let c = load(&[
            ("INKCART_HEADER_READ_TIMEOUT_SECS", "3"),
            ("INKCART_BODY_READ_TIMEOUT_SECS", "4"),
            ("INKCART_MAX_CONNECTIONS", "100"),
            ("INKCART_MAX_HEADER_BYTES", "8192"),
            ("INKCART_HTTP2_MAX_STREAMS", "16"),
        ])
        .unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.body_read_timeout, Duration::from_secs(4));
        assert_eq!(c.max_connections, 100);
        assert_eq!(c.max_header_bytes, 8192);
        assert_eq!(c.http2_max_streams, 16);
        let errors = load(&[
            ("INKCART_MAX_CONNECTIONS", "0"),
            ("INKCART_MAX_HEADER_BYTES", "100"),
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 2, "{errors:#?}");
    }

    #[test]
    fn the_database_acquire_timeout_is_short_by_default_and_can_be_set() {
        assert_eq!(
            load(&[]).unwrap().db_acquire_timeout,
            Duration::from_secs(2)
        );
        let c = load(&[("INKCART_DB_ACQUIRE_TIMEOUT_MS", "500")]).unwrap();
        assert_eq!(c.db_acquire_timeout, Duration::from_millis(500));
        assert!(load(&[("INKCART_DB_ACQUIRE_TIMEOUT_MS", "0")]).is_err());
    }

    #[test]
    fn a_config_file_is_read_and_the_environment_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inkcart.toml");
        std::fs::write(&path, "port = 4000\nbind = \"0.0.0.0\"\nhsts = true\n").unwrap();
        let file = path.to_str().unwrap();
        let config = load(&[("INKCART_CONFIG", file), ("PORT", "5000")]).unwrap();
        assert_eq!(config.port, 5000);
        assert_eq!(config.bind.to_string(), "0.0.0.0");
        assert!(config.hsts);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inkcart.toml");
        std::fs::write(&path, "prot = 4000\n").unwrap();
        let errors = load(&[("INKCART_CONFIG", path.to_str().unwrap())])
            .unwrap_err()
            .0;
        assert!(errors[0].contains("prot"), "{errors:?}");
    }

    #[test]
    fn a_development_secret_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.ensure_jwt_secret().unwrap();
        let first = config.jwt_secret.clone().unwrap();
        assert_eq!(first.expose().len(), 128);
        let mut again = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        again.ensure_jwt_secret().unwrap();
        assert_eq!(again.jwt_secret.unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("jwt-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
