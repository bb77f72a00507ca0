//! Logs a machine can read, and no secret in them, from a real node process:
//! - with `log.format=json` every log line is a JSON object, and a line logged inside a span
//!   carries its `trace_id` and `span_id` (the access log line of a request that arrived with
//!   a `traceparent` carries that trace);
//! - `RUST_LOG`, when set, is the filter instead of `log.level`;
//! - the token a node makes for itself is shown once, as the page's address, and appears in no
//!   log line; neither does a token sent in `Authorization` or `?access_token=`.

mod support;

use std::time::{Duration, Instant};

use support::http::{get, request_with};
use support::node::{NodeProcess, free_address};

#[test]
fn json_lines_carry_trace_ids_and_no_secret_is_logged() {
    let Some(url) = support::postgres::fresh_database("logs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    support::load_synthetic(dir.path(), &url, 2, 300);
    let gateway = free_address();
    let settings: Vec<String> = [
        "log.format=json".to_string(),
        format!("gateway.listen={gateway}"),
        "scheduler.train_all_at=".to_string(),
        "train.profile=reference".to_string(),
        "profiles.reference.yearly_order=0".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), url.clone()];
    // Debug everywhere but the chatty cluster transport: more chances to leak a secret.
    let filter = "debug,ractor=warn,ractor_cluster=warn,sqlx=warn";
    let mut node = NodeProcess::start_with_env(
        dir.path(),
        &global,
        "solo",
        &free_address(),
        &[],
        &settings,
        &[("RUST_LOG", filter)],
    );
    node.wait_for(&["cluster view: 1 members [solo]"]);
    let page_line = node
        .wait_for_line("web page: http://")
        .expect("the node shows the page's address with its token");
    let token = page_line
        .split("#token=")
        .nth(1)
        .expect("the address holds the token")
        .trim()
        .to_string();
    assert_eq!(token.len(), 32, "{page_line}");

    // A retrain that arrives inside a trace, with the token in the header.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let headers = vec![
        format!("Authorization: Bearer {token}"),
        format!("traceparent: 00-{trace_id}-b7ad6b7169203331-01"),
    ];
    let started = request_with(
        &gateway,
        "POST",
        "/api/stores/1/products/product_A/retrain",
        &headers,
        None,
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let job = started.json()["job_id"].as_i64().unwrap();
    let begun = Instant::now();
    while get(&gateway, &format!("/api/jobs/{job}")).json()["state"] != "succeeded" {
        assert!(begun.elapsed() < Duration::from_secs(120), "job {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The token in a query, where only the event stream takes it, is not logged either.
    let _ = get(
        &gateway,
        &format!("/api/jobs/{job}/events?access_token={token}"),
    );
    node.wait_for(&["\"status\":200", "/api/jobs/{id}/events"]);
    node.signal(libc::SIGTERM);
    node.wait_for(&["\"message\":\"stopped\""]);
    let lines: Vec<String> = node.log_so_far().to_vec();

    // Every line but the page's address is a JSON object.
    let mut objects = Vec::new();
    for line in &lines {
        if line == &page_line {
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON object ({error}): {line}"));
        objects.push(object);
    }
    // RUST_LOG set the filter: debug lines of storecast's own are there.
    assert!(
        objects.iter().any(|object| object["level"] == "DEBUG"
            && object["target"]
                .as_str()
                .is_some_and(|target| target.starts_with("storecast"))),
        "no debug line: RUST_LOG was not honoured"
    );
    // The retrain's access log line is in the caller's trace, with the request's span.
    let access = objects
        .iter()
        .find(|object| {
            object["target"] == "storecast::web::access"
                && object["span"]["http.route"] == "/api/stores/{store}/products/{product}/retrain"
        })
        .unwrap_or_else(|| panic!("no access log line for the retrain in {lines:#?}"));
    assert_eq!(access["trace_id"], trace_id, "{access:?}");
    assert_eq!(
        access["span_id"].as_str().map(str::len),
        Some(16),
        "{access:?}"
    );
    assert_eq!(access["status"], 202, "{access:?}");
    assert!(access.contains_key("latency_ms"), "{access:?}");
    assert!(
        access["span"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{access:?}"
    );
    // A line outside any span carries no trace id.
    assert!(
        objects
            .iter()
            .any(|object| object["message"] == "stopped" && !object.contains_key("trace_id"))
    );
    // The token is in no log line: not the generated one, not as sent by the callers.
    let leaks: Vec<&String> = lines
        .iter()
        .filter(|line| *line != &page_line && line.contains(&token))
        .collect();
    assert!(leaks.is_empty(), "the token was logged: {leaks:#?}");
    assert!(
        !lines
            .iter()
            .any(|line| line.to_lowercase().contains("authorization")),
        "a header was logged"
    );
}

#[test]
fn a_configured_token_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = free_address();
    let token = "configured-token-0123456789";
    let settings: Vec<String> = [
        format!("gateway.listen={gateway}"),
        "cluster.roles=gateway,models".to_string(),
        "scheduler.train_all_at=".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let mut node = NodeProcess::start_with_env(
        dir.path(),
        &[],
        "solo",
        &free_address(),
        &[],
        &settings,
        &[
            (
                "RUST_LOG",
                "debug,ractor=warn,ractor_cluster=warn,sqlx=warn",
            ),
            ("STORECAST_GATEWAY_TOKEN", token),
        ],
    );
    let page_line = node.wait_for_line("web page: http://").unwrap();
    assert!(!page_line.contains("#token="), "{page_line}");
    let answer = request_with(
        &gateway,
        "POST",
        "/api/stores/1/products/product_A/retrain",
        &[format!("Authorization: Bearer {token}")],
        None,
    );
    // Accepted as the token; the series does not exist.
    assert_eq!(answer.status, 404, "{}", answer.body);
    // The access log line of that request is the last thing waited for.
    node.wait_for(&["/retrain"]);
    let leaks: Vec<&String> = node
        .log_so_far()
        .iter()
        .filter(|line| line.contains(token))
        .collect();
    assert!(leaks.is_empty(), "the token was logged: {leaks:#?}");
}
