//! `GET /api/cluster`: the live members with their roles, the series each model host runs,
//! and which node leads the scheduler.

use axum::Json;
use axum::extract::State;
use ractor::{ActorRef, pg};
use serde::Serialize;

use super::{ACTOR_TIMEOUT, ApiError, Gateway};
use crate::actors::membership::MembershipMessage;
use crate::actors::model_host::{self, ModelHostMessage, SeriesRequest};
use crate::cluster::member::Role;

#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// The node that answered.
    pub node: String,
    pub scheduler_leader: Option<String>,
    pub members: Vec<Member>,
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
    let timeout = ACTOR_TIMEOUT.as_millis() as u64;
    let view = ractor::call_t!(gateway.membership, MembershipMessage::GetView, timeout)
        .map_err(|error| ApiError::unavailable(format!("membership does not answer: {error}")))?;
    let mut members = Vec::new();
    // Clients (members without roles) come and go; only nodes are listed.
    for member in view
        .members
        .iter()
        .filter(|member| !member.roles.is_empty())
    {
        let series = match member.has_role(Role::Models) {
            true => hosted(&member.name, timeout).await,
            false => None,
        };
        members.push(Member {
            name: member.name.clone(),
            address: member.advertise.clone(),
            roles: member.roles.iter().map(|role| role.name()).collect(),
            series,
        });
    }
    Ok(Json(ClusterView {
        node: gateway.node,
        scheduler_leader: view
            .with_role(Role::Scheduler)
            .first()
            .map(|leader| leader.name.clone()),
        members,
    }))
}

/// How many series the model host of `node` runs, if it answers.
async fn hosted(node: &str, timeout: u64) -> Option<usize> {
    let host: ActorRef<ModelHostMessage> = pg::get_members(&model_host::group(node))
        .into_iter()
        .next()?
        .into();
    ractor::call_t!(
        host,
        ModelHostMessage::Hosted,
        timeout,
        SeriesRequest::default()
    )
    .ok()
    .map(|hosted| hosted.series.len())
}
