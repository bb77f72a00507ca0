//! Cluster benchmark: real `storecast node` processes on this machine, a throwaway PostgreSQL
//! (durable settings) and Kaggle's 1,115 real stores (`storecast load`, last 5 months by default).
//!
//! Run with `cargo bench --bench cluster` (release build); `STORECAST_BENCH_QUICK=1` makes a
//! smoke run (1 and 3 nodes, 2 failover tries, 5 retrains); `STORECAST_BENCH_MONTHS=N` loads
//! the last N months instead of 5 (0: all the history, as the `default` model uses in
//! production). It measures:
//! 1. **train-all** of the 1,115 stores with the `default` profile on 1, 2 and 3 nodes, each
//!    on a fresh database (every series trains version 1): the job's own time (its row's
//!    `started_at` to `finished_at`), the client's wall time (`storecast cluster train-all`
//!    start to exit), series/s (each series is 6 fits: 5 CV splits and the final fit), CPU
//!    seconds each node process spent during the job (utime + stime from `/proc/PID/stat`),
//!    and how many series each node trained;
//! 2. **failover**: with 3 nodes and every series trained, one node fails and the bench times
//!    how long until a series it owned answers a forecast through a survivor. The bench
//!    process joins the cluster itself as a role-less client node (as `storecast cluster`
//!    does), so no process start-up is timed: it reads its member view, routes to the owner
//!    placement gives, and asks with a 300 ms timeout until an answer with a version comes
//!    back. Two failures: `kill -9` (the kernel closes the node's connections, so peers see
//!    it leave at once) and `kill -STOP` (a hung node: connections stay open and only the
//!    failure detector notices). The failed node is restarted and placement allowed to
//!    settle between tries; the victim rotates, and at least 2 nodes are always up. First
//!    with the production failure-detector settings (heartbeat 500 ms, timeout 5000 ms),
//!    then with the tests' (200 ms, 2500 ms), nodes and client alike;
//! 3. **cross-node retrain**: sequential `Train` requests from the in-process client for one
//!    store owned by a node other than the one the client dialled. One retrain is what the
//!    model actor does: read the series, 5-split walk-forward CV, final fit, registry write
//!    (a new version), batch forecast of the next 7 days written to `forecast_results`.
//!
//! Everything is printed as Markdown tables at the end; progress goes to stderr. It panics
//! with a message when PostgreSQL or the data set is missing.

#[path = "../tests/support/mod.rs"]
mod support;

use support::measure::{load_averages, millis, percentile};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef, pg};
use storecast::actors::model::{ForecastRequest, TrainOutcome, TrainRequest};
use storecast::actors::model_host::{HostedRequest, ModelHostMessage, group};
use storecast::actors::node::{NodeMessage, NodeSupervisor};
use storecast::cli::node::node_settings;
use storecast::cluster::member::{MemberView, Role};
use storecast::cluster::placement::{DEFAULT_LOAD_FACTOR, Placement, SeriesKey};
use storecast::config::{Config, Override, Sources};
use storecast::store::Database;
use support::node::{NodeProcess, free_address};
use support::postgres::{Durability, fresh_database_with};

const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];
const PRODUCT: &str = "product_A";
const STORES: usize = 1115;
/// How long one forecast attempt may take during failover before the client asks again.
const FORECAST_TIMEOUT_MS: u64 = 300;
/// Upper bounds of things that normally take seconds: a failure, not a wait.
const SETTLE_PATIENCE: Duration = Duration::from_secs(120);
const FAILOVER_PATIENCE: Duration = Duration::from_secs(60);
const RETRAIN_TIMEOUT_MS: u64 = 120_000;

/// Months of history loaded (`storecast load --months`): `STORECAST_BENCH_MONTHS`, else 5 (the
/// reference loader's).
fn history_months() -> u32 {
    match std::env::var("STORECAST_BENCH_MONTHS") {
        Ok(value) => value.parse().unwrap_or_else(|_| {
            panic!("STORECAST_BENCH_MONTHS={value:?} is not a number of months")
        }),
        Err(_) => 5,
    }
}

