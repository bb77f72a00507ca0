//! The admin listener: every node runs one at `admin.listen`, whatever its roles, serving
//! `/metrics`, `/health/livez` and `/health/readyz` (see [`super::health`]), so a node with
//! no gateway can still be scraped and probed. It keeps answering while the node stops, so
//! readiness can say the node is draining.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;

use super::connections::{self, Limits};
use super::health::{self, Health};
use crate::actors::background::Background;
use crate::actors::gateway::{HttpServer, ServerContext};
use crate::store::Database;

/// The admin server of node `node`, for the node supervisor to start.
pub fn admin_server(listen: SocketAddr, database: Option<Database>, node: String) -> HttpServer {
    HttpServer::new(move |context: ServerContext| {
        let health = Health {
            node: node.clone(),
            database: database.clone(),
            client: context.client,
            status: context.status,
        };
        Box::pin(serve(listen, health))
    })
}

/// The admin routes.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .route("/health/livez", get(health::livez))
        .route("/health/readyz", get(health::readyz))
        .with_state(health)
}

async fn serve(listen: SocketAddr, health: Health) -> Result<Background, String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen} (admin.listen): {error}"))?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("the admin listener has no address: {error}"))?;
    tracing::info!(%address, "admin listening on http://{address} (metrics, health)");
    let app = router(health);
    Ok(Background::spawn(move |stopped| {
        connections::serve(listener, app, Limits::default(), "admin", stopped)
    }))
}
