//! Streaming-ingest benchmark: real `storecast node` processes with the `ingest` role consume a
//! `tansu` broker (its own process, memory engine) into a throwaway PostgreSQL with durable
//! settings (PostgreSQL's defaults: fsync on, synchronous commit).
//!
//! Run with `cargo bench --bench ingest` (release build, about 3 minutes);
//! `STORECAST_BENCH_QUICK=1` makes a smoke run (100,000 rows, two runs, 5 s of latency). It
//! measures:
//! 1. **throughput**: 1,000,000 messages with distinct (store, date) keys (1,115 synthetic
//!    stores x 897 days from today on, `Templates::distinct`) are published into a fresh
//!    broker's topic (6 partitions, the `ingest.partitions` default) BEFORE any node runs; then
//!    1 or 2 ingest nodes start against a fresh database holding the stores' history (the
//!    synthetic generator's 1,115 stores, last 5 months, `load_rows`), with the default
//!    `ingest.batch_rows` and with 5,000 and 100,000. Times are read from the nodes' own logs
//!    (`storecast::actors::ingest=debug`): each batch logs a line once its transaction and its
//!    offsets are committed. "first -> last" runs from the first batch's line to the last one's
//!    and the rate counts the rows landed in that span (all but the first batch's); "start ->
//!    all landed" runs from the node processes' start (process start, database connect and
//!    group join included). A run is done when `SELECT count(*)` of the streamed days holds
//!    every row, or when the group has committed every partition's end (rows still missing
//!    then are looked up: the topic is read again for their offsets, and each batch line
//!    carries the offsets it stood for; a missing row no stored batch stood for never reached
//!    a node, which is what tansu 0.6.0 does when it answers a fetch that starts inside a
//!    record batch with the batches after it, as partitions move between nodes; one a stored
//!    batch stood for was lost by storecast, and ends the bench). `sqlx::query=debug` makes the nodes log each
//!    statement's duration, so each batch's write (COPY, or the upsert) and COMMIT times are
//!    known; meanwhile the node consumes and parses the next batch;
//! 2. **the pieces alone**, to tell where the bottleneck is: the producer's rate into the
//!    broker (`storecast::cli::produce::publish`, no limit); one rdkafka consumer reading every
//!    message without parsing or a database (`storecast::ingest::kafka::consumer`: the node's
//!    settings, another group), and the same with `fetch.wait.max.ms` 500; parsing and batching
//!    in memory (`Batch::add`, one thread); writing pre-parsed batches straight into PostgreSQL
//!    (`Database::write_ingest_batch`, one after the other). CPU seconds of the nodes,
//!    PostgreSQL (the postmaster and its children) and tansu are read from `/proc`;
//! 3. **end-to-end latency at 10,000 rows/s**: first through the broker alone (the paced
//!    producer and one consumer in this process, every message timed), then with one caught-up
//!    node (a warm-up landed) while the bench publishes 10,000 rows/s for 20 s, paced as
//!    `publish` paces, with the default `ingest.batch_ms` and with 50. Every 50th message is a
//!    sample: its (store, date) and the instant of its send call are kept, and a poller asks
//!    the database every 10 ms which sampled rows are there (a primary-key lookup of the
//!    pending ones). A row's latency runs from its send call to the start of the first query
//!    that saw it, so it is at most one poll interval high. Nothing is added to the product or
//!    the messages.
//!
//! `STORECAST_BENCH_KEEP_LOGS=1` keeps every throughput run's node logs in the temporary
//! folder (each batch's line has `store_ms` and `offsets_ms`).
//!
//! The 1-minute load average (`/proc/loadavg`) is recorded before and after each measurement.
//! Everything is printed as Markdown tables at the end; progress goes to stderr. It panics with
//! a message when PostgreSQL or the broker is missing.

#[path = "../tests/support/mod.rs"]
mod support;

use storecast::cli::thousands;
use support::measure::{load_averages, millis, percentile};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Days, NaiveDate};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, TopicPartitionList};
use storecast::cli::load::{load_rows, yesterday};
use storecast::cli::produce::publish;
use storecast::dataset::SalesRow;
use storecast::dataset::synth::{SynthOptions, generate};
use storecast::ingest::batch::Batch;
use storecast::ingest::kafka;
use storecast::ingest::message::{Sale, parse_sale};
use storecast::ingest::producer::Templates;
use storecast::store::Database;
use support::kafka::Broker;
use support::node::{NodeProcess, free_address};
use support::postgres::{Durability, fresh_database_with};

const TOPIC: &str = "sale_rossman_store";
const PRODUCT: &str = "product_A";
const STORES: u32 = 1115;
/// Months of history loaded, as `storecast load` and `storecast produce` keep by default.
const HISTORY_MONTHS: u32 = 5;
/// Partitions of the topic: the `ingest.partitions` default.
const PARTITIONS: u32 = 6;
/// The `ingest.batch_rows` and `ingest.batch_ms` defaults.
const DEFAULT_BATCH_ROWS: usize = 20_000;
const DEFAULT_BATCH_MS: u64 = 250;
/// The `ingest.reject_payload_bytes` default.
const REJECT_PAYLOAD_BYTES: usize = 4096;
/// The nodes' log filter: the default one, plus each ingest batch and each SQL statement
/// with its duration.
const NODE_LOG_LEVEL: &str = "info,ractor=warn,ractor_cluster=warn,\
     ractor_cluster::node::node_session=error,storecast::actors::ingest=debug,sqlx::query=debug";
const LATENCY_RATE: u64 = 10_000;
/// `fetch.wait.max.ms` of the second broker probe: librdkafka's default, for comparison with
/// the node's `kafka::FETCH_WAIT_MAX_MS`.
const PROBE_FETCH_WAIT_MS: u32 = 500;
/// Every this many messages of the latency run is sampled.
const SAMPLE_EVERY: usize = 50;
/// How often the latency poller asks the database.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// Rows published and landed before the latency run, so the node is caught up and warm.
const WARM_UP_ROWS: usize = 2 * STORES as usize;
/// Upper bound of things that normally take seconds: a failure, not a wait.
const PATIENCE: Duration = Duration::from_secs(600);
/// A throughput run with no batch for this long, and rows missing, has stalled.
const STALL_PATIENCE: Duration = Duration::from_secs(60);

/// What to run: the full benchmark, or a quick smoke run.
struct Plan {
    rows: usize,
    runs: Vec<RunSpec>,
    /// Seconds of each broker-only latency probe.
    probe_seconds: u64,
    latency_seconds: u64,
    /// `ingest.batch_ms` of each latency run.
    latency_batch_ms: Vec<u64>,
}

#[derive(Clone, Copy)]
struct RunSpec {
    nodes: usize,
    batch_rows: usize,
}

impl Plan {
    fn from_env() -> Plan {
        let run = |nodes, batch_rows| RunSpec { nodes, batch_rows };
        if std::env::var("STORECAST_BENCH_QUICK").is_ok_and(|value| value == "1") {
            Plan {
                rows: 100_000,
                runs: vec![run(1, DEFAULT_BATCH_ROWS), run(2, DEFAULT_BATCH_ROWS)],
                probe_seconds: 2,
                latency_seconds: 5,
                latency_batch_ms: vec![DEFAULT_BATCH_MS],
            }
        } else {
            Plan {
                rows: 1_000_000,
                runs: vec![
                    run(1, DEFAULT_BATCH_ROWS),
                    run(2, DEFAULT_BATCH_ROWS),
                    run(1, 5_000),
                    run(1, 100_000),
                ],
                probe_seconds: 5,
                latency_seconds: 20,
                latency_batch_ms: vec![DEFAULT_BATCH_MS, 50],
            }
        }
    }
}

fn main() {
    let plan = Plan::from_env();
    let bench_started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the bench's clients");
    let dir = tempfile::tempdir().expect("a temporary folder for the nodes");
    let data = Data::generate(&plan);
    let mut report = Report {
        rows: plan.rows,
        ..Report::default()
    };

    report.parse = Some(parse_only(&data.messages));
    report.write = Some(write_only(&runtime, &data, DEFAULT_BATCH_ROWS));
    for spec in &plan.runs {
        report
            .runs
            .push(throughput(&runtime, dir.path(), &data, *spec));
    }
    report.probes = probes(&runtime, &data, &plan);
    for &batch_ms in &plan.latency_batch_ms {
        report
            .latency
            .push(latency(&runtime, dir.path(), &data, &plan, batch_ms));
    }

    report.print(bench_started.elapsed());
}

