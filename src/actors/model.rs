//! The model actor: one per series (store, product), living on the node that owns the series.
//! Retraining a store is a `Train` message to this actor, wherever it lives (its node's model
//! host forwards it; see [`super::client`] for how a caller reaches that host).
//!
//! Steps:
//! 1. on start, load the latest registered version, if any (no retraining), as the first
//!    message the actor handles, so starting many actors at once never waits on the database;
//!    a few seconds later, train for retrain jobs of the series still running that no
//!    request of its own carries (their node died before recording an outcome);
//! 2. `Train`: train the series (CV, final fit, registry; a retrain also writes its batch
//!    forecast) on the node's bounded pool. One training per series at a time: a `Train` that
//!    arrives while one runs joins it and gets the same answer. When the training ends, the
//!    actor records its outcome in the job of every request that carried one
//!    ([`Database::record_training`]): the one place a training's outcome reaches a job,
//!    whoever asked. It keeps the model it fitted; nothing is read back from the registry;
//! 3. `Forecast`: forecast the days after the data from the loaded model, without refitting
//!    (loading the latest version first if none is loaded; skipped if its caller is gone);
//! 4. `Info`: the loaded version.
//!
//! The protocol's request and answer types are defined here and used unchanged by the model
//! host, which forwards them from other nodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::bincode_message_payload;
use crate::cluster::placement::SeriesKey;
use crate::forecast::model::{FittedModel, ForecastPoint, forecast_after, restore};
use crate::forecast::series::Series;
use crate::forecast::validation::Metrics;
use crate::metrics;
use crate::store::{Database, JobRef, TaskRef};
use crate::telemetry;
use crate::training::{TrainSettings, TrainedVersion, train_series};

/// Train a series; with `job`, the training is for that job, which records its outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    pub store: u32,
    pub product: String,
    pub job: Option<JobRef>,
    /// W3C trace context of the call; the cluster client sets it from its call span, so
    /// callers leave it empty.
    pub traceparent: String,
}

/// Forecast the `days` after a series' data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForecastRequest {
    pub store: u32,
    pub product: String,
    pub days: u32,
    /// W3C trace context of the call; the cluster client sets it from its call span, so
    /// callers leave it empty.
    pub traceparent: String,
}

/// Which version a series' actor has loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InfoRequest {
    pub store: u32,
    pub product: String,
    /// W3C trace context of the call; the cluster client sets it from its call span, so
    /// callers leave it empty.
    pub traceparent: String,
}

impl TrainRequest {
    /// Train `store`'s series of `product`, for `job` when there is one. The trace context
    /// is left to the cluster client, which sets it when it sends the request.
    pub fn new(store: u32, product: impl Into<String>, job: Option<JobRef>) -> Self {
        Self {
            store,
            product: product.into(),
            job,
            traceparent: String::new(),
        }
    }

    pub fn key(&self) -> SeriesKey {
        SeriesKey::new(self.store, self.product.clone())
    }
}

impl ForecastRequest {
    /// Forecast the `days` after the data of `store`'s series of `product`. The trace context
    /// is left to the cluster client, which sets it when it sends the request.
    pub fn new(store: u32, product: impl Into<String>, days: u32) -> Self {
        Self {
            store,
            product: product.into(),
            days,
            traceparent: String::new(),
        }
    }

    pub fn key(&self) -> SeriesKey {
        SeriesKey::new(self.store, self.product.clone())
    }
}

impl InfoRequest {
    pub fn key(&self) -> SeriesKey {
        SeriesKey::new(self.store, self.product.clone())
    }
}

/// A registered version, as the actor reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub store: u32,
    pub product: String,
    pub version: i32,
    pub profile: String,
    pub trained_from: Option<NaiveDate>,
    pub trained_to: Option<NaiveDate>,
    pub metrics: Option<Metrics>,
    /// Sales arrived since this version was trained: a retrain would use them.
    pub new_data: bool,
}

/// How a training ended, as its requester hears it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrainOutcome {
    /// The version the training registered (or found registered for its job's task).
    Trained(VersionInfo),
    /// The training failed; the reason names what was wrong.
    Failed(String),
    /// The node is stopping and takes no new training: not the series' fault, send it
    /// again to its next owner.
    Refused(String),
}

