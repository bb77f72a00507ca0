//! Jobs (`jobs`) and their per-series tasks (`job_tasks`).
//!
//! A job trains a set of series; each series is a task row, so a job survives the node that
//! runs it: another scheduler reads the rows and goes on. The scheduler's own writes are
//! *fenced* by its lease ([`super::leases`]): they run in a transaction that first checks the
//! caller still holds the lease at the epoch it was given. How a training ended reaches a
//! job in one place, [`Database::record_training`]; a new version completes its task in the
//! transaction that adds it (see [`Database::insert_model_version`]), and the registry
//! refuses a second version for one task.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;

use super::backend::{check_fence, on_pool};
use super::leases::Fence;
use super::{Database, StoreError};

/// A job about to be created.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub kind: JobKind,
    pub product: &'a str,
    pub profile: &'a str,
    /// The schedule slot that fires it (`None` when started on demand); a slot fires one job.
    pub slot: Option<&'a str>,
    pub stores: &'a [u32],
    /// The W3C trace context of the request that started it (empty: none).
    pub traceparent: &'a str,
}

/// A stored name that is not one of an enum's, as the database returned it.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} `{value}` in the database")]
pub struct UnknownName {
    what: &'static str,
    value: String,
}

/// Enums stored as text: each variant's name, and the parse back.
macro_rules! stored_names {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The name stored in the database and shown by the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownName;

            fn try_from(value: String) -> Result<Self, UnknownName> {
                match value.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, value }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(self.as_str())
            }
        }
    };
}

/// What a job does: train every series (the scheduler's) or retrain one on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    TrainAll,
    Retrain,
}
stored_names!(JobKind, "job kind", { TrainAll => "train_all", Retrain => "retrain" });

/// Where a job, or one of its tasks, is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
}
stored_names!(JobState, "job state", {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
});

impl JobState {
    /// Not ended yet: pending or running.
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Pending | JobState::Running)
    }
}

/// What a job is doing: training its series, writing their batch forecasts, or nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    Training,
    Forecasting,
    Done,
}
stored_names!(JobPhase, "job phase", {
    Training => "training",
    Forecasting => "forecasting",
    Done => "done",
});

/// A job and what it is: the id a training request carries, so whoever records its outcome
/// needs no lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub id: i64,
    pub kind: JobKind,
}

/// A job with its tasks' counts.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub kind: JobKind,
    #[sqlx(try_from = "String")]
    pub state: JobState,
    #[sqlx(try_from = "String")]
    pub phase: JobPhase,
    pub product: String,
    pub profile: String,
    pub slot: Option<String>,
    pub error: Option<String>,
    /// The W3C trace context of the request that started it (empty: none).
    pub traceparent: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The lease epoch of the scheduler that last wrote the job (fenced writes record it).
    pub epoch: Option<i64>,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub running: i64,
}

impl Job {
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }
}

/// One series of a job.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Task {
    pub store: i32,
    pub product: String,
    #[sqlx(try_from = "String")]
    pub state: JobState,
    pub attempts: i32,
    pub node: Option<String>,
    pub model_version: Option<i32>,
    pub error: Option<String>,
    /// The lease epoch of the scheduler that last claimed or released the task.
    pub epoch: Option<i64>,
}

/// A task named by its job and series, as the registry completes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    pub job_id: i64,
    pub store: u32,
    pub product: String,
}

const JOB_COLUMNS: &str = "SELECT j.id, j.kind, j.state, j.phase, j.product, j.profile, j.slot, \
     j.error, j.traceparent, j.created_at, j.started_at, j.finished_at, j.epoch, \
     count(t.store) AS total, \
     count(t.store) FILTER (WHERE t.state = 'succeeded') AS succeeded, \
     count(t.store) FILTER (WHERE t.state = 'failed') AS failed, \
     count(t.store) FILTER (WHERE t.state = 'running') AS running \
     FROM jobs j LEFT JOIN job_tasks t ON t.job_id = j.id";

