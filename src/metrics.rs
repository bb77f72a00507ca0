//! Process-wide metrics in the Prometheus text format: gauges and counters, each with an
//! optional set of labels, rendered by [`render`] (served at `/metrics` by the gateway).
//!
//! Small on purpose: a metric is a name, a help text and values per label set, kept in one
//! mutex-guarded map. Updates are rare (view changes, job steps), never per row.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// What a metric counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// A metric: its name, help and kind.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

/// Live members of the cluster as this node sees them, this node included.
pub const CLUSTER_MEMBERS: Metric = Metric {
    name: "storecast_cluster_members",
    help: "Live members of the cluster as this node sees them, this node included.",
    kind: Kind::Gauge,
};
/// Live members per role.
pub const CLUSTER_MEMBERS_BY_ROLE: Metric = Metric {
    name: "storecast_cluster_members_by_role",
    help: "Live members of the cluster that have a role.",
    kind: Kind::Gauge,
};
/// Changes of the member view.
pub const CLUSTER_VIEW_CHANGES: Metric = Metric {
    name: "storecast_cluster_view_changes_total",
    help: "Times the live member view changed.",
    kind: Kind::Counter,
};
/// Model actors running on this node.
pub const MODEL_ACTORS: Metric = Metric {
    name: "storecast_model_actors",
    help: "Model actors (series) running on this node.",
    kind: Kind::Gauge,
};
/// Whether this node leads the scheduler.
pub const SCHEDULER_LEADER: Metric = Metric {
    name: "storecast_scheduler_leader",
    help: "1 when this node leads the scheduler, else 0.",
    kind: Kind::Gauge,
};

/// Sale messages ingested, by outcome (accepted or rejected).
pub const INGEST_ROWS: Metric = Metric {
    name: "storecast_ingest_messages_total",
    help: "Sale messages ingested, by outcome: accepted (stored) or rejected (in ingest_rejects).",
    kind: Kind::Counter,
};

type Labels = Vec<(&'static str, String)>;

struct Series {
    metric: Metric,
    values: BTreeMap<Labels, f64>,
}

fn registry() -> &'static Mutex<BTreeMap<&'static str, Series>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<&'static str, Series>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn update(metric: Metric, labels: &[(&'static str, &str)], change: impl FnOnce(&mut f64)) {
    let labels: Labels = labels
        .iter()
        .map(|(name, value)| (*name, (*value).to_string()))
        .collect();
    // A poisoned lock only means another thread panicked mid-update; the map is still valid.
    let mut registry = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let series = registry.entry(metric.name).or_insert_with(|| Series {
        metric,
        values: BTreeMap::new(),
    });
    change(series.values.entry(labels).or_insert(0.0));
}

/// Sets a gauge.
pub fn set(metric: Metric, labels: &[(&'static str, &str)], value: f64) {
    update(metric, labels, |current| *current = value);
}

/// Adds to a counter.
pub fn add(metric: Metric, labels: &[(&'static str, &str)], amount: f64) {
    update(metric, labels, |current| *current += amount);
}

/// Every metric in the Prometheus text exposition format.
pub fn render() -> String {
    let registry = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut text = String::new();
    for series in registry.values() {
        let kind = match series.metric.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(text, "# HELP {} {}", series.metric.name, series.metric.help);
        let _ = writeln!(text, "# TYPE {} {kind}", series.metric.name);
        for (labels, value) in &series.values {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
                    .collect();
                format!("{{{}}}", pairs.join(","))
            };
            let _ = writeln!(text, "{}{labels} {value}", series.metric.name);
        }
    }
    text
}

/// Escapes a label value as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_GAUGE: Metric = Metric {
        name: "storecast_test_gauge",
        help: "A gauge for tests.",
        kind: Kind::Gauge,
    };
    const TEST_COUNTER: Metric = Metric {
        name: "storecast_test_total",
        help: "A counter for tests.",
        kind: Kind::Counter,
    };

    #[test]
    fn renders_the_prometheus_text_format() {
        set(TEST_GAUGE, &[("role", "models")], 3.0);
        set(TEST_GAUGE, &[("role", "a \"quoted\" one")], 1.0);
        set(TEST_GAUGE, &[("role", "models")], 2.0);
        add(TEST_COUNTER, &[], 1.0);
        add(TEST_COUNTER, &[], 2.0);
        let text = render();
        assert!(text.contains(
            "# HELP storecast_test_gauge A gauge for tests.\n# TYPE storecast_test_gauge gauge\n"
        ));
        assert!(
            text.contains("storecast_test_gauge{role=\"models\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("storecast_test_gauge{role=\"a \\\"quoted\\\" one\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE storecast_test_total counter\nstorecast_test_total 3\n"),
            "{text}"
        );
    }
}
