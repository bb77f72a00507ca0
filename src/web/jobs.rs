//! Jobs through the gateway:
//! - `POST /api/stores/{store}/products/{product}/retrain`: retrain one series on its model
//!   actor, wherever it lives; `202` with a job id at once. A retrain of a series already
//!   retraining joins that job; a series training in another job (a train-all) is not trained
//!   twice either: its model actor answers both with one training;
//! - `POST /api/train`: a train-all job, started by the leading scheduler (`202`);
//! - `GET /api/jobs?limit=N&before=ID`: jobs, newest first, a page at a time;
//! - `GET /api/jobs/{id}`: state, progress and errors;
//! - `GET /api/jobs/{id}/events`: the same as server-sent events, one each time the job
//!   moves, until it ends. One poller per job ([`JobFeeds`]) reads the job for all of its
//!   streams; streams are capped (`gateway.max_event_streams`, then 503) and last at most
//!   `gateway.event_stream_max_secs` (a browser's `EventSource` reconnects by itself).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};

use super::stores::parse_store;
use super::{ApiError, Gateway};
use crate::cluster::placement::SeriesKey;
use crate::metrics;
use crate::store::{Database, Job, JobKind, JobPhase, JobState};

/// How long `POST /api/train` keeps asking for a leading scheduler (each ask may take up to
/// 30 s more; the request time limit bounds the whole).
const SCHEDULER_WAIT: Duration = Duration::from_secs(10);
/// How often a job's poller looks at it.
const EVENTS_POLL: Duration = Duration::from_millis(200);
/// Failed series listed in a job's answer, at most.
const ERRORS_LISTED: usize = 50;

/// A job started (or joined).
#[derive(Debug, Serialize)]
pub struct Started {
    pub job_id: i64,
    /// False when the request joined a job already running.
    pub created: bool,
    pub kind: JobKind,
    pub job: String,
    pub events: String,
}

impl Started {
    fn new(job_id: i64, created: bool, kind: JobKind) -> Self {
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
    let key = SeriesKey::new(store, product.clone());
    let started = gateway
        .client
        .start_retrain(key, &gateway.settings.profile)
        .await?;
    if let Some(answer) = started.answer {
        tracing::info!(job = started.job_id, store, %product, node = %started.owner, "retrain requested");
        let (job_ended, job_id) = (gateway.job_ended.clone(), started.job_id);
        // The owner's model actor records the outcome; this only wakes the job's streams.
        tokio::spawn(async move {
            if let Ok(Err(error)) = answer.await {
                tracing::warn!(job = job_id, %error, "retrain failed");
            }
            // No stream listening is fine.
            let _ = job_ended.send(job_id);
        });
    }
    Ok(Started::new(
        started.job_id,
        started.created,
        JobKind::Retrain,
    ))
}

pub async fn train_all(State(gateway): State<Gateway>) -> Result<Started, ApiError> {
    let (job_id, created) = gateway.client.start_train_all(SCHEDULER_WAIT).await?;
    Ok(Started::new(job_id, created, JobKind::TrainAll))
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub id: i64,
    pub kind: JobKind,
    pub state: JobState,
    pub phase: JobPhase,
    pub product: String,
    pub profile: String,
    /// The store of a one-series job (a retrain).
    pub store: Option<u32>,
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
        !self.state.is_active()
    }
}

/// The job's view, `None` when there is no such job.
async fn job_view(database: &Database, id: i64) -> Result<Option<JobView>, ApiError> {
    match database.job(id).await.map_err(ApiError::database)? {
        Some(job) => view_of(database, job).await.map(Some),
        None => Ok(None),
    }
}

