//! `GET /api/cluster`: the live members with their roles, the series each model host runs,
//! which node leads the scheduler (holds its lease), and ingest: what each ingest node consumes and the
//! group's lag.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{ApiError, Gateway};
use crate::cluster::member::{MemberView, Role};
use crate::store::SCHEDULER_LEASE;

#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// The node that answered.
    pub node: String,
    pub scheduler_leader: Option<String>,
    pub members: Vec<Member>,
    /// The ingest nodes that answered, by name.
    pub ingest: Vec<Ingest>,
}

#[derive(Debug, Serialize)]
pub struct Ingest {
    pub node: String,
    /// Partitions it consumes.
    pub partitions: Vec<i32>,
    /// Messages waiting over the whole topic, as it last saw the group.
    pub lag: i64,
    /// Partitions with messages waiting and no live consumer, and for how long.
    pub stalled: Vec<i32>,
    pub stalled_for_ms: u64,
    /// Why it cannot look at the group, if it cannot.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Member {
    pub name: String,
    pub address: String,
    pub roles: Vec<&'static str>,
    /// Series with a model actor on this node (model hosts only; `null` when it did not
    /// answer in time).
    pub series: Option<usize>,
}

pub async fn cluster(State(gateway): State<Gateway>) -> Result<Json<ClusterView>, ApiError> {
    let view = gateway.client.view().await?;
    let mut members = Vec::new();
    // Clients (members without roles) come and go; only nodes are listed.
    for member in view
        .members
        .iter()
        .filter(|member| !member.roles.is_empty())
    {
        let series = match member.has_role(Role::Models) {
            true => gateway
                .client
                .hosted(&member.name)
                .await
                .ok()
                .map(|hosted| hosted.series.len()),
            false => None,
        };
        members.push(Member {
            name: member.name.clone(),
            address: member.advertise.clone(),
            roles: member.roles.iter().map(|role| role.name()).collect(),
            series,
        });
    }
    let mut ingest: Vec<Ingest> = gateway
        .client
        .ingest_statuses(None)
        .await
        .into_iter()
        .map(|status| Ingest {
            lag: status.total_lag(),
            node: status.node,
            partitions: status.assigned,
            stalled: status.stalled,
            stalled_for_ms: status.stalled_for_ms,
            error: status.error,
        })
        .collect();
    ingest.sort_by(|a, b| a.node.cmp(&b.node));
    let scheduler_leader = scheduler_leader(&gateway, &view).await?;
    Ok(Json(ClusterView {
        node: gateway.node,
        ingest,
        scheduler_leader,
        members,
    }))
}

/// The live member holding the scheduler's lease, if an unexpired lease has a live holder.
async fn scheduler_leader(
    gateway: &Gateway,
    view: &MemberView,
) -> Result<Option<String>, ApiError> {
    let lease = gateway
        .database
        .lease(SCHEDULER_LEASE)
        .await
        .map_err(ApiError::database)?;
    // The holder is `name#incarnation`: a restarted node with the old name is not the holder.
    Ok(lease
        .filter(|(_, _, unexpired)| *unexpired)
        .and_then(|(holder, _, _)| {
            view.with_role(Role::Scheduler)
                .into_iter()
                .find(|member| holder == format!("{}#{}", member.name, member.incarnation))
                .map(|member| member.name.clone())
        }))
}
