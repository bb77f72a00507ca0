//! The scheduler: a cluster singleton that runs train-all jobs.
//!
//! Every node with the `scheduler` role runs this actor; only one leads. Steps, every tick:
//! 1. **Lead or stand by.** The leader is the live scheduler-role member with the lowest
//!    name. It takes the `scheduler` lease row and renews it each tick; a scheduler that
//!    cannot renew (partitioned, paused past the lease) stops leading, and every write it
//!    makes to jobs is fenced by the lease epoch, so two schedulers never both act on a job.
//! 2. **Fire the weekly slot** (`scheduler.train_all_at`): the database fires each slot once.
//!    Jobs also start on demand (`StartTrainAll`, from `storecast cluster train-all` or the
//!    gateway).
//! 3. **Train.** The oldest active job is resumed from its rows: every series not yet trained
//!    goes to its model actor as a `Train` for the job's task, on the node the cluster
//!    client places it on, with at most `in_flight_per_worker` x that node's workers in
//!    flight there. A series
//!    whose node leaves the view goes back to pending and is sent to its new owner. The
//!    registry completes a task in the transaction that adds its version and refuses a second
//!    version for one task, so a takeover that sends a series twice never trains it twice
//!    into the registry.
//! 4. **Forecast.** When every task is finished, a forecaster writes the batch forecasts of
//!    the job's series (idempotent per version), and the job ends, `succeeded` unless no
//!    series could be trained.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, pg};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use super::client::{ClusterClient, ClusterError};
use super::forecaster::{BatchReply, BatchRequest};
use super::model::{TrainOutcome, TrainRequest};
use crate::bincode_message_payload;
use crate::cluster::member::{MemberView, Role};
use crate::metrics;
use crate::schedule::WeeklySlot;
use crate::store::{
    Database, Fence, Job, JobKind, JobRef, JobState, NewJob, SCHEDULER_LEASE, StoreError, TaskRef,
};
use crate::telemetry;

/// The process group every scheduler joins.
pub const GROUP: &str = "storecast.scheduler";

/// How often the scheduler renews its lease and looks at its job, at most: a short lease is
/// renewed three times per period.
const TICK: Duration = Duration::from_secs(1);
/// A weekly slot missed by up to this long (no scheduler alive) still fires.
const MISSED_SLOT_GRACE: chrono::Duration = chrono::Duration::hours(6);
/// Progress of a running job is logged at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How the scheduler runs jobs.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// This node's name.
    pub node: String,
    /// This process as the lease holder: the name and the incarnation (`alpha#1764633600000`),
    /// so two processes that share a name never both hold the lease.
    pub holder: String,
    pub product: String,
    pub profile: String,
    /// Days of batch forecast a job writes.
    pub horizon_days: u32,
    pub weekly: Option<WeeklySlot>,
    pub lease: Duration,
    pub in_flight_per_worker: u32,
    pub max_attempts: u32,
}

pub struct SchedulerArguments {
    pub settings: SchedulerSettings,
    pub database: Database,
    pub client: ClusterClient,
}

/// A request to start a train-all job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// W3C trace context of the call; the cluster client sets it from its call span, so
    /// callers leave it empty.
    pub traceparent: String,
}

/// The job started (or the one already running), or why there is none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobReply {
    pub job_id: Option<i64>,
    /// False when an active train-all job was already running: `job_id` is that job.
    pub created: bool,
    pub error: Option<String>,
}

/// One task's training answered (sent by the scheduler's own call tasks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskAnswer {
    pub job_id: i64,
    pub store: u32,
    pub attempt: i32,
    pub outcome: TrainOutcome,
}

/// The job's batch forecasts answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub job_id: i64,
    pub reply: BatchReply,
}

bincode_message_payload!(JobRequest, JobReply, TaskAnswer, BatchAnswer);

