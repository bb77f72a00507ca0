//! What streaming ingest writes: batches of sale rows, upserted by (store, product, date), and
//! the messages it rejected (`ingest_rejects`), both in one transaction per batch, so a batch
//! lands whole or not at all and replaying it changes nothing.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{QueryBuilder, Sqlite};

use super::jobs::on_pool;
use super::sales::copy_into_sales;
use super::{Database, StoreError};
use crate::dataset::SalesRow;
use crate::ingest::message::Sale;

/// A message that could not be used, with where it came from and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The payload as received, cut to a bounded size.
    pub payload: Vec<u8>,
    pub reason: String,
}

/// A reject as stored, with when it was received.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredReject {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
    pub reason: String,
    pub received_at: DateTime<Utc>,
}

/// What one batch wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchWritten {
    /// Rows inserted or updated (after duplicates within the batch collapsed to the last).
    pub rows: u64,
    /// Rejects recorded (a reject already recorded for its offset is not counted again).
    pub rejects: u64,
    /// Whether the rows went in by COPY (none of them was stored yet) rather than the upsert.
    pub copied: bool,
}

/// Rows per SQLite INSERT: 10 parameters each, under SQLite's 32,766.
const SQLITE_ROWS_PER_INSERT: usize = 3_000;

const UPSERT_SET: &str = " ON CONFLICT (store, product, date) DO UPDATE SET \
     day_of_week = excluded.day_of_week, sales = excluded.sales, \
     customers = excluded.customers, open = excluded.open, promo = excluded.promo, \
     state_holiday = excluded.state_holiday, school_holiday = excluded.school_holiday";

impl Database {
    /// Writes one ingest batch in one transaction: every sale upserted by (store, product,
    /// date), the later of two for the same key winning, and every reject recorded once per
    /// (topic, partition, offset).
    pub async fn write_ingest_batch(
        &self,
        sales: &[Sale],
        rejects: &[Reject],
    ) -> Result<BatchWritten, StoreError> {
        let written = self
            .write_ingest_batch_gated(sales, rejects, || Some(()))
            .await?;
        Ok(written.unwrap_or_default())
    }

