//! Traces across real node processes: two nodes export OTLP/HTTP to a receiver inside the
//! test (spans decoded with `opentelemetry-proto`).
//! - A retrain through the gateway of one node, of a series owned by the other, is one trace
//!   (the caller's, from its `traceparent` header) with spans from both nodes: the owner's
//!   model-actor span is a child of the gateway's call span, and the fit (its CV splits
//!   below it) and the registry write are below the actor's span.
//! - A train-all's job span, on the scheduler, is an ancestor of every series' fit on both
//!   nodes.
//! - With the collector down, or accepting connections and never answering, retrains still
//!   succeed, and the node counts the spans it dropped.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use storecast::cluster::placement::{DEFAULT_LOAD_FACTOR, Placement, SeriesKey};
use support::http::{get, request_with};
use support::node::{NodeProcess, PATIENCE, free_address};
use support::otlp::{ReceivedSpan, Receiver};

const TOKEN: &str = "trace-test-token";
const STORES: u32 = 6;
/// Longest a job of a few synthetic series may take (debug build, 2 cores).
const JOB_LIMIT: Duration = Duration::from_secs(120);
/// How long exported spans may take to arrive (the exporter sends once a second).
const SPANS_LIMIT: Duration = Duration::from_secs(30);

/// Starts a node exporting to `endpoint`; returns it and its gateway's address.
fn start(
    dir: &Path,
    url: &str,
    name: &str,
    roles: &str,
    seeds: &[&str],
    endpoint: &str,
) -> (NodeProcess, String) {
    let gateway = free_address();
    let settings: Vec<String> = [
        format!("cluster.roles={roles}"),
        format!("gateway.listen={gateway}"),
        format!("gateway.token={TOKEN}"),
        format!("telemetry.otlp_endpoint={endpoint}"),
        "cluster.heartbeat_ms=200".to_string(),
        "cluster.failure_timeout_ms=2500".to_string(),
        "scheduler.train_all_at=".to_string(),
        "train.profile=reference".to_string(),
        "profiles.reference.yearly_order=0".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), url.to_string()];
    let mut node = NodeProcess::start(dir, &global, name, &free_address(), seeds, &settings);
    if roles.contains("gateway") {
        node.wait_for(&["gateway listening on", &gateway]);
    }
    (node, gateway)
}

fn bearer(traceparent: Option<&str>) -> Vec<String> {
    let mut headers = vec![format!("Authorization: Bearer {TOKEN}")];
    if let Some(traceparent) = traceparent {
        headers.push(format!("traceparent: {traceparent}"));
    }
    headers
}

/// Waits until the job ends; returns its JSON.
fn wait_for_job(gateway: &str, job: i64) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let view = get(gateway, &format!("/api/jobs/{job}")).json();
        if view["state"] != "pending" && view["state"] != "running" {
            return view;
        }
        assert!(
            started.elapsed() < JOB_LIMIT,
            "job {job} still running: {view}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a retrain of `store` through `gateway` and waits for its end: the job's JSON.
fn retrain(gateway: &str, store: u32, traceparent: Option<&str>) -> serde_json::Value {
    let path = format!("/api/stores/{store}/products/product_A/retrain");
    let started = request_with(gateway, "POST", &path, &bearer(traceparent), None);
    assert_eq!(started.status, 202, "{}", started.body);
    let job = started.json()["job_id"].as_i64().unwrap();
    wait_for_job(gateway, job)
}

/// The span with `id` among `spans`.
fn by_id<'a>(spans: &'a [ReceivedSpan], id: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|span| span.span_id == id)
}

