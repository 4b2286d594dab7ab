//! Typed configuration from the environment and an optional `inkcart.toml`, validated at
//! start.
//!
//! Every key is declared once, in the `keys!` table below: its file name, environment
//! variable, type, default, check, documentation and, when it is one, its field of [`Config`].
//! The tables of `docs/configuration.md` are generated from that table (a test fails when the
//! file is out of date).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use inkcart_app::ports::Quota;
use inkcart_app::ratelimit::RateLimitPolicy;
use serde::Deserialize;

use inkcart_adapters::mail::{SmtpSettings, SmtpTls};

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

/// The `storage` key, before the keys of the chosen storage are read into a [`StorageConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageKind {
    Local,
    S3,
}

/// `Some` of its argument, or `None` without one (an optional part of a key declaration).
macro_rules! opt {
    () => {
        None
    };
    ($value:expr) => {
        Some($value)
    };
}

/// Declares every configuration key, and from that one table generates: the fields of
/// [`Config`], the keys the file may hold (`Raw`), the environment variables read
/// (`NAMES`), the reading and checking of each key, and the documentation's tables.
///
/// A key is `name: Type => field { ... }`: `name` is its name in the file (and, upper-cased
/// after `INKCART_`, in the environment), `field` the [`Config`] field it sets (none when a
/// field made of several keys, in `composed`, uses it). In the braces: `var`, a conventional
/// variable read besides `INKCART_<NAME>` that wins over it and names the key in errors;
/// `default`, which may use the keys declared above it; `shown`, the default as the
/// documentation says it when not the default itself; `check`, a [`Check`] that turns the
/// text into the value; `when`, a condition on the keys above, without which the key is not
/// read. Its doc comment is its line in `docs/configuration.md`.
macro_rules! keys {
    (
        $(
            section $section:literal {
                $(
                    $(#[doc = $doc:literal])*
                    $key:ident : $ty:ty $(=> $field:ident)? {
                        $(var: $var:literal,)?
                        default: $default:expr,
                        $(shown: $shown:literal,)?
                        check: $check:expr,
                        $(when: $when:expr,)?
                    }
                )*
            }
        )*
        composed {
            $(
                $(#[doc = $cdoc:literal])*
                $cfield:ident : $cty:ty = $build:expr;
            )*
        }
    ) => {
        /// The validated configuration: a field for each key that is one (its meaning is in
        /// `docs/configuration.md`), and the fields made of several keys.
        #[derive(Debug, Clone)]
        pub struct Config {
            $($($(pub $field: $ty,)?)*)*
            $(
                $(#[doc = $cdoc])*
                pub $cfield: $cty,
            )*
        }

        /// Every key as text, before validation.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            $($($key: Option<String>,)*)*
        }

        /// Every key, in the order of the documentation.
        const NAMES: &[Name] = &[$($(Name { key: stringify!($key), var: opt!($($var)?) },)*)*];

        impl Config {
            /// Each key read and checked on its own; the problems in the returned errors.
            fn read_keys(raw: &Raw, errors: &mut Errors) -> Self {
                $($(
                    let $key: $ty = {
                        let default: $ty = $default;
                        let text = raw.$key.as_deref();
                        $(let text = text.filter(|_| $when);)?
                        match text {
                            Some(text) => Check::<$ty>::read(
                                &$check,
                                &Name { key: stringify!($key), var: opt!($($var)?) },
                                text,
                                default,
                                errors,
                            ),
                            None => default,
                        }
                    };
                )*)*
                Self {
                    $($($($field: $key,)?)*)*
                    $($cfield: $build,)*
                }
            }
        }

        /// Every key as the documentation lists it, in order.
        fn documented() -> Vec<Documented> {
            let mut keys = Vec::new();
            $($(
                let $key: $ty = $default;
                keys.push(Documented {
                    section: $section,
                    name: Name { key: stringify!($key), var: opt!($($var)?) },
                    default: opt!($($shown)?)
                        .map_or_else(|| Check::<$ty>::show(&$check, &$key), str::to_owned),
                    doc: concat!($($doc),*).trim(),
                });
            )*)*
            keys
        }
    };
}

keys! {
    section "General" {
        /// `development` or `production`. Production refuses to start without a JWT secret of
        /// at least 32 bytes, or with a wildcard CORS origin.
        env: Environment => env {
            default: Environment::Development,
            check: Choice,
        }
        /// Where the embedded SQLite database (`inkcart.db`) and the development JWT secret
        /// (`jwt-secret`) live. Created if missing. While the server runs, SQLite's WAL
        /// (`inkcart.db-wal`, `inkcart.db-shm`) sits beside the file and is copied into it
        /// every 250 ms; a stopped server leaves it empty.
        data_dir: PathBuf => data_dir {
            default: PathBuf::from("./data"),
            check: AsIs,
        }
        /// Unset: embedded SQLite in the data dir. `postgres://user@host:5432/db` (or
        /// `postgresql://`): PostgreSQL. `sqlite:///path/file.db`: another SQLite file.
        database_url: Option<String> => database_url {
            var: "DATABASE_URL",
            default: None,
            check: DatabaseUrl,
        }
        /// Size of the PostgreSQL pool, or of the SQLite reader pool, which also bounds the SQLite
        /// reads that may take long (searches, deep pages, batches) running at once (SQLite
        /// writes always go through one connection). On PostgreSQL, requests' reads and
        /// transactions hold at most three quarters of it (all but one of a small pool); the rest
        /// serves the job queue.
        db_max_connections: u32 => db_max_connections {
            default: 16,
            check: Num { min: 1 },
        }
        /// How long a request waits for a database connection (a free one in the pool, or a
        /// new one being opened) before it is answered 503 `Database unavailable`. While
        /// PostgreSQL is down, every request fails after this long and `/health/ready` turns
        /// not-ready within it (it reads twice: up to twice this); once PostgreSQL is back, the
        /// next request succeeds. A statement whose connection was cut (a server restart) is
        /// answered 503 `Database unavailable` too, and that connection is replaced; a pooled
        /// connection that sat idle for a second or more is tested before it is lent, so one
        /// that died while idle fails no request. On SQLite it is also the busy timeout of the
        /// database file. Also bounds the first connection at start.
        db_acquire_timeout_ms: Duration => db_acquire_timeout {
            default: Duration::from_secs(2),
            check: Millis { min: 1 },
        }
        /// Address to listen on (`0.0.0.0` for every interface).
        bind: IpAddr => bind {
            default: IpAddr::from([127, 0, 0, 1]),
            check: Parse("an IP address such as 127.0.0.1 or 0.0.0.0"),
        }
        /// Port to listen on.
        port: u16 => port {
            var: "PORT",
            default: 3000,
            check: Parse("a port number (0-65535)"),
        }
        /// HS256 key for access tokens. In development, when unset, 64 random bytes are
        /// generated once and kept in `<data_dir>/jwt-secret` (mode 0600). Required (≥ 32
        /// bytes) in production.
        jwt_secret: Option<Secret> => jwt_secret {
            default: None,
            shown: "generated in development",
            check: NonEmpty,
        }
        /// Lifetime of an access token (15 minutes).
        access_token_ttl_secs: Duration => access_token_ttl {
            default: Duration::from_secs(15 * 60),
            check: Secs,
        }
        /// Lifetime of a refresh token (7 days); each rotation starts a new lifetime.
        refresh_token_ttl_secs: Duration => refresh_token_ttl {
            default: Duration::from_secs(7 * 24 * 3600),
            check: Secs,
        }
        /// `text` (readable) or `json` (one JSON object per line).
        log_format: LogFormat => log_format {
            default: LogFormat::Text,
            check: Choice,
        }
        /// Log filter in `RUST_LOG` syntax, e.g. `debug` or `info,inkcart_http=debug`. At
        /// `info`, each request writes one access line (request id, method, path, status,
        /// latency); `debug` also wraps everything logged while serving a request in a
        /// `request` span carrying its id. Lines are written by a thread of their own; none is
        /// dropped.
        log: String => log_filter {
            default: "info,sqlx=warn".to_owned(),
            check: NonBlank,
        }
        /// Comma-separated allowed origins (`https://app.example.com`). Empty: no CORS
        /// headers. `*`: any origin (development only).
        cors_origins: Vec<String> => cors_origins {
            default: Vec::new(),
            check: Origins,
        }
        /// Send `Strict-Transport-Security: max-age=31536000; includeSubDomains`. Production is
        /// expected to be served over HTTPS (directly or behind a TLS-terminating proxy); turn
        /// it off only if it is not.
        hsts: bool => hsts {
            default: env == Environment::Production,
            shown: "`true` in production, `false` in development",
            check: Flag,
        }
        /// Largest accepted request body outside uploads (JSON, GraphQL); larger bodies get
        /// 413. A `Content-Length` over it is answered 413 at once, before any of the body is
        /// read, and the connection is closed.
        body_limit_bytes: usize => body_limit_bytes {
            default: 1024 * 1024,
            check: Num { min: 1 },
        }
        /// A request still running after this long is answered with 503.
        request_timeout_secs: Duration => request_timeout {
            default: Duration::from_secs(30),
            check: Secs,
        }
        /// A connection must deliver a complete request head (request line and headers)
        /// within this time of being opened, or of the end of its previous response; otherwise
        /// it is closed without an answer. This also closes HTTP/1.1 keep-alive connections
        /// idle this long, and HTTP/2 connections with no request in progress this long (after
        /// a GOAWAY, and at most as long again). Behind a proxy that keeps connections to
        /// inkcart open, set the proxy's idle timeout below this (nginx: `keepalive_timeout` in
        /// the `upstream` block).
        header_read_timeout_secs: Duration => header_read_timeout {
            default: Duration::from_secs(10),
            check: Secs,
        }
        /// A request body must arrive whole within this time of the request head; otherwise
        /// the request is answered 408 `RequestTimeout` and the connection closed. Keep it
        /// below `request_timeout_secs` (else the 503 comes first). A whole upload
        /// (`upload_limit_bytes`) must fit in it: 10 MiB in 20 s needs about 4 Mbit/s.
        body_read_timeout_secs: Duration => body_read_timeout {
            default: Duration::from_secs(20),
            check: Secs,
        }
        /// Bytes of request bodies held in memory at once, all requests together (256 MiB): a
        /// body is counted as it arrives and given back when its request is answered. A body
        /// that does not fit is cut off and its request answered 503 `ServiceUnavailable` with
        /// `Retry-After: 1` and `Connection: close`, so that many large bodies at once (4,096
        /// connections × a 10 MiB upload would be 40 GiB) cannot exhaust memory. At least the
        /// larger of `upload_limit_bytes` and `body_limit_bytes`.
        body_memory_bytes: usize => body_memory_bytes {
            default: 256 * 1024 * 1024,
            check: Num { min: 1 },
        }
        /// Connections served at once. Past it, new connections wait in the operating system's
        /// listen queue until one closes (they are not refused). Keep it below the process's
        /// open-file limit (`ulimit -n`) minus the database pool.
        max_connections: usize => max_connections {
            default: 4096,
            check: Num { min: 1 },
        }
        /// Largest request head (request line and headers). A request target (path and query)
        /// longer than it is answered 414 `URITooLong` with the error envelope. A head over it
        /// and up to twice its size is answered 431 `RequestHeaderFieldsTooLarge` with the
        /// error envelope; past twice its size the HTTP library (hyper) stops reading and
        /// answers a bare `431` without a body, then closes the connection. More than 100
        /// header fields get the same bare 431, and a malformed request (an unparsable request
        /// line or header) a bare `400`: hyper writes those answers itself before inkcart sees
        /// the request, so they cannot carry the envelope. At least 1024.
        max_header_bytes: usize => max_header_bytes {
            default: 16 * 1024,
            check: Num { min: 1024 },
        }
        /// Requests in progress at once on one HTTP/2 connection (HTTP/2 without TLS, "prior
        /// knowledge"; TLS is the proxy's). The HTTP/2 header list is limited like an HTTP/1.1
        /// head (twice `max_header_bytes`).
        http2_max_streams: u32 => http2_max_streams {
            default: 100,
            check: Num { min: 1 },
        }
        /// On SIGINT/SIGTERM, how long in-flight requests may take to finish before the
        /// process exits.
        shutdown_grace_secs: Duration => shutdown_grace {
            default: Duration::from_secs(30),
            check: Secs,
        }
        /// Login attempts allowed per (client address, email) within the window; then 429 with
        /// `Retry-After`, even for the right password. An attempt counts from the moment it is
        /// made (before the password is checked), so concurrent attempts cannot exceed it; a
        /// successful login clears the count. The same number of wrong current passwords is
        /// allowed per account (changing the email or the password). Stays on with
        /// `rate_limits = off`: it protects accounts, not capacity.
        login_max_failures: u32 => login_max_failures {
            default: 5,
            check: Num { min: 1 },
        }
        /// The window for the count above (15 minutes).
        login_window_secs: Duration => login_window {
            default: Duration::from_secs(15 * 60),
            check: Secs,
        }
        /// Behind a reverse proxy you control: believe `X-Forwarded-For` and
        /// `X-Forwarded-Proto` from the proxies of `trusted_proxies`. The client address (for
        /// the login throttle and the logs) is then the right-most `X-Forwarded-For` hop that
        /// is not a trusted proxy: a proxy appends the address it was called from, and
        /// everything to the left of that was written by the client. Off: the socket peer,
        /// whatever the headers say.
        trust_proxy: bool => trust_proxy {
            default: false,
            check: Flag,
        }
        /// With `trust_proxy`: the proxies, as IP addresses and CIDR ranges separated by
        /// commas (`10.0.0.0/8, 192.0.2.10`). Requests from any other peer have their
        /// forwarding headers ignored; trusted hops are skipped from the right of
        /// `X-Forwarded-For`. Empty: whatever peer connects is taken as the one proxy in front
        /// of inkcart (right for a proxy on the same host or network namespace). Setting it
        /// without `trust_proxy` is an error.
        trusted_proxies: Vec<ipnet::IpNet> => trusted_proxies {
            default: Vec::new(),
            shown: "empty: the socket peer only",
            check: Networks,
        }
        /// With `trust_proxy`: a request that a trusted proxy reports (`X-Forwarded-Proto:
        /// http`) as received over plain http is answered `308 Permanent Redirect` to the same
        /// path and query on https: the origin of `public_url` when that is an `https://` URL,
        /// else the request's host on port 443. `/health/*` is never redirected (load balancers
        /// probe it over http). Without `trust_proxy` it does nothing.
        https_redirect: bool => https_redirect {
            default: env == Environment::Production,
            shown: "`true` in production, `false` in development",
            check: Flag,
        }
    }

    section "Files and caches" {
        /// The URL clients reach this server at: file URLs of local storage (and, later, links
        /// in emails).
        public_url: String => public_url {
            default: "http://127.0.0.1:3000".to_owned(),
            check: HttpUrl,
        }
        /// How long a product stays in the in-process cache. Writes through this instance
        /// invalidate at once; this bounds staleness caused by other instances. `0` turns the
        /// cache off (every read goes to the database). At most a year.
        product_cache_ttl_secs: Duration => product_cache_ttl {
            default: Duration::from_secs(30),
            check: CacheTtl,
        }
        /// How long a published post (`GET /api/v1/posts/{post}`, GraphQL `post`) and a page of
        /// the post list (`GET /api/v1/posts`, GraphQL `posts`) stay in the in-process caches;
        /// drafts are never cached. Every post or comment write, author-name change and account
        /// deletion through this instance clears both caches at once; this bounds staleness
        /// caused by other instances. An entry read in the second half of its life is reloaded
        /// in the background while it is served, so busy posts and pages never expire under
        /// load. `0` turns both caches off (every read goes to the database). At most a year.
        post_cache_ttl_secs: Duration => post_cache_ttl {
            default: Duration::from_secs(5),
            check: CacheTtl,
        }
        /// How long a page of search results (`GET /api/v1/posts?search=…`, GraphQL
        /// `posts(search:)`) stays in its in-process cache. Cleared with the post caches by
        /// every write through this instance; the lifetime bounds staleness caused by other
        /// instances. Longer than a post's because ranking a search page costs tens of
        /// milliseconds of the database, and results a minute behind another instance's write
        /// are acceptable where a post page that old is not. `0` turns it off. At most a year.
        search_cache_ttl_secs: Duration => search_cache_ttl {
            default: Duration::from_secs(60),
            check: CacheTtl,
        }
        /// Largest accepted upload (10 MiB); larger ones get 413 (a `Content-Length` over it:
        /// at once, before the body is read).
        upload_limit_bytes: usize => upload_limit_bytes {
            default: 10 * 1024 * 1024,
            check: Num { min: 1 },
        }
        /// Most pixels (width × height) an uploaded image may have. Read from the image's
        /// header before anything is decoded; over it: 413 `PayloadTooLarge` naming the image's
        /// size. The decoded pixels may take at most 4 bytes each (so 16-bit-per-channel images
        /// get half as many): 160 MB at the default. The decoder's allocation limit is twice
        /// that (320 MB); the PNG and GIF decoders keep to it, the JPEG and WebP decoders are
        /// bounded by the pixel check only. Animated GIF and WebP count once: only the first
        /// frame is decoded (for the thumbnail).
        upload_max_pixels: u64 => upload_max_pixels {
            default: 40_000_000,
            check: Num { min: 1 },
        }
        /// Images decoded at once (each on a thread of the blocking pool, never on the threads
        /// that serve requests). With the defaults, decoding takes at most this × 320 MB.
        upload_decode_concurrency: usize => upload_decode_concurrency {
            default: std::thread::available_parallelism().map_or(1, usize::from),
            shown: "the number of cores",
            check: Num { min: 1 },
        }
        /// How long an upload waits for a decoding slot; then 503 `ServiceUnavailable` with
        /// `Retry-After: 2`. `0`: no wait.
        upload_decode_wait_ms: Duration => upload_decode_wait {
            default: Duration::from_secs(5),
            check: Millis { min: 0 },
        }
        /// Where uploads go: `local` (a directory, served by inkcart at `/files/{key}`) or `s3`
        /// (any S3-compatible service).
        storage: StorageKind {
            default: StorageKind::Local,
            check: Choice,
        }
        /// The directory of `local` storage.
        storage_dir: Option<PathBuf> {
            default: None,
            shown: "`<data_dir>/files`",
            check: AsIs,
        }
        /// The S3-compatible endpoint, e.g. `http://127.0.0.1:9000` (MinIO) — unset for AWS
        /// itself. `http://` endpoints are allowed.
        s3_endpoint: Option<String> {
            default: None,
            shown: "AWS",
            check: NonBlank,
        }
        /// The bucket (required with `storage = s3`).
        s3_bucket: Option<String> {
            default: None,
            shown: "—",
            check: NonBlank,
        }
        /// The region.
        s3_region: String {
            default: "us-east-1".to_owned(),
            check: AsIs,
        }
        /// With the secret below; without them the usual AWS sources apply (instance roles,
        /// `AWS_*` variables).
        s3_access_key_id: Option<String> {
            default: None,
            shown: "from the environment",
            check: AsIs,
        }
        /// The secret of the access key above.
        s3_secret_access_key: Option<String> {
            default: None,
            shown: "from the environment",
            check: AsIs,
        }
        /// Path-style URLs (`<endpoint>/<bucket>/<key>`), as MinIO and most S3-compatible
        /// servers want; `false` for virtual-hosted style.
        s3_path_style: bool {
            default: true,
            check: Flag,
            when: storage == StorageKind::S3,
        }
        /// Where clients fetch uploaded files from (a CDN in front of the bucket, say). Objects
        /// are written under `uploads/`; the bucket must let clients read them (a bucket policy
        /// or the CDN).
        storage_public_url: Option<String> {
            default: None,
            shown: "the bucket's URL",
            check: AsIs,
        }
    }

    section "GraphQL" {
        /// Deepest nesting of selections a GraphQL query may have (`{ posts { author { name } }
        /// }` is 3).
        graphql_depth_limit: usize => graphql_depth_limit {
            default: 10,
            check: Num { min: 1 },
        }
        /// Most a GraphQL query may cost. A unit is about 100 bytes of the response or of the
        /// rows read to answer it: a field costs 1, or its longest value (a text of `n`
        /// characters costs `6n/100`: a title 12, a comment 300, a post's content 6,000; its
        /// HTML, at most 600 KB, 12,000 — both are read together, so each costs 18,000); a list
        /// costs 1 plus, for each item of the largest page it may return (its `limit`, or the
        /// default), whichever is more of what the item reads (a post 68, a comment 307, a
        /// product 613, an order with its 100 lines 1,301) and what is selected of it. The
        /// default bounds the response and the rows read for the worst accepted query to about
        /// 5 MB (see "GraphQL" in `docs/api.md`).
        graphql_complexity_limit: usize => graphql_complexity_limit {
            default: 50_000,
            check: Num { min: 1 },
        }
        /// Answer `__schema` / `__type` queries. GraphiQL (`GET /graphql`) follows the
        /// environment: development only.
        graphql_introspection: bool => graphql_introspection {
            default: env == Environment::Development,
            shown: "`true` in development, `false` in production",
            check: Flag,
        }
        /// Longest GraphQL document (the `query` text), in bytes; a longer one is refused
        /// unparsed (`PayloadTooLarge`). Long texts belong in variables.
        graphql_max_document_bytes: usize => graphql_max_document_bytes {
            default: 32 * 1024,
            check: Num { min: 1 },
        }
        /// Longest GraphQL `variables`, in bytes of compact JSON (`PayloadTooLarge`). The
        /// default fits a post of 100,000 four-byte characters.
        graphql_max_variables_bytes: usize => graphql_max_variables_bytes {
            default: 512 * 1024,
            check: Num { min: 1 },
        }
        /// Deepest nesting in a GraphQL request: of `{`, `[` and `(` in the document (outside
        /// strings and comments), counted before it is parsed; of selections once fragment
        /// spreads are expanded (a spread counts as a level); of lists and objects in the
        /// variables. Deeper is refused (`BadRequest`): the parser and validation recurse once
        /// per level. At most 64; keep it above `graphql_depth_limit` plus the nesting of your
        /// arguments.
        graphql_max_nesting: usize => graphql_max_nesting {
            default: 32,
            // The parser and validation recurse once per level or more.
            check: NumUpTo { min: 1, max: inkcart_http::graphql::MAX_NESTING_CEILING },
        }
        /// Most nodes (fields, fragment spreads, inline fragments, directives, arguments,
        /// values, variable definitions) a GraphQL document may have once every fragment spread
        /// is replaced by its fragment, and most values its variables may hold. Measured in
        /// time linear in the document before validation, which walks the expanded document:
        /// fragments that spread the previous one several times would otherwise make it
        /// exponential.
        graphql_max_nodes: usize => graphql_max_nodes {
            default: 10_000,
            check: Num { min: 1 },
        }
        /// Most root mutation fields one GraphQL request may run, aliases and fields spread
        /// from fragments included (`BadRequest` before any runs).
        graphql_max_mutations: usize => graphql_max_mutations {
            default: 5,
            check: Num { min: 1 },
        }
    }

    section "Mail, events and jobs" {
        /// SMTP server for outgoing mail. Unset: each message is written as an `.eml` file
        /// under `<data_dir>/mail` and logged.
        smtp_host: Option<String> {
            default: None,
            check: NonBlank,
        }
        /// `starttls`, `tls` (implicit TLS) or `none` (local relays and tests only).
        smtp_tls: SmtpTls {
            default: SmtpTls::StartTls,
            check: Choice,
            when: smtp_host.is_some(),
        }
        /// Port (the default follows `smtp_tls`).
        smtp_port: u16 {
            default: match smtp_tls {
                SmtpTls::StartTls => 587,
                SmtpTls::Tls => 465,
                SmtpTls::None => 25,
            },
            shown: "587 / 465 / 25",
            check: Parse("a port number"),
            when: smtp_host.is_some(),
        }
        /// With the password below, SMTP authentication.
        smtp_username: Option<String> {
            default: None,
            check: NonEmpty,
        }
        /// The password of `smtp_username`.
        smtp_password: Option<String> {
            default: None,
            check: NonEmpty,
        }
        /// Sender of every email.
        mail_from: String => mail_from {
            default: "inkcart <no-reply@localhost>".to_owned(),
            check: Mailbox,
        }
        /// Publish every outbox event to NATS JetStream (`inkcart.events.<Type>`, stream
        /// `INKCART_EVENTS`).
        nats_url: Option<String> => nats_url {
            default: None,
            check: NonBlank,
        }
        /// Where jobs wait: `database` (the `jobs` table; enqueued in the transaction of the
        /// event) or `redis`.
        job_queue: JobQueueConfig => job_queue {
            default: JobQueueConfig::Database,
            check: Choice,
        }
        /// Redis, e.g. `redis://127.0.0.1:6379`: for `job_queue = redis`, and, whenever it is
        /// set (and `rate_limits` is on), for request budgets shared by every instance.
        redis_url: Option<String> => redis_url {
            var: "REDIS_URL",
            default: None,
            check: NonBlank,
        }
        /// Jobs one worker process runs at once.
        worker_concurrency: usize => worker_concurrency {
            default: 4,
            check: Num { min: 1 },
        }
        /// How often an idle worker looks for due jobs, and the outbox relay for new events
        /// (at once again after a full batch of 200).
        worker_poll_ms: Duration => worker_poll {
            default: Duration::from_millis(500),
            check: Millis { min: 1 },
        }
        /// A job running longer fails (and is retried).
        job_timeout_secs: Duration => job_timeout {
            default: Duration::from_secs(60),
            check: Secs,
        }
        /// How long a worker holds a job; renewed every third of it while the job runs. A
        /// worker that dies loses its jobs to others when the lease ends.
        job_lease_secs: Duration => job_lease {
            default: Duration::from_secs(60),
            check: Secs,
        }
        /// Attempts before a job is `dead` (kept with its last error; an admin can retry it).
        job_max_attempts: i32 => job_max_attempts {
            default: 5,
            check: Num { min: 1 },
        }
        /// First retry delay; each next one doubles (capped at an hour), with 50–100 % jitter.
        job_backoff_ms: Duration => job_backoff {
            default: Duration::from_secs(2),
            check: Millis { min: 1 },
        }
    }

    section "Rate limits" {
        /// Request rate limits (below). `off` turns every one of them off, with a warning in
        /// the log at start: for load tests and local development only. The failed-login
        /// throttle and the one-mail-a-minute rules stay.
        rate_limits: bool {
            default: true,
            shown: "`on`",
            check: Flag,
        }
        /// Requests per client address, on every route but `/health/*`.
        rate_limit_ip: Quota {
            default: RateLimitPolicy::default().per_ip,
            check: RateQuota,
        }
        /// Requests per signed-in user (a bearer token with a valid signature), from all their
        /// addresses together; charged besides the address's.
        rate_limit_user: Quota {
            default: RateLimitPolicy::default().per_user,
            check: RateQuota,
        }
        /// `POST /api/v1/users`, and each GraphQL `createUser`.
        rate_limit_sign_up: Quota {
            default: RateLimitPolicy::default().sign_up,
            check: RateQuota,
        }
        /// `POST /api/v1/auth/login` (password spraying across accounts; the per-account
        /// throttle is `login_max_failures`).
        rate_limit_login: Quota {
            default: RateLimitPolicy::default().login,
            check: RateQuota,
        }
        /// `POST /api/v1/auth/refresh` (an office's sessions all refresh every 15 minutes
        /// through one address).
        rate_limit_refresh: Quota {
            default: RateLimitPolicy::default().refresh,
            check: RateQuota,
        }
        /// `POST /api/v1/auth/password-reset/request` and `/confirm` together.
        rate_limit_password_reset: Quota {
            default: RateLimitPolicy::default().password_reset,
            check: RateQuota,
        }
        /// `POST /api/v1/auth/verify-email/request` and `/confirm` together.
        rate_limit_verification: Quota {
            default: RateLimitPolicy::default().verification,
            check: RateQuota,
        }
        /// Prefix of the budget keys in Redis (deployments sharing one Redis use different
        /// ones).
        rate_limit_prefix: String => rate_limit_prefix {
            default: "inkcart:rl:".to_owned(),
            check: AsIs,
        }
    }

    composed {
        /// Where uploaded files go: `storage` and the keys of that storage.
        storage: StorageConfig = match storage {
            StorageKind::Local => StorageConfig::Local { dir: storage_dir },
            StorageKind::S3 => StorageConfig::S3 {
                endpoint: s3_endpoint,
                bucket: s3_bucket.unwrap_or_default(),
                region: s3_region,
                access_key_id: s3_access_key_id,
                secret_access_key: s3_secret_access_key,
                path_style: s3_path_style,
                public_url: storage_public_url,
            },
        };
        /// SMTP server for outgoing mail; `None`: `.eml` files in `<data dir>/mail`.
        smtp: Option<SmtpSettings> = smtp_host.map(|host| SmtpSettings {
            host: host.trim().to_owned(),
            port: smtp_port,
            tls: smtp_tls,
            username: smtp_username,
            password: smtp_password,
        });
        /// Request rate limits; `None` when `INKCART_RATE_LIMITS=off`.
        rate_limits: Option<RateLimitPolicy> = rate_limits.then_some(RateLimitPolicy {
            per_ip: rate_limit_ip,
            per_user: rate_limit_user,
            sign_up: rate_limit_sign_up,
            login: rate_limit_login,
            refresh: rate_limit_refresh,
            password_reset: rate_limit_password_reset,
            verification: rate_limit_verification,
        });
    }
}

impl Default for Config {
    /// The configuration of an empty environment without a file.
    fn default() -> Self {
        Self::read_keys(&Raw::default(), &mut Errors::default())
    }
}

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
        let mut errors = Errors::default();
        let config = Self::read_keys(&raw, &mut errors);
        config.check_together(&mut errors);
        if errors.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors.0))
        }
    }

    /// The rules that involve several keys, once each has been read.
    fn check_together(&self, errors: &mut Errors) {
        if let StorageConfig::S3 { bucket, .. } = &self.storage
            && bucket.is_empty()
        {
            errors.push("INKCART_S3_BUCKET: required when INKCART_STORAGE=s3".to_owned());
        }
        if self.job_queue == JobQueueConfig::Redis && self.redis_url.is_none() {
            errors.push(
                "REDIS_URL: required when INKCART_JOB_QUEUE=redis (e.g. redis://127.0.0.1:6379)"
                    .to_owned(),
            );
        }
        let largest_body = self.upload_limit_bytes.max(self.body_limit_bytes);
        if self.body_memory_bytes < largest_body {
            errors.push(format!(
                "INKCART_BODY_MEMORY_BYTES: must hold at least one largest body ({largest_body} bytes: the larger of INKCART_UPLOAD_LIMIT_BYTES and INKCART_BODY_LIMIT_BYTES)"
            ));
        }
        if !self.trusted_proxies.is_empty() && !self.trust_proxy {
            errors.push(
                "INKCART_TRUSTED_PROXIES: set, but INKCART_TRUST_PROXY is off, so it would be ignored; turn trust_proxy on or unset the list".to_owned(),
            );
        }
        if self.env == Environment::Production {
            match &self.jwt_secret {
                None => errors.push(
                    "INKCART_JWT_SECRET: required in production (at least 32 bytes; e.g. `openssl rand -hex 32`)".to_owned(),
                ),
                Some(s) if s.expose().len() < 32 => errors.push(format!(
                    "INKCART_JWT_SECRET: must be at least 32 bytes in production (got {})",
                    s.expose().len()
                )),
                Some(_) => {}
            }
            if self.cors_origins.iter().any(|o| o == "*") {
                errors.push(
                    "INKCART_CORS_ORIGINS: a wildcard origin (*) is refused in production; list the allowed origins".to_owned(),
                );
            }
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
    let mut prefixed: HashMap<&str, String> = HashMap::new();
    for name in NAMES {
        if let Some(value) = env.get(&name.prefixed_var()) {
            prefixed.insert(name.key, value.clone());
        }
    }
    // The conventional names win over the prefixed ones.
    for name in NAMES {
        if let Some(value) = name.var.and_then(|var| env.get(var)) {
            prefixed.insert(name.key, value.clone());
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

/// How a key is named in the file and the environment.
#[derive(Debug, Clone, Copy)]
struct Name {
    key: &'static str,
    /// A conventional variable (`PORT`) read besides `INKCART_<KEY>`.
    var: Option<&'static str>,
}

impl Name {
    fn prefixed_var(&self) -> String {
        format!("INKCART_{}", self.key.to_uppercase())
    }

    /// The variable that errors and the documentation name the key by.
    fn main_var(&self) -> String {
        self.var.map_or_else(|| self.prefixed_var(), str::to_owned)
    }
}

/// The problems found so far, each on its own line.
#[derive(Debug, Default)]
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, error: String) {
        self.0.push(error);
    }

    fn bad(&mut self, name: &Name, value: &str, expected: &str) {
        self.0.push(format!(
            "{} (or `{}` in inkcart.toml): expected {expected}, got `{value}`",
            name.main_var(),
            name.key
        ));
    }
}

/// How the text of a key becomes its value.
trait Check<T> {
    /// The value `text` stands for; when it is bad, an error and `default`.
    fn read(&self, name: &Name, text: &str, default: T, errors: &mut Errors) -> T;

    /// The default as the documentation shows it.
    fn show(&self, default: &T) -> String;
}

fn code(value: impl fmt::Display) -> String {
    format!("`{value}`")
}

/// The text as it is.
struct AsIs;

impl<T: FromText> Check<T> for AsIs {
    fn read(&self, _: &Name, text: &str, _: T, _: &mut Errors) -> T {
        T::from_text(text)
    }

    fn show(&self, default: &T) -> String {
        default.show()
    }
}

/// The types a key's text is taken as without a check.
trait FromText {
    fn from_text(text: &str) -> Self;
    fn show(&self) -> String;
}

impl FromText for String {
    fn from_text(text: &str) -> Self {
        text.to_owned()
    }

    fn show(&self) -> String {
        code(self)
    }
}

impl FromText for PathBuf {
    fn from_text(text: &str) -> Self {
        PathBuf::from(text)
    }

    fn show(&self) -> String {
        code(self.display())
    }
}

impl<T: FromText> FromText for Option<T> {
    fn from_text(text: &str) -> Self {
        Some(T::from_text(text))
    }

    fn show(&self) -> String {
        self.as_ref().map_or_else(|| "unset".to_owned(), T::show)
    }
}

/// Blank (empty or spaces) counts as unset.
struct NonBlank;

impl Check<Option<String>> for NonBlank {
    fn read(&self, _: &Name, text: &str, _: Option<String>, _: &mut Errors) -> Option<String> {
        Some(text.to_owned()).filter(|t| !t.trim().is_empty())
    }

    fn show(&self, default: &Option<String>) -> String {
        default.show()
    }
}

impl Check<String> for NonBlank {
    fn read(&self, _: &Name, text: &str, default: String, _: &mut Errors) -> String {
        if text.trim().is_empty() {
            default
        } else {
            text.to_owned()
        }
    }

    fn show(&self, default: &String) -> String {
        code(default)
    }
}

/// Empty counts as unset.
struct NonEmpty;

impl Check<Option<String>> for NonEmpty {
    fn read(&self, _: &Name, text: &str, _: Option<String>, _: &mut Errors) -> Option<String> {
        Some(text.to_owned()).filter(|t| !t.is_empty())
    }

    fn show(&self, default: &Option<String>) -> String {
        default.show()
    }
}

impl Check<Option<Secret>> for NonEmpty {
    fn read(&self, _: &Name, text: &str, _: Option<Secret>, _: &mut Errors) -> Option<Secret> {
        (!text.is_empty()).then(|| Secret::new(text.as_bytes()))
    }

    fn show(&self, default: &Option<Secret>) -> String {
        if default.is_some() {
            "set".to_owned()
        } else {
            "unset".to_owned()
        }
    }
}

/// Anything [`FromStr`] reads; `expected` describes it in errors.
struct Parse(&'static str);

impl<T: FromStr + fmt::Display> Check<T> for Parse {
    fn read(&self, name: &Name, text: &str, default: T, errors: &mut Errors) -> T {
        text.trim().parse().unwrap_or_else(|_| {
            errors.bad(name, text, self.0);
            default
        })
    }

    fn show(&self, default: &T) -> String {
        code(default)
    }
}

/// A whole number of at least `min`.
struct Num<T> {
    min: T,
}

impl<T> Check<T> for Num<T>
where
    T: FromStr + PartialOrd + Copy + fmt::Display,
{
    fn read(&self, name: &Name, text: &str, default: T, errors: &mut Errors) -> T {
        match text.trim().parse::<T>() {
            Ok(value) if value >= self.min => value,
            _ => {
                let expected = format!("a whole number of at least {}", self.min);
                errors.bad(name, text, &expected);
                default
            }
        }
    }

    fn show(&self, default: &T) -> String {
        code(default)
    }
}

/// A whole number from `min` to `max`.
struct NumUpTo<T> {
    min: T,
    max: T,
}

impl<T> Check<T> for NumUpTo<T>
where
    T: FromStr + PartialOrd + Copy + fmt::Display,
{
    fn read(&self, name: &Name, text: &str, default: T, errors: &mut Errors) -> T {
        let value = Num { min: self.min }.read(name, text, default, errors);
        if value > self.max {
            let expected = format!("a whole number from {} to {}", self.min, self.max);
            errors.bad(name, &value.to_string(), &expected);
            return default;
        }
        value
    }

    fn show(&self, default: &T) -> String {
        code(default)
    }
}

/// A duration in whole seconds, at least one.
struct Secs;

impl Check<Duration> for Secs {
    fn read(&self, name: &Name, text: &str, default: Duration, errors: &mut Errors) -> Duration {
        Duration::from_secs(Num { min: 1 }.read(name, text, default.as_secs(), errors))
    }

    fn show(&self, default: &Duration) -> String {
        code(default.as_secs())
    }
}

/// A duration in whole milliseconds, at least `min`.
struct Millis {
    min: u64,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Check<Duration> for Millis {
    fn read(&self, name: &Name, text: &str, default: Duration, errors: &mut Errors) -> Duration {
        let ms = Num { min: self.min }.read(name, text, millis(default), errors);
        Duration::from_millis(ms)
    }

    fn show(&self, default: &Duration) -> String {
        code(millis(*default))
    }
}

/// A cache lifetime in whole seconds: `0` (no cache) up to a year.
struct CacheTtl;

impl Check<Duration> for CacheTtl {
    fn read(&self, name: &Name, text: &str, default: Duration, errors: &mut Errors) -> Duration {
        const MAX_SECS: u64 = 365 * 24 * 3600;
        match text.trim().parse::<u64>() {
            Ok(secs) if secs <= MAX_SECS => Duration::from_secs(secs),
            _ => {
                let expected = format!("a whole number of seconds from 0 (off) to {MAX_SECS}");
                errors.bad(name, text, &expected);
                default
            }
        }
    }

    fn show(&self, default: &Duration) -> String {
        code(default.as_secs())
    }
}

/// `true/false`, `1/0`, `yes/no` or `on/off`.
struct Flag;

impl Check<bool> for Flag {
    fn read(&self, name: &Name, text: &str, default: bool, errors: &mut Errors) -> bool {
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            other => {
                errors.bad(name, other, "true or false");
                default
            }
        }
    }

    fn show(&self, default: &bool) -> String {
        code(default)
    }
}

/// The values of a key that is one of a few names.
trait Choices: Copy + PartialEq + 'static {
    /// Every accepted spelling; the first one of each value is its name.
    const SPELLINGS: &'static [(&'static str, Self)];

    fn name(self) -> &'static str {
        Self::SPELLINGS
            .iter()
            .find(|(_, value)| *value == self)
            .map_or("", |(name, _)| *name)
    }

    /// The names, as an error message lists them: `a, b or c`.
    fn expected() -> String {
        let mut names: Vec<&str> = Vec::new();
        for (spelling, value) in Self::SPELLINGS {
            if value.name() == *spelling {
                names.push(*spelling);
            }
        }
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

impl Choices for Environment {
    const SPELLINGS: &'static [(&'static str, Self)] = &[
        ("development", Self::Development),
        ("production", Self::Production),
        ("dev", Self::Development),
        ("prod", Self::Production),
    ];
}

