//! Log lines on stderr: compact text, or one JSON object per line carrying the `trace_id`
//! and `span_id` of the span the event happened in, so a log collector can link a line to
//! its trace.

use std::fmt;
use std::io::IsTerminal as _;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt as _;
use tracing::dispatcher::WeakDispatch;
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// The logging layer for `format`.
pub fn layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .compact()
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithTrace {
                inner: tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            })
            .boxed(),
    }
}

/// The installed subscriber, for the JSON formatter to ask it for a span's trace context
/// (inside an event's formatting the current dispatcher cannot be reached).
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// Remembers the global subscriber just installed.
pub(super) fn remember_dispatch() {
    tracing::dispatcher::get_default(|dispatch| {
        let _ = DISPATCH.set(dispatch.downgrade());
    });
}

/// tracing-subscriber's JSON lines, with `trace_id` and `span_id` added inside a span.
struct JsonWithTrace {
    inner: Format<Json>,
}

impl<S, N> FormatEvent<S, N> for JsonWithTrace
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
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let ids = ctx.lookup_current().and_then(|span| {
            let dispatch = DISPATCH.get()?.upgrade()?;
            let context = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            let span_context = context.span().span_context().clone();
            span_context
                .is_valid()
                .then(|| (span_context.trace_id(), span_context.span_id()))
        });
        let Some((trace_id, span_id)) = ids else {
            return writer.write_str(&line);
        };
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line.trim_end()) {
            Ok(mut object) => {
                object.insert("trace_id".to_string(), trace_id.to_string().into());
                object.insert("span_id".to_string(), span_id.to_string().into());
                let text = serde_json::to_string(&object).map_err(|_| fmt::Error)?;
                writeln!(writer, "{text}")
            }
            // Not an object (it always is): keep the line as it was.
            Err(_) => writer.write_str(&line),
        }
    }
}

/// Warnings and errors that dependencies write with the `log` crate (sqlx's slow statements,
/// say), forwarded as `tracing` events with target `storecast::log` and the writer's module.
///
/// Not tracing-log's `LogTracer`: its `enabled` asks the subscriber about an event that may
/// never follow, which leaves per-layer filters (this subscriber's) believing later spans on
/// that thread are disabled; spans then vanished from logs and traces after the first
/// PostgreSQL query. This bridge never asks: it decides by level alone.
struct LogBridge;

impl log::Log for LogBridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let module = record.target();
        match record.level() {
            log::Level::Error => {
                tracing::error!(target: "storecast::log", module, "{}", record.args())
            }
            _ => tracing::warn!(target: "storecast::log", module, "{}", record.args()),
        }
    }

    fn flush(&self) {}
}

/// Installs [`LogBridge`] as the `log` crate's logger (once; later calls change nothing).
pub(super) fn bridge_log_crate() {
    static BRIDGE: LogBridge = LogBridge;
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}
