//! `storecast dataset synth` and `storecast dataset check`: make and inspect data files in
//! Kaggle's Rossmann format.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::{Args, Subcommand};

use super::thousands;
use crate::dataset::synth::{SynthOptions, generate};
use crate::dataset::{SalesRow, rossmann};

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Generates a deterministic Rossmann-like data set: `train.csv` and `store.csv` in DIR.
    Synth(SynthArgs),
    /// Reads `train.csv[.gz]` or `store.csv` files and reports what they hold, or the first
    /// malformed row (file, line and field).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Number of stores, numbered from 1.
    #[arg(long, default_value_t = SynthOptions::default().stores)]
    pub stores: u32,
    /// Days of history per store.
    #[arg(long, default_value_t = SynthOptions::default().days)]
    pub days: u32,
    /// Random seed; the same seed always gives the same files.
    #[arg(long, default_value_t = SynthOptions::default().seed)]
    pub seed: u64,
    /// Last day of the data, YYYY-MM-DD.
    #[arg(long, default_value_t = SynthOptions::default().end)]
    pub end: NaiveDate,
    /// Folder to write into (created if missing).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub out: PathBuf,
    /// Write `train.csv.gz` instead of `train.csv`.
    #[arg(long)]
    pub gzip: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files to check; a file whose header has `StoreType` is read as `store.csv`.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub async fn run(command: DatasetCommand) -> anyhow::Result<()> {
    // Both commands are file and CPU work from start to end.
    tokio::task::spawn_blocking(move || match command {
        DatasetCommand::Synth(args) => synth(&args),
        DatasetCommand::Check(args) => args.files.iter().try_for_each(|file| check(file)),
    })
    .await
    .context("the dataset command stopped unexpectedly")?
}

fn synth(args: &SynthArgs) -> anyhow::Result<()> {
    let data = generate(&SynthOptions {
        stores: args.stores,
        days: args.days,
        seed: args.seed,
        end: args.end,
    })?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let train = args.out.join(if args.gzip {
        "train.csv.gz"
    } else {
        "train.csv"
    });
    let stores = args.out.join("store.csv");
    rossmann::write_sales(&train, &data.sales)?;
    rossmann::write_stores(&stores, &data.stores)?;
    println!(
        "wrote {} ({} rows: {} stores x {} days to {}, seed {}) and {}",
        train.display(),
        thousands(data.sales.len() as u64),
        args.stores,
        args.days,
        args.end,
        args.seed,
        stores.display()
    );
    Ok(())
}

fn check(path: &Path) -> anyhow::Result<()> {
    if rossmann::is_store_file(path)? {
        let stores = rossmann::read_stores(path)?;
        let promo2 = stores.iter().filter(|store| store.promo2).count();
        println!(
            "{}: {} stores, {} in Promo2",
            path.display(),
            thousands(stores.len() as u64),
            thousands(promo2 as u64)
        );
    } else {
        let rows = rossmann::read_sales(path)?;
        println!("{}: {}", path.display(), describe_sales(&rows));
    }
    Ok(())
}

/// One line about a set of sales rows: counts and date span.
pub fn describe_sales(rows: &[SalesRow]) -> String {
    let stores: BTreeSet<u32> = rows.iter().map(|row| row.store).collect();
    let first = rows.iter().map(|row| row.date).min();
    let last = rows.iter().map(|row| row.date).max();
    let open = rows.iter().filter(|row| row.open).count();
    let span = match (first, last) {
        (Some(first), Some(last)) => format!("{first}..{last}"),
        _ => "no dates".to_string(),
    };
    format!(
        "{} rows, {} stores, {span}, {:.1}% open days",
        thousands(rows.len() as u64),
        thousands(stores.len() as u64),
        100.0 * open as f64 / rows.len().max(1) as f64
    )
}
