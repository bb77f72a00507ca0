//! Training series that live in the database: load each series, cross-validate and fit it on
//! a bounded number of fit threads (never on the async runtime; [`fit_threads`], at a lower
//! CPU priority than the runtime), register the new model version, and write its batch
//! forecast for the days after the data.
//!
//! Used by `storecast train` and by the model actors of the cluster.

pub mod fit_threads;

use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::forecast::model::{FittedModel, ForecastPoint, forecast_after};
use crate::forecast::profile::Profile;
use crate::forecast::series::Series;
use crate::forecast::validation::{Metrics, SPLITS, train};
use crate::metrics;
use crate::store::{
    Database, ForecastRecord, JobKind, JobState, NewModelVersion, Registered, TaskRef,
};

/// What to train and how.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub product: String,
    pub profile_name: String,
    pub profile: Profile,
    /// Days of batch forecast written after the data.
    pub horizon_days: u32,
    /// Seed of the forecast intervals.
    pub seed: u64,
    /// Series fitted at once.
    pub workers: usize,
    /// Recorded with each version: who trained it.
    pub node: String,
    /// A model actor retrains its series as soon as new sales land (`ingest.retrain_on_new_data`).
    pub retrain_on_new_data: bool,
}

/// A series trained and registered: the one result of a training, whoever asked for it.
#[derive(Debug, Clone)]
pub struct TrainedVersion {
    pub version: i32,
    /// False when a job task was already completed by another training: `version` is that
    /// training's, and nothing new was registered.
    pub fresh: bool,
    pub metrics: Metrics,
    pub trained_from: NaiveDate,
    pub trained_to: NaiveDate,
    /// The forecast of the days after the data that the fit made (empty when not fresh).
    pub forecast: Vec<ForecastPoint>,
    /// The fitted model of `version`, ready to forecast (`None` when not fresh: the version
    /// is another training's, read from the registry).
    pub model: Option<Arc<FittedModel>>,
}

/// The outcome for one series: a version, or why there is none.
#[derive(Debug, Clone)]
pub struct SeriesOutcome {
    pub store: u32,
    pub result: Result<TrainedVersion, String>,
}

/// Counts reported after every series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub failed: usize,
    pub total: usize,
}

/// Trains `stores` with at most `settings.workers` fits at once. A failing series is
/// reported in its outcome; the others go on. Outcomes come back in store order.
pub async fn train_stores(
    database: &Database,
    stores: &[u32],
    settings: &TrainSettings,
    mut on_progress: impl FnMut(Progress),
) -> Vec<SeriesOutcome> {
    let permits = Arc::new(Semaphore::new(settings.workers.max(1)));
    let settings = Arc::new(settings.clone());
    let mut tasks = JoinSet::new();
    for &store in stores {
        let database = database.clone();
        let settings = Arc::clone(&settings);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = permits.acquire_owned().await;
            let result = train_one(&database, store, &settings).await;
            SeriesOutcome { store, result }
        });
    }
    let mut outcomes = Vec::with_capacity(stores.len());
    let mut progress = Progress {
        done: 0,
        failed: 0,
        total: stores.len(),
    };
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.unwrap_or_else(|error| SeriesOutcome {
            store: 0,
            result: Err(format!("training task stopped: {error}")),
        });
        progress.done += 1;
        progress.failed += usize::from(outcome.result.is_err());
        on_progress(progress);
        outcomes.push(outcome);
    }
    outcomes.sort_by_key(|outcome| outcome.store);
    outcomes
}

/// Trains one series end to end; errors are worded for the user and name nothing twice.
pub async fn train_one(
    database: &Database,
    store: u32,
    settings: &TrainSettings,
) -> Result<TrainedVersion, String> {
    train_series(database, store, settings, None).await
}

