//! Gateway load benchmark: a 3-node cluster of real `storecast node` processes (release
//! build) on this machine, a throwaway PostgreSQL with durable settings and Kaggle's 1,115
//! real stores (`storecast load`, last 5 months), every series trained through `POST
//! /api/train`. All HTTP goes to the one gateway, on node `alpha` (roles gateway, models,
//! scheduler, forecast); `bravo` and `charlie` are model hosts, so two series in three are
//! served across the cluster.
//!
//! Run with `cargo bench --bench gateway` (about 3 minutes); `STORECAST_BENCH_QUICK=1` makes
//! a smoke run (5 s per load, 10 retrains); `STORECAST_BENCH_SET="key=value;..."` adds node
//! settings (to compare configurations under the same load). The load comes from this process: a small
//! keep-alive HTTP/1.1 client on tokio (no load tool of the machine's is needed). It measures:
//! 1. **`GET /api/stores/{store}/products/product_A/forecast`** (the latest batch forecast)
//!    and **`POST /api/forecast`** (one item, the 7 days after the series' last sale, answered
//!    by the series' model actor) at a fixed 2,000 requests/s, open loop: request `i` is due
//!    at `start + i / rate` on one of 16 connections, and its latency runs from when it was
//!    due (so a slow answer also counts the requests queued behind it), for 20 s;
//! 2. the same two at their **highest rate**, closed loop: 32 connections each sending the
//!    next request when the last is answered, for 10 s;
//! 3. **retrain of one store** through the gateway: `POST .../retrain` (202 with a job), then
//!    the job's event stream until its `done` event, for stores that `bravo` or `charlie`
//!    own, one after another. One retrain is what the model actor does: read the series,
//!    5-split walk-forward CV, final fit, registry write, next week's batch forecast.
//!
//! Stores are drawn in a fixed pseudo-random order. Every answer's status is checked; errors
//! are counted and reported. Markdown tables go to stdout, progress to stderr.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storecast::cli::thousands;
use storecast::store::Database;
use support::measure::{millis, percentile};
use support::node::{NodeProcess, free_address};
use support::postgres::{Durability, fresh_database_with};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];
const TOKEN: &str = "bench-token";
const RATE: u64 = 2_000;
const OPEN_CONNECTIONS: usize = 16;
const CLOSED_CONNECTIONS: usize = 32;

struct Plan {
    open_seconds: u64,
    closed_seconds: u64,
    retrains: usize,
}

