//! Traces: `tracing` spans become OpenTelemetry spans and leave over OTLP/HTTP (protobuf).
//!
//! - **Resource**: `service.name` (`storecast`, or `OTEL_SERVICE_NAME`),
//!   `service.instance.id` (the node's name), `service.version`.
//! - **Sampling**: parent-based; new traces are kept at `telemetry.sample_ratio`, or as
//!   `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` say when set.
//! - **Export** (`telemetry.otlp_endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`; none: no
//!   export): ended spans wait in a bounded queue that one thread drains in batches. A span
//!   that finds the queue full, and every span of a batch the collector refuses or does not
//!   take within a few seconds, is dropped and counted (`storecast_trace_spans_dropped_total`),
//!   with at most one warning a minute: a collector that is down or slow never slows or stops
//!   a node. The HTTP client is hyper (HTTP/1.1), which the node already runs for its
//!   gateway.
//! - **Propagation**: W3C trace context. [`traceparent`] is what a message or request carries
//!   out; [`follow`] and [`follow_headers`] continue a caller's trace in a new span.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor, Tracer,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::TelemetryConfig;
use crate::metrics;

/// Spans that may wait for export; more are dropped.
const QUEUE_SPANS: usize = 4_096;
/// Spans sent in one request.
const BATCH_SPANS: usize = 512;
/// How long spans wait for a batch to fill.
const BATCH_EVERY: Duration = Duration::from_secs(1);
/// Longest one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a stopping process waits for its queued spans to leave.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Export problems are warned about at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error(
        "telemetry.otlp_endpoint `{endpoint}` is not an http:// URL (spans are sent in plain \
         HTTP, to a collector or Tempo receiver on the local network)"
    )]
    BadEndpoint { endpoint: String },
    #[error("telemetry.sample_ratio must be between 0 and 1, not {0}")]
    BadRatio(f64),
    #[error("{variable} `{value}` is not a sampler storecast knows: {known}")]
    BadSampler {
        variable: &'static str,
        value: String,
        known: &'static str,
    },
    #[error("cannot build the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("cannot start the span export thread: {0}")]
    Thread(std::io::Error),
}

