//! Membership: which nodes are in the cluster right now.
//!
//! ractor_cluster gives connections, authentication and process groups; it does not notice a
//! peer that stops answering (crashed host, SIGSTOP, partition) and it never dials back a
//! peer that went away. This actor adds both. Steps, every heartbeat:
//! 1. ping the membership actor of every connected node (they all join one process group);
//!    a peer that answers is up, with the name, address and roles it reports;
//! 2. a peer silent for `failure_timeout` is declared down and its session closed, so the
//!    others see it leave;
//! 3. dial every seed and every departed peer that is not connected, with exponential
//!    backoff per address, so a restarted or healed node rejoins by itself. Dials run in
//!    tasks of their own (`cluster::transport::dial`, bounded by the handshake timeout), one
//!    at a time per address, and report back as `Dialled`: an address that accepts and never
//!    answers holds up neither this actor nor the heartbeat. A departed peer's address is
//!    forgotten after [`MAX_DIAL_FAILURES`] failed dials in a row; seeds are dialled forever;
//! 4. log the view whenever it changes and publish it as metrics (`storecast_cluster_members`,
//!    `storecast_cluster_members_by_role`). `GetView` answers the current view.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent, pg};
use ractor_cluster::{NodeServerMessage, RactorClusterMessage};

use serde::{Deserialize, Serialize};

use crate::cluster::member::{MemberInfo, MemberView, Role};
use crate::cluster::transport::{self, Dialler};
use crate::metrics;

/// The process group every node's membership actor joins.
pub const GROUP: &str = "storecast.membership";

/// The membership actor.
pub struct Membership;

/// How the membership actor is started.
pub struct MembershipArguments {
    pub me: MemberInfo,
    pub seeds: Vec<String>,
    pub heartbeat: Duration,
    pub failure_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How peers are dialled. With TLS, the node server runs in isolated mode, so this actor
    /// also dials the peers its peers know (see `Hello`).
    pub dialler: Dialler,
}

/// A heartbeat's answer: who the peer is, and the nodes it sees (name, address).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub me: MemberInfo,
    pub peers: Vec<(String, String)>,
}

crate::bincode_message_payload!(Hello);

/// How one dial ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DialOutcome {
    pub address: String,
    /// Why it failed; `None` when the session authenticated.
    pub error: Option<String>,
}

crate::bincode_message_payload!(DialOutcome);

/// Messages of the membership actor; `Ping` and `GetView` cross the network.
#[derive(RactorClusterMessage)]
pub enum MembershipMessage {
    /// A peer's heartbeat: it says who it is, the answer says who we are and whom we see.
    #[rpc]
    Ping(MemberInfo, RpcReplyPort<Hello>),
    /// Timer: heartbeat, failure check, dialling.
    Tick,
    /// A peer (by actor id, as text) answered our heartbeat.
    Answered(String, Hello),
    /// A dial ended.
    Dialled(DialOutcome),
    /// The live members.
    #[rpc]
    GetView(RpcReplyPort<MemberView>),
}

/// What is known about one connected peer.
struct Peer {
    info: Option<MemberInfo>,
    last_seen: Instant,
    up: bool,
}

/// Backoff of one address we dial.
struct Dial {
    next_attempt: Instant,
    delay: Duration,
    /// A dial to it is running.
    in_flight: bool,
    /// Failed dials since it last answered.
    failures: u32,
}

/// Failed dials in a row after which a departed peer's address is forgotten (seeds never
/// are). With the default backoff (0.2 s doubling to 5 s) that is about 40 seconds.
pub const MAX_DIAL_FAILURES: u32 = 10;

pub struct MembershipState {
    arguments: MembershipArguments,
    /// Connected peers by membership actor id.
    peers: HashMap<String, Peer>,
    /// Addresses of every peer ever seen: dialled again when they go away.
    known_addresses: BTreeMap<String, String>,
    /// Nodes our peers see, by name (with TLS only: the transport does not dial them).
    learned: BTreeMap<String, String>,
    dials: HashMap<String, Dial>,
    last_view: MemberView,
}