impl Default for TrainOutcome {
    /// What an answer that could not be decoded becomes.
    fn default() -> Self {
        TrainOutcome::Failed("the answer could not be decoded".to_string())
    }
}

/// A forecast with the version that made it, or why there is none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForecastReply {
    pub version: Option<VersionInfo>,
    pub points: Vec<ForecastPoint>,
    pub error: Option<String>,
}

bincode_message_payload!(
    TrainRequest,
    ForecastRequest,
    InfoRequest,
    VersionInfo,
    TrainOutcome,
    ForecastReply,
);

/// Messages of a model actor. Other nodes reach it through its host, so they are local.
#[derive(RactorMessage)]
pub enum ModelMessage {
    Train(TrainRequest, RpcReplyPort<TrainOutcome>),
    Forecast(ForecastRequest, RpcReplyPort<ForecastReply>),
    Info(InfoRequest, RpcReplyPort<VersionInfo>),
    /// The training started by this actor finished (sent to itself).
    TrainingFinished(Result<TrainedVersion, String>),
    /// Load the latest registered version (sent to itself on start).
    Load,
    /// New sales of the series landed (from ingest, through the host).
    DataArrived,
    /// Look for retrain jobs of this series that nobody runs (sent to itself after start).
    ResumeRetrains,
}

pub struct ModelActor;

pub struct ModelArguments {
    pub key: SeriesKey,
    pub database: Database,
    pub settings: Arc<TrainSettings>,
    /// The node's training pool, shared by its model actors.
    pub fits: Arc<Semaphore>,
}

/// The loaded version, ready to forecast.
struct Loaded {
    info: VersionInfo,
    model: Arc<FittedModel>,
    /// Online forecasts already made by this version, by days, with the last day of data
    /// they follow: the same request gives the same points until the version or the
    /// series' data change.
    forecasts: HashMap<u32, (NaiveDate, Arc<Vec<ForecastPoint>>)>,
}

/// Distinct horizons a model actor keeps forecasts of.
const FORECASTS_KEPT: usize = 8;

pub struct ModelState {
    key: SeriesKey,
    database: Database,
    settings: Arc<TrainSettings>,
    fits: Arc<Semaphore>,
    loaded: Option<Loaded>,
    /// The training in flight, if one is.
    flight: Option<Flight>,
}

/// A training in flight: the job it runs for, and the callers waiting for it with the job
/// each asked for.
struct Flight {
    job: Option<JobRef>,
    waiting: Vec<Waiter>,
    /// Sales arrived while it trained: its forecast is not of the days after the data.
    data_arrived: bool,
}

/// A caller waiting for the training: its job, where to answer, and its request's span
/// (which ends when it is answered).
struct Waiter {
    job: Option<JobRef>,
    /// `None` for a job resumed after the node that ran it stopped: nobody waits.
    reply: Option<RpcReplyPort<TrainOutcome>>,
    span: tracing::Span,
}