    /// As [`Database::write_ingest_batch`], but the transaction commits only if `gate` gives
    /// a permit (held until the commit is done); otherwise it rolls back and returns `None`.
    /// Streaming ingest uses it so a batch whose partitions moved meanwhile is not stored.
    pub async fn write_ingest_batch_gated<Permit: Send>(
        &self,
        sales: &[Sale],
        rejects: &[Reject],
        gate: impl FnOnce() -> Option<Permit> + Send,
    ) -> Result<Option<BatchWritten>, StoreError> {
        let doing = "writing an ingest batch";
        let sales = last_per_key(sales);
        let mut written = BatchWritten::default();
        match self {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(StoreError::query(doing))?;
                if !sales.is_empty() {
                    // New rows (the normal case) go in by COPY, several times faster than
                    // the upsert; a batch that meets a stored row (a replay, a correction)
                    // is undone to the savepoint and upserted instead.
                    // Collected first: a mapping closure held across the await would make the
                    // future not `Send`.
                    let rows: Vec<(&str, &SalesRow)> = sales
                        .iter()
                        .map(|sale| (sale.product.as_str(), &sale.row))
                        .collect();
                    sqlx::query("SAVEPOINT ingest_copy")
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query(doing))?;
                    match copy_into_sales(&mut tx, rows).await {
                        Ok(rows) => {
                            written.rows = rows;
                            written.copied = true;
                        }
                        Err(error) if is_unique_violation(&error) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT ingest_copy")
                                .execute(&mut *tx)
                                .await
                                .map_err(StoreError::query(doing))?;
                            written.rows = upsert_sales(&mut tx, &sales)
                                .await
                                .map_err(StoreError::query(doing))?;
                        }
                        Err(error) => return Err(StoreError::query(doing)(error)),
                    }
                }
                written.rejects = insert_rejects!(tx, rejects);
                let Some(_permit) = gate() else {
                    tx.rollback().await.map_err(StoreError::query(doing))?;
                    return Ok(None);
                };
                tx.commit().await.map_err(StoreError::query(doing))?;
            }
            Database::Sqlite(pool) => {
                let mut tx = pool
                    .begin_with(self.begin_write_sql())
                    .await
                    .map_err(StoreError::query(doing))?;
                for chunk in sales.chunks(SQLITE_ROWS_PER_INSERT) {
                    let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                        "INSERT INTO sales (store, product, date, day_of_week, sales, customers, \
                         open, promo, state_holiday, school_holiday) ",
                    );
                    insert.push_values(chunk, |mut values, sale| {
                        let row = &sale.row;
                        values
                            .push_bind(i64::from(row.store))
                            .push_bind(&sale.product)
                            .push_bind(row.date)
                            .push_bind(i64::from(row.day_of_week))
                            .push_bind(i64::from(row.sales))
                            .push_bind(i64::from(row.customers))
                            .push_bind(row.open)
                            .push_bind(row.promo)
                            .push_bind(row.state_holiday.code())
                            .push_bind(row.school_holiday);
                    });
                    insert.push(UPSERT_SET);
                    written.rows += insert
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query(doing))?
                        .rows_affected();
                }
                written.rejects = insert_rejects!(tx, rejects);
                let Some(_permit) = gate() else {
                    tx.rollback().await.map_err(StoreError::query(doing))?;
                    return Ok(None);
                };
                tx.commit().await.map_err(StoreError::query(doing))?;
            }
        }
        Ok(Some(written))
    }

    /// Stores that have sales of any product: a message for another store is rejected.
    pub async fn known_stores(&self) -> Result<BTreeSet<u32>, StoreError> {
        let stores: Vec<i32> = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT DISTINCT store FROM sales ORDER BY store",
        )
        .fetch_all(pool)
        .await)
        .map_err(StoreError::query("listing known stores"))?;
        Ok(stores.into_iter().map(i32::unsigned_abs).collect())
    }

    /// The most recent rejects, newest first.
    pub async fn ingest_rejects(&self, limit: u32) -> Result<Vec<StoredReject>, StoreError> {
        let sql = "SELECT topic, partition, \"offset\", payload, reason, received_at \
                   FROM ingest_rejects ORDER BY id DESC LIMIT $1";
        on_pool!(self, pool => sqlx::query_as(sql)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)
        .map_err(StoreError::query("listing ingest rejects"))
    }

    /// The last day of sales of each store of `product` (what a model actor compares with the
    /// data its version was trained on).
    pub async fn last_sale_dates(
        &self,
        product: &str,
        stores: &[u32],
    ) -> Result<HashMap<u32, NaiveDate>, StoreError> {
        let mut dates = HashMap::new();
        for chunk in stores.chunks(1_000) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT store, MAX(date) FROM sales WHERE product = $1 AND store IN ({}) \
                 GROUP BY store",
                placeholders.join(", ")
            );
            let rows: Vec<(i32, NaiveDate)> = on_pool!(self, pool => {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(product);
                for store in chunk {
                    query = query.bind(i64::from(*store) as i32);
                }
                query.fetch_all(pool).await
            })
            .map_err(StoreError::query("reading the last sale dates"))?;
            dates.extend(
                rows.into_iter()
                    .map(|(store, date)| (store.unsigned_abs(), date)),
            );
        }
        Ok(dates)
    }
}