impl MembershipState {
    fn view(&self) -> MemberView {
        let mut members: Vec<MemberInfo> = self
            .peers
            .values()
            .filter(|peer| peer.up)
            .filter_map(|peer| peer.info.clone())
            .collect();
        members.push(self.arguments.me.clone());
        members.sort();
        members.dedup_by(|a, b| a.name == b.name);
        MemberView { members }
    }

    fn connected_addresses(&self) -> Vec<String> {
        self.peers
            .values()
            .filter(|peer| peer.up)
            .filter_map(|peer| peer.info.as_ref().map(|info| info.advertise.clone()))
            .collect()
    }
}

impl Actor for Membership {
    type Msg = MembershipMessage;
    type State = MembershipState;
    type Arguments = MembershipArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: MembershipArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        pg::join(GROUP.to_string(), vec![myself.get_cell()]);
        pg::monitor(GROUP.to_string(), myself.get_cell());
        myself.send_interval(arguments.heartbeat, || MembershipMessage::Tick);
        let _ = myself.cast(MembershipMessage::Tick);
        tracing::info!(node = %arguments.me.name, "membership started");
        Ok(MembershipState {
            arguments,
            peers: HashMap::new(),
            known_addresses: BTreeMap::new(),
            learned: BTreeMap::new(),
            dials: HashMap::new(),
            last_view: MemberView::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MembershipMessage::Ping(_peer, reply) => {
                let peers = state
                    .view()
                    .members
                    .into_iter()
                    .filter(|member| !member.roles.is_empty())
                    .map(|member| (member.name, member.advertise))
                    .collect();
                let _ = reply.send(Hello {
                    me: state.arguments.me.clone(),
                    peers,
                });
            }
            MembershipMessage::Answered(id, hello) => {
                if state.arguments.dialler.tls.is_some() {
                    for (name, address) in hello.peers {
                        if name != state.arguments.me.name {
                            state.learned.insert(name, address);
                        }
                    }
                }
                let info = hello.me;
                if info.name == state.arguments.me.name {
                    refuse_duplicate_name(&myself, &state.arguments.me, &info);
                    return Ok(());
                }
                if info.name.is_empty() {
                    return Ok(());
                }
                if let Some(peer) = state.peers.get_mut(&id) {
                    if !peer.up {
                        tracing::info!(member = %info.name, address = %info.advertise, "member up");
                    }
                    peer.up = true;
                    peer.last_seen = Instant::now();
                    // Clients (no roles) come and go; only nodes are dialled again.
                    if !info.roles.is_empty() {
                        state
                            .known_addresses
                            .insert(info.name.clone(), info.advertise.clone());
                    }
                    state.dials.remove(&info.advertise);
                    peer.info = Some(info);
                }
            }
            MembershipMessage::Tick => {
                heartbeat(&myself, state);
                detect_failures(state).await;
                dial(&myself, state).await;
            }
            MembershipMessage::Dialled(outcome) => dialled(state, outcome),
            MembershipMessage::GetView(reply) => {
                let _ = reply.send(state.view());
            }
        }
        log_view_change(state);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(change) = event {
            let mine = myself.get_id();
            match change {
                pg::GroupChangeMessage::Join(_, _, actors) => {
                    for actor in actors.into_iter().filter(|actor| actor.get_id() != mine) {
                        state
                            .peers
                            .entry(actor.get_id().to_string())
                            .or_insert(Peer {
                                info: None,
                                last_seen: Instant::now(),
                                up: false,
                            });
                        // Ask at once who it is, rather than at the next heartbeat.
                        ping(&myself, actor.into(), state);
                    }
                }
                pg::GroupChangeMessage::Leave(_, _, actors) => {
                    for actor in actors {
                        if let Some(peer) = state.peers.remove(&actor.get_id().to_string())
                            && let Some(info) = peer.info.filter(|_| peer.up)
                        {
                            tracing::info!(member = %info.name, "member left");
                        }
                    }
                }
            }
            log_view_change(state);
        }
        Ok(())
    }
}

