//! Stores and their batch forecasts, read from the database:
//! - `GET /api/stores`: every series (store, product) with its latest model version (the
//!   series from the cluster client's cached set, so a burst of these never scans `sales`;
//!   requests that arrive while a list is built share the next one);
//! - `GET /api/stores/{store}/products/{product}/forecast`: the latest batch forecast, with the
//!   model's name and version, the interval bounds and when it was written;
//! - `GET /api/stores/{store}/products/{product}/sales?days=N`: the series' last N days of
//!   actual sales (default 90);
//! - `GET /api/stores/{store}/products/{product}/versions?limit=N`: the series' model versions,
//!   newest first (default 20), with where each was trained and its cross-validation metrics,
//!   and the node whose model actor owns the series now.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, Gateway};

#[derive(Debug, Serialize)]
pub struct StoreEntry {
    pub store: u32,
    pub products: Vec<ProductEntry>,
}

#[derive(Debug, Serialize)]
pub struct ProductEntry {
    pub product: String,
    /// The latest model version, `null` when the series was never trained.
    pub model_version: Option<i32>,
    /// The node whose model actor owns the series (`null` with no model host alive).
    pub owner: Option<String>,
}

/// The store list, shared by the requests that wait while another is being built: a burst of
/// N store lists builds about two of them, not N, so a page refreshed by many viewers costs the
/// database and the CPU little and does not crowd out forecasts.
pub async fn stores(State(gateway): State<Gateway>) -> Result<Response, ApiError> {
    let body = gateway
        .store_list
        .get(|| async {
            let list = build_store_list(&gateway).await?;
            serde_json::to_vec(&list)
                .map(Bytes::from)
                .map_err(|error| ApiError::internal(format!("encoding the store list: {error}")))
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A value built at most once at a time and shared by the callers that waited for it.
///
/// A caller gets a value whose build began after the caller arrived, so it is as fresh as one
/// built for that caller alone (a client that trained a store and then lists the stores sees
/// the new version); callers arriving during a build wait for it and share the next one.
pub struct Coalesced<T> {
    /// The last value built and when its build began; the lock is held during a build.
    latest: tokio::sync::Mutex<Option<(Instant, T)>>,
}

impl<T> Default for Coalesced<T> {
    fn default() -> Self {
        Coalesced {
            latest: tokio::sync::Mutex::new(None),
        }
    }
}

impl<T: Clone> Coalesced<T> {
    /// The value, built by `build` unless a build that began after this call arrived has it.
    pub async fn get<E, F>(&self, build: impl FnOnce() -> F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let arrived = Instant::now();
        let mut latest = self.latest.lock().await;
        if let Some((begun, value)) = latest.as_ref()
            && *begun >= arrived
        {
            return Ok(value.clone());
        }
        let begun = Instant::now();
        let value = build().await?;
        *latest = Some((begun, value.clone()));
        Ok(value)
    }
}

/// Every series (from the cluster client's cached set) with its latest version and owner.
async fn build_store_list(gateway: &Gateway) -> Result<Vec<StoreEntry>, ApiError> {
    let series = gateway.client.series().await?;
    let versions = gateway
        .database
        .latest_versions()
        .await
        .map_err(ApiError::database)?;
    let mut routes = BTreeMap::new();
    let mut by_store: BTreeMap<u32, Vec<ProductEntry>> = BTreeMap::new();
    for (store, product) in series.series() {
        let model_version = versions.get(&(store, product.to_string())).copied();
        if !routes.contains_key(product) {
            routes.insert(product, gateway.client.routes(product).await?);
        }
        let owner = routes
            .get(product)
            .and_then(|routes| routes.owner(store))
            .map(str::to_string);
        by_store.entry(store).or_default().push(ProductEntry {
            product: product.to_string(),
            model_version,
            owner,
        });
    }
    Ok(by_store
        .into_iter()
        .map(|(store, products)| StoreEntry { store, products })
        .collect())
}

#[derive(Debug, Serialize)]
pub struct BatchForecast {
    pub store: u32,
    pub product: String,
    pub model: Model,
    pub created_at: DateTime<Utc>,
    pub forecast: Vec<Day>,
}

#[derive(Debug, Serialize)]
pub struct Model {
    pub name: String,
    pub version: i32,
    pub trained_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct Day {
    pub date: NaiveDate,
    pub value: f64,
    pub lower_ci: f64,
    pub upper_ci: f64,
}

pub async fn forecast(
    State(gateway): State<Gateway>,
    Path((store, product)): Path<(String, String)>,
) -> Result<Json<BatchForecast>, ApiError> {
    let store = parse_store(&store)?;
    let database = &gateway.database;
    let rows = database
        .latest_forecast(store, &product)
        .await
        .map_err(ApiError::database)?;
    let Some(first) = rows.first() else {
        let known = gateway.client.series().await?.contains(store, &product);
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: if known {
                format!("store {store} ({product}) has no forecast yet: train it first")
            } else {
                format!("unknown series: store {store} has no sales of product {product}")
            },
        });
    };
    let version = first.record.model_version;
    let label = database
        .model_label(store, &product, version)
        .await
        .map_err(ApiError::database)?;
    Ok(Json(BatchForecast {
        store,
        product: product.clone(),
        model: Model {
            version,
            trained_at: label.as_ref().map(|(_, trained_at)| *trained_at),
            name: label.map_or_else(|| "unknown".to_string(), |(profile, _)| profile),
        },
        created_at: first.created_at,
        forecast: rows
            .iter()
            .map(|row| Day {
                date: row.record.date,
                value: row.record.yhat,
                lower_ci: row.record.lower,
                upper_ci: row.record.upper,
            })
            .collect(),
    }))
}

/// Days of sales answered when `days` is not given, and the most one request may ask.
pub const DEFAULT_SALES_DAYS: u32 = 90;
pub const MAX_SALES_DAYS: u32 = 3_660;

#[derive(Debug, Deserialize)]
pub struct SalesQuery {
    pub days: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct RecentSales {
    pub store: u32,
    pub product: String,
    /// The last day of sales of the series (the window ends there).
    pub last_date: Option<NaiveDate>,
    pub sales: Vec<SalesDay>,
}

#[derive(Debug, Serialize)]
pub struct SalesDay {
    pub date: NaiveDate,
    pub sales: u32,
    pub customers: u32,
    pub open: bool,
    pub promo: bool,
}

pub async fn sales(
    State(gateway): State<Gateway>,
    Path((store, product)): Path<(String, String)>,
    query: Result<Query<SalesQuery>, QueryRejection>,
) -> Result<Json<RecentSales>, ApiError> {
    let store = parse_store(&store)?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "days must be a whole number of days: {}",
            rejection.body_text()
        ))
    })?;
    let days = query.days.unwrap_or(DEFAULT_SALES_DAYS);
    if days == 0 || days > MAX_SALES_DAYS {
        return Err(ApiError::bad_request(format!(
            "days must be 1 to {MAX_SALES_DAYS}, not {days}"
        )));
    }
    let rows = gateway
        .database
        .series_sales(store, &product)
        .await
        .map_err(ApiError::database)?;
    let Some(last) = rows.last().map(|row| row.date) else {
        return Err(ApiError::not_found(format!(
            "unknown series: store {store} has no sales of product {product}"
        )));
    };
    let first = last - chrono::Days::new(u64::from(days - 1));
    Ok(Json(RecentSales {
        store,
        product,
        last_date: Some(last),
        sales: rows
            .iter()
            .filter(|row| row.date >= first)
            .map(|row| SalesDay {
                date: row.date,
                sales: row.sales,
                customers: row.customers,
                open: row.open,
                promo: row.promo,
            })
            .collect(),
    }))
}