impl Choices for LogFormat {
    const SPELLINGS: &'static [(&'static str, Self)] =
        &[("text", Self::Text), ("json", Self::Json)];
}

impl Choices for StorageKind {
    const SPELLINGS: &'static [(&'static str, Self)] = &[("local", Self::Local), ("s3", Self::S3)];
}

impl Choices for SmtpTls {
    const SPELLINGS: &'static [(&'static str, Self)] = &[
        ("starttls", Self::StartTls),
        ("tls", Self::Tls),
        ("none", Self::None),
    ];
}

impl Choices for JobQueueConfig {
    const SPELLINGS: &'static [(&'static str, Self)] =
        &[("database", Self::Database), ("redis", Self::Redis)];
}

/// One of the names of a [`Choices`].
struct Choice;

impl<T: Choices> Check<T> for Choice {
    fn read(&self, name: &Name, text: &str, default: T, errors: &mut Errors) -> T {
        let text = text.trim();
        match T::SPELLINGS.iter().find(|(spelling, _)| *spelling == text) {
            Some((_, value)) => *value,
            None => {
                errors.bad(name, text, &T::expected());
                default
            }
        }
    }

    fn show(&self, default: &T) -> String {
        code(default.name())
    }
}

/// `DATABASE_URL`: PostgreSQL or SQLite; blank counts as unset.
struct DatabaseUrl;