#[derive(RactorClusterMessage)]
pub enum SchedulerMessage {
    /// Start a train-all job now (answered by the leader only).
    #[rpc]
    StartTrainAll(JobRequest, RpcReplyPort<JobReply>),
    /// Timer: lease, schedule, dispatch.
    Tick,
    TaskAnswered(TaskAnswer),
    BatchAnswered(BatchAnswer),
}

pub struct Scheduler;

pub struct SchedulerState {
    settings: SchedulerSettings,
    database: Database,
    client: ClusterClient,
    view: MemberView,
    /// The lease while this scheduler leads.
    fence: Option<Fence>,
    job: Option<RunningJob>,
    /// The last weekly slot this scheduler saw fired (the database is the real guard).
    fired_slot: Option<String>,
}

/// The job the leader works on.
struct RunningJob {
    id: i64,
    product: String,
    /// Series to send, by store.
    pending: BTreeSet<u32>,
    /// Series sent and not answered: the node and the attempt.
    in_flight: HashMap<u32, Dispatch>,
    /// Failed trainings per series (a node leaving or stopping is not the series' failure).
    failures: HashMap<u32, u32>,
    /// A batch of forecasts was asked for and has not answered.
    forecasting: bool,
    /// The job's span on this scheduler: the parent of its dispatches and its batch.
    span: tracing::Span,
    last_progress: Option<(Instant, i64)>,
}

struct Dispatch {
    node: String,
    attempt: i32,
}