/// The history to load and the messages to publish, made once.
struct Data {
    history: Vec<SalesRow>,
    /// The first streamed day: the loaded history ends the day before.
    today: NaiveDate,
    /// Throughput messages: (key, JSON) with distinct (store, date) keys from `today` on.
    messages: Vec<(String, String)>,
    /// Latency messages: the warm-up, then the timed ones, keys distinct from each other.
    latency_messages: Vec<(String, String)>,
}

impl Data {
    fn generate(plan: &Plan) -> Data {
        eprintln!("generating {STORES} synthetic stores' history");
        let history = generate(&SynthOptions {
            stores: STORES,
            ..SynthOptions::default()
        })
        .expect("generate the synthetic history")
        .sales;
        let today = yesterday()
            .checked_add_days(Days::new(1))
            .expect("a tomorrow");
        let templates = Templates::from_rows(&history);
        assert_eq!(templates.stores(), STORES as usize);
        let messages: Vec<(String, String)> =
            templates.distinct(PRODUCT, today, plan.rows).collect();
        assert_eq!(messages.len(), plan.rows);
        let timed = (LATENCY_RATE * plan.latency_seconds.max(plan.probe_seconds)) as usize;
        let latency_messages: Vec<(String, String)> = templates
            .distinct(PRODUCT, today, WARM_UP_ROWS + timed)
            .collect();
        Data {
            history,
            today,
            messages,
            latency_messages,
        }
    }

    /// A fresh database on the durable server, holding the stores' history.
    fn fresh_database(&self, runtime: &tokio::runtime::Runtime) -> Postgres {
        let url = fresh_database_with("ingest benchmark", Durability::Durable)
            .expect("the ingest benchmark needs PostgreSQL (see the line above)");
        let database = runtime
            .block_on(Database::connect(&support::database_config(&url)))
            .expect("connect to the benchmark database");
        let report = runtime
            .block_on(load_rows(
                &database,
                self.history.clone(),
                PRODUCT,
                HISTORY_MONTHS,
                yesterday(),
            ))
            .expect("load the history");
        let server = runtime.block_on(postmaster(&database));
        eprintln!("  fresh database: {} history rows loaded", report.written);
        Postgres {
            url,
            database,
            server,
            today: self.today,
        }
    }
}

/// A benchmark database and its server's main process.
struct Postgres {
    url: String,
    database: Database,
    server: u32,
    today: NaiveDate,
}

impl Postgres {
    /// Streamed rows in the table: those dated `today` or later.
    async fn streamed(&self) -> i64 {
        let Database::Postgres(pool) = &self.database else {
            unreachable!("the benchmark runs on PostgreSQL")
        };
        sqlx::query_scalar("SELECT count(*) FROM sales WHERE product = $1 AND date >= $2")
            .bind(PRODUCT)
            .bind(self.today)
            .fetch_one(pool)
            .await
            .expect("count the streamed rows")
    }

    /// CPU seconds the server (postmaster and every backend and worker) has used so far.
    fn cpu(&self) -> f64 {
        cpu_with_children(self.server)
    }

    fn close(self, runtime: &tokio::runtime::Runtime) {
        runtime.block_on(self.database.close());
    }
}

/// The postmaster: the parent of this connection's backend.
async fn postmaster(database: &Database) -> u32 {
    let Database::Postgres(pool) = database else {
        unreachable!("the benchmark runs on PostgreSQL")
    };
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("ask for the backend's pid");
    stat(backend.unsigned_abs())
        .expect("the backend runs on this machine")
        .ppid
}

fn start_broker() -> Broker {
    Broker::start("ingest benchmark")
        .expect("the ingest benchmark needs the tansu broker (see the line above)")
}

fn create_topic(runtime: &tokio::runtime::Runtime, broker: &Broker) {
    let created = runtime
        .block_on(kafka::ensure_topic(&broker.address, TOPIC, PARTITIONS))
        .expect("create the topic");
    assert!(created, "a fresh broker has no topic yet");
}

/// An ingest node with the production settings, except its roles, broker, log filter and the
/// `extra` settings (`KEY=VALUE`).
fn start_node(
    dir: &Path,
    postgres: &Postgres,
    broker: &Broker,
    name: &str,
    extra: &[String],
) -> Watched {
    let settings: Vec<String> = [
        "cluster.roles=ingest".to_string(),
        format!("ingest.brokers={}", broker.address),
        format!("log.level={NODE_LOG_LEVEL}"),
    ]
    .into_iter()
    .chain(extra.iter().cloned())
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), postgres.url.clone()];
    let node = NodeProcess::start(dir, &global, name, &free_address(), &[], &settings);
    Watched {
        node,
        read: 0,
        events: Vec::new(),
        pending: StatementTimes::default(),
        problems: Vec::new(),
        stored_spans: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Node logs

/// A node and what its log said so far.
struct Watched {
    node: NodeProcess,
    /// Lines of `node.log_so_far()` already read.
    read: usize,
    events: Vec<Event>,
    /// Statement times logged since the last batch line.
    pending: StatementTimes,
    /// WARN and ERROR lines.
    problems: Vec<String>,
    /// The offsets each stored batch stood for: (partition, first, next), from its line.
    stored_spans: Vec<(i32, i64, i64)>,
}

#[derive(Default, Clone, Copy)]
struct StatementTimes {
    insert: f64,
    commit: f64,
}

/// One batch stored and committed, as the node logged it.
#[derive(Clone, Copy)]
struct BatchEvent {
    /// Seconds since the Unix epoch, from the log line's timestamp.
    at: f64,
    rows: u64,
    /// Seconds the batch's INSERT and COMMIT statements took.
    statements: StatementTimes,
}

enum Event {
    Batch(BatchEvent),
    Revoked,
    /// Partitions assigned to the node, and when.
    Assigned(f64, u64),
}

impl Watched {
    /// Reads what the node has logged since the last call.
    fn read(&mut self) {
        if !matches!(self.node.child.try_wait(), Ok(None)) {
            let name = self.node.name.clone();
            panic!(
                "node {name} stopped; its log:\n{}",
                self.node.log_so_far().join("\n")
            );
        }
        let lines = self.node.log_so_far();
        for line in &lines[self.read..] {
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                self.problems.push(line.clone());
            }
            let Some(at) = timestamp(line) else {
                continue;
            };
            if line.contains("ingest batch stored and committed") {
                let rows = field(line, "rows").and_then(|rows| rows.parse::<u64>().ok());
                // COPY is not logged as a statement: the batch's own store time, less its
                // COMMIT, is its write.
                if let Some(store) = field(line, "store_ms").and_then(|ms| ms.parse::<f64>().ok()) {
                    self.pending.insert = (store / 1e3 - self.pending.commit).max(0.0);
                }
                self.events.push(Event::Batch(BatchEvent {
                    at,
                    rows: rows.expect("a batch line has rows=N"),
                    statements: std::mem::take(&mut self.pending),
                }));
                self.stored_spans.extend(offset_spans(line));
            } else if line.contains("ingest partitions revoked") {
                self.events.push(Event::Revoked);
            } else if line.contains("ingest partitions assigned") {
                let partitions = field(line, "partitions").and_then(|n| n.parse::<u64>().ok());
                self.events
                    .push(Event::Assigned(at, partitions.unwrap_or(0)));
            } else if let Some(secs) =
                field(line, "elapsed_secs").and_then(|s| s.parse::<f64>().ok())
            {
                if line.contains("summary=\"INSERT INTO sales")
                    || line.contains("summary=\"COPY sales")
                {
                    self.pending.insert += secs;
                } else if line.contains("summary=\"COMMIT") {
                    self.pending.commit += secs;
                }
            }
        }
        self.read = lines.len();
    }

    fn batches(&self) -> impl Iterator<Item = &BatchEvent> {
        self.events.iter().filter_map(|event| match event {
            Event::Batch(batch) => Some(batch),
            _ => None,
        })
    }

    /// When the node was last assigned partitions, and how many.
    fn assignment(&self) -> Option<(f64, u64)> {
        self.events.iter().rev().find_map(|event| match event {
            Event::Assigned(at, partitions) => Some((*at, *partitions)),
            _ => None,
        })
    }

    fn revocations(&self) -> usize {
        self.events
            .iter()
            .filter(|event| matches!(event, Event::Revoked))
            .count()
    }

    fn rows(&self) -> u64 {
        self.batches().map(|batch| batch.rows).sum()
    }
}

