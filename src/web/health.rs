//! Health and metrics, served by every node's admin listener and by gateways:
//! `/health/livez` (the process answers), `/health/readyz` (the node is not stopping, its
//! database answers and it sees a model host, so forecasts can be served; 503 with the
//! reasons otherwise), `/metrics` (OpenMetrics text).

use axum::Json;
use axum::extract::{FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use super::Gateway;
use crate::actors::client::ClusterClient;
use crate::actors::node::NodeStatus;
use crate::cluster::member::Role;
use crate::metrics;
use crate::store::Database;

/// What the health endpoints look at.
#[derive(Clone)]
pub struct Health {
    pub node: String,
    /// `None` on a node without a data role.
    pub database: Option<Database>,
    pub client: ClusterClient,
    pub status: NodeStatus,
}

impl FromRef<Gateway> for Health {
    fn from_ref(gateway: &Gateway) -> Health {
        Health {
            node: gateway.node.clone(),
            database: Some(gateway.database.clone()),
            client: gateway.client.clone(),
            status: gateway.status.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct Live {
    status: &'static str,
    node: String,
}

pub async fn livez(State(health): State<Health>) -> Json<Live> {
    Json(Live {
        status: "live",
        node: health.node,
    })
}

#[derive(Serialize)]
pub struct Ready {
    ready: bool,
    node: String,
    /// `serving`, or `draining` once the node was asked to stop.
    state: &'static str,
    database: String,
    cluster: String,
    /// The node's ingest, when it has the role: what it consumes, the group's lag, and
    /// partitions stalled without a consumer (a stall does not make the node unready: it
    /// still serves; it heals by itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    ingest: Option<String>,
}

pub async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    // A stopping node says so at once: its database pool and membership may be going away,
    // and a check that waits for them would outlast the listener.
    let draining = health.status.draining();
    let (database, cluster) = if draining {
        let skipped = || Ok("not checked: the node is stopping".to_string());
        (skipped(), skipped())
    } else {
        (database_check(&health).await, cluster_check(&health).await)
    };
    // Read again last: a node that began to stop during the checks (and whose membership may
    // be gone already) says it drains.
    let draining = draining || health.status.draining();
    let ready = !draining && database.is_ok() && cluster.is_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let either = |result: Result<String, String>| result.unwrap_or_else(|error| error);
    (
        status,
        Json(Ready {
            ready,
            node: health.node,
            state: if draining {
                "draining: the node is stopping and takes no new work"
            } else {
                "serving"
            },
            database: either(database),
            cluster: either(cluster),
            ingest: health.status.ingest().map(|ingest| ingest.detail),
        }),
    )
}

async fn database_check(health: &Health) -> Result<String, String> {
    match &health.database {
        Some(database) => match database.ping().await {
            Ok(()) => Ok("reachable".to_string()),
            Err(error) => Err(error.to_string()),
        },
        None => Ok("none (no data role)".to_string()),
    }
}

async fn cluster_check(health: &Health) -> Result<String, String> {
    match health.client.view().await {
        Ok(view) if !view.with_role(Role::Models).is_empty() => Ok(format!(
            "joined: {} members, {} model hosts",
            view.members.len(),
            view.with_role(Role::Models).len()
        )),
        Ok(view) => Err(format!(
            "no model host among the {} members yet",
            view.members.len()
        )),
        Err(error) => Err(error.to_string()),
    }
}

pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(),
    )
}
