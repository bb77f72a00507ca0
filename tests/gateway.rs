//! The HTTP gateway of a real node process: health, readiness, metrics and the cluster view.

mod support;

use support::http::{get, post};
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

    // Stores and batch forecasts, once there is data and a trained store.
    let data_dir = dir.path().join("data");
    let run = |args: &[&str]| {
        let output = support::storecast(dir.path())
            .args(["--database-url", &url])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "dataset",
        "synth",
        "--stores",
        "3",
        "--days",
        "300",
        "--out",
        data_dir.to_str().unwrap(),
    ]);
    run(&["load", data_dir.join("train.csv").to_str().unwrap()]);
    run(&["--set", "train.profile=reference", "train", "--store", "2"]);
    let stores = get(&gateway, "/api/stores").json();
    assert_eq!(
        stores,
        serde_json::json!([
            {"store": 1, "products": [{"product": "product_A", "model_version": null}]},
            {"store": 2, "products": [{"product": "product_A", "model_version": 1}]},
            {"store": 3, "products": [{"product": "product_A", "model_version": null}]},
        ])
    );
    let forecast = get(&gateway, "/api/stores/2/products/product_A/forecast");
    assert_eq!(forecast.status, 200, "{}", forecast.body);
    let forecast = forecast.json();
    assert_eq!(forecast["model"]["name"], "reference");
    assert_eq!(forecast["model"]["version"], 1);
    let days = forecast["forecast"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    for day in days {
        let (value, lower, upper) = (
            day["value"].as_f64().unwrap(),
            day["lower_ci"].as_f64().unwrap(),
            day["upper_ci"].as_f64().unwrap(),
        );
        assert!(lower <= value && value <= upper, "{day}");
    }
    for (path, status, reason) in [
        (
            "/api/stores/3/products/product_A/forecast",
            404,
            "has no forecast yet",
        ),
        (
            "/api/stores/99/products/product_A/forecast",
            404,
            "unknown series",
        ),
        (
            "/api/stores/abc/products/product_A/forecast",
            400,
            "positive whole number",
        ),
    ] {
        let answer = get(&gateway, path);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(reason), "{path}: {error}");
    }

    // Online forecasts, the reference service's way, by the series' model actor.
    let today = storecast::cli::load::yesterday().succ_opt().unwrap();
    let in_days = |days: u64| (today + chrono::Days::new(days)).to_string();
    let item = |store: u32, begin: &str, end: &str| {
        format!(
            r#"{{"store_id": {store}, "product_name": "product_A", "begin_date": "{begin}", "end_date": "{end}"}}"#
        )
    };
    let answer = post(
        &gateway,
        "/api/forecast",
        &format!("[{}]", item(2, &in_days(1), &in_days(3))),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = answer.json();
    assert_eq!(answer[0]["api"]["model_name"], "reference");
    assert_eq!(answer[0]["api"]["model_version"], 1);
    let points = answer[0]["forecast"].as_array().unwrap();
    assert_eq!(points.len(), 3, "{answer}");
    assert_eq!(points[0]["timestamp"], format!("{}T00:00:00", in_days(1)));
    // The same model gives the same values as its batch forecast for those days.
    for point in points {
        let date = &point["timestamp"].as_str().unwrap()[..10];
        let batch = days
            .iter()
            .find(|day| day["date"] == date)
            .expect("the batch covers the next week");
        let (online, stored) = (
            point["value"].as_f64().unwrap(),
            batch["value"].as_f64().unwrap(),
        );
        assert!(
            (online - stored).abs() <= 1e-6 * stored.abs().max(1.0),
            "{date}: {online} vs {stored}"
        );
    }
    let today_text = today.to_string();
    let far = in_days(400);
    let bad_requests = [
        (
            item(2, &in_days(3), &in_days(1)),
            400,
            "is before begin_date",
        ),
        (item(2, &in_days(1), &far), 400, "more than 366"),
        (item(99, &today_text, &in_days(1)), 404, "unknown series"),
        (item(3, &today_text, &in_days(1)), 409, "no trained model"),
        ("{not json".to_string(), 400, "must be a JSON list"),
    ];
    for (body, status, reason) in bad_requests {
        let body = if body.starts_with('{') && !body.starts_with("{not") {
            format!("[{body}]")
        } else {
            body
        };
        let answer = post(&gateway, "/api/forecast", &body);
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(reason), "{body}: {error}");
    }
    let empty = post(&gateway, "/api/forecast", "[]");
    assert_eq!(empty.status, 400);
}
