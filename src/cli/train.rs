//! `storecast train`: trains series from the database (cross-validation, final fit), registers
//! each as a new model version and writes its batch forecast for the days after the data.

use std::time::Instant;

use clap::Args;

use super::progress::ProgressLine;
use super::thousands;
use crate::config::{Config, Override};
use crate::store::Database;
use crate::training::{TrainSettings, node_name, train_stores};

/// Failures listed one by one in the summary.
const FAILURES_SHOWN: usize = 10;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Stores to train (repeat the flag or separate with commas).
    #[arg(
        long = "store",
        value_name = "N",
        value_delimiter = ',',
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub stores: Vec<u32>,
    /// Train every store that has sales of the product.
    #[arg(long)]
    pub all: bool,
    /// Model profile, e.g. `default` or `reference` [key: train.profile].
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Product to train [key: load.product].
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
}

impl TrainArgs {
    pub fn config_overrides(&self) -> Vec<Override> {
        let mut overrides = Vec::new();
        if let Some(profile) = &self.profile {
            overrides.push(Override::new("train.profile", profile));
        }
        if let Some(product) = &self.product {
            overrides.push(Override::new("load.product", product));
        }
        overrides
    }
}

pub async fn run(args: TrainArgs, config: &Config) -> anyhow::Result<()> {
    let database = Database::connect(&config.database).await?;
    let settings = settings(config)?;
    let stores = if args.all {
        database.stores_with_sales(&settings.product).await?
    } else {
        args.stores.clone()
    };
    if stores.is_empty() {
        anyhow::bail!(
            "no sales of {} in the database: load some first (storecast load FILE)",
            settings.product
        );
    }
    let started = Instant::now();
    let mut progress = ProgressLine::new("series");
    let outcomes = train_stores(&database, &stores, &settings, |step| {
        progress.update(step.done, step.failed, step.total)
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();

    let trained: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| outcome.result.as_ref().ok())
        .collect();
    let failed: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| {
            outcome
                .result
                .as_ref()
                .err()
                .map(|error| (outcome.store, error))
        })
        .collect();
    println!(
        "trained {} of {} series of {} with profile {} in {elapsed:.1} s ({} workers); {} failed",
        thousands(trained.len() as u64),
        thousands(stores.len() as u64),
        settings.product,
        settings.profile_name,
        settings.workers,
        failed.len()
    );
    if !trained.is_empty() {
        let count = trained.len() as f64;
        let mean = |field: fn(&crate::forecast::validation::Metrics) -> f64| {
            trained
                .iter()
                .map(|version| field(&version.metrics))
                .sum::<f64>()
                / count
        };
        println!(
            "cross-validation ({} splits), mean over series: RMSE {:.1}, MAPE {:.1}%, RMSPE {:.1}%, MAE {:.1}, median AE {:.1}",
            crate::forecast::validation::SPLITS,
            mean(|m| m.rmse),
            100.0 * mean(|m| m.mape),
            100.0 * mean(|m| m.rmspe),
            mean(|m| m.mae),
            mean(|m| m.median_ae)
        );
        let days: usize = trained.iter().map(|version| version.forecast.len()).sum();
        println!(
            "wrote {} forecast days to forecast_results",
            thousands(days as u64)
        );
    }
    for (store, error) in failed.iter().take(FAILURES_SHOWN) {
        println!("  store {store}: {error}");
    }
    if failed.len() > FAILURES_SHOWN {
        println!("  ... and {} more failures", failed.len() - FAILURES_SHOWN);
    }
    database.close().await;
    if trained.is_empty() {
        anyhow::bail!("no series could be trained");
    }
    Ok(())
}

/// Training settings from the configuration.
pub fn settings(config: &Config) -> anyhow::Result<TrainSettings> {
    let profile_name = config.train.profile.clone();
    let profile = config.profile(&profile_name)?.clone();
    Ok(TrainSettings {
        product: config.load.product.clone(),
        profile_name,
        profile,
        horizon_days: config.train.horizon_days,
        seed: config.train.seed,
        workers: config.train.worker_count(),
        node: node_name(),
        retrain_on_new_data: config.ingest.retrain_on_new_data,
    })
}
