//! `storecast forecast`: the next days of one series from its latest registered model, with
//! no retraining.

use anyhow::Context as _;
use clap::Args;

use crate::config::{Config, Override};
use crate::forecast::model::{forecast_after, restore};
use crate::forecast::series::Series;
use crate::store::Database;

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// Store to forecast.
    #[arg(long, value_name = "N")]
    pub store: u32,
    /// Days after the last day of data.
    #[arg(long, default_value_t = 7, value_name = "D")]
    pub days: u32,
    /// Product [key: load.product].
    #[arg(long, value_name = "NAME")]
    pub product: Option<String>,
}

impl ForecastArgs {
    pub fn config_overrides(&self) -> Vec<Override> {
        self.product
            .iter()
            .map(|product| Override::new("load.product", product))
            .collect()
    }
}

pub async fn run(args: ForecastArgs, config: &Config) -> anyhow::Result<()> {
    if !(1..=366).contains(&args.days) {
        anyhow::bail!("--days must be between 1 and 366, got {}", args.days);
    }
    let product = &config.load.product;
    let database = Database::connect(&config.database).await?;
    let version = database.latest_model_version(args.store, product).await?.with_context(|| {
        format!(
            "store {} has no trained model for {product}: run `storecast train --store {}` first",
            args.store, args.store
        )
    })?;
    let rows = database.series_sales(args.store, product).await?;
    database.close().await;
    let seed = config.train.seed;
    let (days, params) = (args.days, version.params.clone());
    let (forecast, width) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let model = restore(&params)?;
        let series = Series::from_rows(&rows)?;
        let forecast = forecast_after(&series, &model, days, seed)?;
        Ok((forecast, model.profile().interval_width))
    })
    .await
    .context("the forecast stopped unexpectedly")??;

    println!(
        "store {}, {product}: model {} version {} (data {}..{}, trained {} on {})",
        args.store,
        version.profile,
        version.version,
        version.trained_from,
        version.trained_to,
        version.trained_at.format("%Y-%m-%d %H:%M UTC"),
        version.node
    );
    let percent = (width * 100.0).round();
    println!("date        forecast  lower {percent}%  upper {percent}%");
    for point in forecast {
        println!(
            "{}  {:>8.0}  {:>9.0}  {:>9.0}",
            point.date, point.yhat, point.lower, point.upper
        );
    }
    Ok(())
}
