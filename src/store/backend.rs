//! What differs between the two backends, in one place: the macro that runs one statement
//! text on either pool, the SQL of the database's clock and of a write transaction, and the
//! fencing check every lease-guarded write runs first.
//!
//! Everywhere else a statement is written once, in SQL both PostgreSQL and SQLite accept
//! (`$1` placeholders, `ON CONFLICT`, `RETURNING`, `FILTER`); where the text must differ,
//! the difference is a function here.

use super::leases::Fence;
use super::{Database, StoreError};

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

impl Database {
    /// The database clock in milliseconds since the Unix epoch, as SQL.
    pub(crate) fn now_ms_sql(&self) -> &'static str {
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

    /// `FOR UPDATE` where the backend locks rows (PostgreSQL); SQLite's write transaction
    /// already holds the whole database.
    pub(crate) fn for_update_sql(&self) -> &'static str {
        match self {
            Database::Postgres(_) => " FOR UPDATE",
            Database::Sqlite(_) => "",
        }
    }

    /// The fence check: the lease row as the fence knows it, still unexpired. PostgreSQL
    /// locks the row, so a takeover waits for the fenced write to commit.
    pub(crate) fn fence_sql(&self) -> String {
        format!(
            "SELECT epoch FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 \
             AND expires_at > {}{}",
            self.now_ms_sql(),
            self.for_update_sql()
        )
    }
}

/// Fails with [`StoreError::LeaseLost`] unless `fence` still holds its lease. `sql` is
/// [`Database::fence_sql`] of the transaction's backend.
pub(crate) async fn check_fence<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    sql: &str,
    fence: &Fence,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB> + sqlx::Decode<'q, DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let held: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
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
