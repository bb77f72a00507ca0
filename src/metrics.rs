//! Process-wide metrics, named by Prometheus conventions (the unit in the name, `_total` on
//! counters, labels rather than name variants), kept with `prometheus-client` and rendered
//! in the OpenMetrics text format by [`render`] (served at `/metrics` by the admin listener
//! of every node and by gateways).
//!
//! `prometheus-client` is the Prometheus project's own Rust client: typed metric families
//! and label sets in an explicit registry, no global recorder or macros, and few
//! dependencies; it also encodes the exposition text, and scrape-time values (the
//! process's CPU, memory and files) are a small [`Collector`].
//!
//! Every metric is a field of [`Metrics`]; [`metrics()`] gives the process's one set.

use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Labels of an HTTP request's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/api/jobs/{id}`), not the path, so ids do not multiply series.
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// Labels of a fit's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FitLabels {
    pub profile: String,
    /// `trained` or `failed`.
    pub outcome: String,
}

/// One label: how something ended (`trained`/`failed`, `accepted`/`rejected`,
/// `succeeded`/`failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

impl OutcomeLabels {
    pub fn new(outcome: &str) -> Self {
        Self {
            outcome: outcome.to_string(),
        }
    }
}

/// A Kafka partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

/// An HTTP listener: `gateway` or `admin`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

/// A cluster role.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: String,
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_request_duration: Family<HttpLabels, Histogram>,
    pub http_panics: Counter,
    pub http_connections: Family<ListenerLabels, Gauge>,
    pub event_streams: Gauge,
    pub fit_duration: Family<FitLabels, Histogram>,
    pub train_all_series: Family<OutcomeLabels, Counter>,
    pub train_all_duration: Family<OutcomeLabels, Histogram>,
    pub ingest_messages: Family<OutcomeLabels, Counter>,
    pub ingest_batch_duration: Histogram,
    pub ingest_consumer_lag: Family<PartitionLabels, Gauge>,
    pub ingest_partition_lag: Family<PartitionLabels, Gauge>,
    pub ingest_unassigned_partitions: Gauge,
    pub ingest_rejoins: Counter,
    pub online_forecast_duration: Histogram,
    pub model_actors: Gauge,
    pub cluster_size: Gauge,
    pub cluster_members: Family<RoleLabels, Gauge>,
    pub cluster_view_changes: Counter,
    pub cluster_handshakes: Family<OutcomeLabels, Counter>,
    pub scheduler_leader: Gauge,
    pub trace_spans_dropped: Counter,
}

/// Seconds, from 0.5 ms to 30 s: requests, forecasts, batches.
const SHORT_SECONDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Seconds, from 1 s to an hour: jobs.
const LONG_SECONDS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];

fn short_histogram() -> Histogram {
    Histogram::new(SHORT_SECONDS)
}

