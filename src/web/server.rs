//! The gateway's HTTP server: binds `gateway.listen`, logs the page's address, and serves the
//! router in the background within the gateway's limits (see [`super::connections`]).
//! Stopping it stops taking new connections and lets requests in flight finish, for up to
//! 3 s (an event stream would otherwise hold the node until its job ends).

use super::{Gateway, GatewaySettings, connections, router};
use crate::actors::background::Background;
use crate::actors::gateway::{HttpServer, ServerContext};
use crate::store::Database;

/// The server a gateway node runs, for the node supervisor to start.
pub fn http_server(database: Database, node: String, settings: GatewaySettings) -> HttpServer {
    HttpServer::new(move |context: ServerContext| {
        let gateway = Gateway::new(
            database.clone(),
            context.client,
            context.status,
            node.clone(),
            settings.clone(),
        );
        Box::pin(serve(gateway))
    })
}

/// Binds the gateway's address and serves it until the returned task is stopped.
pub async fn serve(gateway: Gateway) -> Result<Background, String> {
    let settings = gateway.settings.clone();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|error| {
            format!(
                "cannot listen on {} (gateway.listen): {error}",
                settings.listen
            )
        })?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("the gateway's listener has no address: {error}"))?;
    tracing::info!(%address, "gateway listening on http://{address}");
    if settings.token_generated {
        // The token is shown in full once, to whoever started the node, and never logged:
        // logs travel to collectors. The page reads it from the address's fragment, which
        // no request carries.
        eprintln!("web page: http://{address}/#token={}", settings.token);
        tracing::info!(
            token = %masked(&settings.token),
            "web page at http://{address}/ with a token made for this run (printed once above; set gateway.token to choose one)"
        );
    } else {
        tracing::info!("web page: http://{address}/");
    }
    let app = router(gateway);
    let limits = settings.limits;
    Ok(Background::spawn(move |stopped| {
        connections::serve(listener, app, limits, "gateway", stopped)
    }))
}

/// The first characters of a secret, enough to tell two apart, never enough to use one.
pub fn masked(secret: &str) -> String {
    let shown: String = secret.chars().take(4).collect();
    format!("{shown}...")
}
