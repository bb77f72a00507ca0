//! `storecast demo`: the whole system on its embedded defaults, in one command.
//!
//! Steps: take data (generated, or a Rossmann file given with `--data`); load it into the
//! configured database (a SQLite file by default) as `storecast load` does; start a cluster
//! node with every role in this process; run a train-all job through its scheduler (each
//! series trained by its model actor: cross-validation, final fit, registry; then batch
//! forecasts by the forecaster); print where the series live and next week's forecasts.
//! Later capabilities (streaming ingest, the web page) join this command as they are built.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use ractor::{Actor, ActorRef, pg};
use rdkafka::mocking::MockCluster;

use super::cluster::{describe_job, follow_job};
use super::dataset::describe_sales;
use super::load::{load_rows, read_sales_blocking, yesterday};
use super::node::shutdown_signal;
use super::node::{node_services, node_settings};
use super::produce::{publish, today_round};
use super::thousands;
use crate::actors::model_host::{self, ModelHostMessage, SeriesRequest};
use crate::actors::node::NodeSupervisor;
use crate::actors::scheduler::request_train_all;
use crate::cluster::member::Role;
use crate::config::{Config, redact_url};
use crate::dataset::SalesRow;
use crate::dataset::synth::{SynthOptions, generate};
use crate::ingest::kafka;
use crate::ingest::message::parse_sale;
use crate::store::Database;
use crate::web::random_token;

/// Longest the demo waits for its streamed rows to land.
const STREAM_PATIENCE: Duration = Duration::from_secs(60);

/// Stores listed one by one in the summary; the rest are counted.
const STORES_SHOWN: usize = 10;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Use this Rossmann sales file (`train.csv[.gz]`) instead of generated data.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Stores to generate when no `--data` is given.
    #[arg(long, default_value_t = 20)]
    pub stores: u32,
    /// Days of history to generate.
    #[arg(long, default_value_t = 730)]
    pub days: u32,
    /// Seed of the generated data.
    #[arg(long, default_value_t = SynthOptions::default().seed)]
    pub seed: u64,
    /// Stop once the forecasts are shown, instead of serving the web page until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

pub async fn run(args: DemoArgs, config: &Config) -> anyhow::Result<()> {
    println!("storecast demo: embedded defaults, one process\n");

    let rows = match &args.data {
        Some(path) => read_sales_blocking(path.clone()).await?,
        None => {
            let options = SynthOptions {
                stores: args.stores,
                days: args.days,
                seed: args.seed,
                ..SynthOptions::default()
            };
            tokio::task::spawn_blocking(move || generate(&options))
                .await
                .context("the generator stopped unexpectedly")??
                .sales
        }
    };
    let source = match &args.data {
        Some(path) => path.display().to_string(),
        None => format!("synthetic data (seed {})", args.seed),
    };
    println!("1. data      {source}: {}", describe_sales(&rows));

    let database = Database::connect(&config.database).await?;
    println!(
        "2. database  {} (migrated)",
        redact_url(&config.database.url)
    );

    let product = &config.load.product;
    let report = load_rows(&database, rows, product, config.load.months, yesterday()).await?;
    let (first, last) = report.window.span();
    println!(
        "3. loaded    {} rows of {product}: last {} months, dates shifted to {first}..{last}",
        thousands(report.written),
        config.load.months,
    );

    // One node with every role, alone in its cluster: the scheduler, model host and
    // forecaster do the work exactly as they do on a cluster of many.
    let mut node_config = config.clone();
    node_config.cluster.name = "demo".to_string();
    node_config.cluster.listen = "127.0.0.1:0".to_string();
    // The configured address (8080 by default), or any free port when it is taken.
    let gateway = match std::net::TcpListener::bind(&config.gateway.listen) {
        Ok(listener) => listener.local_addr()?,
        Err(_) => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
    };
    node_config.gateway.listen = gateway.to_string();
    if node_config.gateway.token.trim().is_empty() {
        node_config.gateway.token = random_token().context("cannot make a gateway token")?;
    }
    let token = node_config.gateway.token.trim().to_string();
    node_config.cluster.seeds = Vec::new();
    node_config.cluster.roles = Role::ALL
        .iter()
        .map(|role| role.name().to_string())
        .collect();
    // The demo trains now, on demand; the weekly slot must not fire a second job.
    node_config.scheduler.train_all_at = String::new();
    // An in-process Kafka broker (librdkafka's mock cluster, on a loopback port) carries the
    // streamed sales to the node's ingest actor.
    let broker = MockCluster::new(1).context("cannot start the embedded Kafka broker")?;
    let topic = config.ingest.topic.clone();
    broker
        .create_topic(
            &topic,
            i32::try_from(config.ingest.partitions).unwrap_or(1),
            1,
        )
        .context("cannot create the demo topic")?;
    node_config.ingest.brokers = broker.bootstrap_servers();
    let mut settings = node_settings(&node_config.cluster, node_config.train.worker_count())?;
    settings.services = node_services(&node_config, &settings.me).await?;
    let (node, handle) = Actor::spawn(None, NodeSupervisor, settings)
        .await
        .context("cannot start the demo node")?;
    let roles: Vec<&str> = Role::ALL.iter().map(|role| role.name()).collect();
    println!(
        "4. cluster   node `demo` started with roles {}",
        roles.join(", ")
    );

    let outcome = async {
        stream_today(
            &database,
            config,
            &node_config.ingest.brokers,
            &report.window.rows,
        )
        .await?;
        train_and_show(&database, config).await?;
        println!("\n9. web page  http://{gateway}/#token={token}");
        println!("             charts, retrain and days-ahead forecasts; API docs at http://{gateway}/docs");
        if !args.exit {
            println!("             serving until Ctrl-C");
            shutdown_signal().await;
        }
        anyhow::Ok(())
    }
    .await;
    node.stop(Some("demo done".to_string()));
    let _ = handle.await;
    outcome?;

    println!(
        "\nthe data and models are in {}; try `storecast forecast --store {}` or `storecast train --all`",
        redact_url(&config.database.url),
        report.window.rows.first().map_or(1, |row| row.store)
    );
    database.close().await;
    Ok(())
}