fn long_histogram() -> Histogram {
    Histogram::new(LONG_SECONDS)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            http_request_duration: Family::new_with_constructor(short_histogram),
            http_panics: Counter::default(),
            http_connections: Family::default(),
            event_streams: Gauge::default(),
            fit_duration: Family::new_with_constructor(short_histogram),
            train_all_series: Family::default(),
            train_all_duration: Family::new_with_constructor(long_histogram),
            ingest_messages: Family::default(),
            ingest_batch_duration: short_histogram(),
            ingest_consumer_lag: Family::default(),
            ingest_partition_lag: Family::default(),
            ingest_unassigned_partitions: Gauge::default(),
            ingest_rejoins: Counter::default(),
            online_forecast_duration: short_histogram(),
            model_actors: Gauge::default(),
            cluster_size: Gauge::default(),
            cluster_members: Family::default(),
            cluster_view_changes: Counter::default(),
            cluster_handshakes: Family::default(),
            scheduler_leader: Gauge::default(),
            trace_spans_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register_with_unit(
            "storecast_http_request_duration",
            "HTTP requests answered by the gateway, by route template, method and status",
            Unit::Seconds,
            metrics.http_request_duration.clone(),
        );
        registry.register(
            "storecast_http_connections",
            "Open HTTP connections, by listener (gateway, admin)",
            metrics.http_connections.clone(),
        );
        registry.register(
            "storecast_http_event_streams",
            "Open job event streams (server-sent events) on this gateway",
            metrics.event_streams.clone(),
        );
        registry.register(
            "storecast_http_panics",
            "HTTP handlers that panicked (answered with a JSON 500)",
            metrics.http_panics.clone(),
        );
        registry.register_with_unit(
            "storecast_fit_duration",
            "Trainings of one series (cross-validation and final fit), by profile and outcome",
            Unit::Seconds,
            metrics.fit_duration.clone(),
        );
        registry.register(
            "storecast_train_all_series",
            "Series a train-all job finished on this scheduler, by outcome (trained or failed)",
            metrics.train_all_series.clone(),
        );
        registry.register_with_unit(
            "storecast_train_all_duration",
            "Train-all jobs finished on this scheduler, start to end, by outcome",
            Unit::Seconds,
            metrics.train_all_duration.clone(),
        );
        registry.register(
            "storecast_ingest_messages",
            "Sale messages ingested, by outcome: accepted (stored) or rejected (in ingest_rejects)",
            metrics.ingest_messages.clone(),
        );
        registry.register_with_unit(
            "storecast_ingest_batch_duration",
            "Ingest batches stored and committed (write and offset commit)",
            Unit::Seconds,
            metrics.ingest_batch_duration.clone(),
        );
        registry.register(
            "storecast_ingest_consumer_lag_messages",
            "Messages of a partition this node consumes that it has not read yet",
            metrics.ingest_consumer_lag.clone(),
        );
        registry.register(
            "storecast_ingest_partition_lag_messages",
            "Messages after the consumer group's committed offset, per partition of the topic, as an ingest node sees the whole group",
            metrics.ingest_partition_lag.clone(),
        );
        registry.register(
            "storecast_ingest_unassigned_partitions",
            "Partitions of the sales topic that no live ingest node consumes, as this ingest node sees it",
            metrics.ingest_unassigned_partitions.clone(),
        );
        registry.register(
            "storecast_ingest_rejoins",
            "Times this ingest node left the consumer group and joined again because partitions stayed without a consumer",
            metrics.ingest_rejoins.clone(),
        );
        registry.register_with_unit(
            "storecast_online_forecast_duration",
            "Online forecasts answered by the model actors on this node",
            Unit::Seconds,
            metrics.online_forecast_duration.clone(),
        );
        registry.register(
            "storecast_model_actors",
            "Model actors (series) running on this node",
            metrics.model_actors.clone(),
        );
        registry.register(
            "storecast_cluster_size",
            "Live members of the cluster as this node sees them, this node and clients included",
            metrics.cluster_size.clone(),
        );
        registry.register(
            "storecast_cluster_members",
            "Live members of the cluster with a role, by role",
            metrics.cluster_members.clone(),
        );
        registry.register(
            "storecast_cluster_view_changes",
            "Times the live member view changed",
            metrics.cluster_view_changes.clone(),
        );
        registry.register(
            "storecast_cluster_handshakes",
            "Connections to the cluster port by how their handshake ended: authenticated, refused (TLS), timed_out (no TLS or authentication within cluster.handshake_timeout_ms)",
            metrics.cluster_handshakes.clone(),
        );
        registry.register(
            "storecast_scheduler_leader",
            "1 when this node leads the scheduler, else 0",
            metrics.scheduler_leader.clone(),
        );
        registry.register(
            "storecast_trace_spans_dropped",
            "Trace spans not exported: the queue was full or the collector failed",
            metrics.trace_spans_dropped.clone(),
        );
        registry.register(
            "storecast_build",
            "The storecast build: 1, with its version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(ProcessCollector));
        // Outcomes start at zero, so a rate or an alert on the first failure has a series to
        // compare with (a family without samples is not rendered at all).
        for (family, outcomes) in [
            (&metrics.ingest_messages, &["accepted", "rejected"][..]),
            (&metrics.train_all_series, &["trained", "failed"][..]),
            (
                &metrics.cluster_handshakes,
                &["authenticated", "refused", "timed_out"][..],
            ),
        ] {
            for outcome in outcomes {
                drop(family.get_or_create(&OutcomeLabels::new(outcome)));
            }
        }
        for outcome in ["succeeded", "failed"] {
            drop(
                metrics
                    .train_all_duration
                    .get_or_create(&OutcomeLabels::new(outcome)),
            );
        }
        Metrics {
            registry,
            ..metrics
        }
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric in the OpenMetrics text format.
pub fn render() -> String {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &metrics().registry) {
        tracing::warn!(%error, "cannot render the metrics");
    }
    text
}

/// The process's CPU time, memory and open files, read from `/proc` at each scrape (the
/// names Prometheus's own clients use).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(process) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(process.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size",
                process.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size",
                process.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                process.open_fds,
            ),
            (
                "process_max_fds",
                "Most file descriptors the process may open",
                process.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// What `/proc/self` says of the process.
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    open_fds: i64,
    max_fds: i64,
}