/// Trains one series, for a job when `job` is given (the job and its task for the series): a
/// task already completed is not trained again, and a train-all job's batch forecast is left
/// to the job's forecast phase.
pub async fn train_series(
    database: &Database,
    store: u32,
    settings: &TrainSettings,
    job: Option<(JobKind, &TaskRef)>,
) -> Result<TrainedVersion, String> {
    let task = job.map(|(_, task)| task);
    if let Some(task) = task
        && let Some(done) = completed_version(database, task).await?
    {
        return Ok(done);
    }
    let rows = database
        .series_sales(store, &settings.product)
        .await
        .map_err(|error| error.to_string())?;
    if rows.is_empty() {
        return Err(format!("no sales of {} in the database", settings.product));
    }
    let profile = settings.profile.clone();
    let (horizon, seed) = (settings.horizon_days, settings.seed);
    let fitting = Instant::now();
    let span = tracing::info_span!(
        "fit",
        store,
        profile = %settings.profile_name,
        days = rows.len(),
        splits = SPLITS,
    );
    let fitted = fit_threads::run(move || {
        span.in_scope(|| fit_and_forecast(&rows, &profile, horizon, seed))
    })
    .await
    .map_err(|error| format!("fit stopped: {error}"))
    .and_then(|fitted| fitted);
    let labels = metrics::FitLabels {
        profile: settings.profile_name.clone(),
        outcome: if fitted.is_ok() { "trained" } else { "failed" }.to_string(),
    };
    metrics::metrics()
        .fit_duration
        .get_or_create(&labels)
        .observe(fitting.elapsed().as_secs_f64());
    let fitted = fitted?;

    let registered = database
        .insert_model_version(&NewModelVersion {
            store,
            product: &settings.product,
            profile: &settings.profile_name,
            params: &fitted.encoded,
            metrics: fitted.metrics,
            trained_from: fitted.trained_from,
            trained_to: fitted.trained_to,
            node: &settings.node,
            task,
        })
        .await
        .map_err(|error| error.to_string())?;
    let version = match registered {
        Registered::New(version) => version,
        Registered::AlreadyDone(version) => {
            // Another node completed this task while this one fitted; its version stands.
            return Ok(TrainedVersion {
                version,
                fresh: false,
                metrics: fitted.metrics,
                trained_from: fitted.trained_from,
                trained_to: fitted.trained_to,
                forecast: Vec::new(),
                model: None,
            });
        }
    };
    // A train-all job writes its batch forecasts in one go once every series is trained; a
    // retrain (no job, or a one-series job) writes its own now.
    if !matches!(job, Some((JobKind::TrainAll, _))) {
        let records =
            ForecastRecord::of_points(store, &settings.product, version, &fitted.forecast);
        database
            .write_forecasts(&records)
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(TrainedVersion {
        version,
        fresh: true,
        metrics: fitted.metrics,
        trained_from: fitted.trained_from,
        trained_to: fitted.trained_to,
        forecast: fitted.forecast,
        model: Some(Arc::new(fitted.model)),
    })
}

/// The version a completed job task registered, if the task is completed.
async fn completed_version(
    database: &Database,
    task: &TaskRef,
) -> Result<Option<TrainedVersion>, String> {
    let stored = database
        .task(task)
        .await
        .map_err(|error| error.to_string())?;
    let Some(version) = stored
        .filter(|stored| stored.state == JobState::Succeeded)
        .and_then(|stored| stored.model_version)
    else {
        return Ok(None);
    };
    let registered = database
        .model_version(task.store, &task.product, version)
        .await
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("version {version} of the task is not in the registry"))?;
    Ok(Some(TrainedVersion {
        version,
        fresh: false,
        metrics: registered.metrics,
        trained_from: registered.trained_from,
        trained_to: registered.trained_to,
        forecast: Vec::new(),
        model: None,
    }))
}

/// CPU part of a training: CV, final fit, forecast of the planned days after the data.
struct Fitted {
    model: FittedModel,
    encoded: Vec<u8>,
    metrics: Metrics,
    trained_from: NaiveDate,
    trained_to: NaiveDate,
    forecast: Vec<ForecastPoint>,
}

fn fit_and_forecast(
    rows: &[crate::dataset::SalesRow],
    profile: &Profile,
    horizon_days: u32,
    seed: u64,
) -> Result<Fitted, String> {
    let series = Series::from_rows(rows).map_err(|error| error.to_string())?;
    let trained = train(&series, profile, SPLITS).map_err(|error| error.to_string())?;
    let forecast = forecast_after(&series, &trained.model, horizon_days, seed)
        .map_err(|error| error.to_string())?;
    let (trained_from, trained_to) = trained.model.trained_span();
    Ok(Fitted {
        encoded: trained.model.stored().encode(),
        model: trained.model,
        metrics: trained.metrics,
        trained_from,
        trained_to,
        forecast,
    })
}

/// This machine's name, recorded with the versions it trains.
pub fn node_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "local".to_string())
}