/// Versions answered when `limit` is not given, and the most one request may ask.
pub const DEFAULT_VERSIONS: u32 = 20;
pub const MAX_VERSIONS: u32 = 500;

#[derive(Debug, Deserialize)]
pub struct VersionsQuery {
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct Versions {
    pub store: u32,
    pub product: String,
    /// The node whose model actor owns the series now (`null` with no model host alive).
    pub owner: Option<String>,
    /// Newest first.
    pub versions: Vec<VersionEntry>,
}

#[derive(Debug, Serialize)]
pub struct VersionEntry {
    pub version: i32,
    pub trained_at: DateTime<Utc>,
    /// The node that trained it.
    pub node: String,
    pub profile: String,
    /// First and last day of the sales it was trained on.
    pub trained_from: NaiveDate,
    pub trained_to: NaiveDate,
    /// Cross-validation errors, averaged over the splits; percentages as fractions.
    pub metrics: VersionMetrics,
}

#[derive(Debug, Serialize)]
pub struct VersionMetrics {
    pub mape: f64,
    pub rmspe: f64,
    pub rmse: f64,
    pub mae: f64,
}

pub async fn versions(
    State(gateway): State<Gateway>,
    Path((store, product)): Path<(String, String)>,
    query: Result<Query<VersionsQuery>, QueryRejection>,
) -> Result<Json<Versions>, ApiError> {
    let store = parse_store(&store)?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "limit must be a whole number: {}",
            rejection.body_text()
        ))
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_VERSIONS);
    if limit == 0 || limit > MAX_VERSIONS {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_VERSIONS}, not {limit}"
        )));
    }
    let routes = gateway.client.routes(&product).await?;
    if !routes.contains(store) {
        return Err(ApiError::not_found(format!(
            "unknown series: store {store} has no sales of product {product}"
        )));
    }
    let history = gateway
        .database
        .version_history(store, &product, limit)
        .await
        .map_err(ApiError::database)?;
    Ok(Json(Versions {
        store,
        owner: routes.owner(store).map(str::to_string),
        product,
        versions: history
            .into_iter()
            .map(|version| VersionEntry {
                version: version.version,
                trained_at: version.trained_at,
                node: version.node,
                profile: version.profile,
                trained_from: version.trained_from,
                trained_to: version.trained_to,
                metrics: VersionMetrics {
                    mape: version.metrics.mape,
                    rmspe: version.metrics.rmspe,
                    rmse: version.metrics.rmse,
                    mae: version.metrics.mae,
                },
            })
            .collect(),
    }))
}

