//! Health and metrics: `/health/livez` (the process answers), `/health/readyz` (the database
//! answers and the node sees a model host, so forecasts can be served), `/metrics`
//! (Prometheus text format).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use super::{ACTOR_TIMEOUT, Gateway};
use crate::actors::membership::MembershipMessage;
use crate::cluster::member::Role;
use crate::metrics;

#[derive(Serialize)]
pub struct Live {
    status: &'static str,
    node: String,
}

pub async fn livez(State(gateway): State<Gateway>) -> Json<Live> {
    Json(Live {
        status: "live",
        node: gateway.node,
    })
}

#[derive(Serialize)]
pub struct Ready {
    ready: bool,
    node: String,
    database: String,
    cluster: String,
}

pub async fn readyz(State(gateway): State<Gateway>) -> impl IntoResponse {
    let database = match gateway.database.ping().await {
        Ok(()) => Ok("reachable".to_string()),
        Err(error) => Err(error.to_string()),
    };
    let view = ractor::call_t!(
        gateway.membership,
        MembershipMessage::GetView,
        ACTOR_TIMEOUT.as_millis() as u64
    );
    let cluster = match view {
        Ok(view) if !view.with_role(Role::Models).is_empty() => Ok(format!(
            "joined: {} members, {} model hosts",
            view.members.len(),
            view.with_role(Role::Models).len()
        )),
        Ok(view) => Err(format!(
            "no model host among the {} members yet",
            view.members.len()
        )),
        Err(error) => Err(format!("membership does not answer: {error}")),
    };
    let ready = database.is_ok() && cluster.is_ok();
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
            node: gateway.node,
            database: either(database),
            cluster: either(cluster),
        }),
    )
}

pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
}
