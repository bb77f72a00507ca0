//! What streaming ingest writes: batches of sale rows, upserted by (store, product, date), and
//! the messages it rejected (`ingest_rejects`), both in one transaction per batch, so a batch
//! lands whole or not at all and replaying it changes nothing.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{QueryBuilder, Sqlite};

use super::backend::on_pool;
use super::sales::copy_into_sales;
use super::{Database, StoreError};
use crate::dataset::SalesRow;
use crate::ingest::message::{Origin, Reject, Sale, storable};

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
    /// Sales the database cannot store, recorded as rejects of their messages (counted in
    /// `rejects` too).
    pub refused: u64,
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
    /// (topic, partition, offset). A sale the database cannot store is an error
    /// ([`StoreError::RowRefused`]): without its origin it cannot become a reject.
    pub async fn write_ingest_batch(
        &self,
        sales: &[Sale],
        rejects: &[Reject],
    ) -> Result<BatchWritten, StoreError> {
        let written = self
            .write_ingest_batch_gated(sales, &[], rejects, || Some(()))
            .await?;
        Ok(written.unwrap_or_default())
    }

    /// As [`Database::write_ingest_batch`], with each sale's `origins` (same order): a sale
    /// the database refuses (a value its column cannot hold, SQLSTATE class 22 or 23) becomes
    /// a reject of its message and the others land. The transaction commits only if `gate`
    /// gives a permit (held until the commit is done); otherwise it rolls back and returns
    /// `None`. Streaming ingest uses it so a batch whose partitions moved meanwhile is not
    /// stored.
    #[tracing::instrument(
        name = "ingest transaction",
        skip_all,
        fields(db.system = self.backend(), sales = sales.len(), rejects = rejects.len())
    )]
    pub async fn write_ingest_batch_gated<Permit: Send>(
        &self,
        sales: &[Sale],
        origins: &[Origin],
        rejects: &[Reject],
        gate: impl FnOnce() -> Option<Permit> + Send,
    ) -> Result<Option<BatchWritten>, StoreError> {
        let doing = "writing an ingest batch";
        // Rows no column can hold are refused before the database sees them.
        let mut refused = Vec::new();
        let kept: Vec<usize> = last_per_key(sales)
            .into_iter()
            .filter(|&index| match storable(&sales[index]) {
                Ok(()) => true,
                Err(reason) => {
                    refused.push((index, reason));
                    false
                }
            })
            .collect();
        let mut written = BatchWritten::default();
        match self {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(StoreError::query(doing))?;
                let stored = store_rows_isolating(&mut tx, sales, kept)
                    .await
                    .map_err(StoreError::query(doing))?;
                written.rows = stored.rows;
                written.copied = stored.copied;
                refused.extend(stored.refused);
                let refused = refused_rejects(sales, origins, refused)?;
                written.refused = refused.len() as u64;
                written.rejects = insert_rejects!(tx, rejects.iter().chain(&refused));
                let Some(_permit) = gate() else {
                    tx.rollback().await.map_err(StoreError::query(doing))?;
                    return Ok(None);
                };
                tx.commit().await.map_err(StoreError::query(doing))?;
            }
            Database::Sqlite(pool) => {
                // SQLite's INTEGER is 64 bits and its TEXT takes any character: it refuses
                // nothing `storable` lets through.
                let refused = refused_rejects(sales, origins, refused)?;
                let mut tx = pool
                    .begin_with(self.begin_write_sql())
                    .await
                    .map_err(StoreError::query(doing))?;
                for chunk in kept.chunks(SQLITE_ROWS_PER_INSERT) {
                    let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                        "INSERT INTO sales (store, product, date, day_of_week, sales, customers, \
                         open, promo, state_holiday, school_holiday) ",
                    );
                    insert.push_values(chunk, |mut values, &index| {
                        let sale = &sales[index];
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
                written.refused = refused.len() as u64;
                written.rejects = insert_rejects!(tx, rejects.iter().chain(&refused));
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

/// Why PostgreSQL refuses a row's data (SQLSTATE class 22, data exception, or 23, integrity
/// constraint, other than the unique violation the upsert resolves), or `None` for any
/// other error.
fn refusal(error: &sqlx::Error) -> Option<String> {
    let database = error.as_database_error()?;
    let code = database.code()?;
    if !(code.starts_with("22") || code.starts_with("23")) || code == "23505" {
        return None;
    }
    // For COPY, PostgreSQL says where: the line and the column.
    let context = database
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|error| error.r#where())
        .map(|place| format!(" ({place})"))
        .unwrap_or_default();
    Some(format!(
        "the database refused the row: {}{context} [SQLSTATE {code}]",
        database.message()
    ))
}

/// What storing some of a batch's rows did.
#[derive(Debug, Default)]
struct RowsStored {
    rows: u64,
    /// Whether every part went in by COPY.
    copied: bool,
    /// Rows refused, by index in the batch, with the reason.
    refused: Vec<(usize, String)>,
}

/// How one part of a batch went.
enum Part {
    Stored { rows: u64, copied: bool },
    Refused(String),
}

/// Stores `rows` (indices into `sales`): by COPY, by the upsert if one of them is stored
/// already, and, when PostgreSQL refuses a row's data, by halves until each refused row stands
/// alone. Good rows land whatever their neighbours; a batch with `k` bad rows of `n` costs
/// about `2k log2 n` extra statements, a clean one none.
async fn store_rows_isolating(
    connection: &mut sqlx::PgConnection,
    sales: &[Sale],
    rows: Vec<usize>,
) -> Result<RowsStored, sqlx::Error> {
    let mut stored = RowsStored {
        copied: !rows.is_empty(),
        ..RowsStored::default()
    };
    let mut pending = vec![rows];
    while let Some(part) = pending.pop() {
        if part.is_empty() {
            continue;
        }
        match store_part(connection, sales, &part).await? {
            Part::Stored { rows, copied } => {
                stored.rows += rows;
                stored.copied &= copied;
            }
            Part::Refused(reason) if part.len() == 1 => stored.refused.push((part[0], reason)),
            Part::Refused(_) => {
                let (first, second) = part.split_at(part.len() / 2);
                pending.push(second.to_vec());
                pending.push(first.to_vec());
            }
        }
    }
    Ok(stored)
}

/// Stores one part in a savepoint of its own, so a refusal undoes this part alone.
async fn store_part(
    connection: &mut sqlx::PgConnection,
    sales: &[Sale],
    part: &[usize],
) -> Result<Part, sqlx::Error> {
    sqlx::raw_sql("SAVEPOINT ingest_part")
        .execute(&mut *connection)
        .await?;
    // Collected first: a mapping closure held across the await would make the future not
    // `Send`.
    let rows: Vec<(&str, &SalesRow)> = part
        .iter()
        .map(|&index| (sales[index].product.as_str(), &sales[index].row))
        .collect();
    let outcome = match copy_into_sales(connection, rows).await {
        Ok(rows) => Ok(Part::Stored { rows, copied: true }),
        Err(error) if is_unique_violation(&error) => {
            // New rows (the normal case) go in by COPY, several times faster than the upsert;
            // a part that meets a stored row (a replay, a correction) is upserted instead.
            sqlx::raw_sql("ROLLBACK TO SAVEPOINT ingest_part")
                .execute(&mut *connection)
                .await?;
            let part_sales: Vec<&Sale> = part.iter().map(|&index| &sales[index]).collect();
            upsert_sales(connection, &part_sales)
                .await
                .map(|rows| Part::Stored {
                    rows,
                    copied: false,
                })
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(part) => {
            sqlx::raw_sql("RELEASE SAVEPOINT ingest_part")
                .execute(&mut *connection)
                .await?;
            Ok(part)
        }
        Err(error) => match refusal(&error) {
            Some(reason) => {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT ingest_part; RELEASE SAVEPOINT ingest_part")
                    .execute(&mut *connection)
                    .await?;
                Ok(Part::Refused(reason))
            }
            None => Err(error),
        },
    }
}

/// The rejects of refused rows, from their origins; a refused row without one is an error.
fn refused_rejects(
    sales: &[Sale],
    origins: &[Origin],
    refused: Vec<(usize, String)>,
) -> Result<Vec<Reject>, StoreError> {
    refused
        .into_iter()
        .map(|(index, reason)| {
            let sale = &sales[index];
            match origins.get(index) {
                Some(origin) => Ok(origin.reject(sale, reason)),
                None => Err(StoreError::RowRefused {
                    store: sale.row.store,
                    product: sale.product.clone(),
                    date: sale.row.date,
                    reason,
                }),
            }
        })
        .collect()
}

/// The indices of the batch's sales with one per (store, product, date): the later one, as
/// Kafka ordered them.
fn last_per_key(sales: &[Sale]) -> Vec<usize> {
    let mut latest: HashMap<(u32, &str, NaiveDate), usize> = HashMap::with_capacity(sales.len());
    for (index, sale) in sales.iter().enumerate() {
        latest.insert(
            (sale.row.store, sale.product.as_str(), sale.row.date),
            index,
        );
    }
    let mut kept: Vec<usize> = latest.into_values().collect();
    kept.sort_unstable();
    kept
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
        // `storable` bounds these to the columns' ranges before any write.
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
