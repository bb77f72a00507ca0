//! The forecaster: one per node with the `forecast` role. It writes batch forecasts: asked
//! for a set of series, it fans a `Forecast` out to each series' model actor, wherever it
//! lives (a bounded number at a time), and writes every answer to `forecast_results` in one
//! bulk insert. Rows are keyed by model version, so writing a job's batch again changes
//! nothing: a scheduler that takes a job over may safely repeat it.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, pg};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::membership::MembershipMessage;
use super::model_host::{ModelHostMessage, SeriesRequest, owner_host, placement};
use crate::bincode_message_payload;
use crate::cluster::placement::SeriesKey;
use crate::store::{Database, ForecastRecord};

/// The process group every forecaster joins.
pub const GROUP: &str = "storecast.forecaster";

/// Forecast requests in flight at once, across all model nodes.
const IN_FLIGHT: usize = 64;
/// Longest one series' forecast may take.
const FORECAST_TIMEOUT: Duration = Duration::from_secs(60);

/// Write the batch forecast of `stores` for the `days` after their data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    pub job_id: i64,
    pub product: String,
    pub stores: Vec<u32>,
    pub days: u32,
    pub traceparent: String,
}

/// What a batch wrote, and the series it could not forecast, with why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchReply {
    pub series: u32,
    pub rows: u64,
    pub failed: Vec<(u32, String)>,
    pub error: Option<String>,
}

bincode_message_payload!(BatchRequest, BatchReply);

#[derive(RactorClusterMessage)]
pub enum ForecasterMessage {
    #[rpc]
    WriteBatch(BatchRequest, RpcReplyPort<BatchReply>),
}

pub struct Forecaster;

pub struct ForecasterArguments {
    pub database: Database,
    pub membership: ActorRef<MembershipMessage>,
}

impl Actor for Forecaster {
    type Msg = ForecasterMessage;
    type State = ForecasterArguments;
    type Arguments = ForecasterArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: ForecasterArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        pg::join(GROUP.to_string(), vec![myself.get_cell()]);
        Ok(arguments)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ForecasterMessage::WriteBatch(request, reply) = message;
        let (database, membership) = (state.database.clone(), state.membership.clone());
        // A batch takes seconds; the forecaster stays free to take the next one.
        tokio::spawn(async move {
            let answer = write_batch(&database, &membership, request)
                .await
                .unwrap_or_else(|error| BatchReply {
                    error: Some(error),
                    ..BatchReply::default()
                });
            let _ = reply.send(answer);
        });
        Ok(())
    }
}

async fn write_batch(
    database: &Database,
    membership: &ActorRef<MembershipMessage>,
    request: BatchRequest,
) -> Result<BatchReply, String> {
    let view = ractor::call_t!(membership, MembershipMessage::GetView, 2_000)
        .map_err(|error| format!("no member view: {error}"))?;
    let keys: Vec<SeriesKey> = request
        .stores
        .iter()
        .map(|store| SeriesKey::new(*store, request.product.clone()))
        .collect();
    let placement = placement(&view, &keys);
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut forecasts = JoinSet::new();
    for key in keys {
        let host = owner_host(&placement, &key);
        let permits = Arc::clone(&permits);
        let series = SeriesRequest {
            store: key.store,
            product: key.product.clone(),
            days: request.days,
            traceparent: request.traceparent.clone(),
            job_id: None,
        };
        forecasts.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let Some((owner, host)) = host else {
                return Err((series.store, "no live model host owns it".to_string()));
            };
            let store = series.store;
            let call = host
                .call(
                    |port| ModelHostMessage::Forecast(series, port),
                    Some(FORECAST_TIMEOUT),
                )
                .await;
            match call {
                Ok(ractor::rpc::CallResult::Success(answer)) => match answer.version {
                    Some(version) => Ok((store, version.version, answer.points)),
                    None => Err((store, answer.error.unwrap_or_default())),
                },
                Ok(other) => Err((store, format!("node {owner} did not answer: {other:?}"))),
                Err(error) => Err((store, format!("node {owner} unreachable: {error}"))),
            }
        });
    }
    let mut records = Vec::new();
    let mut reply = BatchReply::default();
    while let Some(joined) = forecasts.join_next().await {
        match joined.map_err(|error| error.to_string())? {
            Ok((store, version, points)) => {
                reply.series += 1;
                records.extend(points.into_iter().map(|point| ForecastRecord {
                    store,
                    product: request.product.clone(),
                    date: point.date,
                    yhat: point.yhat,
                    lower: point.lower,
                    upper: point.upper,
                    model_version: version,
                }));
            }
            Err(failure) => reply.failed.push(failure),
        }
    }
    reply.failed.sort();
    reply.rows = database
        .write_forecasts(&records)
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(
        job = request.job_id,
        series = reply.series,
        rows = reply.rows,
        failed = reply.failed.len(),
        "batch forecasts written"
    );
    Ok(reply)
}
