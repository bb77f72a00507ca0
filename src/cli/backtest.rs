//! `storecast backtest`: trains every store of a data file on the data up to each origin,
//! forecasts the open days after it, writes the forecasts and prints RMSPE where actuals exist.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::Args;

use super::load::read_sales_blocking;
use super::progress::ProgressLine;
use super::thousands;
use crate::config::{Config, Override};
use crate::forecast::backtest::{BacktestRow, backtest_series, coverage, rmspe};
use crate::forecast::model::ModelError;
use crate::forecast::profile::Profile;
use crate::forecast::series::Series;

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Sales file in Kaggle's `train.csv` format, plain or gzipped.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Forecast origins: the last day each model sees (comma-separated YYYY-MM-DD).
    #[arg(
        long = "origin",
        value_name = "DATE",
        value_delimiter = ',',
        required = true
    )]
    pub origins: Vec<NaiveDate>,
    /// Days forecast after each origin.
    #[arg(long, value_name = "DAYS")]
    pub horizon: u32,
    /// Model profile [key: train.profile].
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// CSV file to write: store,origin,date,yhat,yhat_lower,yhat_upper.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Only these stores (repeat or comma-separate); all by default.
    #[arg(long = "store", value_name = "N", value_delimiter = ',')]
    pub stores: Vec<u32>,
}

impl BacktestArgs {
    pub fn config_overrides(&self) -> Vec<Override> {
        self.profile
            .iter()
            .map(|profile| Override::new("train.profile", profile))
            .collect()
    }
}

pub async fn run(args: BacktestArgs, config: &Config) -> anyhow::Result<()> {
    if !(1..=366).contains(&args.horizon) {
        anyhow::bail!(
            "--horizon must be between 1 and 366 days, got {}",
            args.horizon
        );
    }
    let profile_name = config.train.profile.clone();
    let profile = config.profile(&profile_name)?.clone();
    let interval = format!("{:.0}%", profile.interval_width * 100.0);
    let rows = read_sales_blocking(args.data.clone()).await?;
    let mut by_store: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for row in rows {
        if args.stores.is_empty() || args.stores.contains(&row.store) {
            by_store.entry(row.store).or_default().push(row);
        }
    }
    if by_store.is_empty() {
        anyhow::bail!(
            "{} has no rows for the stores asked for",
            args.data.display()
        );
    }
    let series: Vec<(u32, Series)> = by_store
        .into_iter()
        .map(|(store, rows)| Series::from_rows(&rows).map(|series| (store, series)))
        .collect::<Result<_, _>>()?;

    let workers = config.train.worker_count();
    let (origins, horizon, seed) = (args.origins.clone(), args.horizon, config.train.seed);
    let started = Instant::now();
    let (results, failures) = tokio::task::spawn_blocking(move || {
        run_pool(&series, &profile, &origins, horizon, seed, workers)
    })
    .await
    .context("the backtest stopped unexpectedly")?;

    let mut csv = String::from("store,origin,date,yhat,yhat_lower,yhat_upper\n");
    for row in &results {
        let _ = writeln!(
            csv,
            "{},{},{},{:.2},{:.2},{:.2}",
            row.store, row.origin, row.date, row.yhat, row.lower, row.upper
        );
    }
    std::fs::write(&args.out, csv)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "backtest of profile {profile_name}: {} forecast days written to {} in {:.1} s ({workers} workers)",
        thousands(results.len() as u64),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    for origin in &args.origins {
        let at_origin: Vec<&BacktestRow> =
            results.iter().filter(|row| row.origin == *origin).collect();
        match (
            rmspe(at_origin.iter().copied()),
            coverage(at_origin.iter().copied()),
        ) {
            (Some(score), Some(covered)) => println!(
                "origin {origin}, {} days: RMSPE {score:.4}, {interval} interval coverage {covered:.3}",
                args.horizon
            ),
            _ => println!(
                "origin {origin}, {} days: no actuals to score",
                args.horizon
            ),
        }
    }
    if let (Some(score), Some(covered)) = (rmspe(&results), coverage(&results)) {
        println!("all origins: RMSPE {score:.4}, {interval} interval coverage {covered:.3}");
    }
    for (store, error) in failures.iter().take(10) {
        println!("  store {store}: {error}");
    }
    if failures.len() > 10 {
        println!("  ... and {} more failures", failures.len() - 10);
    }
    Ok(())
}

type PoolResult = (Vec<BacktestRow>, Vec<(u32, String)>);

/// Backtests every series on `workers` threads.
fn run_pool(
    series: &[(u32, Series)],
    profile: &Profile,
    origins: &[NaiveDate],
    horizon: u32,
    seed: u64,
    workers: usize,
) -> PoolResult {
    struct Shared {
        rows: Vec<BacktestRow>,
        failures: Vec<(u32, String)>,
        finished: usize,
        progress: ProgressLine,
    }
    let next = AtomicUsize::new(0);
    let shared = Mutex::new(Shared {
        rows: Vec::new(),
        failures: Vec::new(),
        finished: 0,
        progress: ProgressLine::new("stores"),
    });
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                while let Some((store, one)) = series.get(next.fetch_add(1, Ordering::Relaxed)) {
                    // A panic deep in a fit costs this store, not the whole backtest.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        backtest_series(one, *store, profile, origins, horizon, seed)
                    }))
                    .unwrap_or_else(|_| Err(ModelError::Prophet("the fit panicked".to_string())));
                    let Ok(mut shared) = shared.lock() else {
                        return;
                    };
                    match outcome {
                        Ok(mut rows) => shared.rows.append(&mut rows),
                        Err(error) => shared.failures.push((*store, error.to_string())),
                    }
                    shared.finished += 1;
                    let (finished, failed) = (shared.finished, shared.failures.len());
                    shared.progress.update(finished, failed, series.len());
                }
            });
        }
    });
    let Shared {
        mut rows,
        mut failures,
        ..
    } = shared
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    rows.sort_by_key(|row| (row.store, row.origin, row.date));
    failures.sort();
    (rows, failures)
}