/// The tracer provider and, when exporting, its queue.
pub struct Pipeline {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Pipeline {
    /// Builds the provider; with an endpoint, the exporter and its queue. Needs a Tokio
    /// runtime (the exporter's requests run on it).
    pub fn start(config: &TelemetryConfig, instance: &str) -> Result<Pipeline, TracesError> {
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| "storecast".to_string());
        let resource = Resource::builder()
            .with_service_name(service)
            .with_attributes([
                KeyValue::new("service.instance.id", instance.to_string()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(sampler(config.sample_ratio)?);
        let endpoint = endpoint(config)?;
        if let Some(endpoint) = &endpoint {
            builder = builder.with_span_processor(QueuedExport::start(endpoint)?);
        }
        Ok(Pipeline {
            provider: builder.build(),
            exporting: endpoint.is_some(),
        })
    }

    /// The tracer spans are made with.
    pub fn tracer(&self) -> Tracer {
        self.provider.tracer("storecast")
    }

    /// Sends what is queued (for a bounded time) and stops.
    pub fn shutdown(self) {
        if self.exporting {
            let _ = self.provider.shutdown_with_timeout(SHUTDOWN_GRACE);
        }
    }
}

/// The endpoint spans are posted to, if any: the configured one, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn endpoint(config: &TelemetryConfig) -> Result<Option<String>, TracesError> {
    endpoint_from(
        &config.otlp_endpoint,
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().as_deref(),
    )
}

/// The endpoint of `configured`, else of `from_env`, with `/v1/traces` added to a base
/// address.
fn endpoint_from(configured: &str, from_env: Option<&str>) -> Result<Option<String>, TracesError> {
    let chosen = Some(configured.trim())
        .filter(|endpoint| !endpoint.is_empty())
        .or_else(|| {
            from_env
                .map(str::trim)
                .filter(|endpoint| !endpoint.is_empty())
        });
    let Some(endpoint) = chosen else {
        return Ok(None);
    };
    if !endpoint.starts_with("http://") {
        return Err(TracesError::BadEndpoint {
            endpoint: endpoint.to_string(),
        });
    }
    let endpoint = endpoint.trim_end_matches('/');
    Ok(Some(if endpoint.ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{endpoint}/v1/traces")
    }))
}

const SAMPLERS: &str = "always_on, always_off, traceidratio, parentbased_always_on, \
     parentbased_always_off, parentbased_traceidratio";

/// Parent-based sampling at `ratio`, unless `OTEL_TRACES_SAMPLER` says otherwise.
fn sampler(ratio: f64) -> Result<Sampler, TracesError> {
    sampler_from(
        ratio,
        std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
        std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
    )
}

/// The sampler `variable` (`OTEL_TRACES_SAMPLER`) names, with the ratio `argument`
/// (`OTEL_TRACES_SAMPLER_ARG`) or else `ratio`; without a variable, parent-based at `ratio`.
fn sampler_from(
    ratio: f64,
    variable: Option<&str>,
    argument: Option<&str>,
) -> Result<Sampler, TracesError> {
    let variable = variable
        .map(|value| value.trim().to_lowercase())
        .filter(|value| !value.is_empty());
    let ratio = match argument.map(str::trim) {
        Some(text) if variable.is_some() && !text.is_empty() => {
            text.parse::<f64>().map_err(|_| TracesError::BadSampler {
                variable: "OTEL_TRACES_SAMPLER_ARG",
                value: text.to_string(),
                known: "a number from 0 to 1",
            })?
        }
        _ => ratio,
    };
    if !(0.0..=1.0).contains(&ratio) {
        return Err(TracesError::BadRatio(ratio));
    }
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    Ok(match variable.as_deref() {
        None | Some("parentbased_traceidratio") => parent_based(Sampler::TraceIdRatioBased(ratio)),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio),
        Some("parentbased_always_on") => parent_based(Sampler::AlwaysOn),
        Some("parentbased_always_off") => parent_based(Sampler::AlwaysOff),
        Some(other) => {
            return Err(TracesError::BadSampler {
                variable: "OTEL_TRACES_SAMPLER",
                value: other.to_string(),
                known: SAMPLERS,
            });
        }
    })
}

/// What the export thread is told.
enum Command {
    Span(Box<SpanData>),
    /// Send what is queued, then answer.
    Flush(SyncSender<()>),
    /// Send what is queued, then stop.
    Stop,
}

/// A span processor with a bounded queue and one export thread (the SDK's batch processor
/// does not say how many spans it dropped).
#[derive(Debug)]
struct QueuedExport {
    queue: SyncSender<Command>,
    exporter: Arc<Mutex<opentelemetry_otlp::SpanExporter>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    warnings: Arc<Warnings>,
}

impl QueuedExport {
    fn start(endpoint: &str) -> Result<QueuedExport, TracesError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Http1Client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|error| TracesError::Exporter {
                endpoint: endpoint.to_string(),
                reason: error.to_string(),
            })?;
        let exporter = Arc::new(Mutex::new(exporter));
        let warnings = Arc::new(Warnings::default());
        let (queue, commands) = sync_channel(QUEUE_SPANS);
        let runtime = tokio::runtime::Handle::current();
        let thread = {
            let (exporter, warnings) = (Arc::clone(&exporter), Arc::clone(&warnings));
            let endpoint = endpoint.to_string();
            std::thread::Builder::new()
                .name("span-export".to_string())
                .spawn(move || export_loop(commands, exporter, runtime, warnings, endpoint))
                .map_err(TracesError::Thread)?
        };
        Ok(QueuedExport {
            queue,
            exporter,
            thread: Mutex::new(Some(thread)),
            warnings,
        })
    }

    fn stop(&self, timeout: Duration) -> OTelSdkResult {
        let _ = self.queue.send(Command::Stop);
        let Some(thread) = self.thread.lock().ok().and_then(|mut thread| thread.take()) else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
        Ok(())
    }
}

