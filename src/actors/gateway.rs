//! The gateway actor: one per node with the `gateway` role. It binds `gateway.listen` and
//! serves the HTTP gateway (`crate::web`) in a task; stopping the actor stops taking new
//! connections and lets requests in flight finish, for up to 3 s (an event stream would
//! otherwise hold the node until its job ends).

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;

use super::background::Background;
use crate::web::{Gateway, router};

/// How long a stopping gateway lets open requests finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

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
            let mut deadline = stopped.clone();
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            let serving = axum::serve(listener, app).with_graceful_shutdown(shutdown);
            // Requests in flight get a moment to finish; an event stream could last as long
            // as its job, so it is cut.
            let grace = async move {
                let _ = deadline.changed().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            tokio::select! {
                served = serving => {
                    if let Err(error) = served {
                        tracing::error!(%error, "gateway server stopped");
                    }
                }
                _ = grace => tracing::info!("gateway closed the connections still open"),
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
