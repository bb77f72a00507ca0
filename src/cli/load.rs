//! `storecast load`: a Rossmann sales file into the `sales` table, as the reference loader
//! does it.
//!
//! Steps: read and check the file (on the blocking pool: it is CPU work); keep the last
//! `load.months` months and shift the dates by whole weeks so the last one falls within the
//! last 7 days (the reference loader shifts by days, so the last one is yesterday, and moves
//! every weekday; see `dataset::window`); replace the product's rows in one transaction.
//! Running it twice on the same day leaves the same rows.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Days, Local, NaiveDate};
use clap::Args;

use super::thousands;
use crate::config::{Config, Override};
use crate::dataset::window::{Window, recent_window};
use crate::dataset::{SalesRow, rossmann};
use crate::store::Database;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Sales file in Kaggle's `train.csv` format, plain or gzipped (`.gz`).
    #[arg(value_name = "FILE")]
    pub data: PathBuf,

    /// Months of history to keep before the file's last date; 0 keeps everything [key: load.months].
    #[arg(long, value_name = "N")]
    pub months: Option<u32>,

    /// Product name written on every row [key: load.product].
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,

    /// The data ends within the 7 days up to this date, YYYY-MM-DD; dates move by whole
    /// weeks, so weekdays stay [default: yesterday].
    #[arg(long, value_name = "DATE")]
    pub last_day: Option<NaiveDate>,
}

impl LoadArgs {
    pub fn config_overrides(&self) -> Vec<Override> {
        let mut overrides = Vec::new();
        if let Some(months) = self.months {
            overrides.push(Override::new("load.months", months.to_string()));
        }
        if let Some(product) = &self.product {
            overrides.push(Override::new("load.product", product));
        }
        overrides
    }
}

pub async fn run(args: LoadArgs, config: &Config) -> anyhow::Result<()> {
    // Connect first: a database that is down should not cost a read of a large file.
    let database = Database::connect(&config.database).await?;
    let started = Instant::now();
    let rows = read_sales_blocking(args.data.clone()).await?;
    let read_time = started.elapsed();
    println!(
        "read {} rows from {} in {}",
        thousands(rows.len() as u64),
        args.data.display(),
        seconds(read_time)
    );

    let last_day = args.last_day.unwrap_or_else(yesterday);
    let report = load_rows(
        &database,
        rows,
        &config.load.product,
        config.load.months,
        last_day,
    )
    .await?;
    report.print(config.load.months);
    println!("total {}", seconds(started.elapsed()));
    database.close().await;
    Ok(())
}

/// Yesterday in local time: the last day whose sales are complete.
pub fn yesterday() -> NaiveDate {
    let today = Local::now().date_naive();
    today.checked_sub_days(Days::new(1)).unwrap_or(today)
}

/// Reads a sales file on the blocking pool.
pub async fn read_sales_blocking(path: PathBuf) -> anyhow::Result<Vec<SalesRow>> {
    tokio::task::spawn_blocking(move || rossmann::read_sales(&path))
        .await
        .context("the file reader stopped unexpectedly")?
        .map_err(anyhow::Error::from)
}

/// What [`load_rows`] did.
#[derive(Debug)]
pub struct LoadReport {
    pub window: Window,
    pub product: String,
    pub backend: &'static str,
    pub written: u64,
    pub write_time: Duration,
}

impl LoadReport {
    fn print(&self, months: u32) {
        let (source_first, source_last) = self.window.source_span;
        let (first, last) = self.window.span();
        let kept = if months == 0 {
            "all history".to_string()
        } else {
            format!("last {months} months")
        };
        println!(
            "kept {} rows of {} stores ({kept}: {source_first}..{source_last}), shifted {:+} weeks to {first}..{last} (weekdays kept)",
            thousands(self.window.rows.len() as u64),
            thousands(self.window.store_count() as u64),
            self.window.shift_days / 7,
        );
        println!(
            "wrote {} rows of {} to {} in {}",
            thousands(self.written),
            self.product,
            self.backend,
            seconds(self.write_time)
        );
    }
}

/// Selects the window of `rows` and replaces `product`'s sales with it.
pub async fn load_rows(
    database: &Database,
    rows: Vec<SalesRow>,
    product: &str,
    months: u32,
    last_day: NaiveDate,
) -> anyhow::Result<LoadReport> {
    let window = tokio::task::spawn_blocking(move || recent_window(rows, months, last_day))
        .await
        .context("the window selection stopped unexpectedly")??;
    let started = Instant::now();
    let written = database.replace_sales(product, &window.rows).await?;
    Ok(LoadReport {
        window,
        product: product.to_string(),
        backend: database.backend(),
        written,
        write_time: started.elapsed(),
    })
}

/// A duration for people: `0.42 s`.
pub fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}
