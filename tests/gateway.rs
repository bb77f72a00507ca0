//! The HTTP gateway of a real node process: health, readiness, metrics and the cluster view.

mod support;

use support::http::get;
use support::node::{NodeProcess, free_address};

fn start(
    dir: &std::path::Path,
    url: &str,
    name: &str,
    roles: &str,
    seeds: &[&str],
) -> (NodeProcess, String) {
    let gateway = free_address();
    let settings: Vec<String> = [
        format!("cluster.roles={roles}"),
        format!("gateway.listen={gateway}"),
        "scheduler.train_all_at=".to_string(),
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

#[test]
fn health_readiness_metrics_and_the_cluster_view() {
    let Some(url) = support::postgres::fresh_database("gateway") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A gateway alone cannot serve forecasts yet: live, not ready.
    let (mut front, gateway) = start(dir.path(), &url, "front", "gateway", &[]);
    let live = get(&gateway, "/health/livez");
    assert_eq!(live.status, 200);
    assert_eq!(live.json()["status"], "live");
    let not_ready = get(&gateway, "/health/readyz");
    assert_eq!(not_ready.status, 503, "{}", not_ready.body);
    assert_eq!(not_ready.json()["database"], "reachable");
    assert!(
        not_ready.json()["cluster"]
            .as_str()
            .unwrap()
            .contains("no model host"),
        "{}",
        not_ready.body
    );

    // A model host joins: ready.
    let seed = front.address.clone();
    let (_models, _) = start(dir.path(), &url, "models-a", "models,scheduler", &[&seed]);
    front.wait_for(&["cluster view: 2 members [front, models-a]"]);
    let ready = get(&gateway, "/health/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["ready"], true);

    let cluster = get(&gateway, "/api/cluster").json();
    assert_eq!(cluster["node"], "front");
    assert_eq!(cluster["scheduler_leader"], "models-a");
    let members = cluster["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{cluster}");
    assert_eq!(members[0]["name"], "front");
    assert_eq!(members[0]["roles"], serde_json::json!(["gateway"]));
    assert_eq!(members[0]["series"], serde_json::Value::Null);
    assert_eq!(members[1]["name"], "models-a");
    assert_eq!(members[1]["series"], 0, "no sales, so no series: {cluster}");

    let metrics = get(&gateway, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        metrics.body.contains("storecast_cluster_members 2\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("storecast_cluster_members_by_role{role=\"models\"} 1\n"),
        "{}",
        metrics.body
    );

    let missing = get(&gateway, "/api/nothing-here");
    assert_eq!(missing.status, 404);
}
