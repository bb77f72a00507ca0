//! The database: connection by URL, migrations, and all of storecast's SQL.
//!
//! Two backends stand behind one [`Database`]: PostgreSQL (production, `postgres://`) and
//! SQLite (the embedded default, `sqlite:`). Each has its own migrations under
//! `migrations/<backend>/`, applied on connect, describing the same tables. One file per
//! table family holds the queries: [`sales`], [`models`] (the registry), [`forecasts`],
//! [`jobs`] (jobs and their tasks), [`leases`] (the scheduler's lease), [`ingest`] (streamed
//! batches, rejects); [`backend`] holds what differs between PostgreSQL and SQLite.

pub mod backend;
pub mod forecasts;
pub mod ingest;
pub mod jobs;
pub mod leases;
pub mod models;
pub mod sales;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use crate::config::{DatabaseConfig, redact_url};

/// Longest a PostgreSQL session may sit idle inside a transaction before the server ends it
/// (`idle_in_transaction_session_timeout`). storecast never waits inside a transaction, so
/// only a stalled process does: a node paused (SIGSTOP, a frozen VM) in the middle of a
/// fenced write would otherwise hold the scheduler lease's row lock, and so the takeover by
/// another node, until it ran again. Its write then fails instead of landing late.
pub const IDLE_IN_TRANSACTION_MS: u64 = 10_000;

pub use forecasts::{ForecastRecord, StoredForecast};
pub use jobs::{Job, JobKind, JobPhase, JobRef, JobState, NewJob, Task, TaskRef};
pub use leases::{Fence, SCHEDULER_LEASE};
pub use models::{ModelVersion, NewModelVersion, Registered, VersionSummary};
pub use sales::SalesSummary;

/// A connected, migrated database.
#[derive(Debug, Clone)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Why a database operation failed; each variant says what storecast was doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`: use `sqlite:PATH` or `postgres://USER@HOST/DB`")]
    UnsupportedUrl(String),
    #[error("invalid database URL `{url}`: {error}")]
    BadUrl { url: String, error: sqlx::Error },
    #[error("cannot connect to database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot migrate database {url}: {error}")]
    Migrate {
        url: String,
        error: sqlx::migrate::MigrateError,
    },
    #[error("stored {what} cannot be read: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("the {lease} lease is no longer held by {holder} at epoch {epoch}")]
    LeaseLost {
        lease: String,
        holder: String,
        epoch: i64,
    },
    #[error("job {job_id} has no task for store {store} ({product})")]
    NoSuchTask {
        job_id: i64,
        store: u32,
        product: String,
    },
    #[error("the database cannot store the sale of store {store}, {product}, {date}: {reason}")]
    RowRefused {
        store: u32,
        product: String,
        date: chrono::NaiveDate,
        reason: String,
    },
    #[error("database error while {doing}: {error}")]
    Query {
        doing: &'static str,
        error: sqlx::Error,
    },
}

impl StoreError {
    fn query(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |error| StoreError::Query { doing, error }
    }

    /// The database was away or too slow (no connection in time, a connection lost, the
    /// server shutting down): the same write may well succeed a moment later. A refusal of
    /// the write itself (a constraint, a lost lease, a missing task) is not.
    pub fn is_transient(&self) -> bool {
        let StoreError::Query { error, .. } = self else {
            return matches!(self, StoreError::Connect { .. });
        };
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exceptions; 57P: the server shuts down or restarts;
            // 40001/40P01: serialization failure, deadlock (try again).
            sqlx::Error::Database(database) => database.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("57P")
                    || code == "40001"
                    || code == "40P01"
            }),
            _ => false,
        }
    }
}

impl Database {
    /// Connects to the database named by `config.url` and brings its schema up to date.
    ///
    /// A first connection is made alone so that a wrong host, a refused connection or bad
    /// credentials give their own error instead of a pool timeout.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let url = config.url.as_str();
        let shown = redact_url(url);
        let timeout = Duration::from_secs(config.connect_timeout_secs.max(1));
        let connect_error = |reason: String| StoreError::Connect {
            url: shown.clone(),
            reason,
        };
        let bad_url = |error| StoreError::BadUrl {
            url: shown.clone(),
            error,
        };

