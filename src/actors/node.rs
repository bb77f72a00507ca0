//! The node supervisor: one per process. It starts ractor_cluster's `NodeServer` (transport,
//! cookie authentication, process-group sync) and the membership actor, and stops the node
//! cleanly when asked: the membership actor leaves its group first, so peers see a departure
//! rather than a failure.

use std::net::SocketAddr;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RactorErr, SupervisionEvent};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage, RactorMessage};

use super::membership::{Membership, MembershipArguments, MembershipMessage};
use crate::cluster::member::{MemberInfo, MemberView};

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
}

/// The node supervisor.
pub struct NodeSupervisor;

#[derive(RactorMessage)]
pub enum NodeMessage {
    /// The live member view, from the membership actor.
    View(ractor::RpcReplyPort<MemberView>),
}

pub struct NodeState {
    membership: ActorRef<MembershipMessage>,
    node_server: ActorRef<NodeServerMessage>,
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
        tracing::info!(node = %settings.me.name, listen = %settings.listen, advertise = %settings.me.advertise, "node started");
        Ok(NodeState {
            membership,
            node_server,
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
