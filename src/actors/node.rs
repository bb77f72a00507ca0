//! The node supervisor: one per process. It starts ractor_cluster's `NodeServer` (transport,
//! cookie authentication, process-group sync), the membership actor, and the role actors
//! the node's roles ask for (ingest, model host, scheduler, forecaster, gateway). A role actor that fails is
//! restarted with exponential backoff; one that keeps failing is reported as an error each
//! time, never silently dropped. A failed transport or membership actor stops the node,
//! loudly: a node that cannot see the cluster must not pretend to be in it.
//!
//! The supervisor owns the node's [`ClusterClient`], made once the membership actor runs and
//! handed to every role actor that reaches other nodes.
//!
//! Graceful stop (SIGTERM, Ctrl-C): stop taking work (the scheduler hands its lease over,
//! the model host refuses new trainings), leave the membership group so peers see a
//! departure and route elsewhere, finish the trainings in flight (up to a grace period; the
//! transport stays up so their answers arrive), keep the HTTP listeners answering as
//! draining until the stop notice (`admin.stop_notice_ms`) ends, then stop the transport.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{IncomingEncryptionMode, NodeServer, NodeServerMessage, RactorMessage};
use tokio::net::TcpListener;

use super::background::Background;
use super::client::ClusterClient;
use super::forecaster::{Forecaster, ForecasterArguments};
use super::gateway::{GatewayActor, GatewayArguments, HttpServer, ServerContext};
use super::ingest::{Ingest, IngestArguments, IngestSettings};
use super::membership::{Membership, MembershipArguments, MembershipMessage};
use super::model_host::{ModelHost, ModelHostArguments, Stores, TrainingGate};
use super::scheduler::{Scheduler, SchedulerArguments, SchedulerSettings};
use crate::cluster::member::{MemberInfo, MemberView, Role};
use crate::cluster::tls::NodeTls;
use crate::cluster::transport::{self, Dialler, Handshakes};
use crate::store::Database;
use crate::training::TrainSettings;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub me: MemberInfo,
    pub listen: SocketAddr,
    pub cookie: String,
    pub seeds: Vec<String>,
    pub heartbeat: Duration,
    pub failure_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Longest an incoming connection may take to finish its handshake and authenticate.
    pub handshake_timeout: Duration,
    /// TLS between nodes, when configured.
    pub tls: Option<NodeTls>,
    /// Longest a training may take, wherever it is asked for (`train.timeout_secs`).
    pub training_timeout: Duration,
    /// The database: the series set the node's cluster client places, and the store of the
    /// role actors. Every node with roles has one; a client member may.
    pub database: Option<Database>,
    /// What the role actors need; `None` on a member without roles (a client).
    pub services: Option<NodeServices>,
    /// The admin listener (metrics and health), run whatever the roles; `None` on a client.
    pub admin: Option<HttpServer>,
    /// How long a stopping node's HTTP listeners keep answering, readiness saying it drains
    /// (`admin.stop_notice_ms`).
    pub stop_notice: Duration,
}

/// What the node's health endpoints report of the node itself: whether it is stopping, and
/// its ingest's health.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    draining: Arc<AtomicBool>,
    /// What the node's ingest says of itself (`None`: no ingest role here).
    ingest: Arc<std::sync::Mutex<Option<IngestHealth>>>,
}

/// The ingest role's health, for readiness to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestHealth {
    /// Partitions of the topic no live ingest node consumes while messages wait on them.
    pub stalled: bool,
    /// In words: what it consumes, the group's lag, what is stalled and for how long.
    pub detail: String,
}

impl NodeStatus {
    /// The ingest role's last word on its health.
    pub fn ingest(&self) -> Option<IngestHealth> {
        self.ingest.lock().ok().and_then(|ingest| ingest.clone())
    }

    /// Records the ingest role's health (`None` when it stops).
    pub fn set_ingest(&self, health: Option<IngestHealth>) {
        if let Ok(mut ingest) = self.ingest.lock() {
            *ingest = health;
        }
    }