        let database = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(bad_url)?.options([(
                "idle_in_transaction_session_timeout",
                IDLE_IN_TRANSACTION_MS.to_string(),
            )]);
            probe(options.connect(), timeout)
                .await
                .map_err(connect_error)?;
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(timeout)
                .connect_lazy_with(options);
            Database::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(bad_url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(timeout);
            // Switching a new file to WAL takes a lock the busy timeout does not wait for:
            // processes opening one file at once try again.
            let mut attempt = 1;
            loop {
                match probe(options.connect(), timeout).await {
                    Err(reason) if reason.contains("locked") && attempt < SQLITE_OPEN_ATTEMPTS => {
                        tracing::debug!(%reason, attempt, "SQLite file busy; opening it again");
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                        attempt += 1;
                    }
                    result => break result.map_err(connect_error)?,
                }
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(timeout)
                .connect_lazy_with(options);
            Database::Sqlite(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(shown));
        };

        let migrated = match &database {
            // sqlx serialises PostgreSQL migrations with an advisory lock.
            Database::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
            Database::Sqlite(pool) => migrate_sqlite(pool).await,
        };
        migrated.map_err(|error| StoreError::Migrate { url: shown, error })?;
        Ok(database)
    }

    /// A second, smaller pool on the same database, for readers (the HTTP gateway) that must
    /// never take a connection the lease renewal, the scheduler or ingest waits for. Its
    /// connections open when first needed.
    pub fn readers(&self, max_connections: u32) -> Database {
        match self {
            Database::Postgres(pool) => Database::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections.max(1))
                    .acquire_timeout(pool.options().get_acquire_timeout())
                    .connect_lazy_with(pool.connect_options().as_ref().clone()),
            ),
            Database::Sqlite(pool) => Database::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(max_connections.max(1))
                    .acquire_timeout(pool.options().get_acquire_timeout())
                    .connect_lazy_with(pool.connect_options().as_ref().clone()),
            ),
        }
    }

    /// Checks the database answers (one trivial query).
    pub async fn ping(&self) -> Result<(), StoreError> {
        backend::on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .map_err(StoreError::query("checking the database"))
    }

    /// `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "postgres",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// Closes every pooled connection, waiting for them to be returned.
    pub async fn close(&self) {
        match self {
            Database::Postgres(pool) => pool.close().await,
            Database::Sqlite(pool) => pool.close().await,
        }
    }

    /// Names of the tables storecast's migrations created, sorted.
    pub async fn table_names(&self) -> Result<Vec<String>, StoreError> {
        let doing = "listing tables";
        match self {
            Database::Postgres(pool) => sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
                 AND tablename NOT LIKE '\\_sqlx%' ORDER BY tablename",
            )
            .fetch_all(pool)
            .await
            .map_err(StoreError::query(doing)),
            Database::Sqlite(pool) => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' \
                 AND name NOT LIKE 'sqlite%' ORDER BY name",
            )
            .fetch_all(pool)
            .await
            .map_err(StoreError::query(doing)),
        }
    }
}

/// Tries at opening a SQLite file that another process is setting up.
const SQLITE_OPEN_ATTEMPTS: u32 = 10;

/// SQLite has no migration lock: when several processes open a new file at once, all but
/// one find the tables already made. Each migration runs in a transaction, so the losers'
/// attempts roll back; trying again finds them applied.
async fn migrate_sqlite(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    const ATTEMPTS: u32 = 10;
    let mut attempt = 1;
    loop {
        match sqlx::migrate!("./migrations/sqlite").run(pool).await {
            Err(error) if attempt < ATTEMPTS => {
                tracing::debug!(%error, attempt, "SQLite migration raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Opens and closes one connection, turning failure or a timeout into a readable reason.
async fn probe<C: Connection>(
    connecting: impl Future<Output = Result<C, sqlx::Error>>,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(connection)) => {
            // A failure to say goodbye politely does not matter: the connection is dropped.
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(error)) => Err(describe(&error)),
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}

/// sqlx's errors, worded for a person: the I/O cause rather than the variant name.
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(database) => database.message().to_string(),
        other => other.to_string(),
    }
}