/// The offsets a batch line's span stands for: (partition, first, next) from its
/// `first_offsets=P:FIRST,..` and `next_offsets=P:NEXT,..` fields.
fn offset_spans(line: &str) -> Vec<(i32, i64, i64)> {
    let parse = |name: &str| -> BTreeMap<i32, i64> {
        field(line, name)
            .unwrap_or_default()
            .trim_end_matches(['}', ':'])
            .split(',')
            .filter_map(|pair| {
                let (partition, offset) = pair.split_once(':')?;
                Some((partition.parse().ok()?, offset.parse().ok()?))
            })
            .collect()
    };
    let next = parse("next_offsets");
    parse("first_offsets")
        .into_iter()
        .filter_map(|(partition, first)| Some((partition, first, *next.get(&partition)?)))
        .collect()
}

/// The line's leading RFC 3339 timestamp, as seconds since the Unix epoch.
fn timestamp(line: &str) -> Option<f64> {
    let token = line.split_whitespace().next()?;
    let time = DateTime::parse_from_rfc3339(token).ok()?;
    Some(time.timestamp_micros() as f64 / 1e6)
}

/// The value of ` NAME=VALUE` in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=");
    let start = line.find(&needle)? + needle.len();
    line[start..].split_whitespace().next()
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// The pieces alone