impl Check<Option<String>> for DatabaseUrl {
    fn read(
        &self,
        name: &Name,
        text: &str,
        default: Option<String>,
        errors: &mut Errors,
    ) -> Option<String> {
        let url = NonBlank.read(name, text, default, errors)?;
        let ok = ["postgres://", "postgresql://", "sqlite:"]
            .iter()
            .any(|prefix| url.starts_with(prefix));
        if !ok {
            errors.push(
                "DATABASE_URL: must start with postgres://, postgresql:// or sqlite: (unset it for the embedded SQLite database)"
                    .to_owned(),
            );
        }
        Some(url)
    }

    fn show(&self, default: &Option<String>) -> String {
        default.show()
    }
}

/// An http:// or https:// URL, without its trailing slashes.
struct HttpUrl;

impl Check<String> for HttpUrl {
    fn read(&self, name: &Name, text: &str, _: String, errors: &mut Errors) -> String {
        let url = text.trim().trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.bad(name, &url, "an http:// or https:// URL");
        }
        url
    }

    fn show(&self, default: &String) -> String {
        code(default)
    }
}

/// An email address with an optional name (`Name <address>`).
struct Mailbox;

impl Check<String> for Mailbox {
    fn read(&self, name: &Name, text: &str, _: String, errors: &mut Errors) -> String {
        if text.parse::<lettre::message::Mailbox>().is_err() {
            errors.bad(name, text, "an address like `Shop <shop@example.com>`");
        }
        text.to_owned()
    }

