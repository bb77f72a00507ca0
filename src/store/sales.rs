//! The `sales` table: bulk replacement (COPY on PostgreSQL, batched inserts on SQLite),
//! per-series reads and a summary.

use std::fmt::Write as _;

use chrono::NaiveDate;
use sqlx::{QueryBuilder, Sqlite};

use super::backend::on_pool;
use super::{Database, StoreError};
use crate::dataset::{SalesRow, StateHoliday};

/// Rows per multi-row INSERT on SQLite: 10 parameters each, well under SQLite's limit.
const SQLITE_ROWS_PER_INSERT: usize = 500;
/// Bytes of COPY data sent to PostgreSQL at a time.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// What `sales` holds for one product.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SalesSummary {
    pub product: String,
    pub stores: i64,
    pub rows: i64,
    pub open_days: i64,
    pub total_sales: i64,
    pub first_date: Option<NaiveDate>,
    pub last_date: Option<NaiveDate>,
}

/// A `sales` row as both backends return it (PostgreSQL casts to the same types).
#[derive(sqlx::FromRow)]
struct StoredSale {
    store: i32,
    day_of_week: i32,
    date: NaiveDate,
    sales: i32,
    customers: i32,
    open: bool,
    promo: bool,
    state_holiday: String,
    school_holiday: bool,
}

impl StoredSale {
    fn into_row(self) -> SalesRow {
        // The table's CHECK constraints keep every value in range.
        SalesRow {
            store: self.store.unsigned_abs(),
            day_of_week: u8::try_from(self.day_of_week).unwrap_or_default(),
            date: self.date,
            sales: self.sales.unsigned_abs(),
            customers: self.customers.unsigned_abs(),
            open: self.open,
            promo: self.promo,
            state_holiday: StateHoliday::from_code(&self.state_holiday).unwrap_or_default(),
            school_holiday: self.school_holiday,
        }
    }
}

impl Database {
    /// Replaces every `sales` row of `product` with `rows`, in one transaction: readers see
    /// either the old rows or the new ones, and a failure leaves the old ones in place.
    /// Returns the number of rows written.
    pub async fn replace_sales(&self, product: &str, rows: &[SalesRow]) -> Result<u64, StoreError> {
        let doing = "replacing sales";
        let fail = StoreError::query;
        match self {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(fail(doing))?;
                let other_products: bool =
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sales WHERE product <> $1)")
                        .bind(product)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(fail(doing))?;
                // TRUNCATE is instant and leaves no dead rows; only usable when the product
                // is all the table holds.
                let clear = if other_products {
                    sqlx::query("DELETE FROM sales WHERE product = $1").bind(product)
                } else {
                    sqlx::query("TRUNCATE sales")
                };
                clear.execute(&mut *tx).await.map_err(fail(doing))?;

                let written = copy_into_sales(&mut tx, rows.iter().map(|row| (product, row)))
                    .await
                    .map_err(fail(doing))?;
                tx.commit().await.map_err(fail(doing))?;
                Ok(written)
            }
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(fail(doing))?;
                sqlx::query("DELETE FROM sales WHERE product = ?")
                    .bind(product)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail(doing))?;
                let mut written = 0;
                for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT) {
                    let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                        "INSERT INTO sales (store, product, date, day_of_week, sales, customers, \
                         open, promo, state_holiday, school_holiday) ",
                    );
                    insert.push_values(chunk, |mut values, row| {
                        values
                            .push_bind(i64::from(row.store))
                            .push_bind(product)
                            .push_bind(row.date)
                            .push_bind(i64::from(row.day_of_week))
                            .push_bind(i64::from(row.sales))
                            .push_bind(i64::from(row.customers))
                            .push_bind(row.open)
                            .push_bind(row.promo)
                            .push_bind(row.state_holiday.code())
                            .push_bind(row.school_holiday);
                    });
                    written += insert
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(fail(doing))?
                        .rows_affected();
                }
                tx.commit().await.map_err(fail(doing))?;
                Ok(written)
            }
        }
    }

    /// Every series with sales (store, product), ordered.
    pub async fn series_with_sales(&self) -> Result<Vec<(u32, String)>, StoreError> {
        let rows: Vec<(i32, String)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT DISTINCT store, product FROM sales ORDER BY store, product",
        )
        .fetch_all(pool)
        .await)
        .map_err(StoreError::query("listing series"))?;
        Ok(rows
            .into_iter()
            .map(|(store, product)| (store.unsigned_abs(), product))
            .collect())
    }

    /// All rows of one series, oldest first.
    pub async fn series_sales(
        &self,
        store: u32,
        product: &str,
    ) -> Result<Vec<SalesRow>, StoreError> {
        let doing = "reading sales";
        let store = i64::from(store);
        let rows: Vec<StoredSale> = match self {
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT store, day_of_week::int4 AS day_of_week, date, sales, customers, open, \
                 promo, state_holiday, school_holiday FROM sales \
                 WHERE store = $1 AND product = $2 ORDER BY date",
                )
                .bind(store as i32)
                .bind(product)
                .fetch_all(pool)
                .await
            }
            Database::Sqlite(pool) => sqlx::query_as(
                "SELECT store, day_of_week, date, sales, customers, open, promo, state_holiday, \
                 school_holiday FROM sales WHERE store = ? AND product = ? ORDER BY date",
            )
            .bind(store)
            .bind(product)
            .fetch_all(pool)
            .await,
        }
        .map_err(StoreError::query(doing))?;
        Ok(rows.into_iter().map(StoredSale::into_row).collect())
    }

    /// Stores that have sales of `product`, ascending.
    pub async fn stores_with_sales(&self, product: &str) -> Result<Vec<u32>, StoreError> {
        let doing = "listing stores";
        let stores: Vec<i32> = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT DISTINCT store FROM sales WHERE product = $1 ORDER BY store",
        )
        .bind(product)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::query(doing))?;
        Ok(stores.into_iter().map(i32::unsigned_abs).collect())
    }

    /// One line of figures per product in `sales`.
    pub async fn sales_summary(&self) -> Result<Vec<SalesSummary>, StoreError> {
        // Same SQL on both backends: COUNT and SUM of integers are 64-bit on both.
        const SUMMARY: &str = "SELECT product, COUNT(DISTINCT store) AS stores, COUNT(*) AS rows, \
             COALESCE(SUM(CASE WHEN open THEN 1 ELSE 0 END), 0) AS open_days, \
             COALESCE(SUM(sales), 0) AS total_sales, \
             MIN(date) AS first_date, MAX(date) AS last_date \
             FROM sales GROUP BY product ORDER BY product";
        let doing = "summarising sales";
        on_pool!(self, pool => sqlx::query_as(SUMMARY).fetch_all(pool).await)
            .map_err(StoreError::query(doing))
    }
}

