//! The gateway actor: one per node with the `gateway` role. It runs the node's HTTP gateway
//! for as long as the actor lives; stopping the actor stops the server.
//!
//! The HTTP servers a node runs (this one, and the admin listener every node runs) are built
//! by `crate::web` and handed in as [`HttpServer`]s, so the actors do not depend on the web
//! layer.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;

use super::background::Background;
use super::client::ClusterClient;
use super::node::NodeStatus;

/// What a node gives the HTTP servers it runs.
#[derive(Clone)]
pub struct ServerContext {
    pub client: ClusterClient,
    pub status: NodeStatus,
}

type StartServer =
    dyn Fn(ServerContext) -> BoxFuture<'static, Result<Background, String>> + Send + Sync;

/// Starts an HTTP server of the node: it binds, then serves in the background until
/// stopped. The error says why it could not bind.
#[derive(Clone)]
pub struct HttpServer {
    start: Arc<StartServer>,
}

impl HttpServer {
    pub fn new(
        start: impl Fn(ServerContext) -> BoxFuture<'static, Result<Background, String>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        HttpServer {
            start: Arc::new(start),
        }
    }

    /// Binds and starts serving.
    pub async fn start(&self, context: ServerContext) -> Result<Background, String> {
        (self.start)(context).await
    }
}

impl fmt::Debug for HttpServer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("HttpServer")
    }
}

pub struct GatewayArguments {
    pub server: HttpServer,
    pub context: ServerContext,
}

#[derive(RactorMessage)]
pub enum GatewayMessage {}

pub struct GatewayActor;

pub struct GatewayState {
    server: Background,
}

impl Actor for GatewayActor {
    type Msg = GatewayMessage;
    type State = GatewayState;
    type Arguments = GatewayArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        arguments: GatewayArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let server = arguments.server.start(arguments.context).await?;
        Ok(GatewayState { server })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.server.stop().await;
        Ok(())
    }
}
