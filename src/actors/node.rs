//! The node supervisor: one per process. It starts ractor_cluster's `NodeServer` (transport,
//! cookie authentication, process-group sync) and the membership actor, and stops the node
//! cleanly when asked: the membership actor leaves its group first, so peers see a departure
//! rather than a failure.

use std::net::SocketAddr;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RactorErr, SupervisionEvent};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage, RactorMessage};

use std::sync::Arc;

use super::membership::{Membership, MembershipArguments, MembershipMessage};
use super::model_host::{
    ModelHost, ModelHostArguments, ModelHostMessage, SeriesRequest, placement,
};
use crate::cluster::member::{MemberInfo, MemberView, Role};
use crate::cluster::placement::SeriesKey;
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
    /// What the `models` role needs; `None` on nodes without it.
    pub models: Option<ModelsSettings>,
}

/// The database and training settings of a node with the `models` role.
#[derive(Debug, Clone)]
pub struct ModelsSettings {
    pub database: Database,
    pub train: Arc<TrainSettings>,
}

/// How often a model host checks that it still owns the series it runs.
const REBALANCE_EVERY: Duration = Duration::from_secs(1);

/// The node supervisor.
pub struct NodeSupervisor;

#[derive(RactorMessage)]
pub enum NodeMessage {
    /// The live member view, from the membership actor.
    View(ractor::RpcReplyPort<MemberView>),
    /// Timer: stop the model actors of series that moved to another node.
    Rebalance,
}

pub struct NodeState {
    me: MemberInfo,
    membership: ActorRef<MembershipMessage>,
    node_server: ActorRef<NodeServerMessage>,
    model_host: Option<(ActorRef<ModelHostMessage>, ModelsSettings)>,
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
        let server = NodeServer::new(
            settings.listen.port(),
            settings.cookie.clone(),
            settings.me.name.clone(),
            advertise_host,
            None,
            Some(NodeConnectionMode::Transitive),
        )
        .with_listen_addr(settings.listen.ip());
        let (node_server, _) = Actor::spawn_linked(None, server, (), myself.get_cell()).await?;
        let (membership, _) = Actor::spawn_linked(
            None,
            Membership,
            MembershipArguments {
                me: settings.me.clone(),
                node_server: node_server.clone(),
                seeds: settings.seeds.clone(),
                heartbeat: settings.heartbeat,
                failure_timeout: settings.failure_timeout,
                reconnect_min: settings.reconnect_min,
                reconnect_max: settings.reconnect_max,
            },
            myself.get_cell(),
        )
        .await?;
        let model_host = match (&settings.models, settings.me.has_role(Role::Models)) {
            (Some(models), true) => {
                let (host, _) = Actor::spawn_linked(
                    None,
                    ModelHost,
                    ModelHostArguments {
                        node: settings.me.name.clone(),
                        database: models.database.clone(),
                        settings: Arc::clone(&models.train),
                    },
                    myself.get_cell(),
                )
                .await?;
                myself.send_interval(REBALANCE_EVERY, || NodeMessage::Rebalance);
                Some((host, models.clone()))
            }
            _ => None,
        };
        tracing::info!(node = %settings.me.name, listen = %settings.listen, advertise = %settings.me.advertise, "node started");
        Ok(NodeState {
            me: settings.me,
            membership,
            node_server,
            model_host,
            last_rebalance: None,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            NodeMessage::View(reply) => {
                let view = ractor::call_t!(state.membership, MembershipMessage::GetView, 2_000)
                    .map_err(|error: RactorErr<MembershipMessage>| error.to_string())?;
                let _ = reply.send(view);
            }
            NodeMessage::Rebalance => {
                if let Some((host, models)) = &state.model_host {
                    let checked = release_moved_series(
                        &state.me,
                        &state.membership,
                        host,
                        models,
                        state.last_rebalance.as_ref(),
                    )
                    .await;
                    if checked.is_some() {
                        state.last_rebalance = checked;
                    }
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
        // Leave the membership group before the transport goes, so peers see a departure.
        let grace = Some(Duration::from_secs(2));
        let _ = state
            .membership
            .stop_and_wait(Some("node stopping".to_string()), grace)
            .await;
        let _ = state
            .node_server
            .stop_and_wait(Some("node stopping".to_string()), grace)
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(who, error) => {
                // Restart policies come with the role actors; a failed transport or membership
                // actor stops the node, loudly, rather than leaving it half alive.
                tracing::error!(actor = %who.get_id(), %error, "a node actor failed; stopping the node");
                myself.stop(Some(format!("child failed: {error}")));
            }
            SupervisionEvent::ActorTerminated(who, _, reason) => {
                tracing::info!(actor = %who.get_id(), reason = reason.as_deref().unwrap_or("stopped"), "node actor stopped");
            }
            _ => {}
        }
        Ok(())
    }
}

/// Stops the model actors of series that placement now gives to another node; returns what
/// it checked, or `None` when it could not check.
async fn release_moved_series(
    me: &MemberInfo,
    membership: &ActorRef<MembershipMessage>,
    host: &ActorRef<ModelHostMessage>,
    models: &ModelsSettings,
    last: Option<&(MemberView, usize)>,
) -> Option<(MemberView, usize)> {
    let view = ractor::call_t!(membership, MembershipMessage::GetView, 1_000).ok()?;
    let request = SeriesRequest::default();
    let hosted = ractor::call_t!(host, ModelHostMessage::Hosted, 1_000, request).ok()?;
    let checked = (view, hosted.series.len());
    // The series list is read from the database only when something could have moved.
    if hosted.series.is_empty() || last == Some(&checked) {
        return Some(checked);
    }
    let view = &checked.0;
    let product = &models.train.product;
    let stores = models.database.stores_with_sales(product).await.ok()?;
    let keys: Vec<SeriesKey> = stores
        .into_iter()
        .map(|store| SeriesKey::new(store, product.clone()))
        .collect();
    let placement = placement(view, &keys);
    let moved: Vec<u32> = hosted
        .series
        .iter()
        .filter(|(store, series_product)| {
            placement.owner(&SeriesKey::new(*store, series_product.clone()))
                != Some(me.name.as_str())
        })
        .map(|(store, _)| *store)
        .collect();
    if !moved.is_empty() {
        tracing::info!(
            count = moved.len(),
            "releasing series that moved to other nodes"
        );
        let _ = host.cast(ModelHostMessage::Release(moved, product.clone()));
    }
    Some(checked)
}