struct PieceRow {
    what: String,
    rows: usize,
    seconds: f64,
    /// (process, CPU seconds) during the measurement.
    cpu: Vec<(&'static str, f64)>,
    load: LoadSpan,
}

/// Parsing and batching every throughput message in memory, one thread.
fn parse_only(messages: &[(String, String)]) -> PieceRow {
    eprintln!("parse only: {} messages", messages.len());
    let known: BTreeSet<u32> = (1..=STORES).collect();
    let load = LoadSpan::start();
    let cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut sales = 0;
    for (chunk_index, chunk) in messages.chunks(DEFAULT_BATCH_ROWS).enumerate() {
        let mut batch = Batch::default();
        for (index, (_, json)) in chunk.iter().enumerate() {
            let offset = (chunk_index * DEFAULT_BATCH_ROWS + index) as i64;
            batch.add(
                (TOPIC, 0, offset),
                Some(json.as_bytes()),
                REJECT_PAYLOAD_BYTES,
                &known,
            );
        }
        sales += std::hint::black_box(&batch).sales.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(sales, messages.len(), "every message parses as a sale");
    PieceRow {
        what: format!(
            "parse + batch in memory (`Batch::add`, one thread, {DEFAULT_BATCH_ROWS}-message batches)"
        ),
        rows: messages.len(),
        seconds,
        cpu: vec![("bench", cpu_seconds(std::process::id()) - cpu_before)],
        load: load.end(),
    }
}

/// Writing the throughput rows, parsed beforehand, straight into a fresh database in
/// batches of `batch_rows`, one after the other, as one node's loop does.
fn write_only(runtime: &tokio::runtime::Runtime, data: &Data, batch_rows: usize) -> PieceRow {
    eprintln!(
        "write only: {} rows in {batch_rows}-row batches",
        data.messages.len()
    );
    let postgres = data.fresh_database(runtime);
    let sales: Vec<Sale> = data
        .messages
        .iter()
        .map(|(_, json)| parse_sale(json.as_bytes()).expect("a good message"))
        .collect();
    let load = LoadSpan::start();
    let (bench_before, server_before) = (cpu_seconds(std::process::id()), postgres.cpu());
    let started = Instant::now();
    for chunk in sales.chunks(batch_rows) {
        let written = runtime
            .block_on(postgres.database.write_ingest_batch(chunk, &[]))
            .expect("write a batch");
        assert_eq!(written.rows, chunk.len() as u64);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = vec![
        ("bench", cpu_seconds(std::process::id()) - bench_before),
        ("PostgreSQL", postgres.cpu() - server_before),
    ];
    let load = load.end();
    assert_eq!(
        runtime.block_on(postgres.streamed()),
        sales.len() as i64,
        "every row written"
    );
    postgres.close(runtime);
    PieceRow {
        what: format!(
            "write only (`Database::write_ingest_batch`, {batch_rows}-row batches, one after the other)"
        ),
        rows: sales.len(),
        seconds,
        cpu,
        load,
    }
}

/// Publishing every throughput message into the fresh broker, as fast as it takes them.
fn produce(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    messages: &[(String, String)],
) -> PieceRow {
    let producer = kafka::producer(&broker.address).expect("a producer");
    let tansu = tansu_pid();
    let load = LoadSpan::start();
    let (bench_before, tansu_before) = (cpu_seconds(std::process::id()), cpu_seconds(tansu));
    let started = Instant::now();
    runtime
        .block_on(publish(&producer, TOPIC, messages, 0))
        .expect("publish the messages");
    let seconds = started.elapsed().as_secs_f64();
    let cpu = vec![
        (
            "bench (producer)",
            cpu_seconds(std::process::id()) - bench_before,
        ),
        ("tansu", cpu_seconds(tansu) - tansu_before),
    ];
    PieceRow {
        what: "produce into tansu (`publish`, no rate limit, every message acknowledged)"
            .to_string(),
        rows: messages.len(),
        seconds,
        cpu,
        load: load.end(),
    }
}

/// One consumer of another group reading every message, without parsing or a database: with
/// the node's settings (`storecast::ingest::kafka::consumer`), or with another `fetch.wait.max.ms`.
/// Its time runs from the first message received to the last (the group join is left out).
/// Also returns each partition's end (last offset + 1).
fn consume_only(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    count: usize,
    fetch_wait_ms: Option<u32>,
) -> (PieceRow, Vec<i64>) {
    // The stream consumer starts a task on the current runtime.
    let _entered = runtime.enter();
    match fetch_wait_ms {
        None => {
            let (consumer, _) = kafka::consumer(
                &broker.address,
                "storecast-bench-raw",
                Duration::from_secs(10),
            )
            .expect("a consumer");
            let what = "consume with one rdkafka consumer (the node's settings; no parsing, no \
                        database)";
            consume_with(runtime, consumer, count, what.to_string())
        }
        Some(ms) => {
            let consumer = probe_consumer(&broker.address, "storecast-bench-raw-fast", Some(ms));
            let what =
                format!("consume as above, but `fetch.wait.max.ms` {ms} (librdkafka's default)");
            consume_with(runtime, consumer, count, what)
        }
    }
}

fn consume_with<C: ConsumerContext + 'static>(
    runtime: &tokio::runtime::Runtime,
    consumer: StreamConsumer<C>,
    count: usize,
    what: String,
) -> (PieceRow, Vec<i64>) {
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let tansu = tansu_pid();
    let load = LoadSpan::start();
    let (bench_before, tansu_before) = (cpu_seconds(std::process::id()), cpu_seconds(tansu));
    let mut ends = vec![0; PARTITIONS as usize];
    let (first, last) = runtime.block_on(async {
        let mut received = 0;
        let mut first = None;
        while received < count {
            match tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await {
                Ok(Ok(message)) => {
                    first.get_or_insert_with(Instant::now);
                    let end = &mut ends[message.partition() as usize];
                    *end = (*end).max(message.offset() + 1);
                    received += 1;
                }
                Ok(Err(error)) => eprintln!("  consumer error: {error}"),
                Err(_) => panic!("the raw consumer got nothing for 60 s after {received} messages"),
            }
        }
        (first.expect("at least one message"), Instant::now())
    });
    let cpu = vec![
        (
            "bench (consumer)",
            cpu_seconds(std::process::id()) - bench_before,
        ),
        ("tansu", cpu_seconds(tansu) - tansu_before),
    ];
    consumer.unsubscribe();
    assert_eq!(
        ends.iter().sum::<i64>(),
        count as i64,
        "the partitions' offsets are dense: {ends:?}"
    );
    let piece = PieceRow {
        what,
        rows: count,
        seconds: (last - first).as_secs_f64(),
        cpu,
        load: load.end(),
    };
    (piece, ends)
}

// ---------------------------------------------------------------------------------------
// 1. throughput

/// A run whose rows stopped landing before all were in, with offsets left to commit.
struct Stall {
    landed: u64,
    /// Per partition: the ingest group's committed offset and the partition's end.
    committed: Vec<(i64, i64)>,
    /// The nodes' logs, saved.
    logs: Vec<PathBuf>,
}

/// Reads the nodes' consumer group's committed offsets, without joining the group.
struct GroupOffsets {
    consumer: BaseConsumer,
}

impl GroupOffsets {
    fn new(broker: &Broker) -> GroupOffsets {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.address)
            .set("broker.address.family", "v4")
            .set("group.id", "storecast-ingest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("an offsets reader");
        GroupOffsets { consumer }
    }

    /// Each partition's committed offset (0 when none).
    fn committed(&self) -> Vec<i64> {
        let mut partitions = TopicPartitionList::new();
        for partition in 0..PARTITIONS as i32 {
            partitions.add_partition(TOPIC, partition);
        }
        let committed = self
            .consumer
            .committed_offsets(partitions, Duration::from_secs(10))
            .expect("read the committed offsets");
        (0..PARTITIONS as i32)
            .map(|partition| {
                committed
                    .find_partition(TOPIC, partition)
                    .and_then(|entry| entry.offset().to_raw())
                    .unwrap_or(0)
                    .max(0)
            })
            .collect()
    }
}

/// Writes the nodes' logs to files that outlive the bench.
fn save_logs(nodes: &mut [Watched], spec: RunSpec) -> Vec<PathBuf> {
    nodes
        .iter_mut()
        .map(|node| {
            static SAVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
            let path = std::env::temp_dir().join(format!(
                "storecast-ingest-bench-{}-{}-{}-nodes-{}.log",
                std::process::id(),
                SAVED.fetch_add(1, Ordering::Relaxed),
                spec.nodes,
                node.node.name
            ));
            let text = node.node.log_so_far().join("\n");
            std::fs::write(&path, text)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
            path
        })
        .collect()
}

/// What one node of a throughput run did.
struct NodeShare {
    name: String,
    /// Rows of its batch lines (a replayed batch counts again).
    rows: u64,
    /// Its last assignment: seconds after the nodes started, and partitions.
    assignment: Option<(f64, u64)>,
}

struct ThroughputRun {
    spec: RunSpec,
    stall: Option<Stall>,
    /// Rows that never landed although the group committed every offset, and what the
    /// evidence says of them (never storecast's loss: that ends the bench).
    skipped: Option<(u64, Missing)>,
    rows: usize,
    produce: PieceRow,
    consume: PieceRow,
    consume_fast: PieceRow,
    /// Node start to the first batch line.
    start_to_first: f64,
    /// First batch line to the last.
    first_to_last: f64,
    /// Rows landed after the first batch.
    rows_after_first: u64,
    node_rows: Vec<NodeShare>,
    revocations: usize,
    batches: Vec<BatchEvent>,
    cpu: Vec<(&'static str, f64)>,
    load: LoadSpan,
    problems: Vec<String>,
}

impl ThroughputRun {
    fn rate(&self) -> f64 {
        self.rows_after_first as f64 / self.first_to_last.max(1e-9)
    }

    fn start_to_last(&self) -> f64 {
        self.start_to_first + self.first_to_last
    }

    fn label(&self) -> String {
        format!(
            "{} node{}, batch_rows {}",
            self.spec.nodes,
            if self.spec.nodes == 1 { "" } else { "s" },
            self.spec.batch_rows
        )
    }
}

fn throughput(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    data: &Data,
    spec: RunSpec,
) -> ThroughputRun {
    eprintln!(
        "throughput: {} node(s), batch_rows {}, {} rows",
        spec.nodes,
        spec.batch_rows,
        data.messages.len()
    );
    let postgres = data.fresh_database(runtime);
    let broker = start_broker();
    create_topic(runtime, &broker);
    let produce = produce(runtime, &broker, &data.messages);
    eprintln!(
        "  produced in {:.2} s ({:.0} rows/s)",
        produce.seconds,
        produce.rows as f64 / produce.seconds
    );
    let (consume, ends) = consume_only(runtime, &broker, data.messages.len(), None);
    let (consume_fast, _) = consume_only(
        runtime,
        &broker,
        data.messages.len(),
        Some(PROBE_FETCH_WAIT_MS),
    );
    eprintln!(
        "  consumed (no database) in {:.2} s ({:.0} rows/s); with fetch.wait.max.ms \
         {PROBE_FETCH_WAIT_MS} in {:.2} s",
        consume.seconds,
        consume.rows as f64 / consume.seconds,
        consume_fast.seconds
    );
    let offsets = GroupOffsets::new(&broker);

    let tansu = tansu_pid();
    let load = LoadSpan::start();
    let (server_before, tansu_before) = (postgres.cpu(), cpu_seconds(tansu));
    let settings = if spec.batch_rows == DEFAULT_BATCH_ROWS {
        Vec::new()
    } else {
        vec![format!("ingest.batch_rows={}", spec.batch_rows)]
    };
    let started = epoch_now();
    let mut nodes: Vec<Watched> = ["ingest-a", "ingest-b"][..spec.nodes]
        .iter()
        .map(|name| start_node(dir, &postgres, &broker, name, &settings))
        .collect();
    // Done when every row is in the table, or when the group has committed every partition's
    // end (then any row missing was skipped by the broker: see `Skipped`).
    let expected = data.messages.len() as u64;
    let waiting = Instant::now();
    // Rows the batch lines add up to, and when that last grew.
    let mut progress = (0, Instant::now());
    let mut next_check = Instant::now();
    let mut stall = None;
    let mut skipped = None;
    loop {
        nodes.iter_mut().for_each(Watched::read);
        let logged: u64 = nodes.iter().map(Watched::rows).sum();
        if logged != progress.0 {
            progress = (logged, Instant::now());
        }
        let quiet = progress.1.elapsed();
        if (logged >= expected || quiet >= Duration::from_secs(1)) && Instant::now() >= next_check {
            let landed = runtime.block_on(postgres.streamed()) as u64;
            assert!(landed <= expected, "{landed} rows, more than sent");
            if landed == expected {
                break;
            }
            let committed = offsets.committed();
            if committed == ends {
                let spans: Vec<(i32, i64, i64)> = nodes
                    .iter()
                    .flat_map(|node| node.stored_spans.iter().copied())
                    .collect();
                let missing = missing_rows(runtime, &broker, &postgres, data, &spans);
                eprintln!(
                    "  every offset committed, but {} rows missing: {missing}",
                    expected - landed
                );
                if let Missing::LostByStorecast { .. } = missing {
                    panic!(
                        "rows lost by storecast ({} nodes, batch_rows {}): {missing}",
                        spec.nodes, spec.batch_rows
                    );
                }
                skipped = Some((expected - landed, missing));
                break;
            }
            if quiet >= STALL_PATIENCE {
                eprintln!(
                    "  STALLED: {landed} of {expected} rows landed and no batch for {} s",
                    quiet.as_secs()
                );
                stall = Some(Stall {
                    landed,
                    committed: committed.into_iter().zip(ends.iter().copied()).collect(),
                    logs: save_logs(&mut nodes, spec),
                });
                break;
            }
            next_check = Instant::now() + Duration::from_millis(500);
        }
        assert!(
            waiting.elapsed() < PATIENCE,
            "only {logged} of {expected} rows logged within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes.iter_mut().for_each(Watched::read);
    if std::env::var_os("STORECAST_BENCH_KEEP_LOGS").is_some() {
        for path in save_logs(&mut nodes, spec) {
            eprintln!("  node log kept: {}", path.display());
        }
    }
    let mut cpu: Vec<(&'static str, f64)> = Vec::new();
    let node_cpu: f64 = nodes
        .iter()
        .map(|node| cpu_seconds(node.node.child.id()))
        .sum();
    cpu.push(("nodes", node_cpu));
    cpu.push(("PostgreSQL", postgres.cpu() - server_before));
    cpu.push(("tansu", cpu_seconds(tansu) - tansu_before));
    let load = load.end();

    let mut batches: Vec<BatchEvent> = nodes
        .iter()
        .flat_map(|node| node.batches().copied())
        .collect();
    batches.sort_by(|a, b| a.at.total_cmp(&b.at));
    let first = batches.first().expect("at least one batch");
    let last = batches.last().expect("at least one batch");
    let run = ThroughputRun {
        spec,
        stall,
        skipped,
        rows: data.messages.len(),
        produce,
        consume,
        consume_fast,
        start_to_first: first.at - started,
        first_to_last: last.at - first.at,
        rows_after_first: batches[1..].iter().map(|batch| batch.rows).sum(),
        node_rows: nodes
            .iter()
            .map(|node| NodeShare {
                name: node.node.name.clone(),
                rows: node.rows(),
                assignment: node.assignment().map(|(at, count)| (at - started, count)),
            })
            .collect(),
        revocations: nodes.iter().map(Watched::revocations).sum(),
        batches,
        cpu,
        load,
        problems: nodes
            .iter()
            .flat_map(|node| node.problems.clone())
            .collect(),
    };
    eprintln!(
        "  landed: first -> last {:.2} s, {:.0} rows/s",
        run.first_to_last,
        run.rate()
    );
    drop(nodes);
    drop(broker);
    postgres.close(runtime);
    run
}

/// Why rows are missing after the group committed every partition's end, as far as the
/// evidence goes: each missing row's offset is found by reading the topic again, then looked
/// up in the offset spans of the batches the nodes stored.
enum Missing {
    /// None of them was in a batch a node stored: the consumers never received them,
    /// though the group committed past them. That is what tansu 0.6.0's mid-batch fetch does.
    NeverDelivered {
        rows: usize,
        partitions: BTreeSet<i32>,
    },
    /// Some were in a batch a node logged as stored and committed: storecast lost them.
    LostByStorecast { rows: usize, example: (i32, i64) },
    /// Some are not in the topic at all (or the batch lines carry no offsets): no cause is
    /// claimed.
    Unexplained { rows: usize, not_in_topic: usize },
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::NeverDelivered { rows, partitions } => write!(
                f,
                "none of the {rows} was in a batch a node stored (partitions {partitions:?}): \
                 the broker never delivered them, though the group committed past them"
            ),
            Missing::LostByStorecast { rows, example } => write!(
                f,
                "{rows} were in batches a node logged as stored and committed (e.g. partition \
                 {} offset {}): lost by storecast, not by the broker",
                example.0, example.1
            ),
            Missing::Unexplained { rows, not_in_topic } => write!(
                f,
                "{rows} missing, cause not established ({not_in_topic} not found in the topic)"
            ),
        }
    }
}

/// Finds the streamed messages whose row is not in the table, their offsets (reading the
/// topic from the start with a group of its own), and whether a stored batch covered them.
fn missing_rows(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    postgres: &Postgres,
    data: &Data,
    stored_spans: &[(i32, i64, i64)],
) -> Missing {
    let landed: BTreeSet<(i32, NaiveDate)> = runtime.block_on(async {
        let Database::Postgres(pool) = &postgres.database else {
            unreachable!("the benchmark runs on PostgreSQL")
        };
        sqlx::query_as("SELECT store, date FROM sales WHERE product = $1 AND date >= $2")
            .bind(PRODUCT)
            .bind(postgres.today)
            .fetch_all(pool)
            .await
            .expect("read the streamed rows")
            .into_iter()
            .collect()
    });
    let missing: BTreeSet<&str> = data
        .messages
        .iter()
        .filter(|(_, json)| {
            let sale = parse_sale(json.as_bytes()).expect("the bench's own messages parse");
            !landed.contains(&(sale.row.store as i32, sale.row.date))
        })
        .map(|(_, json)| json.as_str())
        .collect();
    let rows = missing.len();
    let _entered = runtime.enter();
    let group = format!("storecast-bench-missing-{}", epoch_now());
    let (consumer, _) = kafka::consumer(&broker.address, &group, Duration::from_secs(10))
        .expect("a consumer for the missing rows");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut found = Vec::new();
    runtime.block_on(async {
        for _ in 0..data.messages.len() {
            match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
                Ok(Ok(message)) => {
                    let payload = message.payload().unwrap_or_default();
                    if std::str::from_utf8(payload).is_ok_and(|json| missing.contains(json)) {
                        found.push((message.partition(), message.offset()));
                    }
                }
                Ok(Err(error)) => eprintln!("  consumer error: {error}"),
                Err(_) => break,
            }
        }
    });
    if found.len() < rows || stored_spans.is_empty() {
        return Missing::Unexplained {
            rows,
            not_in_topic: rows - found.len().min(rows),
        };
    }
    let covered: Vec<(i32, i64)> = found
        .iter()
        .copied()
        .filter(|(partition, offset)| {
            stored_spans.iter().any(|(span_partition, first, next)| {
                span_partition == partition && (*first..*next).contains(offset)
            })
        })
        .collect();
    match covered.first() {
        Some(example) => Missing::LostByStorecast {
            rows: covered.len(),
            example: *example,
        },
        None => Missing::NeverDelivered {
            rows,
            partitions: found.iter().map(|(partition, _)| *partition).collect(),
        },
    }
}

// ---------------------------------------------------------------------------------------
// 2. latency

/// Latency through the broker alone: the paced producer and one consumer in this process,
/// no node and no database.
struct ProbeRun {
    /// `fetch.wait.max.ms` of the consumer; `None`: the node's (`kafka::FETCH_WAIT_MAX_MS`).
    fetch_wait_ms: Option<u32>,
    /// Send call -> received by the consumer, for every message.
    latencies: Vec<Duration>,
    load: LoadSpan,
}

struct LatencyRun {
    batch_ms: u64,
    rate: u64,
    seconds: u64,
    sent: usize,
    /// Send call -> first poll that saw the row, for each sample.
    latencies: Vec<Duration>,
    /// Send call -> broker acknowledgement, for each sample.
    acks: Vec<Duration>,
    /// Largest delay of a send call behind its schedule.
    behind: Duration,
    batches: Vec<BatchEvent>,
    cpu: Vec<(&'static str, f64)>,
    load: LoadSpan,
    problems: Vec<String>,
}

struct Sample {
    key: (u32, NaiveDate),
    sent: Instant,
}

#[derive(Default)]
struct Shared {
    /// Samples sent and not yet taken by their reader.
    sent: Mutex<Vec<Sample>>,
    acks: Mutex<Vec<Duration>>,
    done: AtomicBool,
}

impl Shared {
    fn take_samples(&self) -> Vec<Sample> {
        std::mem::take(&mut *self.sent.lock().expect("samples"))
    }
}

/// The broker's own share of the latency: the plan's probe seconds at `LATENCY_RATE` into
/// topics of their own on a fresh broker, read by one consumer with the node's settings, then
/// by one with `fetch.wait.max.ms` = `PROBE_FETCH_WAIT_MS`.
fn probes(runtime: &tokio::runtime::Runtime, data: &Data, plan: &Plan) -> Vec<ProbeRun> {
    let count = (LATENCY_RATE * plan.probe_seconds) as usize;
    let messages = &data.latency_messages[..count];
    let broker = start_broker();
    let runs = [None, Some(PROBE_FETCH_WAIT_MS)]
        .into_iter()
        .enumerate()
        .map(|(number, fetch_wait_ms)| {
            eprintln!(
                "broker latency probe: {count} rows at {LATENCY_RATE} rows/s, fetch.wait.max.ms {}",
                fetch_wait_ms.unwrap_or(kafka::FETCH_WAIT_MAX_MS)
            );
            probe(
                runtime,
                &broker,
                &format!("latency_probe_{number}"),
                messages,
                fetch_wait_ms,
            )
        })
        .collect();
    drop(broker);
    runs
}

fn probe(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    topic: &str,
    messages: &[(String, String)],
    fetch_wait_ms: Option<u32>,
) -> ProbeRun {
    // The stream consumer starts a task on the current runtime.
    let _entered = runtime.enter();
    let created = runtime
        .block_on(kafka::ensure_topic(&broker.address, topic, PARTITIONS))
        .expect("create the probe topic");
    assert!(created, "a new probe topic");
    let consumer = Arc::new(probe_consumer(
        &broker.address,
        "storecast-bench-probe",
        fetch_wait_ms,
    ));
    consumer.subscribe(&[topic]).expect("subscribe");
    let expected = messages.len();
    let receiver = runtime.spawn({
        let consumer = Arc::clone(&consumer);
        async move {
            let mut received = Vec::with_capacity(expected);
            while received.len() < expected {
                match tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await {
                    Ok(Ok(message)) => {
                        let at = Instant::now();
                        let sale = parse_sale(message.payload().unwrap_or_default())
                            .expect("a good message");
                        received.push(((sale.row.store, sale.row.date), at));
                    }
                    Ok(Err(error)) => eprintln!("  consumer error: {error}"),
                    Err(_) => panic!(
                        "the probe consumer got nothing for 60 s after {} messages",
                        received.len()
                    ),
                }
            }
            received
        }
    });
    let waiting = Instant::now();
    while consumer.assignment().map_or(0, |assigned| assigned.count()) < PARTITIONS as usize {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "the probe consumer was never assigned the topic's partitions"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its first fetches are under way.
    std::thread::sleep(Duration::from_secs(1));

    let producer = kafka::producer(&broker.address).expect("a producer");
    let shared = Arc::new(Shared::default());
    let load = LoadSpan::start();
    runtime.block_on(send_paced(&producer, topic, messages, 1, &shared));
    let received = runtime.block_on(receiver).expect("the probe consumer ran");
    let load = load.end();
    consumer.unsubscribe();
    let sent: std::collections::HashMap<(u32, NaiveDate), Instant> = shared
        .take_samples()
        .into_iter()
        .map(|sample| (sample.key, sample.sent))
        .collect();
    let latencies = received
        .into_iter()
        .map(|(key, at)| at.saturating_duration_since(sent[&key]))
        .collect();
    ProbeRun {
        fetch_wait_ms,
        latencies,
        load,
    }
}

/// A consumer with the settings of `storecast::ingest::kafka::consumer` (group member, manual
/// commits, earliest, 10 s session), with `fetch.wait.max.ms` changed when given.
fn probe_consumer(brokers: &str, group: &str, fetch_wait_ms: Option<u32>) -> StreamConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .set("log_level", "4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2500")
        .set(
            "fetch.wait.max.ms",
            fetch_wait_ms
                .unwrap_or(kafka::FETCH_WAIT_MAX_MS)
                .to_string(),
        )
        .set(
            "fetch.queue.backoff.ms",
            kafka::FETCH_QUEUE_BACKOFF_MS.to_string(),
        );
    config.create().expect("a probe consumer")
}

/// One caught-up node with `ingest.batch_ms` = `batch_ms`, and the bench publishing at
/// `LATENCY_RATE` for the plan's seconds while it polls for sampled rows.
fn latency(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    data: &Data,
    plan: &Plan,
    batch_ms: u64,
) -> LatencyRun {
    let timed = &data.latency_messages[WARM_UP_ROWS..];
    eprintln!(
        "latency: one node, batch_ms {batch_ms}, {} rows at {LATENCY_RATE} rows/s",
        timed.len()
    );
    let postgres = Arc::new(data.fresh_database(runtime));
    let broker = start_broker();
    create_topic(runtime, &broker);
    let settings = if batch_ms == DEFAULT_BATCH_MS {
        Vec::new()
    } else {
        vec![format!("ingest.batch_ms={batch_ms}")]
    };
    let mut node = start_node(dir, &postgres, &broker, "ingest-a", &settings);
    node.node.wait_for(&["ingest partitions assigned"]);

    // Warm-up: the node consumes, writes and commits before the timed run.
    let producer = kafka::producer(&broker.address).expect("a producer");
    runtime
        .block_on(publish(
            &producer,
            TOPIC,
            &data.latency_messages[..WARM_UP_ROWS],
            0,
        ))
        .expect("publish the warm-up");
    let waiting = Instant::now();
    while runtime.block_on(postgres.streamed()) < WARM_UP_ROWS as i64 {
        assert!(waiting.elapsed() < PATIENCE, "the warm-up never landed");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    node.read();
    let warm_up_events = node.events.len();

    let tansu = tansu_pid();
    let load = LoadSpan::start();
    let (server_before, tansu_before, node_before) = (
        postgres.cpu(),
        cpu_seconds(tansu),
        cpu_seconds(node.node.child.id()),
    );
    let shared = Arc::new(Shared::default());
    let poller = runtime.spawn(poll_samples(Arc::clone(&postgres), Arc::clone(&shared)));
    let behind = runtime.block_on(send_paced(&producer, TOPIC, timed, SAMPLE_EVERY, &shared));
    shared.done.store(true, Ordering::Release);
    let latencies = runtime.block_on(poller).expect("the poller ran");
    let total = (WARM_UP_ROWS + timed.len()) as i64;
    let waiting = Instant::now();
    while runtime.block_on(postgres.streamed()) < total {
        assert!(
            waiting.elapsed() < PATIENCE,
            "the timed rows never all landed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = vec![
        ("node", cpu_seconds(node.node.child.id()) - node_before),
        ("PostgreSQL", postgres.cpu() - server_before),
        ("tansu", cpu_seconds(tansu) - tansu_before),
    ];
    let load = load.end();
    node.read();
    let batches = node.events[warm_up_events..]
        .iter()
        .filter_map(|event| match event {
            Event::Batch(batch) => Some(*batch),
            _ => None,
        })
        .collect();
    let acks = std::mem::take(&mut *shared.acks.lock().expect("acks"));
    let problems = node.problems.clone();
    drop(node);
    drop(producer);
    drop(broker);
    if let Ok(postgres) = Arc::try_unwrap(postgres) {
        postgres.close(runtime);
    }
    LatencyRun {
        batch_ms,
        rate: LATENCY_RATE,
        seconds: plan.latency_seconds,
        sent: timed.len(),
        latencies,
        acks,
        behind,
        batches,
        cpu,
        load,
        problems,
    }
}

/// Sends `messages` to `topic` at `LATENCY_RATE` (message i at i / rate seconds, as `publish`
/// paces), recording every `sample_every`-th as a sample (with its acknowledgement time), and
/// waits for every acknowledgement. Returns the largest delay of a send behind its schedule.
async fn send_paced(
    producer: &FutureProducer,
    topic: &str,
    messages: &[(String, String)],
    sample_every: usize,
    shared: &Arc<Shared>,
) -> Duration {
    let started = Instant::now();
    let mut behind = Duration::ZERO;
    let mut pending = Vec::with_capacity(messages.len());
    for (index, (key, value)) in messages.iter().enumerate() {
        let due = started + Duration::from_secs_f64(index as f64 / LATENCY_RATE as f64);
        tokio::time::sleep_until(due.into()).await;
        let mut record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(value.as_str());
        let (delivery, sent) = loop {
            let sent = Instant::now();
            match producer.send_result(record) {
                Ok(delivery) => break (delivery, sent),
                Err((_, returned)) => {
                    record = returned;
                    producer.poll(Timeout::After(Duration::from_millis(10)));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        behind = behind.max(sent.saturating_duration_since(due));
        if index % sample_every == 0 {
            let sale = parse_sale(value.as_bytes()).expect("a good message");
            shared.sent.lock().expect("samples").push(Sample {
                key: (sale.row.store, sale.row.date),
                sent,
            });
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                if let Ok(Ok(_)) = delivery.await {
                    shared.acks.lock().expect("acks").push(sent.elapsed());
                }
            });
        } else {
            pending.push(delivery);
        }
    }
    for delivery in pending {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => panic!("the broker refused a message: {error}"),
            Err(_) => panic!("the producer dropped a message"),
        }
    }
    producer
        .flush(Timeout::After(Duration::from_secs(30)))
        .expect("flush the producer");
    behind
}

/// Asks the database every `POLL_EVERY` which sampled rows landed, until every sample has;
/// returns their latencies.
async fn poll_samples(postgres: Arc<Postgres>, shared: Arc<Shared>) -> Vec<Duration> {
    let Database::Postgres(pool) = &postgres.database else {
        unreachable!("the benchmark runs on PostgreSQL")
    };
    let mut waiting: Vec<Sample> = Vec::new();
    let mut latencies = Vec::new();
    let mut done_at: Option<Instant> = None;
    let mut ticks = tokio::time::interval(POLL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let done = shared.done.load(Ordering::Acquire);
        waiting.append(&mut shared.take_samples());
        if waiting.is_empty() {
            if done {
                return latencies;
            }
            continue;
        }
        if done {
            let since = *done_at.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "{} sampled rows never landed",
                waiting.len()
            );
        }
        let stores: Vec<i32> = waiting.iter().map(|sample| sample.key.0 as i32).collect();
        let dates: Vec<NaiveDate> = waiting.iter().map(|sample| sample.key.1).collect();
        let asked = Instant::now();
        let landed: Vec<(i32, NaiveDate)> = sqlx::query_as(
            "SELECT k.store, k.date FROM UNNEST($1::int4[], $2::date[]) AS k(store, date) \
             WHERE EXISTS (SELECT 1 FROM sales s \
                           WHERE s.store = k.store AND s.product = $3 AND s.date = k.date)",
        )
        .bind(&stores)
        .bind(&dates)
        .bind(PRODUCT)
        .fetch_all(pool)
        .await
        .expect("look for the sampled rows");
        if landed.is_empty() {
            continue;
        }
        let landed: BTreeSet<(u32, NaiveDate)> = landed
            .into_iter()
            .map(|(store, date)| (store.unsigned_abs(), date))
            .collect();
        waiting.retain(|sample| {
            if landed.contains(&sample.key) {
                latencies.push(asked.saturating_duration_since(sample.sent));
                false
            } else {
                true
            }
        });
    }
}

// ---------------------------------------------------------------------------------------
// /proc

struct Stat {
    ppid: u32,
    comm: String,
    /// utime + stime, in clock ticks.
    own: u64,
    /// cutime + cstime: children waited for.
    children: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    // Fields after the command name start at field 3, the state: ppid is field 4, utime,
    // stime, cutime and cstime fields 14 to 17.
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    let number = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(number(1)?).ok()?,
        comm,
        own: number(11)? + number(12)?,
        children: number(13)? + number(14)?,
    })
}

fn ticks_to_seconds(ticks: u64) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second as f64
}

/// CPU time (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    stat(pid).map_or(0.0, |stat| ticks_to_seconds(stat.own))
}

fn processes() -> Vec<(u32, Stat)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// CPU time of a process, of its children that ended, and of its living children.
fn cpu_with_children(pid: u32) -> f64 {
    let Some(parent) = stat(pid) else {
        return 0.0;
    };
    let living: u64 = processes()
        .into_iter()
        .filter(|(_, child)| child.ppid == pid)
        .map(|(_, child)| child.own)
        .sum();
    ticks_to_seconds(parent.own + parent.children + living)
}

/// The broker this bench started: its child process named `tansu`.
fn tansu_pid() -> u32 {
    let me = std::process::id();
    processes()
        .into_iter()
        .find(|(_, process)| process.ppid == me && process.comm == "tansu")
        .map(|(pid, _)| pid)
        .expect("the broker runs as a child of the bench")
}

/// The 1-minute load average before and after a measurement.
#[derive(Clone, Copy, Default)]
struct LoadSpan {
    before: f64,
    after: f64,
}

impl LoadSpan {
    fn start() -> LoadSpan {
        let before = load_average();
        LoadSpan {
            before,
            after: before,
        }
    }

