//! Jobs (`jobs`, `job_tasks`) and the scheduler's lease (`leases`).
//!
//! A job trains a set of series; each series is a task row, so a job survives the node that
//! runs it: another scheduler reads the rows and goes on. The scheduler's own writes are
//! *fenced*: they run in a transaction that first checks the caller still holds the lease at
//! the epoch it was given, so a scheduler that lost its lease (paused, partitioned) cannot
//! write over its successor. Completing a task is not the scheduler's write: the registry
//! does it in the transaction that adds the series' new version (see
//! [`Database::insert_model_version`]), and refuses a second version for one task.
//!
//! Lease times come from the database's clock, so nodes need not agree on the time.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::{Database, StoreError};

/// The name of the scheduler's lease.
pub const SCHEDULER_LEASE: &str = "scheduler";

/// Proof of holding a lease at an epoch; fenced writes check it is still current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub epoch: i64,
}

/// A job about to be created.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub kind: JobKind,
    pub product: &'a str,
    pub profile: &'a str,
    /// The schedule slot that fires it (`None` when started on demand); a slot fires one job.
    pub slot: Option<&'a str>,
    pub stores: &'a [u32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    TrainAll,
    Retrain,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::TrainAll => "train_all",
            JobKind::Retrain => "retrain",
        }
    }
}

/// Where a job is: its state (`pending`, `running`, `succeeded`, `failed`), its phase
/// (`training`, `forecasting`, `done`) and its tasks' counts.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub phase: String,
    pub product: String,
    pub profile: String,
    pub slot: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub running: i64,
}

impl Job {
    pub fn is_active(&self) -> bool {
        self.state == "pending" || self.state == "running"
    }
}

/// One series of a job.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Task {
    pub store: i32,
    pub product: String,
    pub state: String,
    pub attempts: i32,
    pub node: Option<String>,
    pub model_version: Option<i32>,
    pub error: Option<String>,
}

/// A task named by its job and series, as the registry completes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    pub job_id: i64,
    pub store: u32,
    pub product: String,
}

