//! Logging: readable lines in development, JSON when `INKCART_LOG_FORMAT=json`.
//!
//! Lines are written by a thread of their own through a buffer, so a request never waits on
//! the write of its log line, and under load many lines go out in one write. Nothing is dropped:
//! when the queue is full, logging waits for it instead of losing lines.
//!
//! JSON lines are written by [`JsonLine`], which writes the object of
//! `tracing-subscriber`'s JSON format (flattened events, the current span under `span`)
//! straight into bytes. The crate's own JSON formatter writes through an adaptor that checks
//! every fragment serde_json emits for valid UTF-8 and visits fields through `tracing-serde`;
//! with one access line per request, that was about a tenth of the CPU of a request that does
//! nothing else (docs/benchmarks-history.md, section 10).

use std::cell::RefCell;
use std::fmt;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
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
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLine),
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

/// Formats an event as one JSON object: `timestamp` (RFC 3339, microseconds, UTC), `level`,
/// the event's fields (`message` first), `target`, and the current span's fields and name
/// under `span`: the object `tracing-subscriber`'s JSON format writes with flattened events and
/// the current span.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

thread_local! {
    /// The line being written, kept per thread so that its buffer is not allocated anew for
    /// every line.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The span's fields, as the field formatter (`JsonFields`) stored them: a JSON object.
        let span = ctx.lookup_current().map(|span| {
            let fields = span
                .extensions()
                .get::<FormattedFields<N>>()
                .map(|f| f.fields.clone())
                .unwrap_or_default();
            (span.name(), fields)
        });
        let span = span.as_ref().map(|(name, fields)| (*name, fields.as_str()));
        let mut format = |line: &mut Vec<u8>| {
            line.clear();
            write_line(line, event, span).map_err(|_| fmt::Error)?;
            writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)
        };
        LINE.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut line) => format(&mut line),
            // tracing does not dispatch an event from inside another on the same thread (one
            // logged by a field's `Debug` is dropped); should that change, the nested line gets
            // a buffer of its own instead of a panic.
            Err(_) => format(&mut Vec::new()),
        })
    }
}

/// Writes the JSON object of `event` (and of the current span's `(name, fields object)`) and a
/// newline into `line`.
fn write_line(
    line: &mut Vec<u8>,
    event: &Event<'_>,
    span: Option<(&str, &str)>,
) -> serde_json::Result<()> {
    let meta = event.metadata();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    line.extend_from_slice(b"{\"timestamp\":");
    serde_json::to_writer(&mut *line, &now)?;
    line.extend_from_slice(b",\"level\":");
    serde_json::to_writer(&mut *line, meta.level().as_str())?;
    let mut fields = Fields {
        line: &mut *line,
        failed: None,
    };
    event.record(&mut fields);
    if let Some(error) = fields.failed {
        return Err(error);
    }
    line.extend_from_slice(b",\"target\":");
    serde_json::to_writer(&mut *line, meta.target())?;
    if let Some((name, fields)) = span {
        // `{"a":1}` → `"span":{"a":1,"name":"…"}`.
        let inner = fields
            .trim()
            .strip_prefix('{')
            .and_then(|f| f.strip_suffix('}'))
            .unwrap_or("")
            .trim();
        line.extend_from_slice(b",\"span\":{");
        if !inner.is_empty() {
            line.extend_from_slice(inner.as_bytes());
            line.push(b',');
        }
        line.extend_from_slice(b"\"name\":");
        serde_json::to_writer(&mut *line, name)?;
        line.push(b'}');
    }
    line.extend_from_slice(b"}\n");
    Ok(())
}

/// Writes each field as `,"name":value`.
struct Fields<'a> {
    line: &'a mut Vec<u8>,
    failed: Option<serde_json::Error>,
}

impl Fields<'_> {
    fn entry(&mut self, field: &Field, value: impl Serialize) {
        if self.failed.is_some() {
            return;
        }
        self.line.push(b',');
        let written = serde_json::to_writer(&mut *self.line, field.name()).and_then(|()| {
            self.line.push(b':');
            serde_json::to_writer(&mut *self.line, &value)
        });
        if let Err(error) = written {
            self.failed = Some(error);
        }
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.entry(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.entry(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.entry(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Lines written by a subscriber, in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    impl Captured {
        /// The lines, each without its timestamp (checked to be RFC 3339 and the first key).
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().expect("lines").clone();
            String::from_utf8(bytes)
                .expect("UTF-8")
                .lines()
                .map(|line| {
                    let object: serde_json::Value =
                        serde_json::from_str(line).expect("a JSON object per line");
                    let timestamp = object["timestamp"].as_str().expect("a timestamp");
                    assert!(
                        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
                        "{timestamp}"
                    );
                    let rest = line
                        .strip_prefix(&format!(r#"{{"timestamp":"{timestamp}","#))
                        .expect("the timestamp first");
                    rest.to_owned()
                })
                .collect()
        }
    }

    /// Events of every field type, inside and outside a span, with awkward text.
    fn log_samples() {
        tracing::info!(
            request_id = "7c1d",
            method = "GET",
            path = "/api/v1/posts/\"quoted\"\n",
            status = 200_u16,
            latency_ms = 0.25,
            negative = -3_i64,
            ok = true,
            "request finished"
        );
        let span = tracing::info_span!("job", job_id = "j-1", attempt = 2);
        let _entered = span.enter();
        let error = io::Error::other("disk full: ünïcode");
        tracing::warn!(error = &error as &dyn std::error::Error, kind = ?Some("retry"), "job failed");
        tracing::error!("bare message with {} args", 2);
        let bare = tracing::info_span!("bare");
        let _inner = bare.enter();
        tracing::info!(r#type = "raw identifier", "in a span without fields");
    }

    /// A value whose `Debug` logs an event of its own.
    struct Chatty;

    impl fmt::Debug for Chatty {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            tracing::info!("inner event");
            f.write_str("chatty")
        }
    }

    #[test]
    fn a_field_whose_debug_logs_an_event_still_gets_its_whole_line() {
        let lines = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(value = ?Chatty, "outer event");
        });
        // (tracing drops the inner event: a dispatcher is not entered again on its thread.)
        let lines = lines.lines();
        assert!(
            lines.iter().any(|line| line
                == r#""level":"INFO","message":"outer event","value":"chatty","target":"inkcart::telemetry::tests"}"#),
            "{lines:?}"
        );
    }

    #[test]
    fn json_lines_carry_the_same_objects_as_tracing_subscribers_json_format() {
        let ours = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(ours.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .finish();
        tracing::subscriber::with_default(subscriber, log_samples);

        let theirs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(theirs.clone())
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish();
        tracing::subscriber::with_default(subscriber, log_samples);

        let ours = ours.lines();
        assert_eq!(ours.len(), 4);
        // The same text, key for key and in the same order.
        assert_eq!(ours, theirs.lines());
        assert!(
            ours[0].starts_with(r#""level":"INFO","message":"request finished","#),
            "{}",
            ours[0]
        );
        assert!(
            ours[1].ends_with(r#""span":{"attempt":2,"job_id":"j-1","name":"job"}}"#),
            "{}",
            ours[1]
        );
    }
}