/// What the API shows of a job (its tasks are read for a one-series job and for failures).
async fn view_of(database: &Database, job: Job) -> Result<JobView, ApiError> {
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
    let mut store = None;
    let mut errors = Vec::new();
    if failed > 0 || total == 1 {
        for task in database.job_tasks(id).await.map_err(ApiError::database)? {
            if total == 1 {
                model_version = task.model_version;
                store = Some(task.store.unsigned_abs());
            }
            if task.state == JobState::Failed
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
    Ok(JobView {
        id,
        kind,
        state,
        phase,
        product,
        profile,
        store,
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
    })
}

/// Jobs answered when `limit` is not given, and the most one page may hold.
pub const DEFAULT_JOBS: u32 = 20;
pub const MAX_JOBS: u32 = 100;

#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    pub limit: Option<u32>,
    /// Only jobs older than this one: the `next_before` of the previous page.
    pub before: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct JobsPage {
    /// Newest first.
    pub jobs: Vec<JobView>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// `GET /api/jobs?limit=N&before=ID`: jobs, newest first, a page at a time.
pub async fn jobs(
    State(gateway): State<Gateway>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Json<JobsPage>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "limit and before must be whole numbers: {}",
            rejection.body_text()
        ))
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_JOBS);
    if limit == 0 || limit > MAX_JOBS {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_JOBS}, not {limit}"
        )));
    }
    // One more than asked tells whether an older page exists.
    let mut rows = gateway
        .database
        .jobs_before(query.before, limit + 1)
        .await
        .map_err(ApiError::database)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_before = more.then(|| rows.last().map(|job| job.id)).flatten();
    let mut jobs = Vec::with_capacity(rows.len());
    for job in rows {
        jobs.push(view_of(&gateway.database, job).await?);
    }
    Ok(Json(JobsPage { jobs, next_before }))
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
/// A `warning` event says the database could not be read (the stream goes on).
pub async fn events(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = parse_job_id(&id)?;
    let feeds = &gateway.job_feeds;
    let slot = feeds.open_slot()?;
    let first = job_view(&feeds.database, id)
        .await?
        .ok_or_else(|| no_such_job(id))?;
    let feed = feeds.subscribe(id, first);
    let watching = Watching {
        feed,
        sent: None,
        done: false,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(watching, Watching::next)
        .take_until(tokio::time::sleep(feeds.lifetime));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What a job's poller last saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Job(Arc<Published>),
    /// The database could not be read.
    Warning(String),
}

/// A job as its streams send it, encoded once by its poller for all of them (300 streams of
/// one job used to encode each change 300 times).
#[derive(Debug, PartialEq)]
struct Published {
    finished: bool,
    /// The job as JSON, as `GET /api/jobs/{id}` answers it.
    json: String,
}

impl Seen {
    fn job(view: &JobView) -> Seen {
        let json = serde_json::to_string(view).unwrap_or_else(|error| {
            format!("{{\"error\": \"cannot write the job as JSON: {error}\"}}")
        });
        Seen::Job(Arc::new(Published {
            finished: view.is_finished(),
            json,
        }))
    }
}

/// The event streams of this gateway: their cap and lifetime, and one poller per job
/// watched, feeding every stream of that job.
pub struct JobFeeds {
    database: Database,
    /// Jobs this gateway saw end, so their pollers look at once.
    job_ended: broadcast::Sender<i64>,
    feeds: Mutex<HashMap<i64, watch::Receiver<Seen>>>,
    slots: Arc<Semaphore>,
    max_streams: usize,
    lifetime: Duration,
}

impl JobFeeds {
    pub fn new(
        database: Database,
        job_ended: broadcast::Sender<i64>,
        max_streams: usize,
        lifetime: Duration,
    ) -> Arc<Self> {
        Arc::new(JobFeeds {
            database,
            job_ended,
            feeds: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            lifetime,
        })
    }

    /// A place for one more stream, or a 503 when all are taken.
    fn open_slot(&self) -> Result<StreamSlot, ApiError> {
        let permit = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "{} event streams are open, the most this gateway serves \
                 (gateway.max_event_streams): read GET /api/jobs/{{id}} instead, or try later",
                    self.max_streams
                ),
            })?;
        metrics::metrics().event_streams.inc();
        Ok(StreamSlot { _permit: permit })
    }

    /// The feed of job `id`, starting its poller unless one runs; `first` is the job as
    /// just read.
    fn subscribe(self: &Arc<Self>, id: i64, first: JobView) -> watch::Receiver<Seen> {
        let finished = first.is_finished();
        let Ok(mut feeds) = self.feeds.lock() else {
            return watch::channel(Seen::job(&first)).1;
        };
        // A receiver whose sender is gone belongs to a poller that has ended.
        if let Some(feed) = feeds.get(&id).filter(|feed| feed.has_changed().is_ok()) {
            return feed.clone();
        }
        let (sender, feed) = watch::channel(Seen::job(&first));
        if finished {
            return feed; // nothing will change: no poller
        }
        feeds.insert(id, feed.clone());
        tokio::spawn(Arc::clone(self).poll(id, sender));
        feed
    }

    /// Reads job `id` every [`EVENTS_POLL`] (at once when this gateway sees it end) while
    /// a stream watches it and it has not ended.
    async fn poll(self: Arc<Self>, id: i64, sender: watch::Sender<Seen>) {
        let mut ended = self.job_ended.subscribe();
        loop {
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
            // The map's own receiver is the only one left: nobody watches.
            if sender.receiver_count() <= 1 && self.forget(id, &sender) {
                return;
            }
            match job_view(&self.database, id).await {
                Ok(Some(view)) => {
                    let finished = view.is_finished();
                    sender.send_if_modified(|seen| {
                        let new = Seen::job(&view);
                        let changed = *seen != new;
                        *seen = new;
                        changed
                    });
                    if finished {
                        self.forget_now(id);
                        return;
                    }
                }
                Ok(None) => {
                    self.forget_now(id);
                    return;
                }
                Err(error) => {
                    sender.send_replace(Seen::Warning(error.message));
                }
            }
        }
    }

    /// Drops job `id`'s feed if still nobody watches it (checked under the lock that
    /// `subscribe` takes); whether it did.
    fn forget(&self, id: i64, sender: &watch::Sender<Seen>) -> bool {
        let Ok(mut feeds) = self.feeds.lock() else {
            return true;
        };
        if sender.receiver_count() <= 1 {
            feeds.remove(&id);
            true
        } else {
            false
        }
    }

    fn forget_now(&self, id: i64) {
        if let Ok(mut feeds) = self.feeds.lock() {
            feeds.remove(&id);
        }
    }
}