    fn show(&self, default: &String) -> String {
        code(default)
    }
}

/// CORS origins separated by commas, without trailing slashes.
struct Origins;

impl Check<Vec<String>> for Origins {
    fn read(&self, name: &Name, text: &str, _: Vec<String>, errors: &mut Errors) -> Vec<String> {
        let origins: Vec<String> = text
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        for origin in &origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                errors.push(format!(
                    "{}: `{origin}` is not an origin (expected e.g. https://app.example.com, or *)",
                    name.main_var()
                ));
            }
        }
        origins
    }

    fn show(&self, _: &Vec<String>) -> String {
        "empty".to_owned()
    }
}

/// IP addresses and CIDR ranges separated by commas.
struct Networks;

impl Check<Vec<ipnet::IpNet>> for Networks {
    fn read(
        &self,
        name: &Name,
        text: &str,
        _: Vec<ipnet::IpNet>,
        errors: &mut Errors,
    ) -> Vec<ipnet::IpNet> {
        let mut nets = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
            {
                Ok(net) => nets.push(net),
                Err(_) => errors.bad(
                    name,
                    entry,
                    "IP addresses or CIDR ranges separated by commas",
                ),
            }
        }
        nets
    }

    fn show(&self, _: &Vec<ipnet::IpNet>) -> String {
        "empty".to_owned()
    }
}