    /// The node was asked to stop: it takes no new work and will leave.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// The settings of the role actors.
#[derive(Debug, Clone)]
pub struct NodeServices {
    pub train: Arc<TrainSettings>,
    pub scheduler: SchedulerSettings,
    pub ingest: IngestSettings,
    /// The HTTP server of the `gateway` role.
    pub http: HttpServer,
}

/// How often a model host checks that it runs the series placed on it.
const REBALANCE_EVERY: Duration = Duration::from_secs(1);
/// First and largest delay before a failed role actor is started again.
const RESTART_MIN: Duration = Duration::from_millis(100);
const RESTART_MAX: Duration = Duration::from_secs(30);
/// Failures within this window count towards a role "that keeps failing".
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const KEEPS_FAILING: usize = 5;
/// Longest a stopping node waits for its trainings in flight.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// How long the transport stays up after the last training answered.
const TRANSPORT_LINGER: Duration = Duration::from_millis(300);

/// The node supervisor.
pub struct NodeSupervisor;

/// The actors a node runs for its roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleActor {
    Gateway,
    Ingest,
    ModelHost,
    Scheduler,
    Forecaster,
}

impl RoleActor {
    fn name(self) -> &'static str {
        match self {
            RoleActor::Gateway => "gateway",
            RoleActor::Ingest => "ingest",
            RoleActor::ModelHost => "model host",
            RoleActor::Scheduler => "scheduler",
            RoleActor::Forecaster => "forecaster",
        }
    }
}

#[derive(RactorMessage)]
pub enum NodeMessage {
    /// The live member view, from the membership actor.
    View(ractor::RpcReplyPort<MemberView>),
    /// The node's cluster client.
    Client(ractor::RpcReplyPort<ClusterClient>),
    /// Timer: match the hosted model actors to placement.
    Rebalance,
    /// Start a role actor again after its backoff.
    Restart(RoleActor),
}

/// A role actor and its recent failures.
struct RoleSlot {
    actor: Option<ActorCell>,
    failures: Vec<Instant>,
}

pub struct NodeState {
    me: MemberInfo,
    membership: ActorRef<MembershipMessage>,
    client: ClusterClient,
    node_server: ActorRef<NodeServerMessage>,
    /// The cluster port's accept loop.
    cluster_listener: Option<Background>,
    database: Option<Database>,
    services: Option<NodeServices>,
    roles: HashMap<RoleActor, RoleSlot>,
    /// Whether the model host runs (the node rebalances its series only then).
    hosting: bool,
    status: NodeStatus,
    /// The admin listener, stopped last.
    admin: Option<Background>,
    /// Least time from the start of a stop to the closing of the HTTP listeners.
    stop_notice: Duration,
    /// Trainings in flight on this node, closed and drained on shutdown.
    trainings: Arc<TrainingGate>,
    /// What the last rebalance checked: the member view and how many series were hosted.
    /// Nothing can have moved while both stay the same, so the check is skipped.
    last_rebalance: Option<(MemberView, usize)>,
}