impl ProcessStats {
    /// `None` where there is no `/proc` (not Linux).
    fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let number = |index: usize| {
            fields
                .get(index)
                .and_then(|field| field.parse::<i64>().ok())
        };
        // SAFETY: sysconf has no preconditions.
        let (ticks_per_second, page_size) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        // utime and stime are fields 14 and 15, vsize 23 and rss 24 (1-based).
        let ticks = number(11)? + number(12)?;
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as i64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                limits
                    .lines()
                    .find(|line| line.starts_with("Max open files"))
                    .and_then(|line| line.split_whitespace().nth(3)?.parse().ok())
            })
            .unwrap_or(0);
        Some(ProcessStats {
            cpu_seconds: ticks as f64 / ticks_per_second.max(1) as f64,
            virtual_bytes: number(20)?,
            resident_bytes: number(21)? * page_size.max(1),
            open_fds,
            max_fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_rendered_at_zero_before_anything_happens() {
        let fresh = Metrics::new();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &fresh.registry).unwrap();
        for sample in [
            "storecast_ingest_messages_total{outcome=\"rejected\"} 0\n",
            "storecast_train_all_series_total{outcome=\"failed\"} 0\n",
            "storecast_train_all_duration_seconds_count{outcome=\"failed\"} 0\n",
        ] {
            assert!(text.contains(sample), "{sample} in {text}");
        }
    }

    #[test]
    fn renders_openmetrics_with_units_labels_and_the_process() {
        let metrics = metrics();
        metrics.scheduler_leader.set(1);
        metrics
            .ingest_messages
            .get_or_create(&OutcomeLabels {
                outcome: "accepted".to_string(),
            })
            .inc_by(3);
        metrics
            .http_request_duration
            .get_or_create(&HttpLabels {
                route: "/api/jobs/{id}".to_string(),
                method: "GET".to_string(),
                status: 200,
            })
            .observe(0.003);
        // Enough CPU for the kernel's clock ticks to count some.
        let busy = std::time::Instant::now();
        let mut spin = 0u64;
        while busy.elapsed() < std::time::Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let text = render();
        assert!(text.contains("storecast_scheduler_leader 1\n"), "{text}");
        assert!(
            text.contains("storecast_ingest_messages_total{outcome=\"accepted\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT storecast_http_request_duration_seconds seconds\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "storecast_http_request_duration_seconds_count{route=\"/api/jobs/{id}\",method=\"GET\",status=\"200\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("storecast_build_info{version=\""), "{text}");
        let cpu_line = text
            .lines()
            .find(|line| line.starts_with("process_cpu_seconds_total "))
            .expect("the process's CPU time");
        let cpu: f64 = cpu_line.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(cpu > 0.0, "{cpu_line}");
        assert!(text.contains("process_open_fds "), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