/// A rate-limit quota: `<requests>/<period>`, the period a number of seconds, minutes,
/// hours or days (`1200/1m`, `10/1h`, `5/30s`), from one second to one day.
struct RateQuota;

impl Check<Quota> for RateQuota {
    fn read(&self, name: &Name, text: &str, default: Quota, errors: &mut Errors) -> Quota {
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
            errors.bad(
                name,
                text,
                "<requests>/<period> such as 1200/1m or 10/1h (1 to 1000000 requests, a period from 1s to 1d)",
            );
            default
        })
    }

    fn show(&self, default: &Quota) -> String {
        let secs = default.period.as_secs();
        let (count, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
            .into_iter()
            .find(|(unit, _)| secs.is_multiple_of(*unit))
            .map_or((secs, "s"), |(unit, name)| (secs / unit, name));
        code(format!("{}/{count}{unit}", default.limit))
    }
}

/// One key as `docs/configuration.md` lists it.
#[derive(Debug)]
struct Documented {
    section: &'static str,
    name: Name,
    default: String,
    doc: &'static str,
}

/// The first line of the generated part of `docs/configuration.md`.
pub const DOCS_BEGIN: &str = "<!-- The tables of keys are generated from crates/server/src/config.rs: INKCART_UPDATE_DOCS=1 cargo test -p inkcart --lib config -->";
/// The line after the generated part of `docs/configuration.md`.
pub const DOCS_END: &str = "<!-- End of the generated tables. -->";