impl Actor for NodeSupervisor {
    type Msg = NodeMessage;
    type State = NodeState;
    type Arguments = NodeSettings;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        settings: NodeSettings,
    ) -> Result<Self::State, ActorProcessingErr> {
        let advertise_host = settings
            .me
            .advertise
            .rsplit_once(':')
            .map_or(settings.me.advertise.clone(), |(host, _)| host.to_string());
        // With TLS, the membership actor dials the peers the transport would dial in plain
        // TCP in transitive mode.
        let (encryption, mode) = match &settings.tls {
            Some(tls) => (
                Some(IncomingEncryptionMode::Tls(tls.acceptor.clone())),
                NodeConnectionMode::Isolated,
            ),
            None => (None, NodeConnectionMode::Transitive),
        };
        // storecast accepts on the cluster port itself (see `cluster::transport`); the node
        // server's own listener gets a loopback port nobody is told about.
        let cluster_port = TcpListener::bind(settings.listen)
            .await
            .map_err(|error| format!("cannot listen on {}: {error}", settings.listen))?;
        let bound = cluster_port.local_addr()?;
        // The transport's name carries the incarnation: ractor_cluster takes a peer with this
        // node's name for a connection to itself and drops it, which would hide a second
        // process with the same name instead of letting membership refuse it.
        let server = NodeServer::new(
            0,
            settings.cookie.clone(),
            format!("{}#{}", settings.me.name, settings.me.incarnation),
            advertise_host,
            encryption,
            Some(mode),
        )
        .with_listen_addr(transport::INTERNAL_LISTEN);
        let (node_server, _) = Actor::spawn_linked(None, server, (), myself.get_cell()).await?;
        // After the internal listener's own report of its port: peers are told the real one.
        node_server.cast(NodeServerMessage::PortChanged { port: bound.port() })?;
        let handshakes = Handshakes {
            node_server: node_server.clone(),
            tls: settings.tls.as_ref().map(|tls| tls.acceptor.clone()),
            timeout: settings.handshake_timeout,
        };
        let cluster_listener =
            Background::spawn(move |stop| transport::serve(cluster_port, handshakes, stop));
        let (membership, _) = Actor::spawn_linked(
            None,
            Membership,
            MembershipArguments {
                me: settings.me.clone(),
                seeds: settings.seeds.clone(),
                heartbeat: settings.heartbeat,
                failure_timeout: settings.failure_timeout,
                reconnect_min: settings.reconnect_min,
                reconnect_max: settings.reconnect_max,
                dialler: Dialler {
                    node_server: node_server.clone(),
                    tls: settings.tls.as_ref().map(|tls| tls.connector.clone()),
                    timeout: settings.handshake_timeout,
                },
            },
            myself.get_cell(),
        )
        .await?;
        let client = ClusterClient::new(
            membership.clone(),
            settings.database.clone(),
            settings.training_timeout,
        );
        let mut state = NodeState {
            me: settings.me.clone(),
            membership,
            client,
            node_server,
            cluster_listener: Some(cluster_listener),
            database: settings.database.clone(),
            services: settings.services.clone(),
            roles: HashMap::new(),
            hosting: false,
            status: NodeStatus::default(),
            admin: None,
            stop_notice: settings.stop_notice,
            trainings: Arc::new(TrainingGate::default()),
            last_rebalance: None,
        };
        if let Some(admin) = &settings.admin {
            let context = ServerContext {
                client: state.client.clone(),
                status: state.status.clone(),
            };
            state.admin = Some(admin.start(context).await?);
        }
        if state.services.is_some() {
            if state.database.is_none() {
                return Err("a node with roles needs a database".into());
            }
            let wanted = [
                (Role::Models, RoleActor::ModelHost),
                (Role::Ingest, RoleActor::Ingest),
                (Role::Gateway, RoleActor::Gateway),
                (Role::Scheduler, RoleActor::Scheduler),
                (Role::Forecast, RoleActor::Forecaster),
            ];
            for (role, actor) in wanted {
                if settings.me.has_role(role) {
                    state.roles.insert(
                        actor,
                        RoleSlot {
                            actor: None,
                            failures: Vec::new(),
                        },
                    );
                    start_role(&myself, &mut state, actor).await?;
                }
            }
        }
        if state.hosting {
            myself.send_interval(REBALANCE_EVERY, || NodeMessage::Rebalance);
        }
        tracing::info!(node = %settings.me.name, listen = %settings.listen, advertise = %settings.me.advertise, "node started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            NodeMessage::View(reply) => {
                // Without a view the caller hears nothing and gives up on its own time limit.
                if let Ok(view) = state.client.view().await {
                    let _ = reply.send(view);
                }
            }
            NodeMessage::Client(reply) => {
                let _ = reply.send(state.client.clone());
            }
            NodeMessage::Rebalance => {
                if let (true, Some(services)) = (state.hosting, &state.services) {
                    let checked = rebalance(
                        &state.me,
                        &state.client,
                        &services.train.product,
                        state.last_rebalance.as_ref(),
                    )
                    .await;
                    if checked.is_some() {
                        state.last_rebalance = checked;
                    }
                }
            }
            NodeMessage::Restart(role) => {
                if let Err(error) = start_role(&myself, state, role).await {
                    // Starting failed too: count it and try again later.
                    role_failed(&myself, state, role, &error.to_string());
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let grace = Some(Duration::from_secs(2));
        let reason = || Some("node stopping".to_string());
        // Readiness says so from now on.
        state.status.start_draining();
        let stop_began = Instant::now();
        // 1. Stop taking work: the scheduler hands its lease over, the model host refuses
        //    new trainings.
        if let Some(scheduler) = state
            .roles
            .get_mut(&RoleActor::Scheduler)
            .and_then(|slot| slot.actor.take())
        {
            let _ = scheduler.stop_and_wait(reason(), grace).await;
        }
        state.trainings.close();
        // 2. Leave: peers see a departure and send new work elsewhere; the transport stays
        //    up, so the answers of what runs here still reach their callers.
        let _ = state.membership.stop_and_wait(reason(), grace).await;
        // 3. Finish what runs (a job's series that does not finish in time is sent to its
        //    new owner by the scheduler).
        let running = state.trainings.running();
        if running > 0 {
            tracing::info!(running, "finishing the trainings in flight before stopping");
            if !state.trainings.wait_idle(DRAIN_GRACE).await {
                tracing::warn!(
                    running = state.trainings.running(),
                    "trainings still running after the grace period; stopping anyway"
                );
            }
            // The last answers are queued in the transport's session actors; stopping the
            // transport drops what is queued, so give them a moment to be written.
            tokio::time::sleep(TRANSPORT_LINGER).await;
        }
        for (role, slot) in state.roles.iter_mut() {
            if *role == RoleActor::Gateway {
                continue;
            }
            if let Some(actor) = slot.actor.take() {
                let _ = actor.stop_and_wait(reason(), grace).await;
            }
        }
        // 4. Keep answering HTTP, as draining, for the rest of the stop notice: a load balancer
        //    or readiness probe learns of the stop before connections are refused.
        let notice_left = state.stop_notice.saturating_sub(stop_began.elapsed());
        if !notice_left.is_zero() {
            tracing::info!(
                seconds = notice_left.as_secs_f64(),
                "answering HTTP as draining until the stop notice ends"
            );
            tokio::time::sleep(notice_left).await;
        }
        if let Some(gateway) = state
            .roles
            .get_mut(&RoleActor::Gateway)
            .and_then(|slot| slot.actor.take())
        {
            let _ = gateway.stop_and_wait(reason(), grace).await;
        }
        if let Some(mut cluster_listener) = state.cluster_listener.take() {
            cluster_listener.stop().await;
        }
        let _ = state.node_server.stop_and_wait(reason(), grace).await;
        if let Some(mut admin) = state.admin.take() {
            admin.stop().await;
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (who, reason) = match event {
            SupervisionEvent::ActorFailed(who, error) => (who, error.to_string()),
            SupervisionEvent::ActorTerminated(who, _, reason) => {
                (who, reason.unwrap_or_else(|| "stopped".to_string()))
            }
            _ => return Ok(()),
        };
        let role = state
            .roles
            .iter()
            .find(|(_, slot)| slot.actor.as_ref().map(ActorCell::get_id) == Some(who.get_id()))
            .map(|(role, _)| *role);
        match role {
            // A role actor never stops by itself while the node runs: it failed.
            Some(role) => role_failed(&myself, state, role, &reason),
            None => {
                tracing::error!(actor = %who.get_id(), %reason, "the cluster transport or membership stopped; stopping the node");
                myself.stop(Some(format!("node actor stopped: {reason}")));
            }
        }
        Ok(())
    }
}

/// Starts one role actor under the supervisor.
async fn start_role(
    myself: &ActorRef<NodeMessage>,
    state: &mut NodeState,
    role: RoleActor,
) -> Result<(), ActorProcessingErr> {
    let (Some(services), Some(database)) = (state.services.clone(), state.database.clone()) else {
        return Ok(());
    };
    let supervisor = myself.get_cell();
    let cell = match role {
        RoleActor::ModelHost => {
            let arguments = ModelHostArguments {
                node: state.me.name.clone(),
                database,
                settings: Arc::clone(&services.train),
                gate: Arc::clone(&state.trainings),
                training_timeout: state.client.training_timeout(),
            };
            let (host, _) = Actor::spawn_linked(None, ModelHost, arguments, supervisor).await?;
            state.hosting = true;
            // A fresh host runs nothing: the next rebalance adopts its series again.
            state.last_rebalance = None;
            host.get_cell()
        }
        RoleActor::Scheduler => {
            let arguments = SchedulerArguments {
                settings: services.scheduler.clone(),
                database,
                client: state.client.clone(),
            };
            let (scheduler, _) =
                Actor::spawn_linked(None, Scheduler, arguments, supervisor).await?;
            scheduler.get_cell()
        }
        RoleActor::Gateway => {
            let arguments = GatewayArguments {
                server: services.http.clone(),
                context: ServerContext {
                    client: state.client.clone(),
                    status: state.status.clone(),
                },
            };
            let (gateway, _) =
                Actor::spawn_linked(None, GatewayActor, arguments, supervisor).await?;
            gateway.get_cell()
        }
        RoleActor::Ingest => {
            let arguments = IngestArguments {
                settings: services.ingest.clone(),
                database,
                client: state.client.clone(),
                status: state.status.clone(),
                node: state.me.name.clone(),
            };
            let (ingest, _) = Actor::spawn_linked(None, Ingest, arguments, supervisor).await?;
            ingest.get_cell()
        }
        RoleActor::Forecaster => {
            let arguments = ForecasterArguments {
                database,
                client: state.client.clone(),
            };
            let (forecaster, _) =
                Actor::spawn_linked(None, Forecaster, arguments, supervisor).await?;
            forecaster.get_cell()
        }
    };
    if let Some(slot) = state.roles.get_mut(&role) {
        slot.actor = Some(cell);
    }
    Ok(())
}

/// Counts a role actor's failure and schedules its restart after an exponential backoff.
fn role_failed(
    myself: &ActorRef<NodeMessage>,
    state: &mut NodeState,
    role: RoleActor,
    reason: &str,
) {
    let Some(slot) = state.roles.get_mut(&role) else {
        return;
    };
    slot.actor = None;
    if role == RoleActor::ModelHost {
        state.hosting = false;
    }
    slot.failures.retain(|at| at.elapsed() < FAILURE_WINDOW);
    slot.failures.push(Instant::now());
    let failures = slot.failures.len();
    let delay = restart_delay(failures);
    if failures >= KEEPS_FAILING {
        tracing::error!(
            role = role.name(),
            failures,
            reason,
            delay_ms = delay.as_millis() as u64,
            "role keeps failing; restarting it again after a delay"
        );
    } else {
        tracing::warn!(
            role = role.name(),
            reason,
            delay_ms = delay.as_millis() as u64,
            "role actor failed; restarting it"
        );
    }
    myself.send_after(delay, move || NodeMessage::Restart(role));
}

/// Backoff before the `failures`-th restart within the window: 100 ms, 200 ms, ... 30 s.
fn restart_delay(failures: usize) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    (RESTART_MIN * 2u32.pow(doublings)).min(RESTART_MAX)
}

/// Matches the hosted actors to placement: stops the actors of series placement now gives
/// to another node and starts those of series it gives to this one. Returns what it
/// checked, or `None` when it could not check.
async fn rebalance(
    me: &MemberInfo,
    client: &ClusterClient,
    product: &str,
    last: Option<&(MemberView, usize)>,
) -> Option<(MemberView, usize)> {
    let view = client.view().await.ok()?;
    let hosted = client.hosted(&me.name).await.ok()?;
    let checked = (view, hosted.series.len());
    // Nothing can have moved while the view and the hosted count stay the same.
    if last == Some(&checked) {
        return Some(checked);
    }
    let owned = client.routes(product).await.ok()?.owned_by(&me.name);
    let hosted: BTreeSet<u32> = hosted
        .series
        .iter()
        .filter(|(_, series_product)| series_product == product)
        .map(|(store, _)| *store)
        .collect();
    let moved: Vec<u32> = hosted.difference(&owned).copied().collect();
    let gained: Vec<u32> = owned.difference(&hosted).copied().collect();
    let stores = |stores: Vec<u32>| Stores {
        product: product.to_string(),
        stores,
    };
    if !moved.is_empty() {
        tracing::info!(
            count = moved.len(),
            "releasing series that moved to other nodes"
        );
        let _ = client.release(&me.name, stores(moved));
    }
    if !gained.is_empty() {
        tracing::info!(count = gained.len(), "adopting series placed on this node");
        let _ = client.adopt(&me.name, stores(gained));
    }
    Some(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_exponentially_up_to_a_cap() {
        assert_eq!(restart_delay(1), Duration::from_millis(100));
        assert_eq!(restart_delay(2), Duration::from_millis(200));
        assert_eq!(restart_delay(4), Duration::from_millis(800));
        assert_eq!(restart_delay(20), RESTART_MAX);
        assert_eq!(restart_delay(usize::MAX), RESTART_MAX);
    }
}