/// The history the bench loads, in words.
fn history_words() -> String {
    match history_months() {
        0 => "all the history".to_string(),
        months => format!("last {months} months"),
    }
}

/// What to run: the full benchmark, or a quick smoke run.
struct Plan {
    node_counts: Vec<usize>,
    failover_tries: usize,
    retrains: usize,
}

impl Plan {
    fn from_env() -> Plan {
        if std::env::var("STORECAST_BENCH_QUICK").is_ok_and(|value| value == "1") {
            Plan {
                node_counts: vec![1, 3],
                failover_tries: 2,
                retrains: 5,
            }
        } else {
            Plan {
                node_counts: vec![1, 2, 3],
                failover_tries: 10,
                retrains: 50,
            }
        }
    }
}

/// Failure-detector settings of the nodes and of the in-process client.
#[derive(Clone, Copy)]
struct Detector {
    heartbeat_ms: u64,
    failure_timeout_ms: u64,
    label: &'static str,
}

const PRODUCTION: Detector = Detector {
    heartbeat_ms: 500,
    failure_timeout_ms: 5000,
    label: "production defaults",
};
const TEST_SETTINGS: Detector = Detector {
    heartbeat_ms: 200,
    failure_timeout_ms: 2500,
    label: "test settings",
};

impl Detector {
    /// `--set` flags for node processes: these settings, and no weekly job.
    fn node_flags(self) -> Vec<String> {
        [
            format!("cluster.heartbeat_ms={}", self.heartbeat_ms),
            format!("cluster.failure_timeout_ms={}", self.failure_timeout_ms),
            "scheduler.train_all_at=".to_string(),
        ]
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting])
        .collect()
    }

    fn describe(self) -> String {
        format!(
            "heartbeat {} ms, timeout {} ms ({})",
            self.heartbeat_ms, self.failure_timeout_ms, self.label
        )
    }
}

fn main() {
    let plan = Plan::from_env();
    let bench_started = Instant::now();
    let data = rossmann_file();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the in-process client");
    let dir = tempfile::tempdir().expect("a temporary folder for the nodes");
    let mut report = Report::default();

    let mut three_nodes = None;
    for &count in &plan.node_counts {
        let mut cluster = Cluster::start(&runtime, dir.path(), &data, count, PRODUCTION);
        report.train_all.push(train_all(&runtime, &cluster));
        if count == 3 {
            three_nodes = Some(cluster);
        } else {
            report.collect_logs(&mut cluster);
        }
    }
    let mut cluster = three_nodes.expect("the plan includes a 3-node run");

    client_phase(&runtime, &mut cluster, &plan, &mut report);
    eprintln!(
        "restarting the 3 nodes with the {}",
        TEST_SETTINGS.describe()
    );
    cluster.restart_all(TEST_SETTINGS);
    client_phase(&runtime, &mut cluster, &plan, &mut report);
    report.collect_logs(&mut cluster);
    drop(cluster);

    report.print(bench_started.elapsed());
}

/// Joins the 3-node cluster in-process and runs both failovers with the cluster's detector
/// settings, then (the first time only) the cross-node retrains.
fn client_phase(
    runtime: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
    plan: &Plan,
    report: &mut Report,
) {
    let client = runtime.block_on(Client::join(&cluster.addresses[0], cluster.detector));
    runtime.block_on(client.wait_settled(&cluster.stores, &NAMES));
    for failure in [Failure::Kill, Failure::Hang] {
        let run = failover(runtime, cluster, &client, failure, plan.failover_tries);
        report.failover.push(run);
    }
    if report.retrain.is_none() {
        report.retrain = Some(runtime.block_on(retrains(&client, cluster, plan.retrains)));
    }
    runtime.block_on(client.leave());
}

/// Kaggle's `train.csv.gz`; the benchmark cannot run without it.
fn rossmann_file() -> PathBuf {
    support::rossmann_dir("cluster benchmark")
        .expect("the cluster benchmark needs Kaggle's Rossmann data (see the line above)")
        .join("train.csv.gz")
}