impl SpanProcessor for QueuedExport {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.queue.try_send(Command::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::metrics().trace_spans_dropped.inc();
                self.warnings.count(1);
                self.warnings.warn(|dropped| {
                    format!("trace spans dropped: the export queue is full ({dropped} so far)")
                });
            }
            // Stopped: the span is not counted as dropped, the process is ending.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (done, flushed) = sync_channel(1);
        if self.queue.send(Command::Flush(done)).is_ok() {
            let _ = flushed.recv_timeout(EXPORT_TIMEOUT * 2);
        }
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.stop(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Ok(mut exporter) = self.exporter.lock() {
            exporter.set_resource(resource);
        }
    }
}

/// The export thread: gathers spans into batches and posts each, dropping a batch that
/// fails.
fn export_loop(
    commands: Receiver<Command>,
    exporter: Arc<Mutex<opentelemetry_otlp::SpanExporter>>,
    runtime: tokio::runtime::Handle,
    warnings: Arc<Warnings>,
    endpoint: String,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH_SPANS);
    let mut batch_started = Instant::now();
    let send = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::take(batch);
        let count = spans.len() as u64;
        let Ok(exporter) = exporter.lock() else {
            return;
        };
        // The exporter's client (hyper) runs on the node's runtime.
        let sent = runtime
            .block_on(async { tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(spans)).await });
        let failure = match sent {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {} s", EXPORT_TIMEOUT.as_secs())),
        };
        if let Some(reason) = failure {
            metrics::metrics().trace_spans_dropped.inc_by(count);
            warnings.count(count);
            warnings.warn(|dropped| {
                format!(
                    "cannot export trace spans to {endpoint}: {reason} ({dropped} dropped so far)"
                )
            });
        }
    };
    loop {
        let wait = BATCH_EVERY.saturating_sub(batch_started.elapsed());
        match commands.recv_timeout(wait) {
            Ok(Command::Span(span)) => {
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                batch.push(*span);
                if batch.len() >= BATCH_SPANS {
                    send(&mut batch);
                }
            }
            Ok(Command::Flush(done)) => {
                send(&mut batch);
                let _ = done.send(());
            }
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => {
                send(&mut batch);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                send(&mut batch);
                batch_started = Instant::now();
            }
        }
    }
}

/// The exporter's HTTP client: one HTTP/1.1 connection per batch over hyper, which the node
/// already runs for its gateway (opentelemetry-otlp's own hyper client would also build
/// HTTP/2, and its reqwest clients a second HTTP stack). Plain HTTP only: a collector is
/// reached on the local network (Tempo's or a collector's OTLP/HTTP receiver).
#[derive(Debug)]
struct Http1Client;

type Exported = Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError>;

impl opentelemetry_http::HttpClient for Http1Client {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: http::Request<bytes::Bytes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Exported> + Send + 'async_trait>>
    where
        Self: 'async_trait,
        'life0: 'async_trait,
    {
        Box::pin(post(request))
    }
}

