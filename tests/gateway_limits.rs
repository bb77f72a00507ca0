//! The gateway's HTTP limits: a thousand idle sockets, a slow head and a stalled body do
//! not keep a node from answering, and each is closed within its time limit; one forecast
//! request cannot ask for more than `gateway.forecast_max_days` days in all.
//!
//! Before the limits (axum's `serve`: no header-read or idle timeout, no cap), every idle
//! socket stayed open for as long as its client kept it.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::http::{get, request_with};
use support::node::{NodeProcess, closed_by_peer, free_address, idle_sockets};

const IDLE_SOCKETS: usize = 1000;
const CAP: usize = 300;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Open gateway connections, as the node's metrics say.
fn open_connections(admin: &str) -> usize {
    let metrics = get(admin, "/metrics").body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("storecast_http_connections{listener=\"gateway\"} "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn idle_sockets_slow_heads_and_stalled_bodies_are_closed_and_the_node_answers() {
    let Some(url) = support::postgres::fresh_database("gateway_limits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let last = support::load_synthetic(dir.path(), &url, 2, 60);
    let (gateway, admin) = (free_address(), free_address());
    let settings: Vec<String> = [
        "cluster.roles=gateway,models".to_string(),
        format!("gateway.listen={gateway}"),
        format!("admin.listen={admin}"),
        "gateway.token=limits-token".to_string(),
        format!("gateway.max_connections={CAP}"),
        format!(
            "gateway.header_read_timeout_ms={}",
            HEADER_READ_TIMEOUT.as_millis()
        ),
        format!("gateway.idle_timeout_ms={}", IDLE_TIMEOUT.as_millis()),
        "gateway.forecast_max_days=10".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), url];
    let mut node = NodeProcess::start(
        dir.path(),
        &global,
        "alpha",
        &free_address(),
        &[],
        &settings,
    );
    node.wait_for(&["gateway listening on", &gateway]);
    let began = Instant::now();
    while get(&admin, "/health/readyz").status != 200 {
        assert!(began.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Two items of a week each: 14 days, over the request's budget of 10.
    let item = |store: u32| {
        format!(
            r#"{{"store_id": {store}, "product_name": "product_A", "begin_date": "{}", "end_date": "{}"}}"#,
            last + chrono::Duration::days(1),
            last + chrono::Duration::days(7)
        )
    };
    let too_much = request_with(
        &gateway,
        "POST",
        "/api/forecast",
        &["Authorization: Bearer limits-token".to_string()],
        Some(&format!("[{}, {}]", item(1), item(2))),
    );
    assert_eq!(too_much.status, 400, "{}", too_much.body);
    let error = too_much.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("14 forecast days") && error.contains("gateway.forecast_max_days"),
        "{error}"
    );

    // A head that never ends, and a body that stalls after its head.
    let mut slow_head = std::net::TcpStream::connect(&gateway).unwrap();
    write!(slow_head, "GET /api/stores HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut stalled_body = std::net::TcpStream::connect(&gateway).unwrap();
    write!(
        stalled_body,
        "POST /api/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer limits-token\r\nContent-Length: 100\r\n\r\n[{{\"store_id\""
    )
    .unwrap();
    let opened = Instant::now();
    let mut idle = idle_sockets(&gateway, IDLE_SOCKETS);

    // The admin listener stays ready; the gateway never holds more than its cap.
    let mut most_open = 0;
    let answer = std::thread::scope(|scope| {
        let request = scope.spawn(|| {
            let started = Instant::now();
            let answer = get(&gateway, "/health/livez");
            (answer.status, started.elapsed())
        });
        while !request.is_finished() {
            let ready = get(&admin, "/health/readyz");
            assert_eq!(ready.status, 200, "{}", ready.body);
            most_open = most_open.max(open_connections(&admin));
            std::thread::sleep(Duration::from_millis(100));
        }
        request.join().unwrap()
    });
    assert_eq!(answer.0, 200);
    // Behind a thousand idle sockets and a cap of 300, about four rounds of the header
    // timeout; far less than the idle sockets' own patience.
    assert!(
        answer.1 < Duration::from_secs(30),
        "a normal request waited {:?}",
        answer.1
    );
    assert!(
        most_open <= CAP,
        "{most_open} gateway connections open at once, over the cap of {CAP}"
    );
    assert!(most_open > 0, "the connection gauge never moved");

    // Every idle socket was closed by the node, none later than the rounds allow.
    let patience = Duration::from_secs(60);
    for (index, socket) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_peer(socket, patience.saturating_sub(opened.elapsed())),
            "idle socket {index} still open after {:?}",
            opened.elapsed()
        );
    }
    assert!(closed_by_peer(&mut slow_head, Duration::from_secs(10)));
    assert!(closed_by_peer(&mut stalled_body, Duration::from_secs(10)));
    assert!(
        get(&admin, "/metrics")
            .body
            .contains("storecast_http_connections{listener=\"gateway\"}"),
    );
}
