//! The HTTP gateway of real node processes: health, readiness, metrics, the cluster view,
//! stores, forecasts, sales, retrain and train-all jobs with their events, the bearer token,
//! the OpenAPI document and the pages.

mod support;

use support::http::{events, get, post, request_with};
use support::node::{NodeProcess, free_address};

fn start(
    dir: &std::path::Path,
    url: &str,
    name: &str,
    roles: &str,
    seeds: &[&str],
) -> (NodeProcess, String) {
    start_with(dir, url, name, roles, seeds, &[])
}

/// As [`start`], with more `--set` settings.
fn start_with(
    dir: &std::path::Path,
    url: &str,
    name: &str,
    roles: &str,
    seeds: &[&str],
    more: &[&str],
) -> (NodeProcess, String) {
    let gateway = free_address();
    let settings: Vec<String> = [
        format!("cluster.roles={roles}"),
        format!("gateway.listen={gateway}"),
        "scheduler.train_all_at=".to_string(),
    ]
    .into_iter()
    .chain(more.iter().map(|setting| setting.to_string()))
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

    // The leader is the node holding the scheduler's lease, which it takes once it runs.
    let began = std::time::Instant::now();
    let cluster = loop {
        let cluster = get(&gateway, "/api/cluster").json();
        if cluster["scheduler_leader"] == "models-a" {
            break cluster;
        }
        assert!(cluster["scheduler_leader"].is_null(), "{cluster}");
        assert!(
            began.elapsed() < std::time::Duration::from_secs(30),
            "models-a never took the scheduler's lease: {cluster}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(cluster["node"], "front");
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
            .starts_with("application/openmetrics-text")
    );
    assert!(
        metrics.body.contains("storecast_cluster_size 2\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("storecast_cluster_members{role=\"models\"} 1\n"),
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
            {"store": 1, "products": [{"product": "product_A", "model_version": null, "owner": "models-a"}]},
            {"store": 2, "products": [{"product": "product_A", "model_version": 1, "owner": "models-a"}]},
            {"store": 3, "products": [{"product": "product_A", "model_version": null, "owner": "models-a"}]},
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
    // The batch forecast starts the day after the last sale.
    let first_forecast: chrono::NaiveDate = days[0]["date"].as_str().unwrap().parse().unwrap();
    let last_sale = first_forecast.pred_opt().unwrap();
    let in_days = |days: u64| (last_sale + chrono::Days::new(days)).to_string();
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
    let after_last = in_days(1);
    let far = in_days(400);
    let bad_requests = [
        (
            item(2, &in_days(3), &in_days(1)),
            400,
            "is before begin_date",
        ),
        (item(2, &in_days(1), &far), 400, "more than 366"),
        (item(99, &after_last, &in_days(2)), 404, "unknown series"),
        (item(3, &after_last, &in_days(2)), 409, "no trained model"),
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

const TOKEN: &str = "test-token-1234";
/// Longest a job of 3 synthetic series may take (debug build, 2 cores).
const JOB_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

fn bearer() -> Vec<String> {
    vec![format!("Authorization: Bearer {TOKEN}")]
}

#[test]
fn retrain_and_train_all_jobs_with_events_behind_the_token() {
    let Some(url) = support::postgres::fresh_database("gateway_jobs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    support::load_synthetic(dir.path(), &url, 3, 300);
    let token = format!("gateway.token={TOKEN}");
    let (mut front, gateway) = start_with(dir.path(), &url, "front", "gateway", &[], &[&token]);
    let seed = front.address.clone();
    let (_a, _) = start(
        dir.path(),
        &url,
        "models-a",
        "models,scheduler,forecast",
        &[&seed],
    );
    let (_b, _) = start(dir.path(), &url, "models-b", "models", &[&seed]);
    front.wait_for(&["cluster view: 3 members [front, models-a, models-b]"]);

    // Recent sales: the last N days of the series.
    let sales = get(&gateway, "/api/stores/2/products/product_A/sales?days=30");
    assert_eq!(sales.status, 200, "{}", sales.body);
    let sales = sales.json();
    let days = sales["sales"].as_array().unwrap();
    assert_eq!(days.len(), 30, "{sales}");
    assert_eq!(days[29]["date"], sales["last_date"]);
    assert!(days.iter().all(|day| day["sales"].as_u64().is_some()));
    for (path, status, reason) in [
        (
            "/api/stores/2/products/product_A/sales?days=0",
            400,
            "days must be 1 to",
        ),
        (
            "/api/stores/2/products/product_A/sales?days=many",
            400,
            "whole number",
        ),
        (
            "/api/stores/99/products/product_A/sales",
            404,
            "unknown series",
        ),
    ] {
        let answer = get(&gateway, path);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(
            answer.json()["error"].as_str().unwrap().contains(reason),
            "{path}: {}",
            answer.body
        );
    }

    // Mutations need the token; reads stay open by default.
    let retrain_path = "/api/stores/2/products/product_A/retrain";
    let refused = post(&gateway, retrain_path, "");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let wrong = request_with(
        &gateway,
        "POST",
        retrain_path,
        &["Authorization: Bearer nope".to_string()],
        None,
    );
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.json()["error"]
            .as_str()
            .unwrap()
            .contains("not this gateway's")
    );
    let unknown = request_with(
        &gateway,
        "POST",
        "/api/stores/99/products/product_A/retrain",
        &bearer(),
        None,
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    // Retrain store 2: 202 at once, then the job's events until it is done.
    let started = request_with(&gateway, "POST", retrain_path, &bearer(), None);
    assert_eq!(started.status, 202, "{}", started.body);
    let job_id = started.json()["job_id"].as_i64().unwrap();
    assert_eq!(
        started.header("location"),
        Some(format!("/api/jobs/{job_id}").as_str())
    );
    assert_eq!(started.json()["created"], true);
    let again = request_with(&gateway, "POST", retrain_path, &bearer(), None).json();
    let retrain_jobs = if again["created"] == false { 1 } else { 2 };
    if again["created"] == false {
        assert_eq!(
            again["job_id"], job_id,
            "a second request joins the running retrain"
        );
    }
    let stream = events(&gateway, &format!("/api/jobs/{job_id}/events"), JOB_LIMIT);
    let (last_event, last_data) = stream.last().expect("events").clone();
    assert_eq!(last_event, "done", "{stream:?}");
    assert!(
        stream[..stream.len() - 1]
            .iter()
            .all(|(event, _)| event == "progress"),
        "{stream:?}"
    );
    let done: serde_json::Value = serde_json::from_str(&last_data).unwrap();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["model_version"], 1, "{done}");
    let job = get(&gateway, &format!("/api/jobs/{job_id}")).json();
    assert_eq!(job, done, "the job as GET answers it is the last event's");
    assert_eq!(
        (job["kind"].as_str(), job["progress"].as_f64()),
        (Some("retrain"), Some(1.0))
    );
    let forecast = get(&gateway, "/api/stores/2/products/product_A/forecast").json();
    assert_eq!(
        forecast["model"]["version"], 1,
        "the retrain wrote its batch forecast"
    );

    // The model actor keeps the fit's forecast of the next 7 days: the batch's, with the same
    // values as a fresh computation (8 days, not kept; its sampled bounds differ by horizon).
    let last: chrono::NaiveDate = sales["last_date"].as_str().unwrap().parse().unwrap();
    let online = |days: u64| {
        let body = format!(
            r#"[{{"store_id": 2, "product_name": "product_A", "begin_date": "{}", "end_date": "{}"}}]"#,
            last + chrono::Days::new(1),
            last + chrono::Days::new(days)
        );
        let answer = post(&gateway, "/api/forecast", &body);
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()[0]["forecast"].as_array().unwrap().clone()
    };
    let (kept, computed) = (online(7), online(8));
    assert_eq!((kept.len(), computed.len()), (7, 8));
    let batch = forecast["forecast"].as_array().unwrap();
    for ((kept, computed), batch) in kept.iter().zip(&computed).zip(batch) {
        for field in ["value", "lower_ci", "upper_ci"] {
            let (a, b, c) = (
                kept[field].as_f64().unwrap(),
                computed[field].as_f64().unwrap(),
                batch[field].as_f64().unwrap(),
            );
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * y.abs().max(1.0);
            assert!(close(a, c), "{field}: kept {a}, batch {c}");
            assert!(
                field != "value" || close(a, b),
                "value: kept {a}, computed {b}"
            );
        }
    }

    for (path, status) in [
        ("/api/jobs/987654", 404),
        ("/api/jobs/abc", 400),
        ("/api/jobs/987654/events", 404),
    ] {
        let answer = get(&gateway, path);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(answer.json()["error"].is_string());
    }

    // Train every series: the scheduler's job, followed to its end.
    let refused = post(&gateway, "/api/train", "");
    assert_eq!(refused.status, 401);
    let started = request_with(&gateway, "POST", "/api/train", &bearer(), None);
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(started.json()["kind"], "train_all");
    let train_all = started.json()["job_id"].as_i64().unwrap();
    let stream = events(
        &gateway,
        &format!("/api/jobs/{train_all}/events"),
        JOB_LIMIT,
    );
    let done: serde_json::Value = serde_json::from_str(&stream.last().unwrap().1).unwrap();
    assert_eq!(
        (
            done["state"].as_str(),
            done["total"].as_i64(),
            done["succeeded"].as_i64()
        ),
        (Some("succeeded"), Some(3), Some(3)),
        "{done}"
    );
    let stores = get(&gateway, "/api/stores").json();
    let versions: Vec<i64> = stores
        .as_array()
        .unwrap()
        .iter()
        .map(|store| store["products"][0]["model_version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        versions,
        [1, 2, 1],
        "store 2 was retrained before: {stores}"
    );

    // Store 2's versions, newest first, each with the node that trained it and its metrics;
    // and the node that owns the series now, as the store list says.
    let history = get(&gateway, "/api/stores/2/products/product_A/versions");
    assert_eq!(history.status, 200, "{}", history.body);
    let history = history.json();
    let owner = stores[1]["products"][0]["owner"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ["models-a", "models-b"].contains(&owner.as_str()),
        "{stores}"
    );
    assert_eq!(history["owner"], owner.as_str());
    let listed: Vec<i64> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|version| version["version"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [2, 1], "{history}");
    for version in history["versions"].as_array().unwrap() {
        assert_eq!(version["node"], owner.as_str(), "{history}");
        let (mape, rmspe) = (
            version["metrics"]["mape"].as_f64().unwrap(),
            version["metrics"]["rmspe"].as_f64().unwrap(),
        );
        assert!(
            mape > 0.0 && rmspe >= mape * 0.5 && rmspe < 5.0,
            "{history}"
        );
    }
    let newest = get(
        &gateway,
        "/api/stores/2/products/product_A/versions?limit=1",
    )
    .json();
    assert_eq!(newest["versions"].as_array().unwrap().len(), 1);
    for (path, status) in [
        ("/api/stores/2/products/product_A/versions?limit=0", 400),
        ("/api/stores/99/products/product_A/versions", 404),
    ] {
        let answer = get(&gateway, path);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
    }

    // The jobs, newest first, a page at a time: the train-all, then the retrain.
    let first_page = get(&gateway, "/api/jobs?limit=1").json();
    assert_eq!(first_page["jobs"][0]["id"], train_all, "{first_page}");
    assert_eq!(first_page["jobs"][0]["progress"], 1.0);
    let before = first_page["next_before"].as_i64().expect("an older page");
    let older = get(&gateway, &format!("/api/jobs?limit=5&before={before}")).json();
    let older_jobs = older["jobs"].as_array().unwrap();
    assert_eq!(older_jobs.len(), retrain_jobs, "{older}");
    assert_eq!(older_jobs.last().unwrap()["id"], job_id, "{older}");
    assert!(
        older_jobs
            .iter()
            .all(|job| job["kind"] == "retrain" && job["store"] == 2),
        "{older}"
    );
    assert!(older["next_before"].is_null(), "{older}");
    assert_eq!(get(&gateway, "/api/jobs?limit=1000").status, 400);
}

#[test]
fn documented_routes_exist_pages_are_served_and_reads_can_be_protected() {
    let Some(url) = support::postgres::fresh_database("gateway_docs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = format!("gateway.token={TOKEN}");
    let (_front, gateway) = start_with(
        dir.path(),
        &url,
        "front",
        "gateway",
        &[],
        &[&token, "gateway.protect_reads=true"],
    );

    // Every documented path and method is routed: another method gets 405, not 404.
    let document = get(&gateway, "/openapi.json");
    assert_eq!(document.status, 200);
    let document = document.json();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{}", paths.len());
    for (path, methods) in paths {
        let concrete = path
            .replace("{store}", "2")
            .replace("{product}", "product_A")
            .replace("{id}", "1");
        let undocumented = if methods.get("delete").is_some() {
            "PATCH"
        } else {
            "DELETE"
        };
        let answer = request_with(&gateway, undocumented, &concrete, &bearer(), None);
        assert_eq!(
            answer.status, 405,
            "{undocumented} {concrete}: {}",
            answer.body
        );
    }
    let nothing = request_with(&gateway, "DELETE", "/api/nothing", &bearer(), None);
    assert_eq!(nothing.status, 404);
    assert!(
        nothing.json()["error"]
            .as_str()
            .unwrap()
            .contains("no such endpoint")
    );

    // The page, its assets and the docs are open; they load nothing from elsewhere.
    for (path, kind, needle) in [
        ("/", "text/html", "/assets/app.js"),
        ("/docs", "text/html", "/assets/docs.js"),
        ("/assets/app.js", "text/javascript", "EventSource"),
        ("/assets/chart.js", "text/javascript", "drawChart"),
        ("/assets/style.css", "text/css", "@media"),
    ] {
        let answer = get(&gateway, path);
        assert_eq!(answer.status, 200, "{path}");
        assert!(
            answer.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        assert!(answer.body.contains(needle), "{path}");
        let elsewhere = answer.body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !elsewhere.contains("https://") && !elsewhere.contains("http://"),
            "{path} fetches from elsewhere"
        );
    }
    assert_eq!(get(&gateway, "/assets/nothing.js").status, 404);

    // With gateway.protect_reads, the API's reads need the token too, in the header; only
    // an event stream (a browser's EventSource cannot set headers) may pass it in the query.
    assert_eq!(get(&gateway, "/api/stores").status, 401);
    assert_eq!(get(&gateway, "/health/livez").status, 200);
    let with_header = request_with(&gateway, "GET", "/api/stores", &bearer(), None);
    assert_eq!(with_header.status, 200, "{}", with_header.body);
    let with_query = get(&gateway, &format!("/api/stores?access_token={TOKEN}"));
    assert_eq!(with_query.status, 401, "{}", with_query.body);
    let stream_by_query = get(
        &gateway,
        &format!("/api/jobs/1/events?access_token={TOKEN}"),
    );
    assert_eq!(stream_by_query.status, 404, "{}", stream_by_query.body);
    assert_eq!(get(&gateway, "/api/jobs/1/events").status, 401);
    // A token in the query only opens reads; a forecast is a read needing it here too.
    let by_query = post(&gateway, &format!("/api/train?access_token={TOKEN}"), "");
    assert_eq!(by_query.status, 401, "{}", by_query.body);
    assert_eq!(post(&gateway, "/api/forecast", "[]").status, 401);
}
