//! Jobs through the gateway:
//! - `POST /api/stores/{store}/products/{product}/retrain`: retrain one series on its model
//!   actor, wherever it lives; `202` with a job id at once. A retrain of a series already
//!   retraining joins that job; a series training in another job (a train-all) is not trained
//!   twice either: its model actor answers both with one training;
//! - `POST /api/train`: a train-all job, started by the leading scheduler (`202`);
//! - `GET /api/jobs/{id}`: state, progress and errors;
//! - `GET /api/jobs/{id}/events`: the same as server-sent events, one each time the job
//!   moves, until it ends.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

use super::stores::parse_store;
use super::{ApiError, Gateway};
use crate::actors::model_host::{ModelHostMessage, SeriesRequest};
use crate::actors::scheduler::request_train_all;
use crate::store::{Database, Job};

/// Longest one retrain may take (as the scheduler allows a series).
const TRAIN_TIMEOUT: Duration = Duration::from_secs(1_800);
/// How long `POST /api/train` keeps asking for a leading scheduler (each ask may take up to
/// 30 s more; the request time limit bounds the whole).
const SCHEDULER_WAIT: Duration = Duration::from_secs(10);
/// How often an event stream looks at its job.
const EVENTS_POLL: Duration = Duration::from_millis(200);
/// Failed series listed in a job's answer, at most.
const ERRORS_LISTED: usize = 50;

/// A job started (or joined).
#[derive(Debug, Serialize)]
pub struct Started {
    pub job_id: i64,
    /// False when the request joined a job already running.
    pub created: bool,
    pub kind: &'static str,
    pub job: String,
    pub events: String,
}

impl Started {
    fn new(job_id: i64, created: bool, kind: &'static str) -> Self {
        Started {
            job_id,
            created,
            kind,
            job: format!("/api/jobs/{job_id}"),
            events: format!("/api/jobs/{job_id}/events"),
        }
    }
}

impl IntoResponse for Started {
    fn into_response(self) -> Response {
        let location = self.job.clone();
        (
            StatusCode::ACCEPTED,
            [(header::LOCATION, location)],
            Json(self),
        )
            .into_response()
    }
}

pub async fn retrain(
    State(gateway): State<Gateway>,
    Path((store, product)): Path<(String, String)>,
) -> Result<Started, ApiError> {
    let store = parse_store(&store)?;
    let owner = gateway.routing.owner(&gateway, store, &product).await?;
    let (job_id, created) = gateway
        .database
        .start_retrain_job(store, &product, &gateway.settings.profile, &owner.node)
        .await
        .map_err(ApiError::database)?;
    if created {
        tracing::info!(job = job_id, store, %product, node = %owner.node, "retrain requested");
        let database = gateway.database.clone();
        let job_ended = gateway.job_ended.clone();
        let request = SeriesRequest {
            store,
            product,
            days: 0,
            traceparent: String::new(),
            job_id: Some(job_id),
        };
        // The answer comes back to this task; the caller follows the job.
        tokio::spawn(async move {
            let reply = owner
                .host
                .call(
                    |port| ModelHostMessage::Train(request, port),
                    Some(TRAIN_TIMEOUT),
                )
                .await;
            let outcome = match reply {
                Ok(ractor::rpc::CallResult::Success(reply)) => match reply.version {
                    Some(version) => Ok(version.version),
                    None => Err(reply.error.unwrap_or_else(|| "no version".to_string())),
                },
                Ok(other) => Err(format!("node {} did not answer: {other:?}", owner.node)),
                Err(error) => Err(format!("node {} unreachable: {error}", owner.node)),
            };
            if let Err(error) = &outcome {
                tracing::warn!(job = job_id, %error, "retrain failed");
            }
            let outcome = outcome
                .as_ref()
                .map(|version| *version)
                .map_err(String::as_str);
            if let Err(error) = database.finish_retrain_job(job_id, outcome).await {
                tracing::warn!(job = job_id, %error, "cannot record the retrain's outcome");
            }
            // No stream listening is fine.
            let _ = job_ended.send(job_id);
        });
    }
    Ok(Started::new(job_id, created, "retrain"))
}

