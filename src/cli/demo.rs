//! `storecast demo`: the whole system on its embedded defaults, in one command.
//!
//! Steps: take data (generated, or a Rossmann file given with `--data`); load it into the
//! configured database (a SQLite file by default) as `storecast load` does; read it back and
//! print what each store looks like. Later capabilities (training, forecasts, the web page)
//! join this command as they are built.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::dataset::describe_sales;
use super::load::{load_rows, read_sales_blocking, yesterday};
use super::thousands;
use crate::config::{Config, redact_url};
use crate::dataset::SalesRow;
use crate::dataset::synth::{SynthOptions, generate};
use crate::store::Database;

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

    println!("4. stores\n");
    println!("   store  days  open  mean sales/open day  last 7 days");
    let stores: Vec<u32> = {
        let mut stores: Vec<u32> = report.window.rows.iter().map(|row| row.store).collect();
        stores.dedup();
        stores
    };
    for &store in stores.iter().take(STORES_SHOWN) {
        let series = database.series_sales(store, product).await?;
        println!("   {}", store_line(store, &series));
    }
    if stores.len() > STORES_SHOWN {
        println!("   ... and {} more", stores.len() - STORES_SHOWN);
    }
    println!(
        "\nthe data is in {}; `storecast load FILE` loads a Kaggle file the same way",
        redact_url(&config.database.url)
    );
    database.close().await;
    Ok(())
}

/// One summary line for a store's series (oldest first).
fn store_line(store: u32, series: &[SalesRow]) -> String {
    let open: Vec<&SalesRow> = series.iter().filter(|row| row.open).collect();
    let mean = open.iter().map(|row| f64::from(row.sales)).sum::<f64>() / open.len().max(1) as f64;
    let last_week: u64 = series
        .iter()
        .rev()
        .take(7)
        .map(|row| u64::from(row.sales))
        .sum();
    format!(
        "{store:>5}  {:>4}  {:>4}  {:>19}  {:>11}",
        series.len(),
        open.len(),
        thousands(mean.round() as u64),
        thousands(last_week)
    )
}