impl Actor for ModelActor {
    type Msg = ModelMessage;
    type State = ModelState;
    type Arguments = ModelArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: ModelArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Queued before anyone else can send, so it is handled first.
        myself.cast(ModelMessage::Load)?;
        Ok(ModelState {
            key: arguments.key,
            database: arguments.database,
            settings: arguments.settings,
            fits: arguments.fits,
            loaded: None,
            flight: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ModelMessage::DataArrived => {
                if let Some(loaded) = &mut state.loaded {
                    loaded.info.new_data = true;
                    // The days after the data moved on.
                    loaded.forecasts.clear();
                }
                if let Some(flight) = &mut state.flight {
                    flight.data_arrived = true;
                }
                if state.settings.retrain_on_new_data && state.flight.is_none() {
                    tracing::debug!(
                        store = state.key.store,
                        "new data: retraining, as configured"
                    );
                    start_training(myself, state, None);
                }
            }
            ModelMessage::Load => {
                if let Err(error) = load_latest(state).await {
                    tracing::warn!(store = state.key.store, %error, "cannot load the latest model version");
                }
                // Later, not now: a request that created this actor may be the very retrain
                // job found running, and it is about to arrive.
                myself.send_after(RESUME_AFTER, || ModelMessage::ResumeRetrains);
            }
            ModelMessage::ResumeRetrains => resume_retrains(&myself, state).await,
            ModelMessage::Train(request, reply) => {
                let span = tracing::info_span!(
                    "model train",
                    otel.kind = "server",
                    store = state.key.store,
                    product = %state.key.product,
                    job.id = request.job.map(|job| job.id),
                    joined = state.flight.is_some(),
                    otel.status_code = tracing::field::Empty,
                );
                telemetry::follow(&span, &request.traceparent);
                span.in_scope(|| tracing::debug!(job = ?request.job, "train requested"));
                let waiter = Waiter {
                    job: request.job,
                    reply: Some(reply),
                    span,
                };
                match &mut state.flight {
                    // Single flight: join the training that runs.
                    Some(flight) => flight.waiting.push(waiter),
                    None => start_training(myself, state, Some(waiter)),
                }
            }
            ModelMessage::TrainingFinished(result) => {
                let Some(flight) = state.flight.take() else {
                    return Ok(());
                };
                let outcome = match result {
                    Ok(trained) => {
                        let info = keep_trained(state, trained, flight.data_arrived).await;
                        TrainOutcome::Trained(info)
                    }
                    Err(error) => TrainOutcome::Failed(error),
                };
                record_outcomes(state, flight, outcome).await;
            }
            ModelMessage::Forecast(request, reply) => {
                if reply.is_closed() {
                    // The caller gave up while this waited in the mailbox: skip the work.
                    tracing::debug!(
                        store = state.key.store,
                        "forecast dropped: its caller is gone"
                    );
                    return Ok(());
                }
                tracing::debug!(store = state.key.store, traceparent = %request.traceparent, "forecast requested");
                let started = Instant::now();
                let span = tracing::info_span!(
                    "model forecast",
                    otel.kind = "server",
                    store = state.key.store,
                    product = %state.key.product,
                    days = request.days,
                );
                telemetry::follow(&span, &request.traceparent);
                let answer = forecast(state, request.days).instrument(span).await;
                metrics::metrics()
                    .online_forecast_duration
                    .observe(started.elapsed().as_secs_f64());
                let _ = reply.send(answer);
            }
            ModelMessage::Info(_, reply) => {
                let info = state
                    .loaded
                    .as_ref()
                    .map(|loaded| loaded.info.clone())
                    .unwrap_or_default();
                let _ = reply.send(info);
            }
        }
        Ok(())
    }
}

/// Trains the series in a task (fits run on the node's blocking pool) and tells the actor
/// when it is done. `job` is the job of the request that starts it, `reply` its caller.
fn start_training(myself: ActorRef<ModelMessage>, state: &mut ModelState, first: Option<Waiter>) {
    let job = first.as_ref().and_then(|waiter| waiter.job);
    // The training is part of its first requester's trace.
    let span = first.as_ref().map_or_else(
        || tracing::info_span!("model train", store = state.key.store, cause = "new data"),
        |waiter| waiter.span.clone(),
    );
    state.flight = Some(Flight {
        job,
        waiting: first.into_iter().collect(),
        data_arrived: false,
    });
    let (database, settings, fits) = (
        state.database.clone(),
        Arc::clone(&state.settings),
        Arc::clone(&state.fits),
    );
    let task = job.map(|job| (job.kind, task_of(&state.key, job)));
    let store = state.key.store;
    tokio::spawn(
        async move {
            // The pool is never closed, so acquiring only waits for a free worker.
            let _permit = fits.acquire_owned().await;
            let job = task.as_ref().map(|(kind, task)| (*kind, task));
            let result = train_series(&database, store, &settings, job).await;
            let _ = myself.cast(ModelMessage::TrainingFinished(result));
        }
        .instrument(span),
    );
}

fn task_of(key: &SeriesKey, job: JobRef) -> TaskRef {
    TaskRef {
        job_id: job.id,
        store: key.store,
        product: key.product.clone(),
    }
}

