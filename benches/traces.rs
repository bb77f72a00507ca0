//! What tracing costs a retrain: the same retrains through the gateway with trace export off
//! (no endpoint), on (an OTLP/HTTP receiver in this process, which decodes every span), and
//! to a dead endpoint (a closed port: every export fails and its spans are dropped). The
//! target is that the three medians stay within 10% of each other.
//!
//! Each mode starts its own 2-node cluster of real `storecast node` processes (release
//! build) over one throwaway PostgreSQL with durable settings holding Kaggle's 1,115 stores
//! (`storecast load`, last 5 months): `alpha` (gateway, models, scheduler, forecast) and
//! `bravo` (models). A retrain is `POST /api/stores/{store}/products/product_A/retrain` to
//! alpha's gateway for a store bravo owns, then the job's event stream until its `done`
//! event; the modes take turns, a round of one retrain each, so a slow spell of the machine
//! hits all three alike.
//!
//! Run with `cargo bench --bench traces` (about 2 minutes); `STORECAST_BENCH_QUICK=1` for a
//! smoke run (10 rounds).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use storecast::cluster::placement::{DEFAULT_LOAD_FACTOR, Placement, SeriesKey};
use support::http::request_with;
use support::measure::{load_averages, millis, percentile};
use support::node::{NodeProcess, free_address};
use support::otlp::Receiver;
use support::postgres::{Durability, fresh_database_with};

const TOKEN: &str = "bench-token";
const NAMES: [&str; 2] = ["alpha", "bravo"];

struct Cluster {
    label: &'static str,
    gateway: String,
    _nodes: Vec<NodeProcess>,
    latencies: Vec<Duration>,
}

fn start(dir: &Path, url: &str, label: &'static str, endpoint: &str) -> Cluster {
    let gateway = free_address();
    let addresses: Vec<String> = NAMES.iter().map(|_| free_address()).collect();
    let mut nodes = Vec::new();
    for (index, name) in NAMES.iter().enumerate() {
        let roles = if index == 0 {
            "gateway,models,scheduler,forecast"
        } else {
            "models"
        };
        let listen = if index == 0 {
            gateway.clone()
        } else {
            "127.0.0.1:0".to_string()
        };
        let settings: Vec<String> = [
            format!("cluster.roles={roles}"),
            format!("gateway.listen={listen}"),
            format!("gateway.token={TOKEN}"),
            format!("telemetry.otlp_endpoint={endpoint}"),
            "scheduler.train_all_at=".to_string(),
        ]
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting])
        .collect();
        let global = vec!["--database-url".to_string(), url.to_string()];
        let seeds: Vec<&str> = if index == 0 {
            Vec::new()
        } else {
            vec![addresses[0].as_str()]
        };
        nodes.push(NodeProcess::start(
            dir,
            &global,
            name,
            &addresses[index],
            &seeds,
            &settings,
        ));
    }
    for node in &mut nodes {
        node.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    }
    // Both hosts adopt their series before the first retrain.
    for node in &mut nodes {
        node.wait_for(&["adopting series placed on this node"]);
    }
    Cluster {
        label,
        gateway,
        _nodes: nodes,
        latencies: Vec::new(),
    }
}

/// One retrain of `store` through the gateway, to the end of its job.
fn retrain(cluster: &mut Cluster, store: u32) {
    let started = Instant::now();
    let answer = request_with(
        &cluster.gateway,
        "POST",
        &format!("/api/stores/{store}/products/product_A/retrain"),
        &[format!("Authorization: Bearer {TOKEN}")],
        None,
    );
    assert_eq!(answer.status, 202, "{}", answer.body);
    let job = answer.json()["job_id"].as_i64().expect("a job id");
    let events = support::http::events(
        &cluster.gateway,
        &format!("/api/jobs/{job}/events"),
        Duration::from_secs(60),
    );
    let (name, data) = events.last().cloned().expect("events");
    assert_eq!(name, "done", "{events:?}");
    assert!(data.contains("\"state\":\"succeeded\""), "{data}");
    cluster.latencies.push(started.elapsed());
}

fn main() {
    let quick = std::env::var("STORECAST_BENCH_QUICK").is_ok_and(|value| value == "1");
    let rounds = if quick { 10 } else { 60 };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = fresh_database_with("traces benchmark", Durability::Durable)
        .expect("the traces benchmark needs PostgreSQL (see the line above)");
    let data = support::rossmann_dir("traces benchmark")
        .expect("the traces benchmark needs Kaggle's Rossmann data (see the line above)")
        .join("train.csv.gz");
    let load = support::storecast(dir.path())
        .args(["--database-url", &url, "load"])
        .arg(&data)
        .output()
        .expect("run storecast load");
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );

    let receiver = Receiver::start();
    let dead = {
        // A port nothing listens on.
        let address = free_address();
        format!("http://{address}")
    };
    let whole = Instant::now();
    let mut clusters = vec![
        start(dir.path(), &url, "export off (no endpoint)", ""),
        start(
            dir.path(),
            &url,
            "export on (receiver in the bench)",
            &receiver.endpoint,
        ),
        start(dir.path(), &url, "export to a dead endpoint", &dead),
    ];
    // Stores bravo owns (all clusters place alike: same series, same two names).
    let stores: Vec<u32> = (1..=1115).collect();
    let keys: Vec<SeriesKey> = stores
        .iter()
        .map(|store| SeriesKey::new(*store, "product_A"))
        .collect();
    let hosts: Vec<String> = NAMES.iter().map(|name| name.to_string()).collect();
    let placement = Placement::compute(&keys, &hosts, DEFAULT_LOAD_FACTOR);
    let bravo: Vec<u32> = stores
        .iter()
        .copied()
        .filter(|store| placement.owner(&SeriesKey::new(*store, "product_A")) == Some("bravo"))
        .collect();
    eprintln!("{rounds} rounds of one retrain per mode");
    for round in 0..rounds {
        let store = bravo[(round * 7) % bravo.len()];
        for cluster in &mut clusters {
            retrain(cluster, store);
        }
    }
    let spans = receiver.spans().len();

    println!("## Trace export and retrain latency (measured by `cargo bench --bench traces`)\n");
    println!(
        "{rounds} retrains per mode through alpha's gateway of stores bravo owns, modes taking \
         turns; 2 nodes, Kaggle's 1,115 stores, PostgreSQL with durable settings; load average \
         at the end {}; whole run {:.0} s; the receiver decoded {spans} spans.\n",
        load_averages(),
        whole.elapsed().as_secs_f64()
    );
    println!("| trace export | p50 | p90 | p99 | max | p50 against export off |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let base = {
        let mut sorted = clusters[0].latencies.clone();
        sorted.sort();
        percentile(&sorted, 50.0)
    };
    for cluster in &clusters {
        let mut sorted = cluster.latencies.clone();
        sorted.sort();
        let p50 = percentile(&sorted, 50.0);
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:+.1}% |",
            cluster.label,
            millis(p50),
            millis(percentile(&sorted, 90.0)),
            millis(percentile(&sorted, 99.0)),
            millis(*sorted.last().expect("latencies")),
            100.0 * (p50.as_secs_f64() / base.as_secs_f64() - 1.0)
        );
    }
}