/// A store id from a path: a positive whole number.
pub fn parse_store(text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>()
        .ok()
        .filter(|store| *store > 0)
        .ok_or_else(|| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("store must be a positive whole number, got {text:?}"),
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::Coalesced;

    /// Callers that arrive while a build runs share one later build; none gets a value whose
    /// build began before it arrived.
    #[tokio::test]
    async fn callers_during_a_build_share_the_next_one() {
        let shared = Arc::new(Coalesced::<usize>::default());
        let builds = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let build = |builds: Arc<AtomicUsize>, release: Arc<Notify>| async move {
            let number = builds.fetch_add(1, Ordering::SeqCst) + 1;
            release.notified().await;
            Ok::<usize, ()>(number)
        };
        let first = tokio::spawn({
            let (shared, builds, release) = (shared.clone(), builds.clone(), release.clone());
            async move { shared.get(|| build(builds, release)).await }
        });
        eventually("the first build began", || {
            builds.load(Ordering::SeqCst) == 1
        })
        .await;
        // Eight callers arrive while the first build runs.
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let (shared, builds, release) = (shared.clone(), builds.clone(), release.clone());
                tokio::spawn(async move { shared.get(|| build(builds, release)).await })
            })
            .collect();
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        assert_eq!(first.await.unwrap(), Ok(1));
        eventually("the waiting callers began a second build", || {
            builds.load(Ordering::SeqCst) == 2
        })
        .await;
        release.notify_one();
        for caller in waiting {
            // A caller that built a value of its own would wait for a release that never comes.
            let value = tokio::time::timeout(Duration::from_secs(10), caller)
                .await
                .expect("a caller did not share the second build");
            assert_eq!(value.unwrap(), Ok(2), "built after it arrived");
        }
        assert_eq!(builds.load(Ordering::SeqCst), 2);

        // A caller arriving after the last build ended gets a build of its own.
        release.notify_one();
        assert_eq!(
            shared.get(|| build(builds.clone(), release.clone())).await,
            Ok(3)
        );
    }

    /// Waits, yielding to the other tasks, until `condition` holds; fails after 10 s.
    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while !condition() {
                tokio::task::yield_now().await;
            }
        });
        assert!(waited.await.is_ok(), "never happened: {what}");
    }

    /// A failed build is that caller's error; the next caller builds again.
    #[tokio::test]
    async fn a_failed_build_is_not_kept() {
        let shared = Coalesced::<u32>::default();
        assert_eq!(
            shared.get(|| async { Err::<u32, &str>("down") }).await,
            Err("down")
        );
        assert_eq!(shared.get(|| async { Ok::<u32, &str>(7) }).await, Ok(7));
    }
}
