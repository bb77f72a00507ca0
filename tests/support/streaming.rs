//! Shared parts of the streaming-ingest tests: a database with history, ingest node
//! processes pointed at a broker, and waiting for streamed rows to land.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use storecast::cli::load::{load_rows, yesterday};
use storecast::dataset::synth::{SynthOptions, generate};
use storecast::ingest::message::parse_sale;
use storecast::ingest::producer::Templates;
use storecast::store::Database;

use super::kafka::Broker;
use super::node::{NodeProcess, free_address};

pub const TOPIC: &str = "sale_rossman_store";
/// Upper bound for rows to land: a failure, not a wait.
pub const LANDING_PATIENCE: Duration = Duration::from_secs(120);

pub struct Setup {
    pub url: String,
    pub database: Database,
    pub templates: Templates,
    pub today: NaiveDate,
}

/// A fresh database holding 40 stores' history up to yesterday.
pub async fn setup(test: &str) -> Option<Setup> {
    let url = super::postgres::fresh_database(test)?;
    let database = Database::connect(&super::database_config(&url))
        .await
        .unwrap();
    let data = generate(&SynthOptions {
        stores: 40,
        days: 200,
        ..SynthOptions::default()
    })
    .unwrap();
    let report = load_rows(&database, data.sales, "product_A", 5, yesterday())
        .await
        .unwrap();
    Some(Setup {
        url,
        database,
        templates: Templates::from_rows(&report.window.rows),
        today: yesterday().succ_opt().unwrap(),
    })
}

pub fn start_node(
    dir: &std::path::Path,
    setup: &Setup,
    broker: &Broker,
    name: &str,
) -> NodeProcess {
    start_node_with(dir, setup, broker, name, &[])
}

/// As [`start_node`], with more settings (`KEY=VALUE`) that override the test defaults.
pub fn start_node_with(
    dir: &std::path::Path,
    setup: &Setup,
    broker: &Broker,
    name: &str,
    extra: &[&str],
) -> NodeProcess {
    start_node_joining(dir, setup, broker, name, extra, &[])
}

/// As [`start_node_with`], joining the cluster of the nodes at `seeds` (so each node's
/// ingest sees which partitions the others consume).
pub fn start_node_joining(
    dir: &std::path::Path,
    setup: &Setup,
    broker: &Broker,
    name: &str,
    extra: &[&str],
    seeds: &[&str],
) -> NodeProcess {
    let settings: Vec<String> = [
        "cluster.heartbeat_ms=200".to_string(),
        "cluster.failure_timeout_ms=2500".to_string(),
        "cluster.roles=ingest".to_string(),
        format!("ingest.brokers={}", broker.address),
        "ingest.session_timeout_ms=3000".to_string(),
        "ingest.batch_ms=100".to_string(),
        "ingest.retry_max_ms=1000".to_string(),
        "log.level=info,storecast::actors::ingest=debug,ractor=warn,ractor_cluster=warn,ractor_cluster::node::node_session=error".to_string(),
    ]
    .into_iter()
    .chain(extra.iter().map(|setting| setting.to_string()))
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), setup.url.clone()];
    NodeProcess::start(dir, &global, name, &free_address(), seeds, &settings)
}

/// Rows of product_A dated today or later (what the tests stream), and their sales sum.
pub async fn streamed(database: &Database, from: NaiveDate) -> (i64, i64) {
    let Database::Postgres(pool) = database else {
        unreachable!("the ingest tests run on PostgreSQL")
    };
    sqlx::query_as(
        "SELECT count(*), COALESCE(sum(sales), 0)::bigint FROM sales \
         WHERE product = 'product_A' AND date >= $1",
    )
    .bind(from)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits until `count` streamed rows are in the table; returns their sales sum.
pub async fn wait_for_rows(database: &Database, from: NaiveDate, count: i64) -> i64 {
    let started = Instant::now();
    loop {
        let (landed, sum) = streamed(database, from).await;
        assert!(
            landed <= count,
            "{landed} rows landed, more than the {count} sent"
        );
        if landed == count {
            return sum;
        }
        assert!(
            started.elapsed() < LANDING_PATIENCE,
            "only {landed} of {count} rows landed within {LANDING_PATIENCE:?}"
        );
        // The rows land in other processes; the table is the only thing to watch.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A message with one field set to `value`.
pub fn with_field(json: &str, field: &str, value: i64) -> String {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).unwrap();
    object.insert(field.to_string(), value.into());
    serde_json::Value::Object(object).to_string()
}

pub fn sales_sum(messages: &[(String, String)]) -> i64 {
    messages
        .iter()
        .filter_map(|(_, json)| parse_sale(json.as_bytes()).ok())
        .map(|sale| i64::from(sale.row.sales))
        .sum()
}

/// Everything an ingest test streams through: a database with history, a broker holding the
/// topic, and a folder for the node processes.
pub struct Stream {
    pub setup: Setup,
    pub broker: Broker,
    pub dir: tempfile::TempDir,
}

/// Sets a stream up, or `None` (after saying so) when a service is missing and not required.
/// A `persistent` broker keeps its topics and offsets across restarts.
pub async fn stream(test: &str, partitions: u32, persistent: bool) -> Option<Stream> {
    let setup = setup(test).await?;
    let broker = if persistent {
        Broker::start_persistent(test)?
    } else {
        Broker::start(test)?
    };
    storecast::ingest::kafka::ensure_topic(&broker.address, TOPIC, partitions)
        .await
        .unwrap();
    Some(Stream {
        setup,
        broker,
        dir: tempfile::tempdir().unwrap(),
    })
}

impl Stream {
    /// Starts an ingest node and waits until the group gave it partitions.
    pub fn ingest_node(&self, name: &str) -> NodeProcess {
        let mut node = start_node(self.dir.path(), &self.setup, &self.broker, name);
        node.wait_for(&["ingest partitions assigned"]);
        node
    }
}
