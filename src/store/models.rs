//! The model registry (`model_versions`): one row per trained version of a series.
//!
//! Versions of a series are numbered 1, 2, ... without gaps or duplicates, even when several
//! trainings of the same series commit at once: on PostgreSQL the allocation runs under a
//! per-series advisory lock; on SQLite writes are serialised by the database itself.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};

use super::backend::on_pool;
use super::jobs::{JobState, TaskRef};
use super::{Database, StoreError};
use crate::forecast::validation::Metrics;

/// A version about to be written.
#[derive(Debug, Clone)]
pub struct NewModelVersion<'a> {
    pub store: u32,
    pub product: &'a str,
    pub profile: &'a str,
    /// The fitted model, encoded by the forecast engine.
    pub params: &'a [u8],
    pub metrics: Metrics,
    pub trained_from: NaiveDate,
    pub trained_to: NaiveDate,
    /// The node that trained it.
    pub node: &'a str,
    /// The job task this version completes, if a job asked for it.
    pub task: Option<&'a TaskRef>,
}

/// What registering a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new version with this number.
    New(i32),
    /// Nothing: the job task was already completed, by this version.
    AlreadyDone(i32),
}

impl Registered {
    pub fn version(self) -> i32 {
        match self {
            Registered::New(version) | Registered::AlreadyDone(version) => version,
        }
    }
}

/// What a version history shows of a version: all but its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSummary {
    pub version: i32,
    pub profile: String,
    pub metrics: Metrics,
    pub trained_from: NaiveDate,
    pub trained_to: NaiveDate,
    pub trained_at: DateTime<Utc>,
    /// The node that trained it.
    pub node: String,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    version: i32,
    profile: String,
    metrics: String,
    trained_from: NaiveDate,
    trained_to: NaiveDate,
    trained_at: DateTime<Utc>,
    node: String,
}

/// A stored version.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub store: u32,
    pub product: String,
    pub version: i32,
    pub profile: String,
    pub params: Vec<u8>,
    pub metrics: Metrics,
    pub trained_from: NaiveDate,
    pub trained_to: NaiveDate,
    pub trained_at: DateTime<Utc>,
    pub node: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    store: i32,
    product: String,
    version: i32,
    profile: String,
    params: Vec<u8>,
    metrics: String,
    trained_from: NaiveDate,
    trained_to: NaiveDate,
    trained_at: DateTime<Utc>,
    node: String,
}

/// A version's metrics from their stored JSON.
fn parse_metrics(store: u32, version: i32, text: &str) -> Result<Metrics, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
        what: format!("metrics of store {store} version {version}"),
        reason: error.to_string(),
    })
}

impl Row {
    fn into_version(self) -> Result<ModelVersion, StoreError> {
        let metrics = parse_metrics(self.store.unsigned_abs(), self.version, &self.metrics)?;
        Ok(ModelVersion {
            store: self.store.unsigned_abs(),
            product: self.product,
            version: self.version,
            profile: self.profile,
            params: self.params,
            metrics,
            trained_from: self.trained_from,
            trained_to: self.trained_to,
            trained_at: self.trained_at,
            node: self.node,
        })
    }
}

const COLUMNS_POSTGRES: &str = "store, product, version, profile, params, metrics::text AS metrics, \
     trained_from, trained_to, trained_at, node";
const COLUMNS_SQLITE: &str = "store, product, version, profile, params, metrics, trained_from, \
     trained_to, trained_at, node";

