//! The model actor: one per series (store, product), living on the node that owns the series.
//! Retraining a store is a `Train` message to this actor, wherever it lives.
//!
//! Steps:
//! 1. on start, load the latest registered version, if any (no retraining);
//! 2. `Train`: train the series (CV, final fit, registry, batch forecast) on the node's bounded
//!    pool. One training per series at a time: a `Train` that arrives while one runs joins it
//!    and gets the same answer;
//! 3. `Forecast`: forecast the days after the data from the loaded model, without refitting;
//! 4. `Info`: the loaded version.
//!
//! Every request carries a W3C `traceparent`, so a trace spans gateway -> owner -> database.

use std::sync::Arc;

use chrono::NaiveDate;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use crate::bincode_message_payload;
use crate::cluster::placement::SeriesKey;
use crate::forecast::model::{FittedModel, ForecastPoint};
use crate::forecast::series::Series;
use crate::forecast::validation::Metrics;
use crate::store::Database;
use crate::training::{TrainSettings, forecast_after, restore, train_one};

/// A request to retrain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    pub traceparent: String,
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

bincode_message_payload!(
    TrainRequest,
    ForecastRequest,
    VersionInfo,
    TrainReply,
    ForecastReply
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
    TrainingFinished(TrainReply),
}

pub struct ModelActor;

pub struct ModelArguments {
    pub key: SeriesKey,
    pub database: Database,
    pub settings: Arc<TrainSettings>,
}

/// The loaded version, ready to forecast.
struct Loaded {
    info: VersionInfo,
    model: Arc<FittedModel>,
}

pub struct ModelState {
    key: SeriesKey,
    database: Database,
    settings: Arc<TrainSettings>,
    loaded: Option<Loaded>,
    /// Callers waiting for the training in flight, if one is.
    waiting: Option<Vec<RpcReplyPort<TrainReply>>>,
}

impl Actor for ModelActor {
    type Msg = ModelMessage;
    type State = ModelState;
    type Arguments = ModelArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        arguments: ModelArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = ModelState {
            key: arguments.key,
            database: arguments.database,
            settings: arguments.settings,
            loaded: None,
            waiting: None,
        };
        if let Err(error) = load_latest(&mut state).await {
            tracing::warn!(store = state.key.store, %error, "cannot load the latest model version");
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ModelMessage::Train(request, reply) => {
                tracing::debug!(store = state.key.store, traceparent = %request.traceparent, "train requested");
                match &mut state.waiting {
                    // Single flight: join the training that runs.
                    Some(waiting) => waiting.push(reply),
                    None => {
                        state.waiting = Some(vec![reply]);
                        let (database, settings, store) = (
                            state.database.clone(),
                            Arc::clone(&state.settings),
                            state.key.store,
                        );
                        tokio::spawn(async move {
                            let reply = match train_one(&database, store, &settings).await {
                                Ok(trained) => TrainReply {
                                    version: Some(VersionInfo {
                                        store,
                                        product: settings.product.clone(),
                                        version: trained.version,
                                        profile: settings.profile_name.clone(),
                                        trained_from: Some(trained.trained_from),
                                        trained_to: Some(trained.trained_to),
                                        metrics: Some(trained.metrics),
                                    }),
                                    error: None,
                                },
                                Err(error) => TrainReply {
                                    version: None,
                                    error: Some(error),
                                },
                            };
                            let _ = myself.cast(ModelMessage::TrainingFinished(reply));
                        });
                    }
                }
            }
            ModelMessage::TrainingFinished(reply) => {
                if reply.version.is_some()
                    && let Err(error) = load_latest(state).await
                {
                    tracing::warn!(store = state.key.store, %error, "trained, but cannot load the new version");
                }
                for waiter in state.waiting.take().unwrap_or_default() {
                    let _ = waiter.send(reply.clone());
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
        },
        model: Arc::new(model),
    });
    Ok(())
}

async fn forecast(state: &ModelState, days: u32) -> ForecastReply {
    let failure = |error: String| ForecastReply {
        version: None,
        points: Vec::new(),
        error: Some(error),
    };
    let Some(loaded) = &state.loaded else {
        return failure(format!(
            "store {} has no trained model for {}",
            state.key.store, state.key.product
        ));
    };
    if !(1..=366).contains(&days) {
        return failure(format!("days must be between 1 and 366, got {days}"));
    }
    let rows = match state
        .database
        .series_sales(state.key.store, &state.key.product)
        .await
    {
        Ok(rows) => rows,
        Err(error) => return failure(error.to_string()),
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
        Ok(points) => ForecastReply {
            version: Some(loaded.info.clone()),
            points,
            error: None,
        },
        Err(error) => failure(error),
    }
}