/// Node processes sharing one database with the real data loaded.
struct Cluster {
    dir: PathBuf,
    url: String,
    detector: Detector,
    addresses: Vec<String>,
    nodes: Vec<NodeProcess>,
    database: Database,
    stores: Vec<u32>,
    /// WARN and ERROR lines of node processes, by node name.
    problems: Vec<(String, String)>,
}

impl Cluster {
    /// A fresh database with the data loaded, and `count` nodes that see each other, with
    /// their series placed.
    fn start(
        runtime: &tokio::runtime::Runtime,
        dir: &Path,
        data: &Path,
        count: usize,
        detector: Detector,
    ) -> Cluster {
        let url = fresh_database_with("cluster benchmark", Durability::Durable)
            .expect("the cluster benchmark needs PostgreSQL (see the line above)");
        eprintln!("{count} node(s): loading {}", data.display());
        succeeded(
            "storecast load",
            &support::storecast(dir)
                .args(["--database-url", &url, "load", "--months"])
                .arg(history_months().to_string())
                .arg(data)
                .output()
                .expect("run storecast load"),
        );
        let database = runtime
            .block_on(Database::connect(&support::database_config(&url)))
            .expect("connect to the benchmark database");
        let stores = runtime
            .block_on(database.stores_with_sales(PRODUCT))
            .expect("list the stores");
        assert_eq!(stores.len(), STORES, "stores loaded from the data set");
        let addresses: Vec<String> = NAMES[..count].iter().map(|_| free_address()).collect();
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            url,
            detector,
            addresses,
            nodes: Vec::new(),
            database,
            stores,
            problems: Vec::new(),
        };
        cluster.start_nodes();
        let client = runtime.block_on(Client::join(&cluster.addresses[0], detector));
        runtime.block_on(client.wait_settled(&cluster.stores, cluster.names()));
        runtime.block_on(client.leave());
        cluster
    }

    fn names(&self) -> &'static [&'static str] {
        &NAMES[..self.addresses.len()]
    }

    /// Starts every node, each seeded with the one before, and waits until all see all.
    fn start_nodes(&mut self) {
        for index in 0..self.addresses.len() {
            let seeds: Vec<&str> = self.addresses[..index].iter().map(String::as_str).collect();
            let node = self.node(index, &seeds[seeds.len().saturating_sub(1)..]);
            self.nodes.push(node);
        }
        let full_view = format!(
            "cluster view: {} members [{}]",
            self.names().len(),
            self.names().join(", ")
        );
        for node in &mut self.nodes {
            node.wait_for(&[&full_view]);
        }
    }

    fn node(&self, index: usize, seeds: &[&str]) -> NodeProcess {
        NodeProcess::start(
            &self.dir,
            &["--database-url".to_string(), self.url.clone()],
            NAMES[index],
            &self.addresses[index],
            seeds,
            &self.detector.node_flags(),
        )
    }

    /// Keeps the warnings and errors node `index` has logged so far.
    fn keep_problems(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let name = node.name.clone();
        for line in node.log_so_far() {
            if line.contains("WARN") || line.contains("ERROR") {
                self.problems.push((name.clone(), line.clone()));
            }
        }
    }

    /// Starts node `index` again, seeded with the others.
    fn restart(&mut self, index: usize) {
        self.keep_problems(index);
        let seeds: Vec<&str> = (0..self.addresses.len())
            .filter(|other| *other != index)
            .map(|other| self.addresses[other].as_str())
            .collect();
        self.nodes[index] = self.node(index, &seeds);
    }

    /// Stops every node and starts them all again with other detector settings.
    fn restart_all(&mut self, detector: Detector) {
        (0..self.nodes.len()).for_each(|index| self.keep_problems(index));
        self.nodes.clear();
        self.detector = detector;
        self.start_nodes();
    }
}

/// The bench process as a role-less member of the cluster, like `storecast cluster`.
struct Client {
    node: ActorRef<NodeMessage>,
    handle: tokio::task::JoinHandle<()>,
    dialled: &'static str,
}