    fn end(self) -> LoadSpan {
        LoadSpan {
            after: load_average(),
            ..self
        }
    }
}

impl std::fmt::Display for LoadSpan {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:.2} -> {:.2}", self.before, self.after)
    }
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------
// Report

#[derive(Default)]
struct Report {
    rows: usize,
    parse: Option<PieceRow>,
    write: Option<PieceRow>,
    runs: Vec<ThroughputRun>,
    probes: Vec<ProbeRun>,
    latency: Vec<LatencyRun>,
}

impl Report {
    fn print(&self, took: Duration) {
        println!();
        println!("## Streaming ingest benchmark");
        println!();
        println!(
            "{} messages with distinct keys ({STORES} synthetic stores), topic of {PARTITIONS} \
             partitions on tansu (memory engine), PostgreSQL with durable settings, node \
             processes on this machine ({} cores); load average at the end {}; whole run \
             {:.0} s.",
            thousands(self.rows as u64),
            std::thread::available_parallelism().map_or(0, |cores| cores.get()),
            load_averages(),
            took.as_secs_f64()
        );
        self.print_throughput();
        self.print_pieces();
        self.print_breakdown();
        self.print_latency();
        self.print_targets();
        self.print_problems();
    }

    fn print_throughput(&self) {
        println!();
        println!("### throughput: a pre-filled topic into PostgreSQL");
        println!();
        println!(
            "| ingest nodes | `ingest.batch_rows` | rows | first -> last batch committed | rows/s | node start -> first batch | node start -> all landed (rows/s) | rows written per node (its last assignment: partitions, from node start +) | rebalances | load 1 min before -> after |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |");
        for run in &self.runs {
            let per_node: Vec<String> = run
                .node_rows
                .iter()
                .map(|node| {
                    let (name, rows) = (&node.name, thousands(node.rows));
                    match node.assignment {
                        Some((at, partitions)) => {
                            format!("{name} {rows} ({partitions} from +{at:.1} s)")
                        }
                        None => format!("{name} {rows} (none)"),
                    }
                })
                .collect();
            println!(
                "| {} | {} | {} | {:.2} s | **{}** | {:.2} s | {:.2} s ({}) | {} | {} | {} |",
                run.spec.nodes,
                thousands(run.spec.batch_rows as u64),
                thousands(run.rows as u64),
                run.first_to_last,
                thousands(run.rate() as u64),
                run.start_to_first,
                run.start_to_last(),
                thousands((run.rows as f64 / run.start_to_last()) as u64),
                per_node.join(", "),
                run.revocations,
                run.load
            );
        }
        let never_delivered =
            |run: &&ThroughputRun| matches!(run.skipped, Some((_, Missing::NeverDelivered { .. })));
        let skipped: Vec<String> = self
            .runs
            .iter()
            .filter(never_delivered)
            .filter_map(|run| {
                let (rows, _) = run.skipped.as_ref()?;
                Some(format!(
                    "{} rows in the {} run",
                    thousands(*rows),
                    run.label()
                ))
            })
            .collect();
        for run in self.runs.iter().filter(|run| !never_delivered(run)) {
            if let Some((rows, missing)) = &run.skipped {
                println!();
                println!(
                    "**Rows missing** in the {} run: {}; {missing}.",
                    run.label(),
                    thousands(*rows)
                );
            }
        }
        if !skipped.is_empty() {
            println!();
            println!(
                "**Rows lost to the test broker**: {}. The group committed every partition's end, \
                 but these rows never reached a node: each is in the topic, at an offset no \
                 batch a node stored stood for (checked by reading the topic again). tansu 0.6.0 answers a fetch that starts \
                 inside a record batch with the batches after it, skipping the rest of that batch \
                 (the producer packs thousands of messages per batch here); a consumer resumes \
                 mid-batch when partitions move, i.e. after a rebalance. A real Kafka broker \
                 returns the whole batch and the client skips the records before its offset.",
                skipped.join(", ")
            );
        }
        for run in &self.runs {
            if let Some(stall) = &run.stall {
                let logs: Vec<String> = stall
                    .logs
                    .iter()
                    .map(|path| format!("`{}`", path.display()))
                    .collect();
                println!();
                let offsets: Vec<String> = stall
                    .committed
                    .iter()
                    .enumerate()
                    .map(|(partition, (committed, end))| {
                        format!("{partition}: {committed} / {end}")
                    })
                    .collect();
                println!(
                    "**The {} run stalled**: {} of {} rows landed, then no batch for {} s (the \
                     figures above stop at its last batch). The group's committed offset / end \
                     per partition: {}. Node logs: {}.",
                    run.label(),
                    thousands(stall.landed),
                    thousands(run.rows as u64),
                    STALL_PATIENCE.as_secs(),
                    offsets.join(", "),
                    logs.join(", ")
                );
            }
        }
        println!();
        println!(
            "Times come from the nodes' logs: a batch logs a line once its transaction and its \
             offsets are committed. rows/s counts the rows landed after the first batch over \
             first -> last; every run checks `SELECT count(*)` of the streamed days at the end."
        );
    }

