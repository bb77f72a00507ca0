//! The model host: one per node with the `models` role. It owns the model actors of the
//! series placed on this node, starting each on its first message or when the node adopts
//! the series after a view change (it then loads the latest version from the registry;
//! nothing is retrained), and stopping those whose series moved elsewhere.
//!
//! Requests name a series; the host forwards them to its model actor from a task, so a long
//! training never blocks the host. Hosts join the process group `storecast.model_host.<node>`,
//! which is how other nodes find the host of a series' owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, pg};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore};

use super::model::{
    ForecastReply, ForecastRequest, ModelActor, ModelArguments, ModelMessage, TrainReply,
    TrainRequest, VersionInfo,
};
use crate::bincode_message_payload;
use crate::cluster::member::{MemberView, Role};
use crate::cluster::placement::{DEFAULT_LOAD_FACTOR, Placement, SeriesKey};
use crate::metrics;
use crate::store::Database;
use crate::training::TrainSettings;

/// What the process group of every model host starts with.
pub const GROUP_PREFIX: &str = "storecast.model_host.";

/// The process group of the model host on `node`.
pub fn group(node: &str) -> String {
    format!("{GROUP_PREFIX}{node}")
}

/// A request about one series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesRequest {
    pub store: u32,
    pub product: String,
    /// Days to forecast (forecast requests only).
    pub days: u32,
    pub traceparent: String,
    /// The job a training is a task of (train requests only).
    pub job_id: Option<i64>,
}

/// The series a host runs actors for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hosted {
    pub node: String,
    pub series: Vec<(u32, String)>,
}

bincode_message_payload!(SeriesRequest, Hosted);

#[derive(RactorClusterMessage)]
pub enum ModelHostMessage {
    #[rpc]
    Train(SeriesRequest, RpcReplyPort<TrainReply>),
    #[rpc]
    Forecast(SeriesRequest, RpcReplyPort<ForecastReply>),
    #[rpc]
    Info(SeriesRequest, RpcReplyPort<VersionInfo>),
    #[rpc]
    Hosted(SeriesRequest, RpcReplyPort<Hosted>),
    /// Stop the actors of series this node no longer owns (sent by the node on view changes).
    Release(Vec<u32>, String),
    /// Start the actors of series this node now owns, so they are loaded before they are
    /// asked (sent by the node on view changes).
    Adopt(Vec<u32>, String),
    /// New sales of these stores landed (sent by ingest); the actors running here learn it.
    DataArrived(Vec<u32>, String),
}

pub struct ModelHost;

pub struct ModelHostArguments {
    pub node: String,
    pub database: Database,
    pub settings: Arc<TrainSettings>,
    pub gate: Arc<TrainingGate>,
}

pub struct ModelHostState {
    node: String,
    database: Database,
    settings: Arc<TrainSettings>,
    /// The node's training pool: one permit per worker, shared by all its model actors.
    fits: Arc<Semaphore>,
    gate: Arc<TrainingGate>,
    actors: HashMap<SeriesKey, ActorRef<ModelMessage>>,
}

/// Longest a forwarded request may take: a training of a long series included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(600);

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
                    let _ = reply.send(TrainReply {
                        version: None,
                        error: Some(format!(
                            "{STOPPING} node {} takes no new training",
                            state.node
                        )),
                    });
                    return Ok(());
                };
                let actor = actor_for(&myself, state, &request).await?;
                let train = TrainRequest {
                    traceparent: request.traceparent,
                    job_id: request.job_id,
                };
                forward(
                    actor,
                    |port| ModelMessage::Train(train, port),
                    reply,
                    |reason| TrainReply {
                        version: None,
                        error: Some(reason),
                    },
                    Some(pass),
                );
            }
            ModelHostMessage::Forecast(request, reply) => {
                let actor = actor_for(&myself, state, &request).await?;
                let forecast = ForecastRequest {
                    days: request.days,
                    traceparent: request.traceparent,
                };
                forward(
                    actor,
                    |port| ModelMessage::Forecast(forecast, port),
                    reply,
                    |reason| ForecastReply {
                        version: None,
                        points: Vec::new(),
                        error: Some(reason),
                    },
                    None,
                );
            }
            ModelHostMessage::Info(request, reply) => {
                let actor = actor_for(&myself, state, &request).await?;
                let info = TrainRequest {
                    traceparent: request.traceparent,
                    job_id: None,
                };
                forward(
                    actor,
                    |port| ModelMessage::Info(info, port),
                    reply,
                    |_| VersionInfo::default(),
                    None,
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
            ModelHostMessage::Release(stores, product) => {
                for store in stores {
                    if let Some(actor) =
                        state.actors.remove(&SeriesKey::new(store, product.clone()))
                    {
                        actor.stop(Some("series moved to another node".to_string()));
                    }
                }
            }
            ModelHostMessage::DataArrived(stores, product) => {
                for store in stores {
                    if let Some(actor) = state.actors.get(&SeriesKey::new(store, product.clone())) {
                        let _ = actor.cast(ModelMessage::DataArrived);
                    }
                }
            }
            ModelHostMessage::Adopt(stores, product) => {
                for store in stores {
                    let request = SeriesRequest {
                        store,
                        product: product.clone(),
                        ..SeriesRequest::default()
                    };
                    actor_for(&myself, state, &request).await?;
                }
            }
        }
        metrics::set(metrics::MODEL_ACTORS, &[], state.actors.len() as f64);
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

/// Forwards a request to a model actor from a task, so the host never waits on a training,
/// and sends back the answer, or `failed(reason)` when the actor does not give one. A
/// training holds its `pass` until it is answered.
fn forward<Reply>(
    actor: ActorRef<ModelMessage>,
    request: impl FnOnce(RpcReplyPort<Reply>) -> ModelMessage + Send + 'static,
    reply: RpcReplyPort<Reply>,
    failed: impl FnOnce(String) -> Reply + Send + 'static,
    pass: Option<TrainingPass>,
) where
    Reply: Send + std::fmt::Debug + 'static,
{
    tokio::spawn(async move {
        let answer = match actor.call(request, Some(FORWARD_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(value)) => value,
            Ok(other) => failed(format!("model actor did not answer: {other:?}")),
            Err(error) => failed(format!("model actor unreachable: {error}")),
        };
        let _ = reply.send(answer);
        drop(pass);
    });
}

/// How a host's refusal to train while its node stops begins; the scheduler sends such a
/// series again elsewhere without counting an attempt.
pub const STOPPING: &str = "stopping:";

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

/// The actor of the request's series, started (and loaded from the registry) if needed.
async fn actor_for(
    myself: &ActorRef<ModelHostMessage>,
    state: &mut ModelHostState,
    request: &SeriesRequest,
) -> Result<ActorRef<ModelMessage>, ActorProcessingErr> {
    let key = SeriesKey::new(request.store, request.product.clone());
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

/// Placement of `keys` over the view's members with the `models` role.
pub fn placement(view: &MemberView, keys: &[SeriesKey]) -> Placement {
    let hosts: Vec<String> = view
        .with_role(Role::Models)
        .into_iter()
        .map(|member| member.name.clone())
        .collect();
    Placement::compute(keys, &hosts, DEFAULT_LOAD_FACTOR)
}

/// The owner of `key` and its model host, if that host is in the process groups.
pub fn owner_host(
    placement: &Placement,
    key: &SeriesKey,
) -> Option<(String, ActorRef<ModelHostMessage>)> {
    let owner = placement.owner(key)?.to_string();
    let host = pg::get_members(&group(&owner)).into_iter().next()?;
    Some((owner, host.into()))
}