/// The tables of keys of `docs/configuration.md`, one per section, in Markdown.
pub fn key_tables() -> String {
    let mut out = String::new();
    let mut section = "";
    for key in documented() {
        if key.section != section {
            section = key.section;
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!(
                "### {section}\n\n| key (file) | environment | default | meaning |\n|---|---|---|---|\n"
            ));
        }
        let var = match key.name.var {
            Some(var) => format!("`{var}` (or `{}`)", key.name.prefixed_var()),
            None => code(key.name.prefixed_var()),
        };
        out.push_str(&format!(
            "| `{}` | {var} | {} | {} |\n",
            key.name.key, key.default, key.doc
        ));
    }
    out
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

    #[test]
    fn the_documentation_lists_every_key_as_declared() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, rest) = text.split_once(DOCS_BEGIN).unwrap();
        let (_, tail) = rest.split_once(DOCS_END).unwrap();
        let expected = format!("{head}{DOCS_BEGIN}\n\n{}\n{DOCS_END}{tail}", key_tables());
        if std::env::var_os("INKCART_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &expected).unwrap();
            return;
        }
        assert!(
            text == expected,
            "docs/configuration.md does not list the keys declared in crates/server/src/config.rs; \
             regenerate its tables with `INKCART_UPDATE_DOCS=1 cargo test -p inkcart --lib config`"
        );
    }

    #[test]
    fn every_key_has_a_meaning_and_a_variable_of_its_own() {
        let keys = documented();
        assert_eq!(keys.len(), NAMES.len());
        for key in &keys {
            assert!(!key.doc.is_empty(), "{} has no documentation", key.name.key);
        }
        let mut vars: Vec<String> = keys.iter().map(|k| k.name.main_var()).collect();
        vars.sort();
        vars.dedup();
        assert_eq!(vars.len(), keys.len());
    }
}