/// Upserts `sales` in one statement, their columns travelling as arrays.
async fn upsert_sales(
    connection: &mut sqlx::PgConnection,
    sales: &[&Sale],
) -> Result<u64, sqlx::Error> {
    let mut columns = PgColumns::with_capacity(sales.len());
    for sale in sales {
        columns.push(sale);
    }
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO sales (store, product, date, day_of_week, sales, customers, open, promo, \
         state_holiday, school_holiday) \
         SELECT * FROM UNNEST($1::int4[], $2::text[], $3::date[], $4::int2[], $5::int4[], \
         $6::int4[], $7::bool[], $8::bool[], $9::text[], $10::bool[]) {UPSERT_SET}"
    )))
    .bind(&columns.store)
    .bind(&columns.product)
    .bind(&columns.date)
    .bind(&columns.day_of_week)
    .bind(&columns.sales)
    .bind(&columns.customers)
    .bind(&columns.open)
    .bind(&columns.promo)
    .bind(&columns.state_holiday)
    .bind(&columns.school_holiday)
    .execute(connection)
    .await?;
    Ok(done.rows_affected())
}

/// Whether `error` is PostgreSQL's unique_violation (SQLSTATE 23505).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| code == "23505")
}

/// The batch with one sale per (store, product, date): the later one, as Kafka ordered them.
fn last_per_key(sales: &[Sale]) -> Vec<&Sale> {
    let mut latest: HashMap<(u32, &str, NaiveDate), usize> = HashMap::with_capacity(sales.len());
    for (index, sale) in sales.iter().enumerate() {
        latest.insert(
            (sale.row.store, sale.product.as_str(), sale.row.date),
            index,
        );
    }
    let mut kept: Vec<usize> = latest.into_values().collect();
    kept.sort_unstable();
    kept.into_iter().map(|index| &sales[index]).collect()
}

/// Column arrays of a batch, for PostgreSQL's UNNEST.
struct PgColumns {
    store: Vec<i32>,
    product: Vec<String>,
    date: Vec<NaiveDate>,
    day_of_week: Vec<i16>,
    sales: Vec<i32>,
    customers: Vec<i32>,
    open: Vec<bool>,
    promo: Vec<bool>,
    state_holiday: Vec<&'static str>,
    school_holiday: Vec<bool>,
}

impl PgColumns {
    fn with_capacity(rows: usize) -> Self {
        PgColumns {
            store: Vec::with_capacity(rows),
            product: Vec::with_capacity(rows),
            date: Vec::with_capacity(rows),
            day_of_week: Vec::with_capacity(rows),
            sales: Vec::with_capacity(rows),
            customers: Vec::with_capacity(rows),
            open: Vec::with_capacity(rows),
            promo: Vec::with_capacity(rows),
            state_holiday: Vec::with_capacity(rows),
            school_holiday: Vec::with_capacity(rows),
        }
    }

    fn push(&mut self, sale: &Sale) {
        let row = &sale.row;
        // The message parser bounds these to the columns' ranges.
        self.store
            .push(i32::try_from(row.store).unwrap_or(i32::MAX));
        self.product.push(sale.product.clone());
        self.date.push(row.date);
        self.day_of_week.push(i16::from(row.day_of_week));
        self.sales
            .push(i32::try_from(row.sales).unwrap_or(i32::MAX));
        self.customers
            .push(i32::try_from(row.customers).unwrap_or(i32::MAX));
        self.open.push(row.open);
        self.promo.push(row.promo);
        self.state_holiday.push(row.state_holiday.code());
        self.school_holiday.push(row.school_holiday);
    }
}

/// Records rejects inside the batch's transaction, one per (topic, partition, offset);
/// evaluates to how many were new. A macro, as the two backends' transactions differ in type.
macro_rules! insert_rejects {
    ($tx:expr, $rejects:expr) => {{
        let now = Utc::now();
        let mut recorded = 0;
        for reject in $rejects {
            recorded += sqlx::query(
                "INSERT INTO ingest_rejects (topic, partition, \"offset\", payload, reason, \
                 received_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (topic, partition, \"offset\") DO NOTHING",
            )
            .bind(reject.topic.as_str())
            .bind(reject.partition)
            .bind(reject.offset)
            .bind(reject.payload.as_slice())
            .bind(reject.reason.as_str())
            .bind(now)
            .execute(&mut *$tx)
            .await
            .map_err(StoreError::query("recording ingest rejects"))?
            .rows_affected();
        }
        recorded
    }};
}
use insert_rejects;