    fn print_pieces(&self) {
        println!();
        println!(
            "### the pieces alone ({} rows each)",
            thousands(self.rows as u64)
        );
        println!();
        println!(
            "| stage | runs | time, median | rows/s, median (range) | CPU s (median run) | load 1 min before -> after (median run) |"
        );
        println!("| --- | ---: | ---: | ---: | --- | --- |");
        let produce: Vec<&PieceRow> = self.runs.iter().map(|run| &run.produce).collect();
        let consume: Vec<&PieceRow> = self.runs.iter().map(|run| &run.consume).collect();
        let consume_fast: Vec<&PieceRow> = self.runs.iter().map(|run| &run.consume_fast).collect();
        let alone: Vec<Vec<&PieceRow>> = [&self.parse, &self.write]
            .into_iter()
            .flatten()
            .map(|piece| vec![piece])
            .collect();
        for pieces in [produce, consume, consume_fast].into_iter().chain(alone) {
            if pieces.is_empty() {
                continue;
            }
            let mut sorted = pieces.clone();
            sorted.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
            let median = sorted[(sorted.len() - 1) / 2];
            let rate = |piece: &PieceRow| piece.rows as f64 / piece.seconds.max(1e-9);
            let range = if sorted.len() > 1 {
                format!(
                    " ({}-{})",
                    thousands(rate(sorted[sorted.len() - 1]) as u64),
                    thousands(rate(sorted[0]) as u64)
                )
            } else {
                String::new()
            };
            println!(
                "| {} | {} | {:.2} s | {}{range} | {} | {} |",
                median.what,
                sorted.len(),
                median.seconds,
                thousands(rate(median) as u64),
                cpu_text(&median.cpu),
                median.load
            );
        }
        println!();
        println!(
            "Producing and consuming were measured on each throughput run's fresh broker, before \
             its nodes started; the consumer's time runs from its first message to its last."
        );
    }

