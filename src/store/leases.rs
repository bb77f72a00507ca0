//! Leases (`leases`): a named lock with a holder, an epoch and an expiry, taken and renewed
//! by one holder at a time. The scheduler's lease makes one scheduler lead; the epoch it was
//! given is its [`Fence`], which every write it makes to jobs checks first
//! ([`check_fence`](super::backend::check_fence)), so a scheduler that lost its lease
//! (paused, partitioned) cannot write over its successor.
//!
//! Lease times come from the database's clock, so nodes need not agree on the time.

use super::backend::on_pool;
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

impl Database {
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
}