impl Database {
    /// Writes a new version of a series and returns its number.
    ///
    /// With `new.task`, the version is the result of that job task: the task is completed in
    /// the same transaction, and when it is already completed nothing is written and the
    /// task's version comes back as [`Registered::AlreadyDone`]. So one job never registers
    /// two versions of a series, whichever nodes train it.
    #[tracing::instrument(
        name = "registry insert",
        skip_all,
        fields(
            db.system = self.backend(),
            store = new.store,
            product = %new.product,
            job.id = new.task.map(|task| task.job_id),
        )
    )]
    pub async fn insert_model_version(
        &self,
        new: &NewModelVersion<'_>,
    ) -> Result<Registered, StoreError> {
        let doing = "registering a model version";
        let metrics = serde_json::to_string(&new.metrics).map_err(|error| StoreError::Corrupt {
            what: "metrics".to_string(),
            reason: error.to_string(),
        })?;
        let store = i32::try_from(new.store).map_err(|_| StoreError::Corrupt {
            what: "store id".to_string(),
            reason: format!("{} is out of range", new.store),
        })?;
        // Serialise allocations per series; released at commit. SQLite's write transaction
        // already serialises everything.
        let (lock, metrics_cast) = match self {
            Database::Postgres(_) => (
                Some("SELECT pg_advisory_xact_lock($1, hashtext($2))"),
                "::jsonb",
            ),
            Database::Sqlite(_) => (None, ""),
        };
        let insert = format!(
            "INSERT INTO model_versions (store, product, version, profile, params, metrics, \
             trained_from, trained_to, trained_at, node) \
             SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5{metrics_cast}, $6, $7, $8, $9 \
             FROM model_versions WHERE store = $1 AND product = $2 RETURNING version"
        );
        let task_sql = format!(
            "SELECT state, model_version FROM job_tasks \
             WHERE job_id = $1 AND store = $2 AND product = $3{}",
            self.for_update_sql()
        );
        let now = Utc::now();
        on_pool!(self, pool => {
            let mut tx = pool
                .begin_with(self.begin_write_sql())
                .await
                .map_err(StoreError::query(doing))?;
            if let Some(lock) = lock {
                sqlx::query(lock)
                    .bind(store)
                    .bind(new.product)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(doing))?;
            }
            if let Some(task) = new.task {
                let row: Option<(String, Option<i32>)> = sqlx::query_as(sqlx::AssertSqlSafe(task_sql))
                    .bind(task.job_id)
                    .bind(store)
                    .bind(&task.product)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::query(doing))?;
                match row {
                    None => {
                        return Err(StoreError::NoSuchTask {
                            job_id: task.job_id,
                            store: new.store,
                            product: task.product.clone(),
                        });
                    }
                    Some((state, Some(version))) if state == JobState::Succeeded.as_str() => {
                        return Ok(Registered::AlreadyDone(version));
                    }
                    Some(_) => {}
                }
            }
            let version: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(insert))
                .bind(store)
                .bind(new.product)
                .bind(new.profile)
                .bind(new.params)
                .bind(&metrics)
                .bind(new.trained_from)
                .bind(new.trained_to)
                .bind(now)
                .bind(new.node)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?;
            if let Some(task) = new.task {
                sqlx::query(
                    "UPDATE job_tasks SET state = 'succeeded', model_version = $4, node = $5, \
                     error = NULL, updated_at = $6 \
                     WHERE job_id = $1 AND store = $2 AND product = $3",
                )
                .bind(task.job_id)
                .bind(store)
                .bind(&task.product)
                .bind(version)
                .bind(new.node)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?;
            }
            tx.commit().await.map_err(StoreError::query(doing))?;
            Ok(Registered::New(version))
        })
    }

    /// The newest version of a series, if it was ever trained.
    pub async fn latest_model_version(
        &self,
        store: u32,
        product: &str,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let sql = format!(
            "SELECT {} FROM model_versions WHERE store = $1 AND product = $2 \
             ORDER BY version DESC LIMIT 1",
            self.version_columns()
        );
        let row: Option<Row> = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(store) as i32)
            .bind(product)
            .fetch_optional(pool)
            .await)
        .map_err(StoreError::query("reading the latest model version"))?;
        row.map(Row::into_version).transpose()
    }

    /// The latest version of every series that has one.
    pub async fn latest_versions(&self) -> Result<HashMap<(u32, String), i32>, StoreError> {
        let rows: Vec<(i32, String, i32)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT store, product, MAX(version) FROM model_versions GROUP BY store, product",
        )
        .fetch_all(pool)
        .await)
        .map_err(StoreError::query("reading the latest model versions"))?;
        Ok(rows
            .into_iter()
            .map(|(store, product, version)| ((store.unsigned_abs(), product), version))
            .collect())
    }

    /// A version's profile name and training time, without its parameters (what a page or
    /// an API answer shows of it).
    pub async fn model_label(
        &self,
        store: u32,
        product: &str,
        version: i32,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        on_pool!(self, pool => sqlx::query_as(
            "SELECT profile, trained_at FROM model_versions \
             WHERE store = $1 AND product = $2 AND version = $3",
        )
        .bind(i64::from(store) as i32)
        .bind(product)
        .bind(version)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::query("reading a model version's label"))
    }

    /// One version of a series, if it exists.
    pub async fn model_version(
        &self,
        store: u32,
        product: &str,
        version: i32,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let sql = format!(
            "SELECT {} FROM model_versions WHERE store = $1 AND product = $2 AND version = $3",
            self.version_columns()
        );
        let row: Option<Row> = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(store) as i32)
            .bind(product)
            .bind(version)
            .fetch_optional(pool)
            .await)
        .map_err(StoreError::query("reading a model version"))?;
        row.map(Row::into_version).transpose()
    }

    /// Version numbers of a series, oldest first.
    pub async fn model_version_numbers(
        &self,
        store: u32,
        product: &str,
    ) -> Result<Vec<i32>, StoreError> {
        on_pool!(self, pool => sqlx::query_scalar(
            "SELECT version FROM model_versions WHERE store = $1 AND product = $2 ORDER BY version",
        )
        .bind(i64::from(store) as i32)
        .bind(product)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::query("listing model versions"))
    }

    /// The newest `limit` versions of a series, newest first, without their parameters.
    pub async fn version_history(
        &self,
        store: u32,
        product: &str,
        limit: u32,
    ) -> Result<Vec<VersionSummary>, StoreError> {
        let metrics = match self {
            Database::Postgres(_) => "metrics::text AS metrics",
            Database::Sqlite(_) => "metrics",
        };
        let sql = format!(
            "SELECT version, profile, {metrics}, trained_from, trained_to, trained_at, node \
             FROM model_versions WHERE store = $1 AND product = $2 \
             ORDER BY version DESC LIMIT $3"
        );
        let rows: Vec<SummaryRow> = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(store) as i32)
            .bind(product)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)
        .map_err(StoreError::query("listing model versions"))?;
        rows.into_iter()
            .map(|row| {
                let metrics = parse_metrics(store, row.version, &row.metrics)?;
                Ok(VersionSummary {
                    version: row.version,
                    profile: row.profile,
                    metrics,
                    trained_from: row.trained_from,
                    trained_to: row.trained_to,
                    trained_at: row.trained_at,
                    node: row.node,
                })
            })
            .collect()
    }

    /// The registry's columns as [`Row`] reads them (PostgreSQL's `jsonb` read as text).
    fn version_columns(&self) -> &'static str {
        match self {
            Database::Postgres(_) => COLUMNS_POSTGRES,
            Database::Sqlite(_) => COLUMNS_SQLITE,
        }
    }
}
