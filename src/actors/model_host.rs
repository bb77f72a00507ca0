//! The model host: one per node with the `models` role. It owns the model actors of the
//! series placed on this node, starting each on its first message or when the node adopts
//! the series after a view change (it then loads the latest version from the registry;
//! nothing is retrained), and stopping those whose series moved elsewhere.
//!
//! Requests name a series; the host forwards them to its model actor from a task, so a long
//! training never blocks the host. Hosts join the process group `storecast.model_host.<node>`,
//! which is how the cluster client ([`super::client`]) finds the host of a series' owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, pg};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

use super::model::{
    ForecastReply, ForecastRequest, InfoRequest, ModelActor, ModelArguments, ModelMessage,
    TrainOutcome, TrainRequest, VersionInfo, record_outcome,
};
use crate::bincode_message_payload;
use crate::cluster::placement::SeriesKey;
use crate::metrics;
use crate::store::Database;
use crate::training::TrainSettings;

/// What the process group of every model host starts with.
pub const GROUP_PREFIX: &str = "storecast.model_host.";

/// The process group of the model host on `node`.
pub fn group(node: &str) -> String {
    format!("{GROUP_PREFIX}{node}")
}

/// Which series a host runs actors for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostedRequest {
    /// W3C trace context of the call; the cluster client sets it from its call span, so
    /// callers leave it empty.
    pub traceparent: String,
}

/// The series a host runs actors for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hosted {
    pub node: String,
    pub series: Vec<(u32, String)>,
}

/// Stores of one product.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stores {
    pub product: String,
    pub stores: Vec<u32>,
}

bincode_message_payload!(HostedRequest, Hosted, Stores);

#[derive(RactorClusterMessage)]
pub enum ModelHostMessage {
    #[rpc]
    Train(TrainRequest, RpcReplyPort<TrainOutcome>),
    #[rpc]
    Forecast(ForecastRequest, RpcReplyPort<ForecastReply>),
    #[rpc]
    Info(InfoRequest, RpcReplyPort<VersionInfo>),
    #[rpc]
    Hosted(HostedRequest, RpcReplyPort<Hosted>),
    /// Stop the actors of series this node no longer owns (sent by the node on view changes).
    Release(Stores),
    /// Start the actors of series this node now owns, so they are loaded before they are
    /// asked (sent by the node on view changes).
    Adopt(Stores),
    /// New sales of these stores landed (sent by ingest); the actors running here learn it.
    DataArrived(Stores),
}

pub struct ModelHost;

pub struct ModelHostArguments {
    pub node: String,
    pub database: Database,
    pub settings: Arc<TrainSettings>,
    pub gate: Arc<TrainingGate>,
    /// Longest a model actor may take to answer a forwarded request (`train.timeout_secs`).
    pub training_timeout: Duration,
}

pub struct ModelHostState {
    node: String,
    database: Database,
    settings: Arc<TrainSettings>,
    /// The node's training pool: one permit per worker, shared by all its model actors.
    fits: Arc<Semaphore>,
    gate: Arc<TrainingGate>,
    training_timeout: Duration,
    actors: HashMap<SeriesKey, ActorRef<ModelMessage>>,
}

impl Actor for ModelHost {
    type Msg = ModelHostMessage;
    type State = ModelHostState;
    type Arguments = ModelHostArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: ModelHostArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        pg::join(group(&arguments.node), vec![myself.get_cell()]);
        Ok(ModelHostState {
            node: arguments.node,
            database: arguments.database,
            fits: Arc::new(Semaphore::new(arguments.settings.workers.max(1))),
            settings: arguments.settings,
            gate: arguments.gate,
            training_timeout: arguments.training_timeout,
            actors: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ModelHostMessage::Train(request, reply) => {
                let Some(pass) = state.gate.enter() else {
                    let _ = reply.send(TrainOutcome::Refused(format!(
                        "node {} is stopping and takes no new training",
                        state.node
                    )));
                    return Ok(());
                };
                let actor = actor_for(&myself, state, request.key()).await?;
                let (database, node, timeout) = (
                    state.database.clone(),
                    state.node.clone(),
                    state.training_timeout,
                );
                tokio::spawn(async move {
                    let (key, job) = (request.key(), request.job);
                    let asked = ask(&actor, |port| ModelMessage::Train(request, port), timeout);
                    let answer = match asked.await {
                        Ok(outcome) => outcome,
                        // Still training: the actor records the outcome when it ends.
                        Err(Unanswered::Timeout) => TrainOutcome::Failed(format!(
                            "the training did not end within {} s (train.timeout_secs)",
                            timeout.as_secs()
                        )),
                        Err(Unanswered::Stopped(why)) => {
                            // Nobody else will record how its training ended.
                            let failed = TrainOutcome::Failed(format!(
                                "the model actor stopped during the training: {why}"
                            ));
                            if let Some(job) = job
                                && let Err(error) =
                                    record_outcome(&database, &key, job, &failed, &node).await
                            {
                                tracing::warn!(store = key.store, job = job.id, %error, "cannot record a training's outcome");
                            }
                            failed
                        }
                    };
                    let _ = reply.send(answer);
                    drop(pass);
                });
            }
            ModelHostMessage::Forecast(request, reply) => {
                let actor = actor_for(&myself, state, request.key()).await?;
                forward(
                    actor,
                    |port| ModelMessage::Forecast(request, port),
                    reply,
                    |reason| ForecastReply {
                        version: None,
                        points: Vec::new(),
                        error: Some(reason),
                    },
                    state.training_timeout,
                );
            }
            ModelHostMessage::Info(request, reply) => {
                let actor = actor_for(&myself, state, request.key()).await?;
                forward(
                    actor,
                    |port| ModelMessage::Info(request, port),
                    reply,
                    |_| VersionInfo::default(),
                    state.training_timeout,
                );
            }
            ModelHostMessage::Hosted(_, reply) => {
                let mut series: Vec<(u32, String)> = state
                    .actors
                    .keys()
                    .map(|key| (key.store, key.product.clone()))
                    .collect();
                series.sort();
                let _ = reply.send(Hosted {
                    node: state.node.clone(),
                    series,
                });
            }
            ModelHostMessage::Release(Stores { product, stores }) => {
                for store in stores {
                    if let Some(actor) =
                        state.actors.remove(&SeriesKey::new(store, product.clone()))
                    {
                        actor.stop(Some("series moved to another node".to_string()));
                    }
                }
            }
            ModelHostMessage::DataArrived(Stores { product, stores }) => {
                for store in stores {
                    if let Some(actor) = state.actors.get(&SeriesKey::new(store, product.clone())) {
                        let _ = actor.cast(ModelMessage::DataArrived);
                    }
                }
            }
            ModelHostMessage::Adopt(Stores { product, stores }) => {
                for store in stores {
                    actor_for(&myself, state, SeriesKey::new(store, product.clone())).await?;
                }
            }
        }
        metrics::metrics()
            .model_actors
            .set(state.actors.len() as i64);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: ractor::SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A model actor that fails is forgotten; the next message for its series starts a
        // fresh one from the registry.
        if let ractor::SupervisionEvent::ActorFailed(who, error) = event {
            state
                .actors
                .retain(|_, actor| actor.get_id() != who.get_id());
            tracing::warn!(actor = %who.get_id(), %error, "model actor failed; it restarts on its next message");
        }
        Ok(())
    }
}