/// Whether `ancestor` is `span`'s parent, grandparent, ... among `spans`.
fn descends_from(spans: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
    let mut current = span;
    for _ in 0..64 {
        if current.parent_id == ancestor.span_id {
            return true;
        }
        match by_id(spans, &current.parent_id) {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}

/// A span and its ancestors among `spans`, named, up to the first one missing.
fn chain(spans: &[ReceivedSpan], span: &ReceivedSpan) -> String {
    let mut names = vec![format!(
        "{} {} ({})",
        span.trace_id, span.name, span.instance
    )];
    let mut current = span;
    while !current.parent_id.is_empty() {
        match by_id(spans, &current.parent_id) {
            Some(parent) => {
                names.push(format!("{} ({})", parent.name, parent.instance));
                current = parent;
            }
            None => {
                names.push(format!("missing {}", current.parent_id));
                break;
            }
        }
    }
    names.join(" <- ")
}

fn store_of(span: &ReceivedSpan) -> Option<u32> {
    span.attributes.get("store")?.parse().ok()
}

#[test]
fn a_retrain_and_a_train_all_are_traces_across_the_nodes() {
    let Some(url) = support::postgres::fresh_database("traces") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    support::load_synthetic(dir.path(), &url, STORES, 300);
    let receiver = Receiver::start();
    let (mut alpha, gateway) = start(
        dir.path(),
        &url,
        "alpha",
        "gateway,models,scheduler,forecast",
        &[],
        &receiver.endpoint,
    );
    let seed = alpha.address.clone();
    let (mut bravo, _) = start(
        dir.path(),
        &url,
        "bravo",
        "models",
        &[&seed],
        &receiver.endpoint,
    );
    for node in [&mut alpha, &mut bravo] {
        node.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    }
    // A series bravo owns, so the gateway on alpha must cross the cluster.
    let keys: Vec<SeriesKey> = (1..=STORES)
        .map(|store| SeriesKey::new(store, "product_A"))
        .collect();
    let hosts = vec!["alpha".to_string(), "bravo".to_string()];
    let placement = Placement::compute(&keys, &hosts, DEFAULT_LOAD_FACTOR);
    let store = (1..=STORES)
        .find(|store| placement.owner(&SeriesKey::new(*store, "product_A")) == Some("bravo"))
        .expect("bravo owns a series");

    // 1. One retrain, one trace: the caller's, across both nodes.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let job = retrain(
        &gateway,
        store,
        Some(&format!("00-{trace_id}-{caller_span}-01")),
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    // A span leaves its node when it ends, in that node's next batch: wait for all of them.
    let expected = [
        "HTTP POST /api/stores/{store}/products/{product}/retrain",
        "call train",
        "model train",
        "fit",
        "registry insert",
    ];
    let spans = receiver.wait_until("the retrain's spans", SPANS_LIMIT, |spans| {
        expected.iter().all(|name| {
            spans
                .iter()
                .any(|span| span.trace_id == trace_id && span.name == *name)
        })
    });
    let trace: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .cloned()
        .collect();
    let one = |name: &str, instance: &str| -> ReceivedSpan {
        let found: Vec<&ReceivedSpan> = trace
            .iter()
            .filter(|span| span.name == name && span.instance == instance)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one `{name}` span from {instance} in the retrain's trace: {trace:#?}"
        );
        found[0].clone()
    };
    let http = one(
        "HTTP POST /api/stores/{store}/products/{product}/retrain",
        "alpha",
    );
    assert_eq!(
        http.parent_id, caller_span,
        "the caller's traceparent is honoured"
    );
    assert_eq!(
        http.attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("202")
    );
    assert_eq!(http.service, "storecast");
    let call = one("call train", "alpha");
    let actor = one("model train", "bravo");
    let fit = one("fit", "bravo");
    let registry = one("registry insert", "bravo");
    assert_eq!(
        actor.parent_id, call.span_id,
        "the owner's span continues the call"
    );
    assert!(
        descends_from(&trace, &call, &http),
        "the call is the request's"
    );
    assert_eq!(fit.parent_id, actor.span_id, "the fit is the actor's");
    assert!(descends_from(&trace, &registry, &actor));
    let splits = trace
        .iter()
        .filter(|span| span.name == "cv split" && span.parent_id == fit.span_id)
        .count();
    assert_eq!(splits, 5, "the CV splits are the fit's children");
    assert_eq!(store_of(&actor), Some(store));
    // Nothing of this retrain went into another trace.
    let elsewhere: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| {
            span.trace_id != trace_id
                && (span.name == "model train" || span.name == "fit")
                && store_of(span) == Some(store)
        })
        .collect();
    assert!(elsewhere.is_empty(), "{elsewhere:#?}");

    // 2. A train-all: its job span is an ancestor of every series' fit, on both nodes.
    let started = request_with(&gateway, "POST", "/api/train", &bearer(None), None);
    assert_eq!(started.status, 202, "{}", started.body);
    let job_id = started.json()["job_id"].as_i64().unwrap();
    let job = wait_for_job(&gateway, job_id);
    assert_eq!(job["state"], "succeeded", "{job}");
    let job_label = job_id.to_string();
    let is_job_span = |span: &ReceivedSpan| {
        span.name == "train-all job" && span.attributes.get("job.id") == Some(&job_label)
    };
    // Each node exports on its own schedule, a span when it ends: wait for the job's span,
    // every fit of its trace, and the spans between them.
    let complete = |spans: &[ReceivedSpan]| {
        spans
            .iter()
            .find(|span| is_job_span(span))
            .is_some_and(|job| {
                let fits: Vec<&ReceivedSpan> = spans
                    .iter()
                    .filter(|span| span.trace_id == job.trace_id && span.name == "fit")
                    .collect();
                fits.len() >= STORES as usize
                    && fits.iter().all(|fit| descends_from(spans, fit, job))
            })
    };
    let waited = Instant::now();
    let spans = loop {
        let spans = receiver.spans();
        if complete(&spans) {
            break spans;
        }
        if waited.elapsed() > SPANS_LIMIT {
            let chains: Vec<String> = spans
                .iter()
                .filter(|span| span.name == "fit")
                .map(|fit| chain(&spans, fit))
                .collect();
            let warnings: Vec<String> = [&mut alpha, &mut bravo]
                .into_iter()
                .flat_map(|node| node.log_so_far().to_vec())
                .filter(|line| line.contains("WARN") || line.contains("ERROR"))
                .collect();
            panic!(
                "the train-all's spans never all arrived; fits and their ancestors:\n{}\nwarnings:\n{}",
                chains.join("\n"),
                warnings.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let job_span = spans.iter().find(|span| is_job_span(span)).unwrap().clone();
    assert_eq!(job_span.instance, "alpha", "the scheduler's node");
    let job_trace: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|span| span.trace_id == job_span.trace_id)
        .cloned()
        .collect();
    let fits: Vec<&ReceivedSpan> = job_trace.iter().filter(|span| span.name == "fit").collect();
    let mut fits_by_node: HashMap<&str, usize> = HashMap::new();
    for fit in &fits {
        assert!(
            descends_from(&job_trace, fit, &job_span),
            "fit of store {:?} on {} is not below the job's span",
            store_of(fit),
            fit.instance
        );
        *fits_by_node.entry(fit.instance.as_str()).or_default() += 1;
    }
    assert_eq!(fits.len(), STORES as usize, "{fits_by_node:?}");
    assert!(
        fits_by_node.contains_key("alpha") && fits_by_node.contains_key("bravo"),
        "{fits_by_node:?}"
    );

    // 3. The collector goes away: retrains go on; the spans are dropped and counted.
    receiver.stop();
    let job = retrain(&gateway, store, None);
    assert_eq!(job["state"], "succeeded", "{job}");
    // A collector that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_address = silent.local_addr().unwrap();
    let holding = std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept() {
            held.push(connection);
            if held.len() > 20 {
                break;
            }
        }
    });
    drop(holding);
    let (mut charlie, _) = start(
        dir.path(),
        &url,
        "charlie",
        "models",
        &[&seed],
        &format!("http://{silent_address}"),
    );
    charlie.wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    let started = Instant::now();
    let answered = request_with(&gateway, "POST", "/api/train", &bearer(None), None);
    assert_eq!(answered.status, 202, "{}", answered.body);
    let job = wait_for_job(&gateway, answered.json()["job_id"].as_i64().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        started.elapsed() < JOB_LIMIT,
        "a silent collector slowed the train-all: {:?}",
        started.elapsed()
    );
    let metrics = alpha_metrics(&mut alpha);
    let dropped: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("storecast_trace_spans_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0);
    let started = Instant::now();
    let mut dropped = dropped;
    while dropped == 0.0 {
        assert!(
            started.elapsed() < PATIENCE,
            "alpha never counted the spans it could not export"
        );
        std::thread::sleep(Duration::from_millis(200));
        dropped = alpha_metrics(&mut alpha)
            .lines()
            .find_map(|line| line.strip_prefix("storecast_trace_spans_dropped_total "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0);
    }
    assert!(
        alpha
            .log_so_far()
            .iter()
            .any(|line| line.contains("cannot export trace spans")),
        "alpha warned about the collector"
    );
}

/// The admin listener's metrics of `node` (its address is in its log).
fn alpha_metrics(node: &mut NodeProcess) -> String {
    let address = node
        .log_so_far()
        .iter()
        .find_map(|line| {
            let start =
                line.find("admin listening on http://")? + "admin listening on http://".len();
            let rest = &line[start..];
            Some(rest.split_whitespace().next()?.to_string())
        })
        .expect("the node logged its admin address");
    let answer = get(&address, "/metrics");
    assert_eq!(answer.status, 200);
    answer.body
}
