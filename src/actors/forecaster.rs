//! The forecaster: one per node with the `forecast` role. It writes batch forecasts: asked
//! for a set of series, it fans a `Forecast` out to each series' model actor, wherever it
//! lives (a bounded number at a time), and writes every answer to `forecast_results` in one
//! bulk insert. Rows are keyed by model version, so writing a job's batch again changes
//! nothing: a scheduler that takes a job over may safely repeat it.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, pg};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::client::{ClusterClient, ClusterError};
use super::model::ForecastRequest;
use crate::bincode_message_payload;
use crate::store::{Database, ForecastRecord};
use crate::telemetry;

/// The process group every forecaster joins.
pub const GROUP: &str = "storecast.forecaster";

/// Forecast requests in flight at once, across all model nodes.
const IN_FLIGHT: usize = 64;

/// Write the batch forecast of `stores` for the `days` after their data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    pub job_id: i64,
    pub product: String,
    pub stores: Vec<u32>,
    pub days: u32,
    /// W3C trace context of the call; the cluster client sets it from its call span, so
    /// callers leave it empty.
    pub traceparent: String,
}

impl BatchRequest {
    /// Write job `job_id`'s forecasts of `stores` (series of `product`) for `days`. The trace
    /// context is left to the cluster client, which sets it when it sends the request.
    pub fn new(job_id: i64, product: impl Into<String>, stores: Vec<u32>, days: u32) -> Self {
        Self {
            job_id,
            product: product.into(),
            stores,
            days,
            traceparent: String::new(),
        }
    }
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
    pub client: ClusterClient,
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
        let (database, client) = (state.database.clone(), state.client.clone());
        let span = tracing::info_span!(
            "forecaster batch",
            otel.kind = "server",
            job.id = request.job_id,
            series = request.stores.len(),
            days = request.days,
        );
        telemetry::follow(&span, &request.traceparent);
        // A batch takes seconds; the forecaster stays free to take the next one.
        tokio::spawn(
            async move {
                let answer = write_batch(&database, &client, request)
                    .await
                    .unwrap_or_else(|error| BatchReply {
                        error: Some(error),
                        ..BatchReply::default()
                    });
                let _ = reply.send(answer);
            }
            .instrument(span),
        );
        Ok(())
    }
}

async fn write_batch(
    database: &Database,
    client: &ClusterClient,
    request: BatchRequest,
) -> Result<BatchReply, String> {
    // Placed as every node places the product's series, so each request reaches the actor
    // that already runs the series.
    let routes = client
        .routes(&request.product)
        .await
        .map_err(|error| error.to_string())?;
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut forecasts = JoinSet::new();
    for &store in &request.stores {
        let owner = routes.owner(store).map(str::to_string);
        let (client, permits) = (client.clone(), Arc::clone(&permits));
        let series = ForecastRequest::new(store, request.product.clone(), request.days);
        let span = tracing::Span::current();
        forecasts.spawn(
            async move {
                let _permit = permits.acquire_owned().await;
                let Some(owner) = owner else {
                    return Err((store, "no live model host owns it".to_string()));
                };
                match client.forecast(&owner, series).await {
                    Ok(forecast) => Ok((store, forecast.version.version, forecast.points)),
                    // The reply lists failures by store already.
                    Err(ClusterError::Failed { reason, .. }) => Err((store, reason)),
                    Err(error) => Err((store, error.to_string())),
                }
            }
            .instrument(span),
        );
    }
    let mut records = Vec::new();
    let mut reply = BatchReply::default();
    while let Some(joined) = forecasts.join_next().await {
        match joined.map_err(|error| error.to_string())? {
            Ok((store, version, points)) => {
                reply.series += 1;
                records.extend(ForecastRecord::of_points(
                    store,
                    &request.product,
                    version,
                    &points,
                ));
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