/// Appends `rows` (product name, row) to `sales` with COPY, in the caller's transaction.
/// Fails with a unique violation if any of them is already stored.
pub(super) async fn copy_into_sales<'a>(
    connection: &mut sqlx::PgConnection,
    rows: impl IntoIterator<Item = (&'a str, &'a SalesRow)>,
) -> Result<u64, sqlx::Error> {
    let mut copy = connection
        .copy_in_raw(
            "COPY sales (store, product, date, day_of_week, sales, customers, open, promo, \
             state_holiday, school_holiday) FROM STDIN",
        )
        .await?;
    let mut buffer = String::with_capacity(COPY_CHUNK_BYTES + 256);
    // Rows nearly always share one product: its name is escaped once per run of it.
    let mut escaped: Option<(&str, String)> = None;
    for (product, row) in rows {
        let escaped_product = match &escaped {
            Some((name, text)) if *name == product => text.as_str(),
            _ => escaped
                .insert((product, copy_text_escape(product)))
                .1
                .as_str(),
        };
        append_copy_line(&mut buffer, escaped_product, row);
        if buffer.len() >= COPY_CHUNK_BYTES {
            copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
            buffer.reserve(COPY_CHUNK_BYTES + 256);
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.into_bytes()).await?;
    }
    copy.finish().await
}

/// One row in COPY's text format: tab-separated, `t`/`f` booleans.
fn append_copy_line(buffer: &mut String, escaped_product: &str, row: &SalesRow) {
    let flag = |value: bool| if value { 't' } else { 'f' };
    // Writing to a String cannot fail.
    let _ = writeln!(
        buffer,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        row.store,
        escaped_product,
        row.date,
        row.day_of_week,
        row.sales,
        row.customers,
        flag(row.open),
        flag(row.promo),
        row.state_holiday.code(),
        flag(row.school_holiday),
    );
}

/// Escapes a value for COPY's text format (backslash, tab, newline, carriage return).
fn copy_text_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '\t' => escaped.push_str("\\t"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_lines_escape_the_product() {
        assert_eq!(copy_text_escape("a\tb\\c\nd"), "a\\tb\\\\c\\nd");
        let row = SalesRow {
            store: 3,
            day_of_week: 5,
            date: NaiveDate::from_ymd_opt(2015, 7, 31).unwrap(),
            sales: 100,
            customers: 9,
            open: true,
            promo: false,
            state_holiday: StateHoliday::Public,
            school_holiday: true,
        };
        let mut line = String::new();
        append_copy_line(&mut line, "product_A", &row);
        assert_eq!(line, "3\tproduct_A\t2015-07-31\t5\t100\t9\tt\tf\ta\tt\n");
    }
}
