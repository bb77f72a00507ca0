//! A real Prometheus scrapes a 3-node cluster through each node's admin listener, whatever
//! the node's roles: every node is `up`, and after a retrain and a train-all the histograms
//! of HTTP requests, fits and jobs are filled. A stopping node's readiness says it drains.

mod support;

use std::path::Path;
use std::time::Duration;

use support::http::{get, request_with, try_get};
use support::node::{NodeProcess, free_address};
use support::prometheus::{Prometheus, value};

const TOKEN: &str = "prometheus-test-token";
const STORES: u32 = 4;
/// Scrapes every second: a series shows up within a few.
const SCRAPED: Duration = Duration::from_secs(30);
const JOB_LIMIT: Duration = Duration::from_secs(120);

/// Starts a node with its admin listener on a known port; returns it and that address.
fn start(
    dir: &Path,
    url: &str,
    name: &str,
    roles: &str,
    seeds: &[&str],
    gateway: &str,
) -> (NodeProcess, String) {
    let admin = free_address();
    let settings: Vec<String> = [
        format!("cluster.roles={roles}"),
        format!("gateway.listen={gateway}"),
        format!("gateway.token={TOKEN}"),
        format!("admin.listen={admin}"),
        "scheduler.train_all_at=".to_string(),
        "train.profile=reference".to_string(),
        "profiles.reference.yearly_order=0".to_string(),
        // Long enough for a poll to see the drain before the listener closes.
        "admin.stop_notice_ms=2000".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), url.to_string()];
    let mut node = NodeProcess::start(dir, &global, name, &free_address(), seeds, &settings);
    node.wait_for(&["admin listening on", &admin]);
    (node, admin)
}

fn wait_for_job(gateway: &str, path: &str) {
    let started = request_with(
        gateway,
        "POST",
        path,
        &[format!("Authorization: Bearer {TOKEN}")],
        None,
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let job = started.json()["job_id"].as_i64().unwrap();
    let begun = std::time::Instant::now();
    loop {
        let view = get(gateway, &format!("/api/jobs/{job}")).json();
        if view["state"] == "succeeded" {
            return;
        }
        assert!(
            view["state"] != "failed" && begun.elapsed() < JOB_LIMIT,
            "job {job}: {view}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_scrapes_every_node_and_sees_the_histograms_fill() {
    let Some(url) = support::postgres::fresh_database("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    support::load_synthetic(dir.path(), &url, STORES, 300);
    let gateway = free_address();
    let (mut alpha, alpha_admin) = start(
        dir.path(),
        &url,
        "alpha",
        "gateway,scheduler,forecast",
        &[],
        &gateway,
    );
    let seed = alpha.address.clone();
    let (mut bravo, bravo_admin) =
        start(dir.path(), &url, "bravo", "models", &[&seed], "127.0.0.1:0");
    let (mut charlie, charlie_admin) = start(
        dir.path(),
        &url,
        "charlie",
        "models,ingest",
        &[&seed],
        "127.0.0.1:0",
    );
    for node in [&mut alpha, &mut bravo, &mut charlie] {
        node.wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    }
    let targets = vec![alpha_admin.clone(), bravo_admin, charlie_admin.clone()];
    let Some(prometheus) = Prometheus::start("prometheus", &targets) else {
        return;
    };

    // Every node is up, a models-only node as much as the gateway.
    let up = prometheus.wait_for("up", SCRAPED, |result| {
        result.len() == 3 && result.iter().all(|sample| value(sample) == 1.0)
    });
    assert_eq!(up.len(), 3, "{up:?}");
    let members = prometheus.wait_for(
        "storecast_cluster_members{role=\"models\"}",
        SCRAPED,
        |result| result.len() == 3 && result.iter().all(|sample| value(sample) == 2.0),
    );
    assert_eq!(members.len(), 3);
    prometheus.wait_for("storecast_build_info", SCRAPED, |result| result.len() == 3);
    prometheus.wait_for("process_resident_memory_bytes", SCRAPED, |result| {
        result.len() == 3 && result.iter().all(|sample| value(sample) > 1e6)
    });

    // A retrain and a train-all fill the histograms.
    wait_for_job(&gateway, "/api/stores/1/products/product_A/retrain");
    wait_for_job(&gateway, "/api/train");
    let requests = prometheus.wait_for(
        "storecast_http_request_duration_seconds_count{route=\"/api/train\",method=\"POST\",status=\"202\"}",
        SCRAPED,
        |result| result.len() == 1 && value(&result[0]) >= 1.0,
    );
    assert_eq!(requests[0]["metric"]["instance"], alpha_admin.as_str());
    let fits = prometheus.wait_for(
        "sum(storecast_fit_duration_seconds_count{outcome=\"trained\"})",
        SCRAPED,
        |result| result.len() == 1 && value(&result[0]) >= f64::from(STORES + 1),
    );
    assert!(value(&fits[0]) >= f64::from(STORES + 1), "{fits:?}");
    // Every node exports the outcome counters from zero; only the scheduler's counts.
    let train_alls = prometheus.wait_for(
        "storecast_train_all_duration_seconds_count{outcome=\"succeeded\"} > 0",
        SCRAPED,
        |result| result.len() == 1 && value(&result[0]) == 1.0,
    );
    assert_eq!(train_alls[0]["metric"]["instance"], alpha_admin.as_str());
    prometheus.wait_for(
        "storecast_train_all_series_total{outcome=\"trained\"} > 0",
        SCRAPED,
        |result| result.len() == 1 && value(&result[0]) == f64::from(STORES),
    );
    prometheus.wait_for(
        "sum(storecast_online_forecast_duration_seconds_count)",
        SCRAPED,
        |result| result.len() == 1 && value(&result[0]) >= f64::from(STORES),
    );

    // A stopping node's readiness says it drains, with the reason, while it still answers
    // (for the stop notice; tests/stop_notice.rs checks its length).
    let ready = get(&charlie_admin, "/health/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    charlie.signal(libc::SIGTERM);
    let started = std::time::Instant::now();
    loop {
        match try_get(&charlie_admin, "/health/readyz") {
            Ok(answer) if answer.status == 503 => {
                assert!(
                    answer.json()["state"]
                        .as_str()
                        .unwrap()
                        .starts_with("draining"),
                    "{}",
                    answer.body
                );
                break;
            }
            Ok(answer) => assert_eq!(answer.status, 200, "{}", answer.body),
            Err(error) => panic!("charlie stopped answering before it said it drains: {error}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "charlie never said it drains"
        );
    }
}