pub async fn train_all(State(_gateway): State<Gateway>) -> Result<Started, ApiError> {
    let (job_id, created) = request_train_all(SCHEDULER_WAIT)
        .await
        .map_err(|error| ApiError::unavailable(error.to_string()))?;
    Ok(Started::new(job_id, created, "train_all"))
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    /// `pending`, `running`, `succeeded` or `failed`.
    pub state: String,
    /// `training`, `forecasting` or `done`.
    pub phase: String,
    pub product: String,
    pub profile: String,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub running: i64,
    /// Finished series over all series, 0 to 1.
    pub progress: f64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The version a one-series job registered.
    pub model_version: Option<i32>,
    /// Series that failed, with why (at most 50).
    pub errors: Vec<SeriesError>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesError {
    pub store: u32,
    pub product: String,
    pub error: String,
}

impl JobView {
    fn is_finished(&self) -> bool {
        self.state != "pending" && self.state != "running"
    }
}

/// The job's view, `None` when there is no such job.
async fn job_view(database: &Database, id: i64) -> Result<Option<JobView>, ApiError> {
    let Some(job) = database.job(id).await.map_err(ApiError::database)? else {
        return Ok(None);
    };
    let Job {
        id,
        kind,
        state,
        phase,
        product,
        profile,
        error,
        created_at,
        started_at,
        finished_at,
        total,
        succeeded,
        failed,
        running,
        ..
    } = job;
    let mut model_version = None;
    let mut errors = Vec::new();
    if failed > 0 || total == 1 {
        for task in database.job_tasks(id).await.map_err(ApiError::database)? {
            if total == 1 {
                model_version = task.model_version;
            }
            if task.state == "failed"
                && errors.len() < ERRORS_LISTED
                && let Some(error) = task.error
            {
                errors.push(SeriesError {
                    store: task.store.unsigned_abs(),
                    product: task.product,
                    error,
                });
            }
        }
    }
    let progress = if total > 0 {
        (succeeded + failed) as f64 / total as f64
    } else {
        0.0
    };
    Ok(Some(JobView {
        id,
        kind,
        state,
        phase,
        product,
        profile,
        total,
        succeeded,
        failed,
        running,
        progress,
        error,
        created_at,
        started_at,
        finished_at,
        model_version,
        errors,
    }))
}

fn parse_job_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "job id must be a positive whole number, got {text:?}"
            ))
        })
}

fn no_such_job(id: i64) -> ApiError {
    ApiError::not_found(format!("no job {id}"))
}

pub async fn job(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_job_id(&id)?;
    job_view(&gateway.database, id)
        .await?
        .map(Json)
        .ok_or_else(|| no_such_job(id))
}

/// Server-sent events of a job: a `progress` event with the job (as `GET /api/jobs/{id}`)
/// each time it changes, then a `done` event with the finished job; the stream then ends.
pub async fn events(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = parse_job_id(&id)?;
    // Listening before the first look, so an end in between is not missed.
    let ended = gateway.job_ended.subscribe();
    let first = job_view(&gateway.database, id)
        .await?
        .ok_or_else(|| no_such_job(id))?;
    let database = gateway.database.clone();
    let stream =
        futures_util::stream::unfold((Follow::Send(first), ended), move |(follow, ended)| {
            let database = database.clone();
            async move { follow.next(&database, id, ended).await }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where an event stream is.
enum Follow {
    /// This view is new: send it.
    Send(JobView),
    /// Sent this one; look again.
    Watch(JobView),
    Ended,
}

impl Follow {
    async fn next(
        self,
        database: &Database,
        id: i64,
        mut ended: broadcast::Receiver<i64>,
    ) -> Option<(
        Result<Event, Infallible>,
        (Follow, broadcast::Receiver<i64>),
    )> {
        let mut sent = match self {
            Follow::Ended => return None,
            Follow::Send(view) => return Some((event(&view), (Follow::after(view), ended))),
            Follow::Watch(view) => view,
        };
        loop {
            // Look again after a while, or at once when this gateway saw the job end.
            let look_again = tokio::time::sleep(EVENTS_POLL);
            tokio::pin!(look_again);
            loop {
                tokio::select! {
                    _ = &mut look_again => break,
                    seen = ended.recv() => match seen {
                        Ok(ended_id) if ended_id != id => continue,
                        Err(broadcast::error::RecvError::Closed) => {
                            (&mut look_again).await;
                            break;
                        }
                        _ => break,
                    },
                }
            }
            match job_view(database, id).await {
                Ok(Some(view)) if view != sent => {
                    return Some((event(&view), (Follow::after(view), ended)));
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(error) => {
                    // The database may be away for a moment: say so and keep watching.
                    let warning = Event::default().event("warning").data(error.message);
                    sent.progress = f64::NAN; // the next view differs, so it is sent again
                    return Some((Ok(warning), (Follow::Watch(sent), ended)));
                }
            }
        }
    }

    fn after(view: JobView) -> Follow {
        if view.is_finished() {
            Follow::Ended
        } else {
            Follow::Watch(view)
        }
    }
}

fn event(view: &JobView) -> Result<Event, Infallible> {
    let name = if view.is_finished() {
        "done"
    } else {
        "progress"
    };
    let data = serde_json::to_string(view).unwrap_or_else(|error| {
        format!("{{\"error\": \"cannot write the job as JSON: {error}\"}}")
    });
    Ok(Event::default().event(name).data(data))
}