/// Another live process answered a heartbeat with this node's name. Names must be unique
/// (placement, the view and logs go by name): of the two, the one started later stops with
/// an error saying why; the other warns and goes on. A restarted node never meets its
/// predecessor here, as a dead process answers no heartbeat.
fn refuse_duplicate_name(
    myself: &ActorRef<MembershipMessage>,
    me: &MemberInfo,
    other: &MemberInfo,
) {
    let newer = (me.incarnation, &me.advertise) > (other.incarnation, &other.advertise);
    if newer {
        let reason = format!(
            "another node named {} is live in the cluster (at {}): node names must be unique; \
             set cluster.name on this node ({})",
            me.name, other.advertise, me.advertise
        );
        tracing::error!("{reason}");
        myself.stop(Some(reason));
    } else {
        tracing::warn!(
            address = %other.advertise,
            "a second node named {} tried to join; it stops, as the later one",
            me.name
        );
    }
}

/// Pings every connected peer; answers come back as `Answered`.
fn heartbeat(myself: &ActorRef<MembershipMessage>, state: &MembershipState) {
    for cell in pg::get_members(&GROUP.to_string()) {
        if cell.get_id() != myself.get_id() {
            ping(myself, cell.into(), state);
        }
    }
}

/// Pings one peer in the background; its answer comes back as `Answered`.
fn ping(
    myself: &ActorRef<MembershipMessage>,
    peer: ActorRef<MembershipMessage>,
    state: &MembershipState,
) {
    let timeout = state.arguments.failure_timeout.as_millis() as u64;
    let (myself, me) = (myself.clone(), state.arguments.me.clone());
    tokio::spawn(async move {
        let id = peer.get_id().to_string();
        if let Ok(hello) = ractor::call_t!(peer, MembershipMessage::Ping, timeout, me) {
            let _ = myself.cast(MembershipMessage::Answered(id, hello));
        }
    });
}

/// Declares silent peers down and closes their sessions.
async fn detect_failures(state: &mut MembershipState) {
    let timeout = state.arguments.failure_timeout;
    let silent: Vec<String> = state
        .peers
        .iter()
        .filter(|(_, peer)| peer.last_seen.elapsed() > timeout)
        .map(|(id, _)| id.clone())
        .collect();
    for id in silent {
        let Some(peer) = state.peers.remove(&id) else {
            continue;
        };
        let session_name = close_session(&state.arguments.dialler.node_server, &id).await;
        // A peer that went silent before its first answer is named by its session.
        let name = peer
            .info
            .as_ref()
            .map(|info| info.name.clone())
            .or(session_name)
            .unwrap_or_else(|| format!("unknown ({id})"));
        tracing::warn!(member = %name, silent_ms = peer.last_seen.elapsed().as_millis() as u64, "member down: no heartbeat answer");
    }
}

/// Stops the ractor_cluster session of the node hosting actor `id`; returns the node's
/// name as its session knows it.
async fn close_session(node_server: &ActorRef<NodeServerMessage>, id: &str) -> Option<String> {
    let sessions = ractor::call_t!(node_server, NodeServerMessage::GetSessions, 1_000).ok()?;
    let mut name = None;
    for session in sessions.values() {
        let node_prefix = format!("{}.", session.node_id);
        if id.starts_with(&node_prefix) {
            session
                .actor
                .stop(Some("failure detector: peer silent".to_string()));
            // Session names read `name#incarnation@host`.
            name = session.peer_name.as_ref().map(|peer| {
                let name = peer.name.split('@').next().unwrap_or_default();
                name.split('#').next().unwrap_or_default().to_string()
            });
        }
    }
    name
}

