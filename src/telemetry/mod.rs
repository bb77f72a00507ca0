//! Telemetry: logs on stderr and traces over OTLP, both fed by `tracing`.
//!
//! - [`logs`]: `log.format = "text"` (a compact line per event) or `"json"` (an object per
//!   line with the `trace_id` and `span_id` of its span); `RUST_LOG` replaces `log.level`
//!   when set;
//! - [`traces`]: `tracing` spans become OpenTelemetry spans (service `storecast`, instance =
//!   node name), exported over OTLP/HTTP to `telemetry.otlp_endpoint` through a bounded
//!   queue that drops (and counts) rather than slows the node; W3C `traceparent` in and out.
//!
//! Command output meant for the user (summaries, tables) goes to stdout; logs and progress
//! go to stderr, so piping a command's output stays clean.

pub mod logs;
pub mod traces;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

use crate::config::{LogConfig, TelemetryConfig};

pub use traces::{follow, follow_headers, traceparent, traceparent_of};

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter `{level}` (from {origin}): {reason}")]
    BadLevel {
        level: String,
        origin: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Traces(#[from] traces::TracesError),
}

/// Keeps the trace pipeline running; [`Telemetry::shutdown`] sends what is queued.
pub struct Telemetry {
    traces: traces::Pipeline,
}

impl Telemetry {
    /// Sends the spans still queued (for a bounded time) and stops exporting.
    pub fn shutdown(self) {
        self.traces.shutdown();
    }
}

/// Installs the process's logger and tracer. `instance` names this process in traces (the
/// node's name). Must run inside the Tokio runtime, whose I/O the exporter uses. Calling it
/// again (as tests may) keeps the first subscriber.
pub fn init(
    log: &LogConfig,
    telemetry: &TelemetryConfig,
    instance: &str,
) -> Result<Telemetry, TelemetryError> {
    let (level, origin) = match std::env::var("RUST_LOG") {
        Ok(level) if !level.trim().is_empty() => (level, "RUST_LOG"),
        _ => (log.level.clone(), "log.level"),
    };
    let filter = EnvFilter::try_new(&level).map_err(|error| TelemetryError::BadLevel {
        level: level.clone(),
        origin,
        reason: error.to_string(),
    })?;
    let traces = traces::Pipeline::start(telemetry, instance)?;
    // Only storecast's own spans become trace spans, whatever the log filter keeps.
    // Without the per-span source location, thread and busy/idle bookkeeping: each costs
    // allocations or clock reads on every span (and every poll of an instrumented future),
    // measurable on the gateway's hot path.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(traces.tracer())
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target("storecast", LevelFilter::INFO));
    // Fails only when a subscriber is already installed, which is fine.
    let subscriber = tracing_subscriber::registry()
        .with(spans)
        .with(logs::layer(log.format).with_filter(filter));
    let installed = tracing::subscriber::set_global_default(subscriber);
    if installed.is_ok() {
        logs::remember_dispatch();
        logs::bridge_log_crate();
    }
    Ok(Telemetry { traces })
}