fn main() {
    let quick = std::env::var("STORECAST_BENCH_QUICK").is_ok_and(|value| value == "1");
    let plan = if quick {
        Plan {
            open_seconds: 5,
            closed_seconds: 5,
            retrains: 10,
        }
    } else {
        Plan {
            open_seconds: 20,
            closed_seconds: 10,
            retrains: 50,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = fresh_database_with("gateway benchmark", Durability::Durable)
        .expect("the gateway benchmark needs PostgreSQL (see the line above)");
    eprintln!("loading {}", rossmann_file().display());
    let load = support::storecast(dir.path())
        .args(["--database-url", &url, "load"])
        .arg(rossmann_file())
        .output()
        .expect("run storecast load");
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );

    let gateway = free_address();
    let addresses: Vec<String> = NAMES.iter().map(|_| free_address()).collect();
    let mut nodes = Vec::new();
    for (index, name) in NAMES.iter().enumerate() {
        let roles = if index == 0 {
            "gateway,models,scheduler,forecast"
        } else {
            "models"
        };
        let settings: Vec<String> = [
            format!("cluster.roles={roles}"),
            format!("gateway.listen={gateway}"),
            format!("gateway.token={TOKEN}"),
            "scheduler.train_all_at=".to_string(),
        ]
        .into_iter()
        .chain(extra_settings())
        .flat_map(|setting| ["--set".to_string(), setting])
        .collect();
        let seeds: Vec<&str> = addresses[..index].iter().map(String::as_str).collect();
        nodes.push(NodeProcess::start(
            dir.path(),
            &["--database-url".to_string(), url.clone()],
            name,
            &addresses[index],
            &seeds,
            &settings,
        ));
    }
    nodes[0].wait_for(&["gateway listening on", &gateway]);
    for node in &mut nodes {
        node.wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    }

    let database = runtime
        .block_on(Database::connect(&support::database_config(&url)))
        .expect("connect to the benchmark database");
    eprintln!("training every series through POST /api/train");
    let started = Instant::now();
    let job = runtime.block_on(async {
        let mut connection = Connection::open(&gateway).await;
        let (status, body) = connection.request(&post("/api/train", "", &gateway)).await;
        assert_eq!(status, 202, "{body}");
        job_id(&body)
    });
    wait_for_job(&gateway, job, Duration::from_secs(600));
    eprintln!("  trained in {:.1} s", started.elapsed().as_secs_f64());
    let tasks = runtime
        .block_on(database.job_tasks(job))
        .expect("the job's tasks");
    let stores: Vec<u32> = tasks.iter().map(|task| task.store.unsigned_abs()).collect();
    let remote: Vec<u32> = tasks
        .iter()
        .filter(|task| task.node.as_deref() != Some("alpha"))
        .map(|task| task.store.unsigned_abs())
        .collect();
    let last_dates = runtime
        .block_on(database.last_sale_dates("product_A", &stores))
        .expect("the last sale dates");
    let order = shuffled(&stores);

    let get_forecast: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> = {
        let (order, gateway) = (order.clone(), gateway.clone());
        Arc::new(move |index| {
            let store = order[index as usize % order.len()];
            get(
                &format!("/api/stores/{store}/products/product_A/forecast"),
                &gateway,
            )
        })
    };
    let post_forecast: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> = {
        let (order, gateway) = (order.clone(), gateway.clone());
        Arc::new(move |index| {
            let store = order[index as usize % order.len()];
            let last = last_dates[&store];
            let body = format!(
                r#"[{{"store_id": {store}, "product_name": "product_A", "begin_date": "{}", "end_date": "{}"}}]"#,
                last + chrono::Days::new(1),
                last + chrono::Days::new(7)
            );
            post("/api/forecast", &body, &gateway)
        })
    };
    let mut rows = Vec::new();
    for (name, make) in [
        (
            "`GET /api/stores/{store}/products/product_A/forecast`",
            &get_forecast,
        ),
        ("`POST /api/forecast` (1 item, 7 days)", &post_forecast),
    ] {
        eprintln!("{name}: {RATE} requests/s for {} s", plan.open_seconds);
        let open = runtime.block_on(open_loop(&gateway, make.clone(), plan.open_seconds));
        eprintln!(
            "{name}: closed loop, {CLOSED_CONNECTIONS} connections, {} s",
            plan.closed_seconds
        );
        let closed = runtime.block_on(closed_loop(&gateway, make.clone(), plan.closed_seconds));
        rows.push((name, open, closed));
    }

    eprintln!(
        "retraining {} stores owned by bravo or charlie",
        plan.retrains
    );
    let retrains: Vec<Duration> = remote
        .iter()
        .take(plan.retrains)
        .map(|store| {
            let started = Instant::now();
            let path = format!("/api/stores/{store}/products/product_A/retrain");
            let body = runtime.block_on(async {
                let mut connection = Connection::open(&gateway).await;
                let (status, body) = connection.request(&post(&path, "", &gateway)).await;
                assert_eq!(status, 202, "{path}: {body}");
                body
            });
            let done = wait_for_job(&gateway, job_id(&body), Duration::from_secs(120));
            assert!(done.contains("\"state\":\"succeeded\""), "{done}");
            started.elapsed()
        })
        .collect();
    let problems: Vec<String> = nodes
        .iter_mut()
        .flat_map(|node| node.log_so_far().to_vec())
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect();
    drop(nodes);

    println!("## Gateway load: 3 nodes, one gateway (measured by `cargo bench --bench gateway`)");
    println!();
    println!("| request | load | requests | answered/s | errors | p50 | p90 | p99 | max |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, open, closed) in &rows {
        for (load, run) in [
            (
                format!(
                    "{} requests/s, open loop, {OPEN_CONNECTIONS} connections",
                    thousands(RATE)
                ),
                open,
            ),
            (
                format!("as fast as answered, {CLOSED_CONNECTIONS} connections"),
                closed,
            ),
        ] {
            let mut sorted = run.latencies.clone();
            sorted.sort();
            println!(
                "| {name} | {load} | {} | {:.0} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
                thousands(sorted.len() as u64),
                sorted.len() as f64 / run.seconds,
                run.errors,
                millis(percentile(&sorted, 50.0)),
                millis(percentile(&sorted, 90.0)),
                millis(percentile(&sorted, 99.0)),
                millis(sorted.last().copied().unwrap_or_default()),
            );
        }
    }
    let mut sorted = retrains.clone();
    sorted.sort();
    println!();
    println!(
        "| retrain of one store on another node (POST, then its event stream to `done`) | count | p50 | p90 | p99 | max |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| gateway on alpha, model actor on bravo or charlie | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
        sorted.len(),
        millis(percentile(&sorted, 50.0)),
        millis(percentile(&sorted, 90.0)),
        millis(percentile(&sorted, 99.0)),
        millis(sorted.last().copied().unwrap_or_default()),
    );
    println!();
    let p99 = |run: &Run| {
        let mut sorted = run.latencies.clone();
        sorted.sort();
        millis(percentile(&sorted, 99.0))
    };
    println!("Targets:");
    for (name, open, _) in &rows {
        let met = p99(open) < 10.0 && open.errors == 0;
        println!(
            "- {name} at {} requests/s, p99 under 10 ms: {} ({:.1} ms, {} errors)",
            thousands(RATE),
            if met { "met" } else { "**missed**" },
            p99(open),
            open.errors
        );
    }
    let p50 = millis(percentile(&sorted, 50.0));
    println!(
        "- retrain of one store under 100 ms p50: {} ({p50:.0} ms)",
        if p50 < 100.0 { "met" } else { "**missed**" }
    );
    println!("- warnings and errors the nodes logged: {}", problems.len());
    for line in problems.iter().take(10) {
        eprintln!("  {line}");
    }
}

/// More node settings from `STORECAST_BENCH_SET` (`key=value;key=value`), to compare
/// configurations with the same load.
fn extra_settings() -> Vec<String> {
    std::env::var("STORECAST_BENCH_SET")
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|setting| !setting.is_empty())
        .map(str::to_string)
        .collect()
}