/// Makes a finished training the loaded version, keeping the model it fitted (a version
/// another training registered is read from the registry instead). Returns what the callers
/// hear of it.
async fn keep_trained(
    state: &mut ModelState,
    trained: TrainedVersion,
    data_arrived: bool,
) -> VersionInfo {
    let info = VersionInfo {
        store: state.key.store,
        product: state.key.product.clone(),
        version: trained.version,
        profile: state.settings.profile_name.clone(),
        trained_from: Some(trained.trained_from),
        trained_to: Some(trained.trained_to),
        metrics: Some(trained.metrics),
        new_data: data_arrived,
    };
    let Some(model) = trained.model else {
        if let Err(error) = load_latest(state).await {
            tracing::warn!(store = state.key.store, %error, "trained, but cannot load the version");
        }
        return info;
    };
    let mut forecasts = HashMap::new();
    // The fit's own forecast of the next days is what an online forecast of them would
    // compute: keep it, so the first request does not wait for one.
    if !data_arrived
        && let Some(after) = trained
            .forecast
            .first()
            .and_then(|point| point.date.pred_opt())
    {
        let days = u32::try_from(trained.forecast.len()).unwrap_or(u32::MAX);
        forecasts.insert(days, (after, Arc::new(trained.forecast)));
    }
    state.loaded = Some(Loaded {
        info: info.clone(),
        model,
        forecasts,
    });
    info
}

/// Answers everyone who waited for a training and records its outcome in each of their
/// jobs. A request that joined the training with another job gets that job's task
/// completed with the same version.
async fn record_outcomes(state: &ModelState, flight: Flight, outcome: TrainOutcome) {
    // One record per job: a resumed job and its requester's late request may both wait.
    let mut recorded_jobs: Vec<(JobRef, Result<(), String>)> = Vec::new();
    for Waiter { job, reply, span } in flight.waiting {
        let mut answer = outcome.clone();
        let node = &state.settings.node;
        if let Some(job) = job {
            let earlier = recorded_jobs
                .iter()
                .find(|(done, _)| *done == job)
                .map(|(_, result)| result.clone());
            let recorded = match earlier {
                Some(result) => result,
                // The write belongs to the request's span (instrumented: a span must never
                // stay entered across an await).
                None => {
                    let result = record_outcome(&state.database, &state.key, job, &outcome, node)
                        .instrument(span.clone())
                        .await
                        .map_err(|error| error.to_string());
                    recorded_jobs.push((job, result.clone()));
                    result
                }
            };
            if let Err(error) = recorded {
                span.in_scope(|| {
                    tracing::warn!(store = state.key.store, job = job.id, %error, "cannot record a training's outcome");
                });
                if flight.job != Some(job) {
                    // The job's task does not have the version: say so to its requester.
                    answer = TrainOutcome::Failed(error.to_string());
                }
            }
        }
        if !matches!(answer, TrainOutcome::Trained(_)) {
            span.record("otel.status_code", "ERROR");
        }
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }
}

/// How long after its start a model actor looks for retrain jobs nobody runs.
const RESUME_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Trains again for retrain jobs of this series still running after its actor started: the
/// node that ran them stopped before recording an outcome (a model host that releases a
/// series records its actor's unfinished trainings), so without this they would wait for the
/// sweep of abandoned jobs. A request for the same job that is still on its way joins the
/// training; a task some other training completes meanwhile keeps that version.
async fn resume_retrains(myself: &ActorRef<ModelMessage>, state: &mut ModelState) {
    let jobs = match state
        .database
        .running_retrains(state.key.store, &state.key.product)
        .await
    {
        Ok(jobs) => jobs,
        Err(error) => {
            tracing::warn!(store = state.key.store, %error, "cannot look for retrain jobs to resume");
            return;
        }
    };
    for id in jobs {
        let job = JobRef {
            id,
            kind: crate::store::JobKind::Retrain,
        };
        let waited_for = state
            .flight
            .as_ref()
            .is_some_and(|flight| flight.waiting.iter().any(|waiter| waiter.job == Some(job)));
        if waited_for {
            continue; // its request arrived: the training under way records it
        }
        let span = tracing::info_span!(
            "model train",
            store = state.key.store,
            job.id = id,
            resumed = true
        );
        span.in_scope(|| {
            tracing::info!(
                store = state.key.store,
                job = id,
                "resuming a retrain job left running"
            )
        });
        let waiter = Waiter {
            job: Some(job),
            reply: None,
            span,
        };
        match &mut state.flight {
            Some(flight) => flight.waiting.push(waiter),
            None => start_training(myself.clone(), state, Some(waiter)),
        }
    }
}