/// Forwards a request to a model actor from a task, so the host never waits on it, and
/// sends back the answer, or `failed(reason)` when the actor does not give one.
fn forward<Reply>(
    actor: ActorRef<ModelMessage>,
    request: impl FnOnce(RpcReplyPort<Reply>) -> ModelMessage + Send + 'static,
    reply: RpcReplyPort<Reply>,
    failed: impl FnOnce(String) -> Reply + Send + 'static,
    timeout: Duration,
) where
    Reply: Send + std::fmt::Debug + 'static,
{
    tokio::spawn(async move {
        let answer = match ask(&actor, request, timeout).await {
            Ok(value) => value,
            Err(Unanswered::Timeout) => failed(format!(
                "model actor did not answer within {} s",
                timeout.as_secs()
            )),
            Err(Unanswered::Stopped(why)) => failed(format!("model actor stopped: {why}")),
        };
        let _ = reply.send(answer);
    });
}

/// Why a local model actor gave no answer.
enum Unanswered {
    /// It may still answer later.
    Timeout,
    /// It stopped: it never will.
    Stopped(String),
}

/// Asks one of this host's model actors and waits up to `timeout`.
async fn ask<Reply: Send + 'static>(
    actor: &ActorRef<ModelMessage>,
    request: impl FnOnce(RpcReplyPort<Reply>) -> ModelMessage,
    timeout: Duration,
) -> Result<Reply, Unanswered> {
    match actor.call(request, Some(timeout)).await {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => Err(Unanswered::Timeout),
        Ok(CallResult::SenderError) => Err(Unanswered::Stopped("it dropped the request".into())),
        Err(error) => Err(Unanswered::Stopped(error.to_string())),
    }
}

/// The trainings a node runs, shared by its model host and its supervisor: on shutdown the
/// supervisor closes the gate (new trainings are refused) and waits for those in flight.
#[derive(Debug, Default)]
pub struct TrainingGate {
    closed: AtomicBool,
    running: AtomicUsize,
    idle: Notify,
}

/// A training let through the gate; it counts as running until dropped.
pub struct TrainingPass(Arc<TrainingGate>);

impl Drop for TrainingPass {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl TrainingGate {
    /// Lets a training in, unless the gate is closed.
    pub fn enter(self: &Arc<Self>) -> Option<TrainingPass> {
        self.running.fetch_add(1, Ordering::AcqRel);
        let pass = TrainingPass(Arc::clone(self));
        // Checked after counting, so `wait_idle` never misses a training that got in.
        (!self.closed.load(Ordering::Acquire)).then_some(pass)
    }

    /// Refuses new trainings from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Trainings in flight.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Waits until no training runs, or `grace` passed; true when none runs.
    pub async fn wait_idle(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                // Registered before the check, so a notification in between is not lost.
                idle.as_mut().enable();
                if self.running() == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok()
    }
}

/// The actor of `key`'s series, started (and loaded from the registry) if needed.
async fn actor_for(
    myself: &ActorRef<ModelHostMessage>,
    state: &mut ModelHostState,
    key: SeriesKey,
) -> Result<ActorRef<ModelMessage>, ActorProcessingErr> {
    if let Some(actor) = state.actors.get(&key) {
        return Ok(actor.clone());
    }
    let (actor, _) = Actor::spawn_linked(
        None,
        ModelActor,
        ModelArguments {
            key: key.clone(),
            database: state.database.clone(),
            settings: Arc::clone(&state.settings),
            fits: Arc::clone(&state.fits),
        },
        myself.get_cell(),
    )
    .await?;
    tracing::debug!(store = key.store, product = %key.product, node = %state.node, "model actor activated");
    state.actors.insert(key, actor.clone());
    Ok(actor)
}