/// Kaggle's `train.csv.gz`; the benchmark cannot run without it.
fn rossmann_file() -> PathBuf {
    support::rossmann_dir("gateway benchmark")
        .expect("the gateway benchmark needs Kaggle's Rossmann data (see the line above)")
        .join("train.csv.gz")
}

/// The stores in a fixed pseudo-random order (a linear congruential shuffle).
fn shuffled(stores: &[u32]) -> Vec<u32> {
    let mut order = stores.to_vec();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for index in (1..order.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        order.swap(index, (state >> 33) as usize % (index + 1));
    }
    order
}

fn get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

fn post(path: &str, body: &str, host: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn job_id(body: &str) -> i64 {
    let value: serde_json::Value = serde_json::from_str(body).expect("a JSON answer");
    value["job_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no job id in {body}"))
}

/// Follows a job's event stream until its `done` event; returns that event's data.
fn wait_for_job(gateway: &str, job: i64, limit: Duration) -> String {
    let events = support::http::events(gateway, &format!("/api/jobs/{job}/events"), limit);
    let (name, data) = events.last().cloned().expect("events");
    assert_eq!(name, "done", "{events:?}");
    data
}

/// A keep-alive HTTP/1.1 connection that reads answers with a `Content-Length`.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    async fn open(address: &str) -> Connection {
        let stream = TcpStream::connect(address)
            .await
            .expect("connect to the gateway");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Connection {
            reader: BufReader::new(stream),
        }
    }

    async fn request(&mut self, request: &[u8]) -> (u16, String) {
        self.reader
            .get_mut()
            .write_all(request)
            .await
            .expect("send a request");
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .await
            .expect("a status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.expect("a header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await.expect("the body");
        (status, String::from_utf8_lossy(&body).to_string())
    }
}

struct Run {
    latencies: Vec<Duration>,
    errors: usize,
    seconds: f64,
}

/// `RATE` requests/s for `seconds`, request `i` due at `start + i / RATE` on connection
/// `i % OPEN_CONNECTIONS`; latency from when it was due.
async fn open_loop(
    gateway: &str,
    make: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
    seconds: u64,
) -> Run {
    let total = RATE * seconds;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let tasks: Vec<_> = (0..OPEN_CONNECTIONS as u64)
        .map(|lane| {
            let (gateway, make) = (gateway.to_string(), make.clone());
            tokio::spawn(async move {
                let mut connection = Connection::open(&gateway).await;
                let (mut latencies, mut errors) = (Vec::new(), 0);
                let mut index = lane;
                while index < total {
                    let due = start + Duration::from_nanos(index * 1_000_000_000 / RATE);
                    tokio::time::sleep_until(due).await;
                    let (status, _) = connection.request(&make(index)).await;
                    latencies.push(due.elapsed());
                    errors += usize::from(status != 200);
                    index += OPEN_CONNECTIONS as u64;
                }
                (latencies, errors)
            })
        })
        .collect();
    collect(tasks, start.into_std()).await
}

/// `CLOSED_CONNECTIONS` connections each sending the next request when the last is
/// answered, for `seconds`.
async fn closed_loop(
    gateway: &str,
    make: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
    seconds: u64,
) -> Run {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CLOSED_CONNECTIONS as u64)
        .map(|lane| {
            let (gateway, make) = (gateway.to_string(), make.clone());
            tokio::spawn(async move {
                let mut connection = Connection::open(&gateway).await;
                let (mut latencies, mut errors) = (Vec::new(), 0);
                let mut index = lane;
                while Instant::now() < end {
                    let sent = Instant::now();
                    let (status, _) = connection.request(&make(index)).await;
                    latencies.push(sent.elapsed());
                    errors += usize::from(status != 200);
                    index += CLOSED_CONNECTIONS as u64;
                }
                (latencies, errors)
            })
        })
        .collect();
    collect(tasks, start).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
    start: Instant,
) -> Run {
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (lane, lane_errors) = task.await.expect("a load task");
        latencies.extend(lane);
        errors += lane_errors;
    }
    Run {
        latencies,
        errors,
        seconds: start.elapsed().as_secs_f64(),
    }
}