/// Publishes today's row of every store to the embedded broker and waits until the node's
/// ingest actor has stored them all.
async fn stream_today(
    database: &Database,
    config: &Config,
    brokers: &str,
    history: &[SalesRow],
) -> anyhow::Result<()> {
    let product = &config.load.product;
    let messages = today_round(history, product);
    let producer = kafka::producer(brokers)?;
    let started = Instant::now();
    publish(&producer, &config.ingest.topic, &messages, 0).await?;
    let date = messages
        .first()
        .and_then(|(_, json)| parse_sale(json.as_bytes()).ok())
        .map(|sale| sale.row.date)
        .context("no rows to stream")?;
    println!(
        "5. streaming published {} rows for {date} to topic {} on the embedded broker",
        messages.len(),
        config.ingest.topic
    );
    let stores = database.stores_with_sales(product).await?;
    let mut shown = 0;
    loop {
        let arrived = database
            .last_sale_dates(product, &stores)
            .await?
            .values()
            .filter(|last| **last >= date)
            .count();
        if arrived > shown {
            println!(
                "             {arrived} of {} arrived in the database after {:.1} s (ingest actor, consumer group {})",
                messages.len(),
                started.elapsed().as_secs_f64(),
                config.ingest.group
            );
            shown = arrived;
        }
        if arrived >= messages.len() {
            return Ok(());
        }
        if started.elapsed() > STREAM_PATIENCE {
            anyhow::bail!(
                "only {arrived} of {} streamed rows arrived within {} s",
                messages.len(),
                STREAM_PATIENCE.as_secs()
            );
        }
        // The rows land in another task of this process; their table is what shows them.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Trains every series through the node's scheduler, then shows where they live and what
/// they forecast.
async fn train_and_show(database: &Database, config: &Config) -> anyhow::Result<()> {
    let (job_id, _) = request_train_all(Duration::from_secs(30)).await?;
    println!(
        "6. training  train-all job {job_id}: the scheduler sends each series to its model actor"
    );
    let job = follow_job(database, job_id).await?;
    println!("             {}", describe_job(&job));

    let mut placed = Vec::new();
    for host in pg::get_members(&model_host::group("demo")) {
        let host: ActorRef<ModelHostMessage> = host.into();
        let hosted = ractor::call_t!(
            host,
            ModelHostMessage::Hosted,
            5_000,
            SeriesRequest::default()
        )
        .context("the model host does not answer")?;
        placed.push(hosted);
    }
    println!("7. placement where the series' model actors live:");
    for hosted in &placed {
        let stores: Vec<u32> = hosted.series.iter().map(|(store, _)| *store).collect();
        println!(
            "             node {}: {} series (stores {})",
            hosted.node,
            stores.len(),
            describe_stores(&stores)
        );
    }

    let product = &config.load.product;
    let stores = database.stores_with_sales(product).await?;
    let mut shown = Vec::new();
    for store in stores.iter().take(STORES_SHOWN) {
        let forecast = database.latest_forecast(*store, product).await?;
        if !forecast.is_empty() {
            shown.push((*store, forecast));
        }
    }
    println!(
        "8. forecasts next {} days, written to forecast_results by the forecaster\n",
        config.train.horizon_days
    );
    let dates: String = shown
        .first()
        .map(|(_, days)| {
            days.iter()
                .map(|day| format!("{:>7}", day.record.date.format("%a %d")))
                .collect()
        })
        .unwrap_or_default();
    println!("   store  version  {dates}");
    for (store, days) in &shown {
        let values: String = days
            .iter()
            .map(|day| format!("{:>7.0}", day.record.yhat))
            .collect();
        let version = days.first().map_or(0, |day| day.record.model_version);
        println!("   {store:>5}  {version:>7}  {values}");
    }
    if stores.len() > shown.len() {
        println!("   ... and {} more", stores.len() - shown.len());
    }
    if job.state != "succeeded" {
        anyhow::bail!("{}", describe_job(&job));
    }
    Ok(())
}

/// Stores as compact ranges: "1-5, 8, 10-12".
fn describe_stores(stores: &[u32]) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for &store in stores {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == store => *end = store,
            _ => ranges.push((store, store)),
        }
    }
    ranges
        .iter()
        .map(|(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::describe_stores;

    #[test]
    fn stores_read_as_ranges() {
        assert_eq!(describe_stores(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
        assert_eq!(describe_stores(&[]), "");
    }
}