    fn print_breakdown(&self) {
        println!();
        println!("### where a node's time goes (its log: each batch's INSERT and COMMIT)");
        println!();
        println!(
            "| run | batches | rows per batch, median | write (COPY or upsert) per batch, median | COMMIT per batch, median | write + COMMIT, all batches | their share of first -> last (per node) | CPU s during the run |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        for run in &self.runs {
            let rows: Vec<u64> = run.batches.iter().map(|batch| batch.rows).collect();
            let insert: Vec<f64> = run.batches.iter().map(|b| b.statements.insert).collect();
            let commit: Vec<f64> = run.batches.iter().map(|b| b.statements.commit).collect();
            let after_first: f64 = run.batches[1..]
                .iter()
                .map(|b| b.statements.insert + b.statements.commit)
                .sum();
            let share = after_first / (run.first_to_last * run.spec.nodes as f64).max(1e-9);
            println!(
                "| {} | {} | {} | {:.0} ms | {:.0} ms | {:.2} s | {:.0}% | {} |",
                run.label(),
                run.batches.len(),
                thousands(median_u64(&rows)),
                median_f64(&insert) * 1e3,
                median_f64(&commit) * 1e3,
                insert.iter().sum::<f64>() + commit.iter().sum::<f64>(),
                share * 100.0,
                cpu_text(&run.cpu)
            );
        }
        println!();
        println!(
            "A node gathers the next batch (consume + parse) while it writes one (COPY, or the \
             upsert when a row is already stored, then COMMIT) and commits its offsets."
        );
    }

