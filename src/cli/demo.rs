//! `storecast demo`: the whole system on its embedded defaults, in one command.
//!
//! Steps: take data (generated, or a Rossmann file given with `--data`); load it into the
//! configured database (a SQLite file by default) as `storecast load` does; train every
//! series (cross-validation, final fit, registry) and print next week's forecasts. Later
//! capabilities (the cluster, streaming ingest, the web page) join this command as they are
//! built.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;

use super::dataset::describe_sales;
use super::load::{load_rows, read_sales_blocking, yesterday};
use super::thousands;
use crate::config::{Config, redact_url};
use crate::dataset::synth::{SynthOptions, generate};
use crate::store::Database;
use crate::training::train_stores;

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

    let stores: Vec<u32> = {
        let mut stores: Vec<u32> = report.window.rows.iter().map(|row| row.store).collect();
        stores.dedup();
        stores
    };
    let settings = super::train::settings(config)?;
    let started = Instant::now();
    let outcomes = train_stores(&database, &stores, &settings, |_| {}).await;
    let trained: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| {
            outcome
                .result
                .as_ref()
                .ok()
                .map(|version| (outcome.store, version))
        })
        .collect();
    println!(
        "4. trained   {} of {} series with profile {} (5-split CV + final fit) in {:.2} s",
        trained.len(),
        stores.len(),
        settings.profile_name,
        started.elapsed().as_secs_f64()
    );
    for outcome in &outcomes {
        if let Err(error) = &outcome.result {
            println!("             store {}: {error}", outcome.store);
        }
    }

    println!(
        "5. forecasts next {} days, written to forecast_results\n",
        settings.horizon_days
    );
    let dates: Vec<String> = trained
        .first()
        .map(|(_, version)| {
            version
                .forecast
                .iter()
                .map(|point| point.date.format("%a %d").to_string())
                .collect()
        })
        .unwrap_or_default();
    println!(
        "   store  version  CV MAPE  {}",
        dates
            .iter()
            .map(|date| format!("{date:>7}"))
            .collect::<String>()
    );
    for (store, version) in trained.iter().take(STORES_SHOWN) {
        let days: String = version
            .forecast
            .iter()
            .map(|point| format!("{:>7.0}", point.yhat))
            .collect();
        println!(
            "   {store:>5}  {:>7}  {:>6.1}%  {days}",
            version.version,
            100.0 * version.metrics.mape
        );
    }
    if trained.len() > STORES_SHOWN {
        println!("   ... and {} more", trained.len() - STORES_SHOWN);
    }
    println!(
        "\nthe data and models are in {}; try `storecast forecast --store {}` or `storecast train --all`",
        redact_url(&config.database.url),
        stores.first().copied().unwrap_or(1)
    );
    database.close().await;
    Ok(())
}