/// Runs the same statements on either backend; the SQL must suit both.
macro_rules! on_pool {
    ($database:expr, $pool:ident => $body:expr) => {
        match $database {
            Database::Postgres($pool) => $body,
            Database::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

const JOB_COLUMNS: &str = "SELECT j.id, j.kind, j.state, j.phase, j.product, j.profile, j.slot, \
     j.error, j.created_at, j.started_at, j.finished_at, \
     count(t.store) AS total, \
     count(t.store) FILTER (WHERE t.state = 'succeeded') AS succeeded, \
     count(t.store) FILTER (WHERE t.state = 'failed') AS failed, \
     count(t.store) FILTER (WHERE t.state = 'running') AS running \
     FROM jobs j LEFT JOIN job_tasks t ON t.job_id = j.id";

/// A running retrain job older than this many minutes is not joined (a training is given
/// up after 30 minutes).
const RETRAIN_JOB_STALE_MINUTES: i64 = 31;

/// Rows per multi-row INSERT of tasks: 4 parameters each.
const TASKS_PER_INSERT: usize = 1000;

impl Database {
    /// The database clock in milliseconds since the Unix epoch, as SQL.
    fn now_ms_sql(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            Database::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        }
    }

    /// The statement that opens a write transaction: SQLite takes its write lock at once, so
    /// a read-then-write transaction cannot fail half way on a lock upgrade.
    pub(crate) fn begin_write_sql(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "BEGIN",
            Database::Sqlite(_) => "BEGIN IMMEDIATE",
        }
    }

    /// Takes the lease `name` for `holder` until `ttl` from now, or renews it; `None` when
    /// another holder's lease has not expired. Each change of hands raises the epoch.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<Fence>, StoreError> {
        let doing = "taking a lease";
        let now = self.now_ms_sql();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let sql = format!(
            "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET \
             epoch = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > {now} \
                     THEN leases.epoch ELSE leases.epoch + 1 END, \
             holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= {now} \
             RETURNING epoch"
        );
        let epoch: Option<i64> =
            on_pool!(self, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(holder)
            .bind(ttl_ms)
            .fetch_optional(pool)
            .await)
            .map_err(StoreError::query(doing))?;
        Ok(epoch.map(|epoch| Fence {
            lease: name.to_string(),
            holder: holder.to_string(),
            epoch,
        }))
    }

    /// Who holds the lease `name`, at which epoch, and whether it is still unexpired.
    pub async fn lease(&self, name: &str) -> Result<Option<(String, i64, bool)>, StoreError> {
        let sql = format!(
            "SELECT holder, epoch, expires_at > {} FROM leases WHERE name = $1",
            self.now_ms_sql()
        );
        on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(pool)
            .await)
        .map_err(StoreError::query("reading a lease"))
    }

    /// Gives a lease up, so the next holder need not wait for it to expire.
    pub async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(&fence.lease)
        .bind(&fence.holder)
        .bind(fence.epoch)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::query("releasing a lease"))
    }

    /// Creates a job with one pending task per store, fenced by the scheduler's lease.
    /// Returns the job's id and whether it is new: a slot that already fired, or a train-all
    /// of a product while another one is active, gives the existing job instead.
    pub async fn create_job(
        &self,
        fence: &Fence,
        new: &NewJob<'_>,
    ) -> Result<(i64, bool), StoreError> {
        let doing = "creating a job";
        let fail = StoreError::query(doing);
        let fence_sql = self.fence_sql();
        let now = Utc::now();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(fail)?;
            check_fence(&mut tx, fence_sql, fence).await?;
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
                "INSERT INTO jobs (kind, state, phase, product, profile, slot, total, created_at) \
                 VALUES ($1, 'pending', 'training', $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(new.kind.name())
            .bind(new.product)
            .bind(new.profile)
            .bind(new.slot)
            .bind(total)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            for chunk in new.stores.chunks(TASKS_PER_INSERT) {
                let mut insert =
                    QueryBuilder::new("INSERT INTO job_tasks (job_id, store, product, updated_at) ");
                insert.push_values(chunk, |mut values, store| {
                    values
                        .push_bind(id)
                        .push_bind(i64::from(*store) as i32)
                        .push_bind(new.product)
                        .push_bind(now);
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

    /// Starts a retrain of one series asked for on demand (the gateway): a `retrain` job of
    /// one running task. It is not the scheduler's (which runs train-all jobs): the request
    /// that started it finishes it ([`Database::finish_retrain_job`]). A retrain of the same
    /// series already running is returned instead, so a second request joins it. Returns the
    /// job's id and whether it is new.
    pub async fn start_retrain_job(
        &self,
        store: u32,
        product: &str,
        profile: &str,
        node: &str,
    ) -> Result<(i64, bool), StoreError> {
        let doing = "starting a retrain job";
        let store = i64::from(store) as i32;
        let now = Utc::now();
        // A job older than this was abandoned (its requester died): a new one starts.
        let stale_before = now - chrono::Duration::minutes(RETRAIN_JOB_STALE_MINUTES);
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
            // A retrain whose requester died never got its outcome: it ends as abandoned.
            sqlx::query(
                "UPDATE jobs SET state = 'failed', phase = 'done', finished_at = $2, \
                 error = 'abandoned: no outcome was recorded (the requesting gateway stopped?)' \
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
                 started_at) VALUES ('retrain', 'running', 'training', $1, $2, 1, $3, $3) \
                 RETURNING id",
            )
            .bind(product)
            .bind(profile)
            .bind(now)
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
            Ok(version) => ("succeeded", Some(version), None),
            Err(error) => ("failed", None, Some(error)),
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(StoreError::query(doing))?;
            // The registry may have completed the task already (same version).
            sqlx::query(
                "UPDATE job_tasks SET state = $2, model_version = COALESCE(model_version, $3), \
                 error = $4, updated_at = $5 WHERE job_id = $1 AND state <> 'succeeded'",
            )
            .bind(id)
            .bind(state)
            .bind(version)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            // The job ends as its task did: a version the registry recorded for it stands
            // even when the requester heard only an error (a timeout, say).
            sqlx::query(
                "UPDATE jobs SET \
                 state = CASE WHEN EXISTS (SELECT 1 FROM job_tasks WHERE job_id = $1 \
                   AND state = 'succeeded') THEN 'succeeded' ELSE $2 END, \
                 error = CASE WHEN EXISTS (SELECT 1 FROM job_tasks WHERE job_id = $1 \
                   AND state = 'succeeded') THEN NULL ELSE $4 END, \
                 phase = 'done', finished_at = $3, \
                 done = (SELECT count(*) FROM job_tasks WHERE job_id = $1 AND state = 'succeeded'), \
                 failed = (SELECT count(*) FROM job_tasks WHERE job_id = $1 AND state = 'failed') \
                 WHERE id = $1 AND kind = 'retrain' AND state IN ('pending', 'running')",
            )
            .bind(id)
            .bind(state)
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

    /// A job's kind, if the job exists.
    pub async fn job_kind(&self, id: i64) -> Result<Option<JobKind>, StoreError> {
        let kind: Option<String> = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT kind FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::query("reading a job's kind"))?;
        Ok(kind.map(|kind| {
            if kind == JobKind::Retrain.name() {
                JobKind::Retrain
            } else {
                JobKind::TrainAll
            }
        }))
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

    /// The most recent jobs, newest first.
    pub async fn recent_jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        let sql = format!("{JOB_COLUMNS} GROUP BY j.id ORDER BY j.id DESC LIMIT $1");
        on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)
        .map_err(StoreError::query("listing jobs"))
    }

    /// The tasks of a job, by store.
    pub async fn job_tasks(&self, id: i64) -> Result<Vec<Task>, StoreError> {
        on_pool!(self, pool => sqlx::query_as(
            "SELECT store, product, state, attempts, node, model_version, error FROM job_tasks \
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
             error = $3 WHERE id = $1 AND state IN ('pending', 'running')",
            id,
            Utc::now(),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Moves a job to its forecasting phase.
    pub async fn enter_forecasting(&self, fence: &Fence, id: i64) -> Result<(), StoreError> {
        self.fenced_update(
            fence,
            "moving a job to its forecasts",
            "UPDATE jobs SET phase = 'forecasting', started_at = COALESCE(started_at, $2), \
             error = $3 WHERE id = $1 AND phase = 'training'",
            id,
            Utc::now(),
            None,
        )
        .await
        .map(|_| ())
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
        let sql = if succeeded {
            "UPDATE jobs SET state = 'succeeded', phase = 'done', finished_at = $2, error = $3, \
             done = (SELECT count(*) FROM job_tasks WHERE job_id = $1 AND state = 'succeeded'), \
             failed = (SELECT count(*) FROM job_tasks WHERE job_id = $1 AND state = 'failed') \
             WHERE id = $1 AND state IN ('pending', 'running')"
        } else {
            "UPDATE jobs SET state = 'failed', phase = 'done', finished_at = $2, error = $3, \
             done = (SELECT count(*) FROM job_tasks WHERE job_id = $1 AND state = 'succeeded'), \
             failed = (SELECT count(*) FROM job_tasks WHERE job_id = $1 AND state = 'failed') \
             WHERE id = $1 AND state IN ('pending', 'running')"
        };
        self.fenced_update(fence, "finishing a job", sql, id, Utc::now(), error)
            .await
            .map(|_| ())
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
            check_fence(&mut tx, fence_sql, fence).await?;
            let attempt: Option<i32> = sqlx::query_scalar(
                "UPDATE job_tasks SET state = 'running', attempts = attempts + 1, node = $4, \
                 error = NULL, updated_at = $5 \
                 WHERE job_id = $1 AND store = $2 AND product = $3 \
                 AND state IN ('pending', 'running') RETURNING attempts",
            )
            .bind(task.job_id)
            .bind(i64::from(task.store) as i32)
            .bind(&task.product)
            .bind(node)
            .bind(Utc::now())
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
        let state = if give_up { "failed" } else { "pending" };
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(StoreError::query(doing))?;
            check_fence(&mut tx, fence_sql, fence).await?;
            sqlx::query(
                "UPDATE job_tasks SET state = $4, error = $5, updated_at = $6 \
                 WHERE job_id = $1 AND store = $2 AND product = $3 AND state = 'running'",
            )
            .bind(task.job_id)
            .bind(i64::from(task.store) as i32)
            .bind(&task.product)
            .bind(state)
            .bind(error)
            .bind(Utc::now())
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
            "SELECT store, product, state, attempts, node, model_version, error FROM job_tasks \
             WHERE job_id = $1 AND store = $2 AND product = $3",
        )
        .bind(task.job_id)
        .bind(i64::from(task.store) as i32)
        .bind(&task.product)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::query("reading a task"))
    }

    /// The fence check: the lease row as the fence knows it, still unexpired. PostgreSQL
    /// locks the row, so a takeover waits for the fenced write to commit.
    fn fence_sql(&self) -> &'static str {
        match self {
            Database::Postgres(_) => {
                "SELECT epoch FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 \
                 AND expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::bigint FOR UPDATE"
            }
            Database::Sqlite(_) => {
                "SELECT epoch FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 \
                 AND expires_at > CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
            }
        }
    }

    /// One fenced statement on a job, bound as ($1 id, $2 time, $3 text).
    async fn fenced_update(
        &self,
        fence: &Fence,
        doing: &'static str,
        sql: &'static str,
        id: i64,
        time: DateTime<Utc>,
        text: Option<&str>,
    ) -> Result<u64, StoreError> {
        let fence_sql = self.fence_sql();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(StoreError::query(doing))?;
            check_fence(&mut tx, fence_sql, fence).await?;
            let changed = sqlx::query(sql)
                .bind(id)
                .bind(time)
                .bind(text)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?
                .rows_affected();
            tx.commit().await.map_err(StoreError::query(doing))?;
            Ok(changed)
        })
    }
}

/// Fails with [`StoreError::LeaseLost`] unless `fence` still holds its lease.
async fn check_fence<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    sql: &'static str,
    fence: &Fence,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB> + sqlx::Decode<'q, DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let held: Option<i64> = sqlx::query_scalar(sql)
        .bind(fence.lease.as_str())
        .bind(fence.holder.as_str())
        .bind(fence.epoch)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::query("checking the scheduler lease"))?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost {
            lease: fence.lease.clone(),
            holder: fence.holder.clone(),
            epoch: fence.epoch,
        }),
    }
}
