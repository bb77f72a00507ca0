//! Batch forecasts (`forecast_results`): written per model version, idempotently (writing
//! the same version's forecast for a day again replaces it), read back as the latest batch.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::QueryBuilder;

use super::backend::on_pool;
use super::{Database, StoreError};
use crate::forecast::model::ForecastPoint;

/// One forecast day of one series, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRecord {
    pub store: u32,
    pub product: String,
    pub date: NaiveDate,
    pub yhat: f64,
    pub lower: f64,
    pub upper: f64,
    pub model_version: i32,
}

impl ForecastRecord {
    /// The rows of one version's forecast of a series.
    pub fn of_points(
        store: u32,
        product: &str,
        model_version: i32,
        points: &[ForecastPoint],
    ) -> Vec<ForecastRecord> {
        points
            .iter()
            .map(|point| ForecastRecord {
                store,
                product: product.to_string(),
                date: point.date,
                yhat: point.yhat,
                lower: point.lower,
                upper: point.upper,
                model_version,
            })
            .collect()
    }
}

/// A forecast day as stored, with when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredForecast {
    pub record: ForecastRecord,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    store: i32,
    product: String,
    forecast_date: NaiveDate,
    forecast_sale: f64,
    lower_ci: f64,
    upper_ci: f64,
    model_version: i32,
    created_at: DateTime<Utc>,
}

/// Rows per INSERT statement: 8 parameters each.
const ROWS_PER_INSERT: usize = 1000;

const INSERT: &str = "INSERT INTO forecast_results (store, product, forecast_date, forecast_sale, \
     lower_ci, upper_ci, model_version, created_at) ";
/// Same SQL on both backends: a rewrite of a version's day replaces it.
const ON_CONFLICT: &str = " ON CONFLICT (store, product, forecast_date, model_version) DO UPDATE SET \
     forecast_sale = excluded.forecast_sale, lower_ci = excluded.lower_ci, \
     upper_ci = excluded.upper_ci, created_at = excluded.created_at";

impl Database {
    /// Writes forecasts; a row for the same series, day and model version is replaced.
    #[tracing::instrument(
        name = "forecasts write",
        skip_all,
        fields(db.system = self.backend(), rows = records.len())
    )]
    pub async fn write_forecasts(&self, records: &[ForecastRecord]) -> Result<u64, StoreError> {
        let doing = "writing forecasts";
        let now = Utc::now();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::query(doing))?;
            let mut written = 0;
            for chunk in records.chunks(ROWS_PER_INSERT) {
                let mut insert = QueryBuilder::new(INSERT);
                insert.push_values(chunk, |mut values, record| {
                    values
                        .push_bind(i64::from(record.store) as i32)
                        .push_bind(&record.product)
                        .push_bind(record.date)
                        .push_bind(record.yhat)
                        .push_bind(record.lower)
                        .push_bind(record.upper)
                        .push_bind(record.model_version)
                        .push_bind(now);
                });
                insert.push(ON_CONFLICT);
                written += insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(doing))?
                    .rows_affected();
            }
            tx.commit().await.map_err(StoreError::query(doing))?;
            Ok(written)
        })
    }

    /// The latest batch forecast of a series: the rows of its newest model version, by date.
    pub async fn latest_forecast(
        &self,
        store: u32,
        product: &str,
    ) -> Result<Vec<StoredForecast>, StoreError> {
        let doing = "reading forecasts";
        let rows: Vec<Row> = on_pool!(self, pool => sqlx::query_as(
            "SELECT store, product, forecast_date, forecast_sale, lower_ci, upper_ci, model_version, created_at \
             FROM forecast_results WHERE store = $1 AND product = $2 AND model_version = \
             (SELECT MAX(model_version) FROM forecast_results WHERE store = $1 AND product = $2) \
             ORDER BY forecast_date",
        )
        .bind(i64::from(store) as i32)
        .bind(product)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::query(doing))?;
        Ok(rows
            .into_iter()
            .map(|row| StoredForecast {
                record: ForecastRecord {
                    store: row.store.unsigned_abs(),
                    product: row.product,
                    date: row.forecast_date,
                    yhat: row.forecast_sale,
                    lower: row.lower_ci,
                    upper: row.upper_ci,
                    model_version: row.model_version,
                },
                created_at: row.created_at,
            })
            .collect())
    }
}
