//! The gateway actor: one per node with the `gateway` role. It binds `gateway.listen` and
//! serves the HTTP gateway (`crate::web`) in a task; stopping the actor stops taking new
//! connections and lets requests in flight finish.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;

use super::background::Background;
use crate::web::{Gateway, router};

pub struct GatewayArguments {
    pub gateway: Gateway,
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
        let settings = arguments.gateway.settings.clone();
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|error| {
                format!(
                    "cannot listen on {} (gateway.listen): {error}",
                    settings.listen
                )
            })?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "gateway listening on http://{address}");
        if settings.token_generated {
            // The page reads the token from the address's fragment, which never reaches a
            // server or a log on the way.
            tracing::info!(
                "web page: http://{address}/#token={} (a token made for this run: set gateway.token to choose one)",
                settings.token
            );
        } else {
            tracing::info!("web page: http://{address}/");
        }
        let app = router(arguments.gateway);
        let server = Background::spawn(|mut stopped| async move {
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "gateway server stopped");
            }
        });
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