/// An open stream's place under the cap, given back when the stream is dropped.
struct StreamSlot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        metrics::metrics().event_streams.dec();
    }
}

/// One event stream: what it sent last of its job's feed.
struct Watching {
    feed: watch::Receiver<Seen>,
    sent: Option<Seen>,
    done: bool,
    _slot: StreamSlot,
}

impl Watching {
    /// The next event, when the feed moves past what was sent; `None` once the job ended.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Watching)> {
        if self.done {
            return None;
        }
        loop {
            let seen = self.feed.borrow_and_update().clone();
            if self.sent.as_ref() != Some(&seen) {
                let event = match &seen {
                    Seen::Job(job) => {
                        self.done = job.finished;
                        event(job)
                    }
                    Seen::Warning(message) => {
                        Ok(Event::default().event("warning").data(message.clone()))
                    }
                };
                self.sent = Some(seen);
                return Some((event, self));
            }
            if self.feed.changed().await.is_err() {
                // The poller ended (the job is gone, or its end was already sent).
                let last = self.feed.borrow().clone();
                if self.sent.as_ref() == Some(&last) {
                    return None;
                }
            }
        }
    }
}

fn event(job: &Published) -> Result<Event, Infallible> {
    let name = if job.finished { "done" } else { "progress" };
    Ok(Event::default().event(name).data(&job.json))
}
