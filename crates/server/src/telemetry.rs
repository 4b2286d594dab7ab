//! Logging: readable lines in development, JSON when `INKCART_LOG_FORMAT=json`.
//!
//! Lines are written by a thread of their own through a buffer, so a request never waits on
//! the write of its log line, and under load many lines go out in one write. Nothing is dropped:
//! when the queue is full, logging waits for it instead of losing lines.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax (`info`,
/// `inkcart_http=debug,info`, …). Keep the guard until the program ends: dropping it writes
/// out the lines still queued.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<WorkerGuard> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("INKCART_LOG: invalid filter `{filter}`: {e}"))?;
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("inkcart-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_target(false),
            )
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(guard)
}