/// Sends `request` on a new connection and reads the whole answer.
async fn post(request: http::Request<bytes::Bytes>) -> Exported {
    use http_body_util::BodyExt as _;
    let uri = request.uri().clone();
    let host = uri.host().ok_or("the endpoint has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let (mut parts, body) = request.into_parts();
    // Origin form and a Host header, as a server expects them from a client.
    parts.uri = uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .parse()?;
    let authority = uri
        .authority()
        .map_or(host.clone(), |authority| authority.to_string());
    parts
        .headers
        .insert(http::header::HOST, http::HeaderValue::from_str(&authority)?);
    let request = http::Request::from_parts(parts, http_body_util::Full::new(body));
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(http::Response::from_parts(parts, body))
}

/// At most one warning a minute about dropped spans, with the count so far.
#[derive(Debug, Default)]
struct Warnings {
    dropped: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Warnings {
    fn count(&self, spans: u64) {
        self.dropped.fetch_add(spans, Ordering::Relaxed);
    }

    fn warn(&self, message: impl FnOnce(u64) -> String) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!("{}", message(self.dropped.load(Ordering::Relaxed)));
    }
}

/// The W3C `traceparent` of the current span (empty outside any trace).
pub fn traceparent() -> String {
    traceparent_of(&tracing::Span::current())
}

/// The W3C `traceparent` of `span` (empty when it has no valid trace context).
pub fn traceparent_of(span: &tracing::Span) -> String {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent").unwrap_or_default()
}

/// Makes `span` continue the trace of `traceparent` (a caller's); nothing when it is empty
/// or malformed.
pub fn follow(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
}

/// Makes `span` continue the trace of an incoming HTTP request's `traceparent` header.
pub fn follow_headers(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if let Some(traceparent) = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
    {
        follow(span, traceparent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_the_traces_path_once_and_the_config_wins() {
        assert_eq!(
            endpoint_from("http://tempo:4318", None).unwrap().as_deref(),
            Some("http://tempo:4318/v1/traces")
        );
        assert_eq!(
            endpoint_from("http://tempo:4318/v1/traces/", None)
                .unwrap()
                .as_deref(),
            Some("http://tempo:4318/v1/traces")
        );
        assert_eq!(
            endpoint_from("", Some("http://collector:4318"))
                .unwrap()
                .as_deref(),
            Some("http://collector:4318/v1/traces"),
            "OTEL_EXPORTER_OTLP_ENDPOINT when nothing is configured"
        );
        assert_eq!(
            endpoint_from("http://tempo:4318", Some("http://collector:4318"))
                .unwrap()
                .as_deref(),
            Some("http://tempo:4318/v1/traces")
        );
        assert_eq!(endpoint_from(" ", Some("")).unwrap(), None);
        assert!(matches!(
            endpoint_from("tempo:4318", None),
            Err(TracesError::BadEndpoint { .. })
        ));
    }

    /// What a sampler decides for a new trace (no parent).
    fn samples(sampler: &Sampler) -> bool {
        use opentelemetry::trace::{SpanKind, TraceId};
        use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
        let result = sampler.should_sample(
            None,
            TraceId::from_bytes(0x0123_4567_89ab_cdef_u128.to_be_bytes()),
            "span",
            &SpanKind::Internal,
            &[],
            &[],
        );
        result.decision == SamplingDecision::RecordAndSample
    }

    #[test]
    fn the_sampler_follows_the_ratio_and_the_standard_variables() {
        assert!(samples(&sampler_from(1.0, None, None).unwrap()));
        assert!(!samples(&sampler_from(0.0, None, None).unwrap()));
        assert!(matches!(
            sampler_from(1.5, None, None),
            Err(TracesError::BadRatio(_))
        ));
        // OTEL_TRACES_SAMPLER and its argument replace the configured ratio.
        assert!(!samples(
            &sampler_from(1.0, Some("always_off"), None).unwrap()
        ));
        assert!(samples(
            &sampler_from(0.0, Some("parentbased_always_on"), None).unwrap()
        ));
        assert!(!samples(
            &sampler_from(1.0, Some("traceidratio"), Some("0")).unwrap()
        ));
        assert!(samples(
            &sampler_from(0.0, Some("TraceIdRatio"), Some("1")).unwrap()
        ));
        // An argument without a sampler is not a sampler.
        assert!(samples(&sampler_from(1.0, None, Some("0")).unwrap()));
        assert!(matches!(
            sampler_from(1.0, Some("jaeger_remote"), None),
            Err(TracesError::BadSampler { .. })
        ));
        assert!(matches!(
            sampler_from(1.0, Some("traceidratio"), Some("half")),
            Err(TracesError::BadSampler { .. })
        ));
    }
}