/// The task counts a job row keeps once it ends.
const COUNTS_SET: &str = "done = (SELECT count(*) FROM job_tasks WHERE job_id = $1 AND state = 'succeeded'), \
     failed = (SELECT count(*) FROM job_tasks WHERE job_id = $1 AND state = 'failed')";

/// Rows per multi-row INSERT of tasks: 4 parameters each.
const TASKS_PER_INSERT: usize = 1000;

impl Database {
    /// Creates a job with one pending task per store, fenced by the scheduler's lease.
    /// Returns the job's id and whether it is new: a slot that already fired, or a train-all
    /// of a product while another one is active, gives the existing job instead.
    pub async fn create_job(
        &self,
        fence: &Fence,
        new: &NewJob<'_>,
    ) -> Result<(i64, bool), StoreError> {
        let doing = "creating a job";
        let fence_sql = self.fence_sql();
        let now = Utc::now();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(StoreError::query(doing))?;
            check_fence(&mut tx, &fence_sql, fence).await?;
            let existing: Option<i64> = match new.slot {
                Some(slot) => sqlx::query_scalar("SELECT id FROM jobs WHERE slot = $1")
                    .bind(slot)
                    .fetch_optional(&mut *tx)
                    .await,
                None if new.kind == JobKind::TrainAll => sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE kind = 'train_all' AND product = $1 \
                     AND state IN ('pending', 'running') ORDER BY id LIMIT 1",
                )
                .bind(new.product)
                .fetch_optional(&mut *tx)
                .await,
                None => Ok(None),
            }
            .map_err(StoreError::query(doing))?;
            if let Some(id) = existing {
                return Ok((id, false));
            }
            let total = i32::try_from(new.stores.len()).unwrap_or(i32::MAX);
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO jobs (kind, state, phase, product, profile, slot, total, created_at, \
                 traceparent, epoch) VALUES ($1, 'pending', 'training', $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING id",
            )
            .bind(new.kind.as_str())
            .bind(new.product)
            .bind(new.profile)
            .bind(new.slot)
            .bind(total)
            .bind(now)
            .bind(new.traceparent)
            .bind(fence.epoch)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            for chunk in new.stores.chunks(TASKS_PER_INSERT) {
                let mut insert =
                    QueryBuilder::new("INSERT INTO job_tasks (job_id, store, product, updated_at, epoch) ");
                insert.push_values(chunk, |mut values, store| {
                    values
                        .push_bind(id)
                        .push_bind(i64::from(*store) as i32)
                        .push_bind(new.product)
                        .push_bind(now)
                        .push_bind(fence.epoch);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(doing))?;
            }
            tx.commit().await.map_err(StoreError::query(doing))?;
            Ok((id, true))
        })
    }

    /// Retrain jobs of the series still running (their trainings' outcomes not recorded).
    pub async fn running_retrains(
        &self,
        store: u32,
        product: &str,
    ) -> Result<Vec<i64>, StoreError> {
        on_pool!(self, pool => sqlx::query_scalar(
            "SELECT j.id FROM jobs j JOIN job_tasks t ON t.job_id = j.id \
             WHERE j.kind = 'retrain' AND j.state = 'running' AND t.store = $1 AND t.product = $2 \
             ORDER BY j.id",
        )
        .bind(i64::from(store) as i32)
        .bind(product)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::query("finding running retrain jobs"))
    }

    /// Starts a retrain of one series asked for on demand (the gateway, `storecast cluster
    /// retrain`): a `retrain` job of one running task on `node`. It is not the scheduler's
    /// (which runs train-all jobs): the training's outcome ends it
    /// ([`Database::record_training`]). A retrain of the same series already running is
    /// returned instead, so a second request joins it. A retrain job still running after
    /// `abandon_after` lost its outcome (every node that could record it stopped): it ends
    /// as failed, and a new request starts a new job. `traceparent` is the requester's trace
    /// context. Returns the job's id and whether it is new.
    pub async fn start_retrain_job(
        &self,
        store: u32,
        product: &str,
        profile: &str,
        node: &str,
        abandon_after: std::time::Duration,
        traceparent: &str,
    ) -> Result<(i64, bool), StoreError> {
        let doing = "starting a retrain job";
        let store = i64::from(store) as i32;
        let now = Utc::now();
        let stale_before =
            now - chrono::Duration::from_std(abandon_after).unwrap_or(chrono::Duration::days(1));
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(StoreError::query(doing))?;
            if matches!(self, Database::Postgres(_)) {
                // Two requests for one series wait for each other here, so the second sees
                // the first's job (SQLite's BEGIN IMMEDIATE already serializes them).
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), $2)")
                    .bind(product)
                    .bind(store)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(doing))?;
            }
            sqlx::query(
                "UPDATE jobs SET state = 'failed', phase = 'done', finished_at = $2, \
                 error = 'abandoned: no outcome was recorded (the nodes that ran it stopped?)' \
                 WHERE kind = 'retrain' AND state = 'running' AND created_at <= $1",
            )
            .bind(stale_before)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            let running: Option<i64> = sqlx::query_scalar(
                "SELECT j.id FROM jobs j JOIN job_tasks t ON t.job_id = j.id \
                 WHERE j.kind = 'retrain' AND j.state = 'running' AND j.created_at > $3 \
                 AND t.store = $1 AND t.product = $2 ORDER BY j.id DESC LIMIT 1",
            )
            .bind(store)
            .bind(product)
            .bind(stale_before)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            if let Some(id) = running {
                return Ok((id, false));
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO jobs (kind, state, phase, product, profile, total, created_at, \
                 started_at, traceparent) \
                 VALUES ('retrain', 'running', 'training', $1, $2, 1, $3, $3, $4) RETURNING id",
            )
            .bind(product)
            .bind(profile)
            .bind(now)
            .bind(traceparent)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            sqlx::query(
                "INSERT INTO job_tasks (job_id, store, product, state, attempts, node, updated_at) \
                 VALUES ($1, $2, $3, 'running', 1, $4, $5)",
            )
            .bind(id)
            .bind(store)
            .bind(product)
            .bind(node)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            tx.commit().await.map_err(StoreError::query(doing))?;
            Ok((id, true))
        })
    }

    /// Records how a job's training of one series ended: the one place a training's outcome
    /// reaches a job.
    /// - A retrain job ends with it ([`Database::finish_retrain_job`]).
    /// - A train-all task gets the version ([`Database::complete_task`]; a no-op when the
    ///   registry already completed it in the transaction that added the version). Its
    ///   failures are left to the scheduler, which decides whether to try again, under its
    ///   lease.
    pub async fn record_training(
        &self,
        job: JobRef,
        task: &TaskRef,
        outcome: Result<i32, &str>,
        node: &str,
    ) -> Result<(), StoreError> {
        match (job.kind, outcome) {
            (JobKind::Retrain, outcome) => self.finish_retrain_job(job.id, outcome).await,
            (JobKind::TrainAll, Ok(version)) => {
                self.complete_task(task, version, node).await.map(|_| ())
            }
            (JobKind::TrainAll, Err(_)) => Ok(()),
        }
    }

    /// Ends a retrain job with its training's outcome: the version it registered, or why
    /// there is none. A job already ended is left as it is.
    pub async fn finish_retrain_job(
        &self,
        id: i64,
        outcome: Result<i32, &str>,
    ) -> Result<(), StoreError> {
        let doing = "finishing a retrain job";
        let now = Utc::now();
        let (state, version, error) = match outcome {
            Ok(version) => (JobState::Succeeded, Some(version), None),
            Err(error) => (JobState::Failed, None, Some(error)),
        };
        let finish_sql = format!(
            "UPDATE jobs SET \
             state = CASE WHEN EXISTS (SELECT 1 FROM job_tasks WHERE job_id = $1 \
               AND state = 'succeeded') THEN 'succeeded' ELSE $2 END, \
             error = CASE WHEN EXISTS (SELECT 1 FROM job_tasks WHERE job_id = $1 \
               AND state = 'succeeded') THEN NULL ELSE $4 END, \
             phase = 'done', finished_at = $3, {COUNTS_SET} \
             WHERE id = $1 AND kind = 'retrain' AND state IN ('pending', 'running')"
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(StoreError::query(doing))?;
            // The registry may have completed the task already (same version).
            sqlx::query(
                "UPDATE job_tasks SET state = $2, model_version = COALESCE(model_version, $3), \
                 error = $4, updated_at = $5 WHERE job_id = $1 AND state <> 'succeeded'",
            )
            .bind(id)
            .bind(state.as_str())
            .bind(version)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            // The job ends as its task did: a version the registry recorded for it stands
            // even when the requester heard only an error (a timeout, say).
            sqlx::query(sqlx::AssertSqlSafe(finish_sql))
                .bind(id)
                .bind(state.as_str())
                .bind(now)
                .bind(error)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?;
            tx.commit().await.map_err(StoreError::query(doing))
        })
    }

    /// Train-all jobs not finished yet, oldest first: the scheduler's work.
    pub async fn active_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "{JOB_COLUMNS} WHERE j.state IN ('pending', 'running') AND j.kind = 'train_all' \
             GROUP BY j.id ORDER BY j.id"
        );
        on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await)
            .map_err(StoreError::query("listing active jobs"))
    }

    /// One job, if it exists.
    pub async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let sql = format!("{JOB_COLUMNS} WHERE j.id = $1 GROUP BY j.id");
        on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await)
        .map_err(StoreError::query("reading a job"))
    }

    /// Up to `limit` jobs older than job `before` (all jobs when `None`), newest first: one
    /// page of the job list.
    pub async fn jobs_before(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let sql =
            format!("{JOB_COLUMNS} WHERE j.id < $1 GROUP BY j.id ORDER BY j.id DESC LIMIT $2");
        on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)
        .map_err(StoreError::query("listing jobs"))
    }

    /// The tasks of a job, by store.
    pub async fn job_tasks(&self, id: i64) -> Result<Vec<Task>, StoreError> {
        on_pool!(self, pool => sqlx::query_as(
            "SELECT store, product, state, attempts, node, model_version, error, epoch FROM job_tasks \
             WHERE job_id = $1 ORDER BY store, product",
        )
        .bind(id)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::query("listing a job's tasks"))
    }

    /// Marks a job running (keeping the time it first started).
    pub async fn start_job(&self, fence: &Fence, id: i64) -> Result<(), StoreError> {
        self.fenced_update(
            fence,
            "starting a job",
            "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, $2), \
             error = $3, epoch = $4 WHERE id = $1 AND state IN ('pending', 'running')"
                .to_string(),
            id,
            None,
        )
        .await
    }

    /// Moves a job to its forecasting phase.
    pub async fn enter_forecasting(&self, fence: &Fence, id: i64) -> Result<(), StoreError> {
        self.fenced_update(
            fence,
            "moving a job to its forecasts",
            "UPDATE jobs SET phase = 'forecasting', started_at = COALESCE(started_at, $2), \
             error = $3, epoch = $4 WHERE id = $1 AND phase = 'training'"
                .to_string(),
            id,
            None,
        )
        .await
    }

    /// Ends a job: `succeeded` or `failed`, with an error when there is one; the task counts
    /// are copied into the job row.
    pub async fn finish_job(
        &self,
        fence: &Fence,
        id: i64,
        succeeded: bool,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let state = if succeeded {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        // The state is one of the enum's fixed names, not input.
        let sql = format!(
            "UPDATE jobs SET state = '{state}', phase = 'done', finished_at = $2, error = $3, \
             epoch = $4, {COUNTS_SET} WHERE id = $1 AND state IN ('pending', 'running')"
        );
        self.fenced_update(fence, "finishing a job", sql, id, error)
            .await
    }

    /// Gives a task to `node`: it becomes `running` with one more attempt. Returns the
    /// attempt number, or `None` when the task is already finished.
    pub async fn claim_task(
        &self,
        fence: &Fence,
        task: &TaskRef,
        node: &str,
    ) -> Result<Option<i32>, StoreError> {
        let doing = "claiming a task";
        let fence_sql = self.fence_sql();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(StoreError::query(doing))?;
            check_fence(&mut tx, &fence_sql, fence).await?;
            let attempt: Option<i32> = sqlx::query_scalar(
                "UPDATE job_tasks SET state = 'running', attempts = attempts + 1, node = $4, \
                 error = NULL, updated_at = $5, epoch = $6 \
                 WHERE job_id = $1 AND store = $2 AND product = $3 \
                 AND state IN ('pending', 'running') RETURNING attempts",
            )
            .bind(task.job_id)
            .bind(i64::from(task.store) as i32)
            .bind(&task.product)
            .bind(node)
            .bind(Utc::now())
            .bind(fence.epoch)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            tx.commit().await.map_err(StoreError::query(doing))?;
            Ok(attempt)
        })
    }

    /// A task's attempt did not give a version: back to `pending` for another attempt, or
    /// `failed` for good when `give_up`. A task completed meanwhile stays completed.
    pub async fn release_task(
        &self,
        fence: &Fence,
        task: &TaskRef,
        error: &str,
        give_up: bool,
    ) -> Result<(), StoreError> {
        let doing = "releasing a task";
        let fence_sql = self.fence_sql();
        let state = if give_up {
            JobState::Failed
        } else {
            JobState::Pending
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(StoreError::query(doing))?;
            check_fence(&mut tx, &fence_sql, fence).await?;
            sqlx::query(
                "UPDATE job_tasks SET state = $4, error = $5, updated_at = $6, epoch = $7 \
                 WHERE job_id = $1 AND store = $2 AND product = $3 AND state = 'running'",
            )
            .bind(task.job_id)
            .bind(i64::from(task.store) as i32)
            .bind(&task.product)
            .bind(state.as_str())
            .bind(error)
            .bind(Utc::now())
            .bind(fence.epoch)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            tx.commit().await.map_err(StoreError::query(doing))
        })
    }

    /// Completes a task with a version another request's training registered (a job's
    /// `Train` that joined a training in flight). A completed task keeps its version;
    /// returns whether this call completed it.
    pub async fn complete_task(
        &self,
        task: &TaskRef,
        version: i32,
        node: &str,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE job_tasks SET state = 'succeeded', model_version = $4, node = $5, \
             error = NULL, updated_at = $6 \
             WHERE job_id = $1 AND store = $2 AND product = $3 AND state <> 'succeeded'",
        )
        .bind(task.job_id)
        .bind(i64::from(task.store) as i32)
        .bind(&task.product)
        .bind(version)
        .bind(node)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|done| done.rows_affected() > 0))
        .map_err(StoreError::query("completing a task"))
    }

    /// One task of a job, if the job has it.
    pub async fn task(&self, task: &TaskRef) -> Result<Option<Task>, StoreError> {
        on_pool!(self, pool => sqlx::query_as(
            "SELECT store, product, state, attempts, node, model_version, error, epoch FROM job_tasks \
             WHERE job_id = $1 AND store = $2 AND product = $3",
        )
        .bind(task.job_id)
        .bind(i64::from(task.store) as i32)
        .bind(&task.product)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::query("reading a task"))
    }

    /// One fenced statement on a job, bound as ($1 id, $2 now, $3 text, $4 the fence's
    /// epoch, which the statement records).
    async fn fenced_update(
        &self,
        fence: &Fence,
        doing: &'static str,
        sql: String,
        id: i64,
        text: Option<&str>,
    ) -> Result<(), StoreError> {
        let fence_sql = self.fence_sql();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(StoreError::query(doing))?;
            check_fence(&mut tx, &fence_sql, fence).await?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(Utc::now())
                .bind(text)
                .bind(fence.epoch)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?;
            tx.commit().await.map_err(StoreError::query(doing))
        })
    }
}
