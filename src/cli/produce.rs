//! `storecast produce`: the reference producer, and a load generator.
//!
//! Steps: take data (a Rossmann file, or generated); seed the database with its history as
//! `storecast load` does (unless `--no-history`); create the topic if it is missing; then
//! publish, keyed by store so one store's rows keep their order:
//! - by default, every `--interval` seconds (10, like the reference), one "today" row per store,
//!   made from the store's last row of the same weekday;
//! - with `--once`, one such round;
//! - with `--count N`, N rows with distinct (store, date) keys from today on, at `--rate` rows
//!   per second (as fast as the broker takes them without it), for load and fault tests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Days, NaiveDate};
use clap::Args;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::load::{load_rows, read_sales_blocking, yesterday};
use super::thousands;
use crate::config::{Config, Override};
use crate::dataset::SalesRow;
use crate::dataset::synth::{SynthOptions, generate};
use crate::ingest::kafka;
use crate::ingest::producer::Templates;
use crate::store::Database;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Rossmann sales file (`train.csv[.gz]`) to take history and rows from; generated data
    /// without it.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Stores to generate when no `--data` is given.
    #[arg(long, default_value_t = 20)]
    pub stores: u32,
    /// Do not seed the database with the data's history.
    #[arg(long)]
    pub no_history: bool,
    /// Seconds between rounds of "today" rows.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub interval: f64,
    /// Publish one round and stop.
    #[arg(long, conflicts_with = "count")]
    pub once: bool,
    /// Publish this many rows with distinct keys (today on), then stop.
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Rows per second for `--count` (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0, value_name = "N", requires = "count")]
    pub rate: u64,
    /// Kafka bootstrap servers [key: ingest.brokers].
    #[arg(long, value_name = "HOST:PORT,..")]
    pub brokers: Option<String>,
    /// Topic [key: ingest.topic].
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Partitions of the topic when it is created [key: ingest.partitions].
    #[arg(long, value_name = "N")]
    pub partitions: Option<u32>,
}

impl ProduceArgs {
    pub fn config_overrides(&self) -> Vec<Override> {
        let mut overrides = Vec::new();
        if let Some(brokers) = &self.brokers {
            overrides.push(Override::new("ingest.brokers", brokers));
        }
        if let Some(topic) = &self.topic {
            overrides.push(Override::new("ingest.topic", topic));
        }
        if let Some(partitions) = self.partitions {
            overrides.push(Override::new("ingest.partitions", partitions.to_string()));
        }
        overrides
    }
}

/// Messages handed to the producer before waiting for their acknowledgements.
const IN_FLIGHT: usize = 50_000;

pub async fn run(args: ProduceArgs, config: &Config) -> anyhow::Result<()> {
    let brokers = config.ingest.brokers.trim();
    if brokers.is_empty() {
        anyhow::bail!("no Kafka brokers: pass --brokers HOST:PORT (or set ingest.brokers)");
    }
    let rows = match &args.data {
        Some(path) => read_sales_blocking(path.clone()).await?,
        None => {
            let options = SynthOptions {
                stores: args.stores,
                ..SynthOptions::default()
            };
            tokio::task::spawn_blocking(move || generate(&options))
                .await
                .context("the generator stopped unexpectedly")??
                .sales
        }
    };
    let product = config.load.product.clone();
    let templates = if args.no_history {
        Templates::from_rows(&rows)
    } else {
        let database = Database::connect(&config.database).await?;
        let report = load_rows(&database, rows, &product, config.load.months, yesterday()).await?;
        database.close().await;
        println!(
            "seeded {} rows of history ({} stores) into {}",
            thousands(report.written),
            report
                .window
                .rows
                .iter()
                .map(|row| row.store)
                .max()
                .unwrap_or(0),
            report.backend
        );
        Templates::from_rows(&report.window.rows)
    };
    let topic = &config.ingest.topic;
    if kafka::ensure_topic(brokers, topic, config.ingest.partitions).await? {
        println!(
            "created topic {topic} with {} partitions",
            config.ingest.partitions
        );
    }
    let producer = kafka::producer(brokers)?;
    if let Some(count) = args.count {
        let messages: Vec<(String, String)> =
            templates.distinct(&product, today(), count).collect();
        let started = Instant::now();
        publish(&producer, topic, &messages, args.rate).await?;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "published {} rows with distinct keys in {elapsed:.2} s ({}/s), all acknowledged",
            thousands(messages.len() as u64),
            thousands((messages.len() as f64 / elapsed.max(1e-9)) as u64)
        );
        return Ok(());
    }
    let interval = Duration::from_secs_f64(args.interval.max(0.001));
    let mut round = 1u64;
    loop {
        // Today is read each round: a producer left running moves on to the next day.
        let date = today();
        let messages = templates.round(&product, date);
        publish(&producer, topic, &messages, 0).await?;
        println!(
            "round {round}: published {} rows for {date}",
            messages.len()
        );
        if args.once {
            return Ok(());
        }
        round += 1;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Publishes `messages` (key, JSON), at most `rate` per second (0: no limit), and waits until
/// the broker acknowledged every one.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    messages: &[(String, String)],
    rate: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut pending = Vec::with_capacity(IN_FLIGHT.min(messages.len()));
    for (index, (key, value)) in messages.iter().enumerate() {
        if rate > 0 {
            // Sent on schedule: message i leaves at i / rate seconds.
            let due = started + Duration::from_secs_f64(index as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let mut record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(value.as_str());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((error, returned)) => {
                    // The local queue is full: let deliveries drain, then try again.
                    tracing::debug!(%error, "producer queue full");
                    record = returned;
                    producer.poll(Timeout::After(Duration::from_millis(10)));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        if pending.len() >= IN_FLIGHT {
            acknowledge(&mut pending).await?;
        }
    }
    acknowledge(&mut pending).await?;
    producer
        .flush(Timeout::After(Duration::from_secs(30)))
        .context("the producer could not flush")?;
    Ok(())
}

async fn acknowledge(pending: &mut Vec<rdkafka::producer::DeliveryFuture>) -> anyhow::Result<()> {
    for delivery in pending.drain(..) {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => anyhow::bail!("the broker refused a message: {error}"),
            Err(_) => anyhow::bail!("the producer dropped a message before delivery"),
        }
    }
    Ok(())
}

/// Today, as `storecast load` counts days: the day after `yesterday()`. The loaded history
/// ends within the week before (it moves by whole weeks), so days in between may have no row.
fn today() -> NaiveDate {
    yesterday()
        .checked_add_days(Days::new(1))
        .unwrap_or_else(yesterday)
}

/// The rows a round of the demo publishes: today's, from `rows`' last week.
pub fn today_round(rows: &[SalesRow], product: &str) -> Vec<(String, String)> {
    Templates::from_rows(rows).round(product, today())
}