impl Client {
    /// Joins through `seed` (always the first node, `alpha`).
    async fn join(seed: &str, detector: Detector) -> Client {
        static JOINS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let number = JOINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let flags = vec![
            Override::new("cluster.roles", ""),
            Override::new("cluster.listen", "127.0.0.1:0"),
            Override::new("cluster.name", format!("bench-client-{number}")),
            Override::new("cluster.seeds", seed),
            Override::new("cluster.heartbeat_ms", detector.heartbeat_ms.to_string()),
            Override::new(
                "cluster.failure_timeout_ms",
                detector.failure_timeout_ms.to_string(),
            ),
        ];
        let sources = Sources {
            file: None,
            env: Vec::new(),
            flags,
        };
        let config = Config::load(&sources).expect("the in-process client's configuration");
        let settings = node_settings(&config, 0).expect("the client's node settings");
        let (node, handle) = Actor::spawn(None, NodeSupervisor, settings)
            .await
            .expect("start the in-process client node");
        Client {
            node,
            handle,
            dialled: NAMES[0],
        }
    }

    async fn view(&self) -> MemberView {
        ractor::call_t!(self.node, NodeMessage::View, 2_000)
            .expect("the in-process client node answers its view")
    }

    /// Waits until the view holds exactly `names` as model hosts and each runs the series
    /// placement gives it.
    async fn wait_settled(&self, stores: &[u32], names: &[&str]) {
        let expected = expected_counts(stores, names);
        let started = Instant::now();
        loop {
            let view = self.view().await;
            let hosts: Vec<&str> = view
                .with_role(Role::Models)
                .into_iter()
                .map(|member| member.name.as_str())
                .collect();
            let active = hosted_counts(names).await;
            if hosts == names && active == expected {
                return;
            }
            assert!(
                started.elapsed() < SETTLE_PATIENCE,
                "placement never settled: view {view}, expected {expected:?}, hosted {active:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn leave(self) {
        self.node.stop(Some("benchmark done".to_string()));
        let _ = self.handle.await;
    }
}

fn keys(stores: &[u32]) -> Vec<SeriesKey> {
    stores
        .iter()
        .map(|store| SeriesKey::new(*store, PRODUCT))
        .collect()
}

/// Series per node as placement over `names` gives them.
fn expected_counts(stores: &[u32], names: &[&str]) -> BTreeMap<String, usize> {
    let hosts: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let placement = Placement::compute(&keys(stores), &hosts, DEFAULT_LOAD_FACTOR);
    let mut counts = BTreeMap::new();
    for key in keys(stores) {
        let owner = placement.owner(&key).expect("every series has an owner");
        *counts.entry(owner.to_string()).or_default() += 1;
    }
    counts
}

/// Stores placement over all three nodes gives to `node`.
fn owned_by(stores: &[u32], node: &str) -> Vec<u32> {
    let hosts: Vec<String> = NAMES.iter().map(|name| name.to_string()).collect();
    let placement = Placement::compute(&keys(stores), &hosts, DEFAULT_LOAD_FACTOR);
    stores
        .iter()
        .copied()
        .filter(|store| placement.owner(&SeriesKey::new(*store, PRODUCT)) == Some(node))
        .collect()
}

/// Series each node's model host runs, asked over the cluster.
async fn hosted_counts(names: &[&str]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        let Some(host) = model_host(name) else {
            continue;
        };
        let request = HostedRequest::default();
        if let Ok(hosted) = ractor::call_t!(host, ModelHostMessage::Hosted, 2_000, request) {
            counts.insert(name.to_string(), hosted.series.len());
        }
    }
    counts
}

fn model_host(node: &str) -> Option<ActorRef<ModelHostMessage>> {
    pg::get_members(&group(node))
        .into_iter()
        .next()
        .map(Into::into)
}

/// The owner of `key` by placement over `view`'s model hosts, and its model host. The
/// benchmark routes by itself (as the cluster client does) so that each attempt of a
/// failover can have its own short time limit.
fn owner_host(
    view: &MemberView,
    keys: &[SeriesKey],
    key: &SeriesKey,
) -> Option<(String, ActorRef<ModelHostMessage>)> {
    let hosts: Vec<String> = view
        .with_role(Role::Models)
        .into_iter()
        .map(|member| member.name.clone())
        .collect();
    let owner = Placement::compute(keys, &hosts, DEFAULT_LOAD_FACTOR)
        .owner(key)?
        .to_string();
    let host = model_host(&owner)?;
    Some((owner, host))
}

fn forecast_request(store: u32) -> ForecastRequest {
    ForecastRequest {
        store,
        product: PRODUCT.to_string(),
        days: 7,
        traceparent: String::new(),
    }
}

fn train_request(store: u32) -> TrainRequest {
    TrainRequest {
        store,
        product: PRODUCT.to_string(),
        job: None,
        traceparent: String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// 1. train-all

struct TrainAllRow {
    nodes: usize,
    job_seconds: f64,
    client_seconds: f64,
    cpu_seconds: Vec<(String, f64)>,
    trained_by: BTreeMap<String, usize>,
}

fn train_all(runtime: &tokio::runtime::Runtime, cluster: &Cluster) -> TrainAllRow {
    eprintln!("{} node(s): train-all", cluster.nodes.len());
    let cpu_before = cpu_per_node(cluster);
    let started = Instant::now();
    let output = support::storecast(&cluster.dir)
        .args(["--database-url", &cluster.url])
        .args(cluster.detector.node_flags())
        .args(["cluster", "train-all", "--seeds", &cluster.addresses[0]])
        .output()
        .expect("run storecast cluster train-all");
    let client_seconds = started.elapsed().as_secs_f64();
    let stdout = succeeded("storecast cluster train-all", &output);
    let cpu_after = cpu_per_node(cluster);
    let job_id = job_id(&stdout);

    let job = runtime
        .block_on(cluster.database.job(job_id))
        .expect("read the job")
        .expect("the job exists");
    assert_eq!(
        (job.state.as_str(), job.succeeded, job.failed),
        ("succeeded", STORES as i64, 0),
        "train-all job: {job:?}"
    );
    let (Some(job_started), Some(job_finished)) = (job.started_at, job.finished_at) else {
        panic!("the finished job has no start or finish time: {job:?}");
    };
    let tasks = runtime
        .block_on(cluster.database.job_tasks(job_id))
        .expect("read the job's tasks");
    let mut trained_by = BTreeMap::new();
    for task in tasks {
        assert_eq!(task.model_version, Some(1), "a fresh database: {task:?}");
        let node = task.node.expect("a finished task names its node");
        *trained_by.entry(node).or_default() += 1;
    }
    let cpu_seconds = cpu_before
        .into_iter()
        .zip(cpu_after)
        .map(|((name, before), (_, after))| (name, after - before))
        .collect();
    TrainAllRow {
        nodes: cluster.nodes.len(),
        job_seconds: (job_finished - job_started).as_seconds_f64(),
        client_seconds,
        cpu_seconds,
        trained_by,
    }
}

/// The job id from `train-all job N started`.
fn job_id(stdout: &str) -> i64 {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("train-all job ")?.split(' ').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no job id in the client's output:\n{stdout}"))
}

fn cpu_per_node(cluster: &Cluster) -> Vec<(String, f64)> {
    cluster
        .nodes
        .iter()
        .map(|node| (node.name.clone(), cpu_seconds(node.child.id())))
        .collect()
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|error| panic!("cannot read /proc/{pid}/stat: {error}"));
    // Fields after the command name (which may hold spaces) start at field 3, the state;
    // utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').expect("a stat line has `(comm)`") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second as f64
}

fn succeeded(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

// ---------------------------------------------------------------------------------------
// 2. failover

/// How the owner fails.
#[derive(Clone, Copy)]
enum Failure {
    /// `kill -9`: the kernel closes its connections at once, so peers see it leave.
    Kill,
    /// `kill -STOP`: a hung node whose connections stay open; only the failure detector
    /// notices. It is then killed with `kill -9` before its restart.
    Hang,
}

impl Failure {
    fn signal(self) -> i32 {
        match self {
            Failure::Kill => libc::SIGKILL,
            Failure::Hang => libc::SIGSTOP,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Failure::Kill => "kill -9",
            Failure::Hang => "kill -STOP (hung)",
        }
    }
}

/// Waits until the process's state is "stopped" (`T` in `/proc/PID/stat`).
fn wait_stopped(pid: u32) {
    let started = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next());
        if state == Some("T") {
            return;
        }
        assert!(
            started.elapsed() < SETTLE_PATIENCE,
            "process {pid} never stopped: {stat}"
        );
        std::thread::yield_now();
    }
}

struct FailoverTry {
    victim: &'static str,
    store: u32,
    answered_by: String,
    /// Failure to the first answer with a version.
    answered: Duration,
    /// Failure to the client's view without the victim.
    view_dropped: Duration,
    attempts: usize,
    /// Restart of the victim to placement settled again.
    rejoined: Duration,
}

struct FailoverRun {
    failure: Failure,
    detector: Detector,
    tries: Vec<FailoverTry>,
}

fn failover(
    runtime: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
    client: &Client,
    failure: Failure,
    tries: usize,
) -> FailoverRun {
    eprintln!(
        "failover, {}: {tries} tries, {}",
        failure.label(),
        cluster.detector.describe()
    );
    let mut run = FailoverRun {
        failure,
        detector: cluster.detector,
        tries: Vec::new(),
    };
    for number in 0..tries {
        let index = number % NAMES.len();
        let victim = NAMES[index];
        let owned = owned_by(&cluster.stores, victim);
        let store = owned[(number * 37) % owned.len()];
        let before = runtime.block_on(first_forecast(client, &cluster.stores, store, None));
        assert_eq!(before.answered_by, victim, "store {store} before the kill");

        let failed = Instant::now();
        cluster.nodes[index].signal(failure.signal());
        if let Failure::Hang = failure {
            // kill() returns before the node's threads have stopped: a request sent in
            // between could still be answered by it.
            wait_stopped(cluster.nodes[index].child.id());
        }
        let after = runtime.block_on(first_forecast(
            client,
            &cluster.stores,
            store,
            Some((victim, failed)),
        ));
        if let Failure::Hang = failure {
            cluster.nodes[index].signal(libc::SIGKILL);
        }
        let _ = cluster.nodes[index].child.wait();
        assert_ne!(after.answered_by, victim, "store {store} after the failure");
        let restarted = Instant::now();
        cluster.restart(index);
        runtime.block_on(client.wait_settled(&cluster.stores, &NAMES));
        eprintln!(
            "  try {}: {victim} failed, store {store} answered by {} after {:.3} s",
            number + 1,
            after.answered_by,
            after.elapsed.as_secs_f64()
        );
        run.tries.push(FailoverTry {
            victim,
            store,
            answered_by: after.answered_by,
            answered: after.elapsed,
            view_dropped: after
                .view_dropped
                .expect("a survivor answers only once the view has dropped the failed node"),
            attempts: after.attempts,
            rejoined: restarted.elapsed(),
        });
    }
    run
}

struct Answer {
    answered_by: String,
    elapsed: Duration,
    view_dropped: Option<Duration>,
    attempts: usize,
}

/// Asks for a forecast of `store` as a client would, routing by its current view, until an
/// answer with a version arrives. With `dead`, times it from that node's failure.
async fn first_forecast(
    client: &Client,
    stores: &[u32],
    store: u32,
    dead: Option<(&str, Instant)>,
) -> Answer {
    let keys = keys(stores);
    let key = SeriesKey::new(store, PRODUCT);
    let started = dead.map_or_else(Instant::now, |(_, killed)| killed);
    let mut view_dropped = None;
    let mut attempts = 0;
    loop {
        assert!(
            started.elapsed() < FAILOVER_PATIENCE,
            "store {store} never answered a forecast ({attempts} attempts)"
        );
        let view = client.view().await;
        if let Some((victim, _)) = dead
            && view_dropped.is_none()
            && !view.names().contains(&victim)
        {
            view_dropped = Some(started.elapsed());
        }
        if let Some((owner, host)) = owner_host(&view, &keys, &key) {
            attempts += 1;
            let reply = ractor::call_t!(
                host,
                ModelHostMessage::Forecast,
                FORECAST_TIMEOUT_MS,
                forecast_request(store)
            );
            if let Ok(reply) = reply
                && reply.version.is_some()
            {
                return Answer {
                    answered_by: owner,
                    elapsed: started.elapsed(),
                    view_dropped,
                    attempts,
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 3. cross-node retrain

struct RetrainRun {
    store: u32,
    owner: String,
    dialled: &'static str,
    latencies: Vec<Duration>,
    last_version: i32,
}

async fn retrains(client: &Client, cluster: &Cluster, count: usize) -> RetrainRun {
    let view = client.view().await;
    let keys = keys(&cluster.stores);
    let (store, owner, host) = cluster
        .stores
        .iter()
        .find_map(|store| {
            let (owner, host) = owner_host(&view, &keys, &SeriesKey::new(*store, PRODUCT))?;
            (owner != client.dialled).then_some((*store, owner, host))
        })
        .expect("a store owned by another node than the dialled one, reachable");
    eprintln!("retrain: store {store} on {owner}, {count} times");
    let mut latencies = Vec::new();
    let mut last_version = 0;
    for _ in 0..count {
        let started = Instant::now();
        let reply = ractor::call_t!(
            host,
            ModelHostMessage::Train,
            RETRAIN_TIMEOUT_MS,
            train_request(store)
        )
        .unwrap_or_else(|error| panic!("node {owner} did not answer a retrain: {error}"));
        latencies.push(started.elapsed());
        let TrainOutcome::Trained(version) = reply else {
            panic!("retrain of store {store} failed: {reply:?}");
        };
        assert!(version.version > last_version, "a new version each time");
        last_version = version.version;
    }
    RetrainRun {
        store,
        owner,
        dialled: client.dialled,
        latencies,
        last_version,
    }
}

// ---------------------------------------------------------------------------------------
// Report

#[derive(Default)]
struct Report {
    train_all: Vec<TrainAllRow>,
    failover: Vec<FailoverRun>,
    retrain: Option<RetrainRun>,
    /// Warning and error lines of node logs, by node.
    log_problems: Vec<(String, String)>,
}

impl Report {
    /// Takes the warnings and errors the cluster's nodes have logged.
    fn collect_logs(&mut self, cluster: &mut Cluster) {
        (0..cluster.nodes.len()).for_each(|index| cluster.keep_problems(index));
        self.log_problems.append(&mut cluster.problems);
    }

    fn print(&self, took: Duration) {
        println!();
        println!("## Cluster benchmark");
        println!();
        println!(
            "{} stores (Kaggle's train set, {}), `default` profile, PostgreSQL \
             with durable settings, node processes on this machine ({} cores); load average \
             at the end {}; whole run {:.0} s.",
            STORES,
            history_words(),
            std::thread::available_parallelism().map_or(0, |cores| cores.get()),
            load_averages(),
            took.as_secs_f64()
        );
        self.print_train_all();
        print_failovers(&self.failover);
        if let Some(run) = &self.retrain {
            print_retrain(run);
        }
        self.print_log_problems();
    }

    fn print_train_all(&self) {
        println!();
        println!("### train-all, 1,115 series, fresh database (every series version 1)");
        println!();
        println!(
            "| nodes | job time (started -> finished) | client wall time | series/s | CPU s per node during the job | series trained per node |"
        );
        println!("| ---: | ---: | ---: | ---: | --- | --- |");
        for row in &self.train_all {
            let cpu: Vec<String> = row
                .cpu_seconds
                .iter()
                .map(|(name, seconds)| format!("{name} {seconds:.1}"))
                .collect();
            let trained: Vec<String> = row
                .trained_by
                .iter()
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            println!(
                "| {} | {:.2} s | {:.2} s | {:.0} | {} (total {:.1}) | {} |",
                row.nodes,
                row.job_seconds,
                row.client_seconds,
                STORES as f64 / row.job_seconds,
                cpu.join(", "),
                row.cpu_seconds
                    .iter()
                    .map(|(_, seconds)| seconds)
                    .sum::<f64>(),
                trained.join(", ")
            );
        }
    }

    fn print_log_problems(&self) {
        let mut kinds: BTreeMap<String, (usize, BTreeSet<&str>)> = BTreeMap::new();
        for (node, line) in &self.log_problems {
            let kind = kinds.entry(log_kind(line)).or_default();
            kind.0 += 1;
            kind.1.insert(node);
        }
        println!();
        println!(
            "Node log lines at WARN or ERROR: {}{}",
            self.log_problems.len(),
            if kinds.is_empty() { "." } else { ", by kind:" }
        );
        for (kind, (count, nodes)) in &kinds {
            let nodes: Vec<&str> = nodes.iter().copied().collect();
            println!("- {count} x `{kind}` ({})", nodes.join(", "));
        }
    }
}

fn print_failovers(runs: &[FailoverRun]) {
    println!();
    println!("### failover, 3 nodes: a series' owner fails, the in-process client asks a survivor");
    println!();
    println!(
        "| failure | failure detector | tries | failure -> first forecast with a version, median | max | failure -> client's view without the node, median | restart -> placement settled, median |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for run in runs {
        let sorted = |measure: fn(&FailoverTry) -> Duration| {
            let mut times: Vec<Duration> = run.tries.iter().map(measure).collect();
            times.sort();
            times
        };
        let answered = sorted(|one| one.answered);
        println!(
            "| {} | {} | {} | {:.3} s | {:.3} s | {:.3} s | {:.2} s |",
            run.failure.label(),
            run.detector.describe(),
            run.tries.len(),
            median(&answered).as_secs_f64(),
            answered.last().copied().unwrap_or_default().as_secs_f64(),
            median(&sorted(|one| one.view_dropped)).as_secs_f64(),
            median(&sorted(|one| one.rejoined)).as_secs_f64(),
        );
    }
    println!();
    println!("Tries (failed node, store -> survivor that answered, forecast requests sent, time):");
    for run in runs {
        let tries: Vec<String> = run
            .tries
            .iter()
            .map(|one| {
                format!(
                    "{} ({} -> {}, {}) {:.3} s",
                    one.victim,
                    one.store,
                    one.answered_by,
                    one.attempts,
                    one.answered.as_secs_f64()
                )
            })
            .collect();
        println!(
            "- {}, {} ms / {} ms: {}",
            run.failure.label(),
            run.detector.heartbeat_ms,
            run.detector.failure_timeout_ms,
            tries.join("; ")
        );
    }
}

fn print_retrain(run: &RetrainRun) {
    let mut latencies = run.latencies.clone();
    latencies.sort();
    println!();
    println!(
        "### cross-node retrain, store {} (owner {}, client dialled {}), {} sequential requests",
        run.store,
        run.owner,
        run.dialled,
        latencies.len()
    );
    println!();
    println!("| p50 | p99 | min | max | last version |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
        millis(percentile(&latencies, 50.0)),
        millis(percentile(&latencies, 99.0)),
        millis(latencies[0]),
        millis(*latencies.last().expect("at least one retrain")),
        run.last_version
    );
    println!();
    println!(
        "One retrain: the series read from the database, 5-split walk-forward CV and a final \
         fit (`default` profile), the version written to the registry, and its 7-day batch \
         forecast written to forecast_results; request and answer cross the cluster."
    );
}

/// A log line without its time, peer details and numbers, so alike lines count together.
fn log_kind(line: &str) -> String {
    let mut text = line
        .find(" WARN ")
        .or_else(|| line.find(" ERROR "))
        .map_or(line, |at| line[at..].trim_start())
        .to_string();
    // ractor_cluster names a peer as `Some(NameMessage { name: "x@host", .. })`.
    while let Some(start) = text.find("Some(NameMessage {") {
        let end = text[start..]
            .find("})")
            .map_or(text.len(), |end| start + end + 2);
        text.replace_range(start..end, "<peer>");
    }
    let text: String = text
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect();
    text.chars().take(160).collect()
}

fn median(sorted: &[Duration]) -> Duration {
    percentile(sorted, 50.0)
}
