//! The model registry (`model_versions`): one row per trained version of a series.
//!
//! Versions of a series are numbered 1, 2, ... without gaps or duplicates, even when several
//! trainings of the same series commit at once: on PostgreSQL the allocation runs under a
//! per-series advisory lock; on SQLite writes are serialised by the database itself and the
//! allocation is a single statement.

use chrono::{DateTime, NaiveDate, Utc};

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

impl Row {
    fn into_version(self) -> Result<ModelVersion, StoreError> {
        let metrics = serde_json::from_str(&self.metrics).map_err(|error| StoreError::Corrupt {
            what: format!("metrics of store {} version {}", self.store, self.version),
            reason: error.to_string(),
        })?;
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
    pub async fn insert_model_version(&self, new: &NewModelVersion<'_>) -> Result<i32, StoreError> {
        let doing = "registering a model version";
        let fail = StoreError::query(doing);
        let metrics = serde_json::to_string(&new.metrics).map_err(|error| StoreError::Corrupt {
            what: "metrics".to_string(),
            reason: error.to_string(),
        })?;
        let store = i32::try_from(new.store).map_err(|_| StoreError::Corrupt {
            what: "store id".to_string(),
            reason: format!("{} is out of range", new.store),
        })?;
        match self {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(fail)?;
                // Serialise allocations per series; released at commit.
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(store)
                    .bind(new.product)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(doing))?;
                let version: i32 = sqlx::query_scalar(
                    "INSERT INTO model_versions (store, product, version, profile, params, metrics, \
                     trained_from, trained_to, node) \
                     SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5::jsonb, $6, $7, $8 \
                     FROM model_versions WHERE store = $1 AND product = $2 RETURNING version",
                )
                .bind(store)
                .bind(new.product)
                .bind(new.profile)
                .bind(new.params)
                .bind(&metrics)
                .bind(new.trained_from)
                .bind(new.trained_to)
                .bind(new.node)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?;
                tx.commit().await.map_err(StoreError::query(doing))?;
                Ok(version)
            }
            Database::Sqlite(pool) => sqlx::query_scalar(
                "INSERT INTO model_versions (store, product, version, profile, params, metrics, \
                 trained_from, trained_to, trained_at, node) \
                 SELECT ?1, ?2, COALESCE(MAX(version), 0) + 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9 \
                 FROM model_versions WHERE store = ?1 AND product = ?2 RETURNING version",
            )
            .bind(store)
            .bind(new.product)
            .bind(new.profile)
            .bind(new.params)
            .bind(&metrics)
            .bind(new.trained_from)
            .bind(new.trained_to)
            .bind(Utc::now())
            .bind(new.node)
            .fetch_one(pool)
            .await
            .map_err(fail),
        }
    }

    /// The newest version of a series, if it was ever trained.
    pub async fn latest_model_version(
        &self,
        store: u32,
        product: &str,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let doing = "reading the latest model version";
        let store = i64::from(store);
        let row: Option<Row> = match self {
            Database::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS_POSTGRES} FROM model_versions WHERE store = $1 AND product = $2 \
                     ORDER BY version DESC LIMIT 1"
            )))
            .bind(store as i32)
            .bind(product)
            .fetch_optional(pool)
            .await,
            Database::Sqlite(pool) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS_SQLITE} FROM model_versions WHERE store = ? AND product = ? \
                     ORDER BY version DESC LIMIT 1"
                )))
                .bind(store)
                .bind(product)
                .fetch_optional(pool)
                .await
            }
        }
        .map_err(StoreError::query(doing))?;
        row.map(Row::into_version).transpose()
    }

    /// Version numbers of a series, oldest first.
    pub async fn model_version_numbers(
        &self,
        store: u32,
        product: &str,
    ) -> Result<Vec<i32>, StoreError> {
        let doing = "listing model versions";
        match self {
            Database::Postgres(pool) => {
                sqlx::query_scalar("SELECT version FROM model_versions WHERE store = $1 AND product = $2 ORDER BY version")
                    .bind(i64::from(store) as i32)
                    .bind(product)
                    .fetch_all(pool)
                    .await
            }
            Database::Sqlite(pool) => {
                sqlx::query_scalar("SELECT version FROM model_versions WHERE store = ? AND product = ? ORDER BY version")
                    .bind(i64::from(store))
                    .bind(product)
                    .fetch_all(pool)
                    .await
            }
        }
        .map_err(StoreError::query(doing))
    }
}