/// Starts a dial to each seed, departed peer and (with TLS) node our peers see that has no
/// session, is due after its backoff and has no dial running; each reports as `Dialled`.
async fn dial(myself: &ActorRef<MembershipMessage>, state: &mut MembershipState) {
    let mut connected = state.connected_addresses();
    if let Ok(sessions) = ractor::call_t!(
        state.arguments.dialler.node_server,
        NodeServerMessage::GetSessions,
        1_000
    ) {
        connected.extend(
            sessions
                .values()
                .filter_map(|session| session.peer_name.as_ref())
                .map(|peer| peer.connection_string.clone()),
        );
    }
    let me = state.arguments.me.clone();
    let mut targets: Vec<String> = state.arguments.seeds.clone();
    targets.extend(state.known_addresses.values().cloned());
    // Of two nodes that learn of each other, only the one with the lower name dials, so a
    // pair never opens two sessions at once.
    targets.extend(
        state
            .learned
            .iter()
            .filter(|(name, _)| me.name < **name)
            .map(|(_, address)| address.clone()),
    );
    targets.sort();
    targets.dedup();
    let now = Instant::now();
    for address in targets
        .into_iter()
        .filter(|address| *address != me.advertise && !connected.contains(address))
    {
        let min = state.arguments.reconnect_min;
        let entry = state.dials.entry(address.clone()).or_insert(Dial {
            next_attempt: now,
            delay: min,
            in_flight: false,
            failures: 0,
        });
        if entry.in_flight || entry.next_attempt > now {
            continue;
        }
        entry.in_flight = true;
        let (myself, dialler) = (myself.clone(), state.arguments.dialler.clone());
        tokio::spawn(async move {
            let error = transport::dial(&dialler, &address).await.err();
            let _ = myself.cast(MembershipMessage::Dialled(DialOutcome { address, error }));
        });
    }
}

/// Books a dial's end: backoff from now, and a departed peer's address forgotten after too
/// many failures in a row.
fn dialled(state: &mut MembershipState, outcome: DialOutcome) {
    let DialOutcome { address, error } = outcome;
    let Some(entry) = state.dials.get_mut(&address) else {
        return; // it answered a heartbeat meanwhile
    };
    entry.in_flight = false;
    entry.next_attempt = Instant::now() + entry.delay;
    entry.delay = (entry.delay * 2).min(state.arguments.reconnect_max);
    let Some(error) = error else {
        tracing::debug!(%address, "dialled");
        entry.failures = 0;
        return;
    };
    entry.failures += 1;
    let failures = entry.failures;
    if failures == 1 {
        tracing::info!(%address, %error, "cannot reach; retrying with backoff");
    } else {
        tracing::debug!(%address, %error, failures, "cannot reach");
    }
    if failures >= MAX_DIAL_FAILURES && !state.arguments.seeds.contains(&address) {
        state.dials.remove(&address);
        state.known_addresses.retain(|_, known| *known != address);
        state.learned.retain(|_, learned| *learned != address);
        tracing::info!(%address, failures, "forgetting a departed peer's address: it stayed unreachable");
    }
}

fn log_view_change(state: &mut MembershipState) {
    let view = state.view();
    if view != state.last_view {
        tracing::info!("cluster view: {view}");
        record_view(&view);
        state.last_view = view;
    }
}

/// Publishes the view as metrics: members, members per role, and one more view change.
fn record_view(view: &MemberView) {
    let metrics = metrics::metrics();
    metrics.cluster_size.set(view.members.len() as i64);
    for role in Role::ALL {
        let labels = metrics::RoleLabels {
            role: role.name().to_string(),
        };
        let count = view.with_role(role).len() as i64;
        metrics.cluster_members.get_or_create(&labels).set(count);
    }
    metrics.cluster_view_changes.inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_is_published_as_metrics() {
        let member = |name: &str, roles: Vec<Role>| MemberInfo {
            name: name.to_string(),
            advertise: format!("{name}:7400"),
            roles,
            ..MemberInfo::default()
        };
        record_view(&MemberView {
            members: vec![
                member("a", vec![Role::Models, Role::Scheduler]),
                member("b", vec![Role::Models]),
                member("client", Vec::new()),
            ],
        });
        let text = metrics::render();
        assert!(text.contains("storecast_cluster_size 3\n"), "{text}");
        assert!(
            text.contains("storecast_cluster_members{role=\"models\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("storecast_cluster_members{role=\"scheduler\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("storecast_cluster_members{role=\"gateway\"} 0\n"),
            "{text}"
        );
    }
}