/// How long a training's outcome is retried while the database is away: past this the job
/// is left to the sweep of abandoned jobs.
const RECORD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Records a training's outcome in its job ([`Database::record_training`]), trying again
/// with backoff while the database is away (an outcome lost here leaves its job running until
/// the sweep); the model host calls it too, on behalf of an actor that stopped before it
/// could.
pub async fn record_outcome(
    database: &Database,
    key: &SeriesKey,
    job: JobRef,
    outcome: &TrainOutcome,
    node: &str,
) -> Result<(), crate::store::StoreError> {
    let recorded = match outcome {
        TrainOutcome::Trained(version) => Ok(version.version),
        TrainOutcome::Failed(error) | TrainOutcome::Refused(error) => Err(error.as_str()),
    };
    let task = task_of(key, job);
    let started = Instant::now();
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match database.record_training(job, &task, recorded, node).await {
            Err(error) if error.is_transient() && started.elapsed() < RECORD_PATIENCE => {
                tracing::debug!(job = job.id, store = key.store, %error, "cannot record a training's outcome yet; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            result => return result,
        }
    }
}

/// Loads the newest registered version of the series, if there is one.
async fn load_latest(state: &mut ModelState) -> Result<(), String> {
    let Some(version) = state
        .database
        .latest_model_version(state.key.store, &state.key.product)
        .await
        .map_err(|error| error.to_string())?
    else {
        return Ok(());
    };
    let params = version.params.clone();
    let model = tokio::task::spawn_blocking(move || restore(&params))
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?;
    state.loaded = Some(Loaded {
        info: VersionInfo {
            store: version.store,
            product: version.product,
            version: version.version,
            profile: version.profile,
            trained_from: Some(version.trained_from),
            trained_to: Some(version.trained_to),
            metrics: Some(version.metrics),
            new_data: false,
        },
        model: Arc::new(model),
        forecasts: HashMap::new(),
    });
    Ok(())
}

async fn forecast(state: &mut ModelState, days: u32) -> ForecastReply {
    let failure = |error: String| ForecastReply {
        version: None,
        points: Vec::new(),
        error: Some(error),
    };
    if state.loaded.is_none() {
        // A version may have been registered since this actor looked (trained by the
        // command line, or by another node while this one did not own the series).
        if let Err(error) = load_latest(state).await {
            return failure(format!("cannot load the latest model version: {error}"));
        }
    }
    let Some(loaded) = &mut state.loaded else {
        return failure(format!(
            "store {} has no trained model for {}",
            state.key.store, state.key.product
        ));
    };
    if !(1..=366).contains(&days) {
        return failure(format!("days must be between 1 and 366, got {days}"));
    }
    if let Some((after, points)) = loaded.forecasts.get(&days) {
        // Kept points still follow the data unless sales arrived that this actor was not
        // told of yet (a load, a notice on its way): one indexed look says.
        let last = state
            .database
            .last_sale_dates(&state.key.product, &[state.key.store])
            .await
            .map(|dates| dates.get(&state.key.store).copied());
        if let Ok(Some(last)) = last
            && last == *after
        {
            return ForecastReply {
                version: Some(loaded.info.clone()),
                points: points.as_ref().clone(),
                error: None,
            };
        }
        loaded.forecasts.clear();
    }
    let rows = match state
        .database
        .series_sales(state.key.store, &state.key.product)
        .await
    {
        Ok(rows) => rows,
        Err(error) => return failure(error.to_string()),
    };
    let Some(after) = rows.last().map(|row| row.date) else {
        return failure(format!(
            "store {} has no sales of {}",
            state.key.store, state.key.product
        ));
    };
    let (model, seed) = (Arc::clone(&loaded.model), state.settings.seed);
    let points = tokio::task::spawn_blocking(move || {
        let series = Series::from_rows(&rows).map_err(|error| error.to_string())?;
        forecast_after(&series, &model, days, seed).map_err(|error| error.to_string())
    })
    .await
    .map_err(|error| error.to_string())
    .and_then(|result| result);
    match points {
        Ok(points) => {
            if loaded.forecasts.len() >= FORECASTS_KEPT {
                loaded.forecasts.clear();
            }
            loaded
                .forecasts
                .insert(days, (after, Arc::new(points.clone())));
            ForecastReply {
                version: Some(loaded.info.clone()),
                points,
                error: None,
            }
        }
        Err(error) => failure(error),
    }
}