impl Actor for Scheduler {
    type Msg = SchedulerMessage;
    type State = SchedulerState;
    type Arguments = SchedulerArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: SchedulerArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        pg::join(GROUP.to_string(), vec![myself.get_cell()]);
        let tick = TICK.min(arguments.settings.lease / 3);
        myself.send_interval(tick, || SchedulerMessage::Tick);
        Ok(SchedulerState {
            settings: arguments.settings,
            database: arguments.database,
            client: arguments.client,
            view: MemberView::default(),
            fence: None,
            job: None,
            fired_slot: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let outcome = match message {
            SchedulerMessage::Tick => tick(&myself, state).await,
            SchedulerMessage::StartTrainAll(request, reply) => {
                let answer = start_train_all(state, None, &request.traceparent)
                    .await
                    .unwrap_or_else(|error| JobReply {
                        error: Some(error.to_string()),
                        ..JobReply::default()
                    });
                let _ = reply.send(answer);
                work(&myself, state).await
            }
            SchedulerMessage::TaskAnswered(answer) => task_answered(&myself, state, answer).await,
            SchedulerMessage::BatchAnswered(answer) => batch_answered(&myself, state, answer).await,
        };
        match outcome {
            Ok(()) => {}
            Err(StoreError::LeaseLost { .. }) => {
                tracing::warn!(node = %state.settings.node, "scheduler lease lost; standing by");
                state.fence = None;
                state.job = None;
            }
            // The database may be away for a moment: the next tick tries again.
            Err(error) => tracing::warn!(%error, "scheduler step failed; retrying next tick"),
        }
        let leading = i64::from(state.fence.is_some());
        metrics::metrics().scheduler_leader.set(leading);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Hand over at once instead of making the next leader wait for the lease to expire.
        if let Some(fence) = state.fence.take() {
            let _ = state.database.release_lease(&fence).await;
        }
        Ok(())
    }
}

/// One tick: decide who leads, keep the lease, fire the schedule, drive the job.
async fn tick(
    myself: &ActorRef<SchedulerMessage>,
    state: &mut SchedulerState,
) -> Result<(), StoreError> {
    let Ok(view) = state.client.view().await else {
        return Ok(());
    };
    state.view = view;
    let leader = state
        .view
        .with_role(Role::Scheduler)
        .first()
        .map(|member| member.name.clone());
    if leader.as_deref() != Some(state.settings.node.as_str()) {
        if let Some(fence) = state.fence.take() {
            tracing::info!(leader = ?leader, "another scheduler leads now; handing over");
            state.job = None;
            state.database.release_lease(&fence).await?;
        }
        return Ok(());
    }
    let taken = state
        .database
        .acquire_lease(
            SCHEDULER_LEASE,
            &state.settings.holder,
            state.settings.lease,
        )
        .await?;
    match (&state.fence, taken) {
        (_, None) => {
            if state.fence.take().is_some() {
                tracing::warn!("scheduler lease taken by another node; standing by");
            }
            state.job = None;
            return Ok(());
        }
        (Some(held), Some(fence)) if held.epoch == fence.epoch => {}
        (_, Some(fence)) => {
            tracing::info!(node = %state.settings.node, holder = %state.settings.holder, epoch = fence.epoch, "leading the scheduler");
            // A new epoch: whatever was tracked is re-read from the rows.
            state.job = None;
            state.fence = Some(fence);
        }
    }
    if let Some(slot) = state.settings.weekly
        && let Some(due) = slot.due(Utc::now(), MISSED_SLOT_GRACE)
        && state.fired_slot.as_deref() != Some(due.as_str())
    {
        let reply = start_train_all(state, Some(&due), "").await?;
        match (reply.created, reply.job_id, reply.error) {
            (true, job, _) => tracing::info!(slot = %due, job = ?job, "weekly train-all fired"),
            // Another scheduler fired it (the database fires each slot once), or a job runs.
            (false, Some(job), _) => {
                tracing::info!(slot = %due, job, "weekly train-all already fired or running");
            }
            (false, None, error) => {
                let error = error.unwrap_or_default();
                tracing::warn!(slot = %due, %error, "weekly train-all did not start");
            }
        }
        state.fired_slot = Some(due);
    }
    work(myself, state).await
}

/// Creates a train-all job of every series with sales (or finds the active one); the job
/// continues the trace of `traceparent`, its requester's.
async fn start_train_all(
    state: &mut SchedulerState,
    slot: Option<&str>,
    traceparent: &str,
) -> Result<JobReply, StoreError> {
    let Some(fence) = state.fence.clone() else {
        let leader = state
            .view
            .with_role(Role::Scheduler)
            .first()
            .map_or_else(|| "none yet".to_string(), |member| member.name.clone());
        return Ok(JobReply {
            error: Some(format!(
                "node {} does not lead the scheduler (leader: {leader}); try again",
                state.settings.node
            )),
            ..JobReply::default()
        });
    };
    let settings = &state.settings;
    let stores = state.database.stores_with_sales(&settings.product).await?;
    if stores.is_empty() {
        return Ok(JobReply {
            error: Some(format!(
                "no sales of {} in the database: load or ingest data first",
                settings.product
            )),
            ..JobReply::default()
        });
    }
    let (id, created) = state
        .database
        .create_job(
            &fence,
            &NewJob {
                kind: JobKind::TrainAll,
                product: &settings.product,
                profile: &settings.profile,
                slot,
                stores: &stores,
                traceparent,
            },
        )
        .await?;
    if created {
        tracing::info!(job = id, series = stores.len(), "train-all job created");
    }
    Ok(JobReply {
        job_id: Some(id),
        created,
        error: None,
    })
}

/// Drives the current job: resume it, send series, notice departed nodes, finish.
async fn work(
    myself: &ActorRef<SchedulerMessage>,
    state: &mut SchedulerState,
) -> Result<(), StoreError> {
    let Some(fence) = state.fence.clone() else {
        return Ok(());
    };
    if state.job.is_none() {
        let Some(job) = state.database.active_jobs().await?.into_iter().next() else {
            return Ok(());
        };
        state.job = Some(resume(&state.database, &fence, &job).await?);
    }
    let view = state.view.clone();
    let Some(job) = state.job.as_mut() else {
        return Ok(());
    };
    // Series sent to nodes that left go back to pending, for their new owners.
    let live: BTreeSet<&str> = view.names().into_iter().collect();
    let lost: Vec<u32> = job
        .in_flight
        .iter()
        .filter(|(_, dispatch)| !live.contains(dispatch.node.as_str()))
        .map(|(store, _)| *store)
        .collect();
    for store in lost {
        if let Some(dispatch) = job.in_flight.remove(&store) {
            let task = task_ref(job, store);
            let error = format!("node {} left during the training", dispatch.node);
            state
                .database
                .release_task(&fence, &task, &error, false)
                .await?;
            job.pending.insert(store);
        }
    }
    let scheduler = (&state.database, &state.client, &state.settings);
    dispatch(myself, scheduler, &fence, &view, job).await?;
    log_progress(&state.database, job).await?;
    if job.pending.is_empty() && job.in_flight.is_empty() && !job.forecasting {
        finish_training(myself, state, &fence).await?;
    }
    Ok(())
}

/// Reads a job back from its rows: the tasks not finished are pending again.
async fn resume(database: &Database, fence: &Fence, job: &Job) -> Result<RunningJob, StoreError> {
    database.start_job(fence, job.id).await?;
    let tasks = database.job_tasks(job.id).await?;
    let pending: BTreeSet<u32> = tasks
        .iter()
        .filter(|task| task.state.is_active())
        .map(|task| task.store.unsigned_abs())
        .collect();
    tracing::info!(
        job = job.id,
        series = tasks.len(),
        to_train = pending.len(),
        phase = %job.phase,
        "running job"
    );
    let span = tracing::info_span!(
        parent: None,
        "train-all job",
        job.id = job.id,
        product = %job.product,
        series = tasks.len(),
        to_train = pending.len(),
    );
    telemetry::follow(&span, &job.traceparent);
    Ok(RunningJob {
        id: job.id,
        product: job.product.clone(),
        pending,
        in_flight: HashMap::new(),
        failures: HashMap::new(),
        forecasting: false,
        span,
        last_progress: None,
    })
}

fn task_ref(job: &RunningJob, store: u32) -> TaskRef {
    TaskRef {
        job_id: job.id,
        store,
        product: job.product.clone(),
    }
}

/// Sends pending series to their owners while each owner has room.
async fn dispatch(
    myself: &ActorRef<SchedulerMessage>,
    (database, client, settings): (&Database, &ClusterClient, &SchedulerSettings),
    fence: &Fence,
    view: &MemberView,
    job: &mut RunningJob,
) -> Result<(), StoreError> {
    if job.pending.is_empty() {
        return Ok(());
    }
    let routes = match client.routes(&job.product).await {
        Ok(routes) => routes,
        Err(ClusterError::Store(error)) => return Err(error),
        Err(error) => {
            tracing::debug!(%error, "no placement yet; dispatching next tick");
            return Ok(());
        }
    };
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    for sent in job.in_flight.values() {
        *in_flight.entry(sent.node.clone()).or_default() += 1;
    }
    let windows: HashMap<&str, usize> = view
        .with_role(Role::Models)
        .into_iter()
        .map(|member| {
            let window = member.workers.max(1) * settings.in_flight_per_worker;
            (member.name.as_str(), window as usize)
        })
        .collect();
    let candidates: Vec<u32> = job.pending.iter().copied().collect();
    for store in candidates {
        let Some(owner) = routes.owner(store).map(str::to_string) else {
            break; // no model host at all
        };
        let used = in_flight.get(&owner).copied().unwrap_or(0);
        if used >= windows.get(owner.as_str()).copied().unwrap_or(0) {
            continue;
        }
        if client.host(&owner).is_err() {
            continue; // its host has not shown up in the process groups yet
        }
        let task = task_ref(job, store);
        job.pending.remove(&store);
        let Some(attempt) = database.claim_task(fence, &task, &owner).await? else {
            continue; // already finished (by a training that joined another request)
        };
        *in_flight.entry(owner.clone()).or_default() += 1;
        job.in_flight.insert(
            store,
            Dispatch {
                node: owner.clone(),
                attempt,
            },
        );
        let span = tracing::info_span!(
            parent: &job.span,
            "dispatch",
            store,
            node = %owner,
            attempt
        );
        send_train(myself, client, job, store, owner, attempt, span);
    }
    Ok(())
}

/// Sends one series' `Train` from a task (in `span`); the answer comes back as
/// `TaskAnswered`.
fn send_train(
    myself: &ActorRef<SchedulerMessage>,
    client: &ClusterClient,
    job: &RunningJob,
    store: u32,
    node: String,
    attempt: i32,
    span: tracing::Span,
) {
    let (myself, client, job_id) = (myself.clone(), client.clone(), job.id);
    let job_ref = JobRef {
        id: job_id,
        kind: JobKind::TrainAll,
    };
    let request = TrainRequest::new(store, job.product.clone(), Some(job_ref));
    tokio::spawn(
        async move {
            let outcome = match client.train(&node, request).await {
                Ok(version) => TrainOutcome::Trained(version),
                Err(ClusterError::Refused { reason, .. }) => TrainOutcome::Refused(reason),
                Err(error) => TrainOutcome::Failed(error.to_string()),
            };
            let answer = TaskAnswer {
                job_id,
                store,
                attempt,
                outcome,
            };
            let _ = myself.cast(SchedulerMessage::TaskAnswered(answer));
        }
        .instrument(span),
    );
}

async fn task_answered(
    myself: &ActorRef<SchedulerMessage>,
    state: &mut SchedulerState,
    answer: TaskAnswer,
) -> Result<(), StoreError> {
    let (Some(fence), Some(job)) = (state.fence.clone(), state.job.as_mut()) else {
        return Ok(());
    };
    // Answers to sends that were given up (node left, leadership changed) are stale.
    let current = job.id == answer.job_id
        && job
            .in_flight
            .get(&answer.store)
            .is_some_and(|dispatch| dispatch.attempt == answer.attempt);
    if !current {
        return Ok(());
    }
    job.in_flight.remove(&answer.store);
    let (error, counts) = match answer.outcome {
        TrainOutcome::Trained(_) => {
            record_series("trained");
            return work(myself, state).await;
        }
        TrainOutcome::Failed(error) => (error, true),
        // A node that stops refuses new trainings: not the series' fault.
        TrainOutcome::Refused(error) => (error, false),
    };
    let failures = job.failures.entry(answer.store).or_default();
    if counts {
        *failures += 1;
    }
    let give_up = *failures >= state.settings.max_attempts;
    tracing::warn!(job = job.id, store = answer.store, attempt = answer.attempt, give_up, %error, "training failed");
    let task = task_ref(job, answer.store);
    state
        .database
        .release_task(&fence, &task, &error, give_up)
        .await?;
    if give_up {
        record_series("failed");
    } else {
        job.pending.insert(answer.store);
    }
    work(myself, state).await
}

/// Every task answered: check the rows agree, then ask a forecaster for the batch.
async fn finish_training(
    myself: &ActorRef<SchedulerMessage>,
    state: &mut SchedulerState,
    fence: &Fence,
) -> Result<(), StoreError> {
    let Some(job) = state.job.as_mut() else {
        return Ok(());
    };
    let tasks = state.database.job_tasks(job.id).await?;
    let unfinished: BTreeSet<u32> = tasks
        .iter()
        .filter(|task| task.state.is_active())
        .map(|task| task.store.unsigned_abs())
        .collect();
    if !unfinished.is_empty() {
        job.pending = unfinished;
        return Ok(());
    }
    let trained: Vec<u32> = tasks
        .iter()
        .filter(|task| task.state == JobState::Succeeded)
        .map(|task| task.store.unsigned_abs())
        .collect();
    if trained.is_empty() {
        let error = format!("no series could be trained ({} failed)", tasks.len());
        state
            .database
            .finish_job(fence, job.id, false, Some(&error))
            .await?;
        record_job_duration(state.database.job(job.id).await?.as_ref(), "failed");
        tracing::error!(job = job.id, %error, "job failed");
        state.job = None;
        return Ok(());
    }
    state.database.enter_forecasting(fence, job.id).await?;
    job.forecasting = true;
    let request = BatchRequest::new(
        job.id,
        job.product.clone(),
        trained,
        state.settings.horizon_days,
    );
    let (myself, client, job_id) = (myself.clone(), state.client.clone(), job.id);
    let span = tracing::info_span!(parent: &job.span, "batch forecasts", job.id = job_id);
    tokio::spawn(
        async move {
            let reply = client
                .write_batch(request)
                .await
                .unwrap_or_else(|error| BatchReply {
                    error: Some(error.to_string()),
                    ..BatchReply::default()
                });
            let answer = BatchAnswer { job_id, reply };
            let _ = myself.cast(SchedulerMessage::BatchAnswered(answer));
        }
        .instrument(span),
    );
    Ok(())
}

async fn batch_answered(
    myself: &ActorRef<SchedulerMessage>,
    state: &mut SchedulerState,
    answer: BatchAnswer,
) -> Result<(), StoreError> {
    let (Some(fence), Some(job)) = (state.fence.clone(), state.job.as_mut()) else {
        return Ok(());
    };
    if job.id != answer.job_id || !job.forecasting {
        return Ok(());
    }
    job.forecasting = false;
    if let Some(error) = answer.reply.error {
        // Writing the batch again is harmless: the next tick asks again.
        tracing::warn!(job = job.id, %error, "batch forecasts failed; retrying");
        return Ok(());
    }
    let stored = state.database.job(job.id).await?;
    let failed_training = stored.as_ref().map_or(0, |stored| stored.failed);
    let mut problems = Vec::new();
    if failed_training > 0 {
        problems.push(format!("{failed_training} series failed to train"));
    }
    if !answer.reply.failed.is_empty() {
        let (store, reason) = &answer.reply.failed[0];
        problems.push(format!(
            "{} series without a forecast (first: store {store}: {reason})",
            answer.reply.failed.len()
        ));
    }
    let error = (!problems.is_empty()).then(|| problems.join("; "));
    state
        .database
        .finish_job(&fence, job.id, true, error.as_deref())
        .await?;
    record_job_duration(stored.as_ref(), "succeeded");
    tracing::info!(
        job = job.id,
        series = answer.reply.series,
        forecast_rows = answer.reply.rows,
        problems = error.as_deref().unwrap_or("none"),
        "job succeeded"
    );
    state.job = None;
    // The next job, if one waits.
    let _ = myself.cast(SchedulerMessage::Tick);
    Ok(())
}

/// Counts a series this scheduler finished for its job: `trained` or `failed`.
fn record_series(outcome: &str) {
    metrics::metrics()
        .train_all_series
        .get_or_create(&metrics::OutcomeLabels::new(outcome))
        .inc();
}

/// Observes how long a finished job ran, from its first start.
fn record_job_duration(job: Option<&Job>, outcome: &str) {
    let Some(started_at) = job.and_then(|job| job.started_at) else {
        return;
    };
    let seconds = (Utc::now() - started_at).as_seconds_f64().max(0.0);
    metrics::metrics()
        .train_all_duration
        .get_or_create(&metrics::OutcomeLabels::new(outcome))
        .observe(seconds);
}

/// Logs a running job's progress when it moved, at most every few seconds.
async fn log_progress(database: &Database, job: &mut RunningJob) -> Result<(), StoreError> {
    if job
        .last_progress
        .is_some_and(|(at, _)| at.elapsed() < PROGRESS_EVERY)
    {
        return Ok(());
    }
    let Some(stored) = database.job(job.id).await? else {
        return Ok(());
    };
    let finished = stored.succeeded + stored.failed;
    if job.last_progress.map(|(_, seen)| seen) != Some(finished) {
        tracing::info!(
            job = job.id,
            trained = stored.succeeded,
            failed = stored.failed,
            total = stored.total,
            in_flight = job.in_flight.len(),
            "job progress"
        );
    }
    job.last_progress = Some((Instant::now(), finished));
    Ok(())
}
