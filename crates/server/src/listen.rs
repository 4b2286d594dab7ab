//! The accept loop: HTTP/1.1 and HTTP/2 connections served by hyper with the limits that
//! `axum::serve` does not expose, so that slow or idle clients cannot pin the server.
//!
//! - A connection must deliver a whole request head within `header_read_timeout` of opening or
//!   of its previous response; otherwise it is closed without an answer (a second later at
//!   most). A watchdog per connection enforces it (a connection that sends nothing or a head
//!   byte by byte, the HTTP/2 preface, idle HTTP/2 connections); hyper's own header timer
//!   backs it for HTTP/1 heads.
//! - At most `max_connections` are served at once; the next ones wait in the listen queue
//!   until one closes.
//! - Heads larger than twice `max_header_bytes` are refused by hyper itself (a bare 431); the
//!   router answers smaller excess with the error envelope.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// The limits on connections, with their defaults (see `docs/configuration.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to deliver a request head, from the connection's start or its previous response.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Request heads up to twice this size reach the router (which answers over this with a
    /// 431 envelope); hyper refuses larger ones with a bare 431.
    pub max_header_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_streams: u32,
    /// On shutdown, how long in-flight requests may take to finish.
    pub grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            http2_max_streams: 100,
            grace: Duration::from_secs(30),
        }
    }
}

/// How long an idle connection asked to close may take before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// hyper's own buffer never goes below this.
const MIN_HYPER_BUFFER: usize = 8 * 1024;

impl ServerLimits {
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let hard_head_limit = self
            .max_header_bytes
            .saturating_mul(2)
            .max(MIN_HYPER_BUFFER);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(hard_head_limit)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_streams)
            .max_header_list_size(u32::try_from(hard_head_limit).unwrap_or(u32::MAX))
            // Dead peers are found by pings rather than by the idle watchdog's clock alone.
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20));
        builder
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting connections
/// and lets in-flight requests finish, for at most `limits.grace`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: &ServerLimits,
) -> anyhow::Result<()> {
    let builder = Arc::new(limits.builder());
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Connections watch `stop` to begin their graceful shutdown; each holds a `done`
    // receiver, so `done_tx.closed()` resolves when the last one has ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.context("connection slots closed")?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_error(&err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            builder: Arc::clone(&builder),
            router: router.clone(),
            peer,
            header_read_timeout: limits.header_read_timeout,
            stop: stop_rx.clone(),
            done: done_rx.clone(),
        };
        tokio::spawn(async move {
            connection.run(stream).await;
            drop(slot);
        });
    }
    // The listener closes now: new connections are refused from here on.
    drop(listener);
    drop(done_rx);
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    tokio::select! {
        () = done_tx.closed() => {}
        () = tokio::time::sleep(limits.grace) => {
            tracing::warn!(grace = ?limits.grace, "in-flight requests did not finish in time; stopping anyway");
        }
    }
    Ok(())
}

/// A failed `accept`: the peer gave up (nothing to do), or the process is out of file
/// descriptors or memory, when waiting a moment lets connections close.
async fn accept_error(err: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accept failed; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: axum::Router,
    peer: SocketAddr,
    header_read_timeout: Duration,
    stop: watch::Receiver<bool>,
    done: watch::Receiver<()>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        let peer = self.peer;
        let service = {
            let activity = Arc::clone(&activity);
            self.router
                .map_request(move |request: hyper::Request<Incoming>| {
                    let mut request = request.map(Body::new);
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                })
                .map_future(move |response| {
                    let busy = activity.begin();
                    async move {
                        let response = response.await;
                        drop(busy);
                        response
                    }
                })
        };
        let connection = self.builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(service),
        );
        let mut connection = std::pin::pin!(connection);
        let idle = activity.idle_for(self.header_read_timeout);
        let mut idle = std::pin::pin!(idle);
        // An idle connection told to close gets a moment to do so, then is dropped: nothing is
        // in progress on it, and neither a head still arriving byte by byte nor an HTTP/2
        // client that never acknowledges the closing PING may keep it open.
        let drop_idle = tokio::time::sleep(IDLE_CLOSE_GRACE);
        let mut drop_idle = std::pin::pin!(drop_idle);
        let (mut closing, mut idle_closing) = (false, false);
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                    break;
                }
                changed = self.stop.changed(), if !closing => {
                    if changed.is_err() || *self.stop.borrow() {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                () = &mut idle, if !closing => {
                    tracing::debug!(%peer, "closing a connection that sent no request in time");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    idle_closing = true;
                    drop_idle.as_mut().reset(Instant::now() + IDLE_CLOSE_GRACE);
                }
                () = &mut drop_idle, if idle_closing => break,
            }
        }
        drop(self.done);
    }
}

/// Requests in progress on one connection, and since when it has had none.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `started` to the end of the last request (0: none yet).
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    /// When the connection last had no request in progress; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.idle_since_ms.load(Ordering::Acquire);
        Some(self.started + Duration::from_millis(ms))
    }

    /// Resolves once the connection has gone `timeout` without a request in progress.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            match self.idle_since() {
                Some(since) if since + timeout <= Instant::now() => return,
                Some(since) => tokio::time::sleep_until(since + timeout).await,
                // Busy: look again later (a request's own time is bounded elsewhere).
                None => tokio::time::sleep(timeout).await,
            }
        }
    }
}

/// One request in progress; its end stamps the connection's idle time.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