    fn print_latency(&self) {
        if !self.probes.is_empty() {
            println!();
            println!(
                "### latency through the broker alone: send call -> received by one consumer (no node, no database)"
            );
            println!();
            println!(
                "| consumer `fetch.wait.max.ms` | messages at {} rows/s | p50 | p90 | p99 | max | load 1 min before -> after |",
                thousands(LATENCY_RATE)
            );
            println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
            for probe in &self.probes {
                let mut sorted = probe.latencies.clone();
                sorted.sort();
                println!(
                    "| {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} |",
                    probe.fetch_wait_ms.map_or(
                        format!("{} (as the node runs)", kafka::FETCH_WAIT_MAX_MS),
                        |ms| format!("{ms} (librdkafka's default)")
                    ),
                    thousands(sorted.len() as u64),
                    millis(percentile(&sorted, 50.0)),
                    millis(percentile(&sorted, 90.0)),
                    millis(percentile(&sorted, 99.0)),
                    millis(sorted.last().copied().unwrap_or_default()),
                    probe.load
                );
            }
        }
        if self.latency.is_empty() {
            return;
        }
        let first = &self.latency[0];
        println!();
        println!(
            "### latency: one caught-up node, {} rows/s for {} s ({} rows), send call -> row visible in PostgreSQL",
            thousands(first.rate),
            first.seconds,
            thousands(first.sent as u64)
        );
        println!();
        println!(
            "| `ingest.batch_ms` | samples (every {SAMPLE_EVERY}th) | p50 | p90 | p99 | max | send -> broker ack, p50 / p99 | batches | rows per batch, median | between batch commits, median | write + COMMIT per batch, p50 / max | CPU s | load 1 min before -> after |"
        );
        println!(
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
        );
        for run in &self.latency {
            let mut latencies = run.latencies.clone();
            latencies.sort();
            let mut acks = run.acks.clone();
            acks.sort();
            let mut statements: Vec<f64> = run
                .batches
                .iter()
                .map(|batch| batch.statements.insert + batch.statements.commit)
                .collect();
            statements.sort_by(f64::total_cmp);
            let rows: Vec<u64> = run.batches.iter().map(|batch| batch.rows).collect();
            let gaps: Vec<f64> = run
                .batches
                .windows(2)
                .map(|pair| pair[1].at - pair[0].at)
                .collect();
            println!(
                "| {} | {} | {:.0} ms | {:.0} ms | **{:.0} ms** | {:.0} ms | {:.1} / {:.1} ms | {} | {} | {:.0} ms | {:.0} / {:.0} ms | {} | {} |",
                run.batch_ms,
                thousands(latencies.len() as u64),
                millis(percentile(&latencies, 50.0)),
                millis(percentile(&latencies, 90.0)),
                millis(percentile(&latencies, 99.0)),
                millis(latencies.last().copied().unwrap_or_default()),
                millis(percentile(&acks, 50.0)),
                millis(percentile(&acks, 99.0)),
                run.batches.len(),
                thousands(median_u64(&rows)),
                median_f64(&gaps) * 1e3,
                median_f64(&statements) * 1e3,
                statements.last().copied().unwrap_or_default() * 1e3,
                cpu_text(&run.cpu),
                run.load
            );
        }
        let behind = self
            .latency
            .iter()
            .map(|run| run.behind)
            .max()
            .unwrap_or_default();
        println!();
        println!(
            "Latency runs from the producer's send call to the start of the first 10 ms poll \
             that found the row (a primary-key lookup of the pending samples), so each figure is \
             at most one poll interval high. The producer ran at most {:.1} ms behind its \
             schedule.",
            millis(behind)
        );
    }

    fn print_targets(&self) {
        println!();
        println!("### targets");
        println!();
        if let Some(run) = self
            .runs
            .iter()
            .find(|run| run.spec.nodes == 1 && run.spec.batch_rows == DEFAULT_BATCH_ROWS)
        {
            let rate = run.rate();
            println!(
                "- at least 200,000 rows/s into PostgreSQL on one node (default settings): {} ({} rows/s)",
                met(rate >= 200_000.0),
                thousands(rate as u64)
            );
        }
        if let Some(best) = self
            .runs
            .iter()
            .filter(|run| run.spec.nodes == 1)
            .max_by(|a, b| a.rate().total_cmp(&b.rate()))
        {
            println!(
                "- best one-node run: {} ({} rows/s)",
                best.label(),
                thousands(best.rate() as u64)
            );
        }
        for run in &self.latency {
            let mut sorted = run.latencies.clone();
            sorted.sort();
            let p99 = percentile(&sorted, 99.0);
            println!(
                "- p99 under 1 s at {} rows/s, `ingest.batch_ms` {}: {} (p99 {:.0} ms)",
                thousands(run.rate),
                run.batch_ms,
                met(p99 < Duration::from_secs(1)),
                millis(p99)
            );
        }
    }

    fn print_problems(&self) {
        let mut lines: Vec<&String> = self.runs.iter().flat_map(|run| &run.problems).collect();
        lines.extend(self.latency.iter().flat_map(|run| &run.problems));
        println!();
        println!("Node log lines at WARN or ERROR: {}.", lines.len());
        for line in lines.iter().take(10) {
            println!("- `{}`", line.chars().take(200).collect::<String>());
        }
    }
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "**missed**" }
}

fn cpu_text(cpu: &[(&str, f64)]) -> String {
    cpu.iter()
        .map(|(name, seconds)| format!("{name} {seconds:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median_u64(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

fn median_f64(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}
