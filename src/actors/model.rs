//! The model actor: one per series (store, product), living on the node that owns the series.
//! Retraining a store is a `Train` message to this actor, wherever it lives.
//!
//! Steps:
//! 1. on start, load the latest registered version, if any (no retraining), as the first
//!    message the actor handles, so starting many actors at once never waits on the database;
//! 2. `Train`: train the series (CV, final fit, registry, batch forecast) on the node's bounded
//!    pool. One training per series at a time: a `Train` that arrives while one runs joins it
//!    and gets the same answer. A `Train` for a job task completes the task with the version
//!    (the registry refuses a second version for one task, see `store::jobs`);
//! 3. `Forecast`: forecast the days after the data from the loaded model, without refitting;
//! 4. `Info`: the loaded version.
//!
//! Every request carries a W3C `traceparent`, so a trace spans gateway -> owner -> database.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::bincode_message_payload;
use crate::cluster::placement::SeriesKey;
use crate::forecast::model::{FittedModel, ForecastPoint};
use crate::forecast::series::Series;
use crate::forecast::validation::Metrics;
use crate::store::{Database, TaskRef};
use crate::training::{TrainSettings, forecast_after, restore, train_series};

/// A request to retrain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    pub traceparent: String,
    /// The job this training is a task of, when a job asks.
    pub job_id: Option<i64>,
}

/// A request for the days after the data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForecastRequest {
    pub days: u32,
    pub traceparent: String,
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

/// The outcome of a training: the new version, or why there is none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainReply {
    pub version: Option<VersionInfo>,
    pub error: Option<String>,
}

/// A forecast with the version that made it, or why there is none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForecastReply {
    pub version: Option<VersionInfo>,
    pub points: Vec<ForecastPoint>,
    pub error: Option<String>,
}

/// A training's outcome as its task tells the actor: the reply, and the forecast of the
/// days after the data that the fit made (empty when nothing new was trained).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    pub reply: TrainReply,
    pub forecast: Vec<ForecastPoint>,
}

bincode_message_payload!(
    TrainRequest,
    ForecastRequest,
    VersionInfo,
    TrainReply,
    ForecastReply,
    Trained
);

/// Messages of a model actor; all but `TrainingFinished` may come from another node.
#[derive(RactorClusterMessage)]
pub enum ModelMessage {
    #[rpc]
    Train(TrainRequest, RpcReplyPort<TrainReply>),
    #[rpc]
    Forecast(ForecastRequest, RpcReplyPort<ForecastReply>),
    #[rpc]
    Info(TrainRequest, RpcReplyPort<VersionInfo>),
    /// The training started by this actor finished (sent to itself).
    TrainingFinished(Trained),
    /// Load the latest registered version (sent to itself on start).
    Load,
    /// New sales of the series landed (from ingest, through the host).
    DataArrived,
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
    job_id: Option<i64>,
    waiting: Vec<(Option<i64>, RpcReplyPort<TrainReply>)>,
    /// Sales arrived while it trained: its forecast is not of the days after the data.
    data_arrived: bool,
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
                    state.flight = Some(Flight {
                        job_id: None,
                        waiting: Vec::new(),
                        data_arrived: false,
                    });
                    start_training(myself, state, None);
                }
            }
            ModelMessage::Load => {
                if let Err(error) = load_latest(state).await {
                    tracing::warn!(store = state.key.store, %error, "cannot load the latest model version");
                }
            }
            ModelMessage::Train(request, reply) => {
                tracing::debug!(store = state.key.store, job = ?request.job_id, traceparent = %request.traceparent, "train requested");
                match &mut state.flight {
                    // Single flight: join the training that runs.
                    Some(flight) => flight.waiting.push((request.job_id, reply)),
                    None => {
                        state.flight = Some(Flight {
                            job_id: request.job_id,
                            waiting: vec![(request.job_id, reply)],
                            data_arrived: false,
                        });
                        start_training(myself, state, request.job_id);
                    }
                }
            }
            ModelMessage::TrainingFinished(Trained { reply, forecast }) => {
                if reply.version.is_some()
                    && let Err(error) = load_latest(state).await
                {
                    tracing::warn!(store = state.key.store, %error, "trained, but cannot load the new version");
                }
                // The fit's own forecast of the next days is what an online forecast of them
                // would compute: keep it, so the first request does not wait for one.
                let fresh = state
                    .flight
                    .as_ref()
                    .is_some_and(|flight| !flight.data_arrived);
                if let (true, Some(loaded), Some(version)) =
                    (fresh, &mut state.loaded, &reply.version)
                    && loaded.info.version == version.version
                    && let Some(after) = forecast.first().and_then(|point| point.date.pred_opt())
                {
                    let days = u32::try_from(forecast.len()).unwrap_or(u32::MAX);
                    loaded.forecasts.insert(days, (after, Arc::new(forecast)));
                }
                let Some(flight) = state.flight.take() else {
                    return Ok(());
                };
                for (job_id, waiter) in flight.waiting {
                    let mut answer = reply.clone();
                    if let (Some(job_id), Some(version)) = (job_id, &reply.version)
                        && Some(job_id) != flight.job_id
                    {
                        // This job's Train joined another request's training: its version
                        // completes the job's task too.
                        let task = TaskRef {
                            job_id,
                            store: state.key.store,
                            product: state.key.product.clone(),
                        };
                        if let Err(error) = state
                            .database
                            .complete_task(&task, version.version, &state.settings.node)
                            .await
                        {
                            answer = TrainReply {
                                version: None,
                                error: Some(error.to_string()),
                            };
                        }
                    }
                    let _ = waiter.send(answer);
                }
            }
            ModelMessage::Forecast(request, reply) => {
                tracing::debug!(store = state.key.store, traceparent = %request.traceparent, "forecast requested");
                let _ = reply.send(forecast(state, request.days).await);
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
/// when it is done.
fn start_training(myself: ActorRef<ModelMessage>, state: &ModelState, job_id: Option<i64>) {
    let (database, settings, store) = (
        state.database.clone(),
        Arc::clone(&state.settings),
        state.key.store,
    );
    let task = job_id.map(|job_id| TaskRef {
        job_id,
        store,
        product: state.key.product.clone(),
    });
    let fits = Arc::clone(&state.fits);
    tokio::spawn(async move {
        // The pool is never closed, so acquiring only waits for a free worker.
        let _permit = fits.acquire_owned().await;
        let trained = match train_series(&database, store, &settings, task.as_ref()).await {
            Ok(trained) => Trained {
                reply: TrainReply {
                    version: Some(VersionInfo {
                        store,
                        product: settings.product.clone(),
                        version: trained.version,
                        profile: settings.profile_name.clone(),
                        trained_from: Some(trained.trained_from),
                        trained_to: Some(trained.trained_to),
                        metrics: Some(trained.metrics),
                        new_data: false,
                    }),
                    error: None,
                },
                forecast: if trained.fresh {
                    trained.forecast
                } else {
                    Vec::new()
                },
            },
            Err(error) => Trained {
                reply: TrainReply {
                    version: None,
                    error: Some(error),
                },
                forecast: Vec::new(),
            },
        };
        let _ = myself.cast(ModelMessage::TrainingFinished(trained));
    });
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
