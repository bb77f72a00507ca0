//! The cluster client: the only code that knows how to reach a series or a node. Not an
//! actor: a cheap handle (cloned freely) over the node's membership actor and the database.
//!
//! - **Where a series lives.** It holds the one cached series set (every store and product
//!   with sales, [`SeriesSet`]) and, per product, its placement over the live model hosts
//!   ([`Routes`]), so the node's rebalancing, the scheduler, the forecaster, the gateway and
//!   the command line all place the same set the same way. The set is read again after a
//!   few seconds, by one caller at a time (the others use the last one meanwhile), and the
//!   placement is computed again as soon as the model hosts change. The gateway's store list
//!   and its "unknown series" answers read the same cached set, so no reader scans `sales`.
//! - **How a node is reached.** [`ClusterClient::host`] finds a node's model host; every call
//!   to a model host, the scheduler or a forecaster goes through one function that applies
//!   its timeout and turns ractor's answer into a [`ClusterError`]. Trainings are given
//!   `train.timeout_secs`.
//! - **Jobs.** A retrain starts as a job ([`ClusterClient::start_retrain`]) whose outcome the
//!   series' model actor records; a train-all is asked of the leading scheduler
//!   ([`ClusterClient::start_train_all`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort, pg};
use tracing::Instrument as _;

use super::forecaster::{self, BatchReply, BatchRequest, ForecasterMessage};
use super::ingest::{self, IngestMessage, IngestStatus};
use super::membership::MembershipMessage;
use super::model::{
    self, ForecastReply, ForecastRequest, InfoRequest, TrainOutcome, TrainRequest, VersionInfo,
};
use super::model_host::{self, Hosted, HostedRequest, ModelHostMessage, Stores};
use super::scheduler::{self, JobReply, JobRequest, SchedulerMessage};
use crate::cluster::member::{MemberView, Role};
use crate::cluster::placement::{DEFAULT_LOAD_FACTOR, Placement, SeriesKey};
use crate::forecast::model::ForecastPoint;
use crate::store::{Database, JobKind, JobRef, StoreError};
use crate::telemetry;

/// How long the series set (stores with sales) is trusted before it is read again.
const SERIES_FRESH_FOR: Duration = Duration::from_secs(5);
/// Longest a member-view, process-group or host-listing call may take.
const QUICK_CALL: Duration = Duration::from_secs(2);
/// Longest a model actor may take to forecast a series from its loaded version (or to say
/// which version it loaded).
const FORECAST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a scheduler may take to start a train-all job.
const START_JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a forecaster may take to write a job's batch forecasts.
const BATCH_TIMEOUT: Duration = Duration::from_secs(600);
/// A retrain job still running this long after its training's time limit lost its outcome.
const ABANDONED_AFTER_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call to the cluster gave no answer, or the answer it gave was a refusal.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("membership does not answer: {0}")]
    NoView(String),
    #[error("unknown series: store {store} has no sales of product {product}")]
    UnknownSeries { store: u32, product: String },
    #[error("no live model host runs store {store} ({product}) yet")]
    NoOwner { store: u32, product: String },
    #[error("node {node} has no model host in the cluster (yet)")]
    NoHost { node: String },
    #[error("node {node} did not answer within {} s", .timeout.as_secs())]
    Timeout { node: String, timeout: Duration },
    #[error("node {node} unreachable: {reason}")]
    Unreachable { node: String, reason: String },
    /// The node is stopping: not the request's fault; its next owner takes it.
    #[error("{reason}")]
    Refused { node: String, reason: String },
    /// The owner answered that it could not do it (train, forecast), and why.
    #[error("store {store}: {reason}")]
    Failed { store: u32, reason: String },
    #[error("cannot start a train-all job: {0}")]
    NoScheduler(String),
    #[error("no forecaster in the cluster yet")]
    NoForecaster,
    #[error("this client has no database to read the series from")]
    NoDatabase,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ClusterError {
    /// No model actor got the request (so none will answer it or record its outcome).
    fn never_delivered(&self) -> bool {
        matches!(
            self,
            ClusterError::NoOwner { .. }
                | ClusterError::NoHost { .. }
                | ClusterError::Unreachable { .. }
        )
    }
}

/// Every series with sales, as read at one moment.
#[derive(Debug)]
pub struct SeriesSet {
    /// Stores with sales, ascending, by product.
    by_product: BTreeMap<String, Vec<u32>>,
    read_at: Instant,
}

impl SeriesSet {
    fn new(series: Vec<(u32, String)>) -> SeriesSet {
        let mut by_product: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (store, product) in series {
            by_product.entry(product).or_default().push(store);
        }
        for stores in by_product.values_mut() {
            stores.sort_unstable();
            stores.dedup();
        }
        SeriesSet {
            by_product,
            read_at: Instant::now(),
        }
    }

    /// Whether the store has sales of the product.
    pub fn contains(&self, store: u32, product: &str) -> bool {
        self.stores(product).binary_search(&store).is_ok()
    }

    /// The stores with sales of `product`, ascending.
    pub fn stores(&self, product: &str) -> &[u32] {
        self.by_product.get(product).map_or(&[], Vec::as_slice)
    }

    /// Every series as (store, product), by store then product.
    pub fn series(&self) -> Vec<(u32, &str)> {
        let mut series: Vec<(u32, &str)> = self
            .by_product
            .iter()
            .flat_map(|(product, stores)| stores.iter().map(|store| (*store, product.as_str())))
            .collect();
        series.sort_unstable();
        series
    }
}

/// The series set of one product and its placement over the live model hosts, as every node
/// computes it from the same member view.
#[derive(Debug)]
pub struct Routes {
    /// The live model hosts, sorted.
    hosts: Vec<String>,
    /// Stores with sales, ascending.
    stores: Vec<u32>,
    placement: Placement,
    product: String,
    read_at: Instant,
}

impl Routes {
    fn compute(product: &str, stores: Vec<u32>, hosts: Vec<String>, read_at: Instant) -> Routes {
        let keys: Vec<SeriesKey> = stores
            .iter()
            .map(|store| SeriesKey::new(*store, product))
            .collect();
        Routes {
            placement: Placement::compute(&keys, &hosts, DEFAULT_LOAD_FACTOR),
            hosts,
            stores,
            product: product.to_string(),
            read_at,
        }
    }

    /// Whether the store has sales of this product.
    pub fn contains(&self, store: u32) -> bool {
        self.stores.binary_search(&store).is_ok()
    }

    /// Stores with sales, ascending.
    pub fn stores(&self) -> &[u32] {
        &self.stores
    }

    /// The node that owns the store's series (`None` with no model host alive).
    pub fn owner(&self, store: u32) -> Option<&str> {
        self.placement
            .owner(&SeriesKey::new(store, self.product.clone()))
    }

    /// The stores `node` owns.
    pub fn owned_by(&self, node: &str) -> BTreeSet<u32> {
        self.stores
            .iter()
            .copied()
            .filter(|store| self.owner(*store) == Some(node))
            .collect()
    }
}

/// A series' owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
}

/// A forecast and the version that made it.
#[derive(Debug, Clone)]
pub struct Forecast {
    pub version: VersionInfo,
    pub points: Vec<ForecastPoint>,
}

/// A retrain job started, or joined, by [`ClusterClient::start_retrain`].
#[derive(Debug)]
pub struct RetrainStarted {
    pub job_id: i64,
    /// False when the request joined a retrain of the series already running.
    pub created: bool,
    /// The node that owned the series when the job started.
    pub owner: String,
    /// The training's answer, for the request that started the job (`None` when it joined
    /// one: follow the job's rows).
    pub answer: Option<tokio::task::JoinHandle<Result<VersionInfo, ClusterError>>>,
}

/// A handle on the cluster; clones share the cache.
#[derive(Clone)]
pub struct ClusterClient {
    inner: Arc<Inner>,
}

struct Inner {
    membership: ActorRef<MembershipMessage>,
    database: Option<Database>,
    training_timeout: Duration,
    routes: Mutex<HashMap<String, Arc<Routes>>>,
    /// Held by the caller that places a product's series again.
    refreshing: tokio::sync::Mutex<()>,
    series: Mutex<Option<Arc<SeriesSet>>>,
    /// Held by the caller that reads the series set again.
    reading_series: tokio::sync::Mutex<()>,
}

impl ClusterClient {
    /// A client of the cluster `membership` sees. The series set comes from `database`; a
    /// client without one can list members and hosts but not place series.
    pub fn new(
        membership: ActorRef<MembershipMessage>,
        database: Option<Database>,
        training_timeout: Duration,
    ) -> Self {
        ClusterClient {
            inner: Arc::new(Inner {
                membership,
                database,
                training_timeout,
                routes: Mutex::new(HashMap::new()),
                refreshing: tokio::sync::Mutex::new(()),
                series: Mutex::new(None),
                reading_series: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Longest a training may take (`train.timeout_secs`).
    pub fn training_timeout(&self) -> Duration {
        self.inner.training_timeout
    }

    fn database(&self) -> Result<&Database, ClusterError> {
        self.inner.database.as_ref().ok_or(ClusterError::NoDatabase)
    }

    /// The live members.
    pub async fn view(&self) -> Result<MemberView, ClusterError> {
        call(
            &self.inner.membership,
            "this node's membership",
            None,
            |_, port| MembershipMessage::GetView(port),
            QUICK_CALL,
        )
        .await
        .map_err(|error| ClusterError::NoView(error.to_string()))
    }

    /// Where the series of `product` live, for the current member view.
    pub async fn routes(&self, product: &str) -> Result<Arc<Routes>, ClusterError> {
        let view = self.view().await?;
        let hosts: Vec<String> = view
            .with_role(Role::Models)
            .into_iter()
            .map(|member| member.name.clone())
            .collect();
        let cached = self.cached(product);
        match cached {
            Some(routes) if routes.hosts == hosts => {
                if routes.read_at.elapsed() < SERIES_FRESH_FOR {
                    return Ok(routes);
                }
                match self.inner.refreshing.try_lock() {
                    // Another caller reads the set again: this one uses the last.
                    Err(_) => Ok(routes),
                    Ok(_refreshing) => self.refresh(product, hosts).await,
                }
            }
            // The hosts changed: the placement is computed again, from the set still fresh.
            Some(routes) if routes.read_at.elapsed() < SERIES_FRESH_FOR => {
                let computed = Arc::new(Routes::compute(
                    product,
                    routes.stores.clone(),
                    hosts,
                    routes.read_at,
                ));
                self.remember(product, &computed);
                Ok(computed)
            }
            _ => {
                let _refreshing = self.inner.refreshing.lock().await;
                match self.cached(product) {
                    Some(routes)
                        if routes.hosts == hosts && routes.read_at.elapsed() < SERIES_FRESH_FOR =>
                    {
                        Ok(routes)
                    }
                    _ => self.refresh(product, hosts).await,
                }
            }
        }
    }

    fn cached(&self, product: &str) -> Option<Arc<Routes>> {
        let routes = self.inner.routes.lock().ok()?;
        routes.get(product).cloned()
    }

    fn remember(&self, product: &str, routes: &Arc<Routes>) {
        if let Ok(mut cache) = self.inner.routes.lock() {
            cache.insert(product.to_string(), Arc::clone(routes));
        }
    }

    /// Places the product's series of the series set over `hosts`.
    async fn refresh(
        &self,
        product: &str,
        hosts: Vec<String>,
    ) -> Result<Arc<Routes>, ClusterError> {
        let series = self.series().await?;
        let stores = series.stores(product).to_vec();
        let routes = Arc::new(Routes::compute(product, stores, hosts, series.read_at));
        self.remember(product, &routes);
        Ok(routes)
    }

    /// Every series with sales: the cached set while it is fresh, else read again (by one
    /// caller; the others wait for its answer).
    pub async fn series(&self) -> Result<Arc<SeriesSet>, ClusterError> {
        if let Some(set) = self.fresh_series() {
            return Ok(set);
        }
        let _reading = self.inner.reading_series.lock().await;
        if let Some(set) = self.fresh_series() {
            return Ok(set);
        }
        let set = Arc::new(SeriesSet::new(self.database()?.series_with_sales().await?));
        if let Ok(mut cached) = self.inner.series.lock() {
            *cached = Some(Arc::clone(&set));
        }
        Ok(set)
    }

    fn fresh_series(&self) -> Option<Arc<SeriesSet>> {
        let cached = self.inner.series.lock().ok()?;
        cached
            .as_ref()
            .filter(|set| set.read_at.elapsed() < SERIES_FRESH_FOR)
            .cloned()
    }

    /// The owner of a series: an error names an unknown series, or a cluster with no live
    /// model host for it.
    pub async fn owner(&self, key: &SeriesKey) -> Result<Owner, ClusterError> {
        let routes = self.routes(&key.product).await?;
        if !routes.contains(key.store) {
            return Err(ClusterError::UnknownSeries {
                store: key.store,
                product: key.product.clone(),
            });
        }
        let node = routes
            .owner(key.store)
            .ok_or_else(|| ClusterError::NoOwner {
                store: key.store,
                product: key.product.clone(),
            })?;
        // Placed on a host not yet in the process groups: not reachable yet.
        self.host(node).map_err(|_| ClusterError::NoOwner {
            store: key.store,
            product: key.product.clone(),
        })?;
        Ok(Owner {
            node: node.to_string(),
        })
    }

    /// The model host of `node`.
    pub fn host(&self, node: &str) -> Result<ActorRef<ModelHostMessage>, ClusterError> {
        pg::get_members(&model_host::group(node))
            .into_iter()
            .next()
            .map(ActorRef::from)
            .ok_or_else(|| ClusterError::NoHost {
                node: node.to_string(),
            })
    }

    /// Trains a series on `node`'s model host (its owner). The version, or why there is none.
    pub async fn train(
        &self,
        node: &str,
        request: TrainRequest,
    ) -> Result<VersionInfo, ClusterError> {
        let store = request.store;
        let outcome = self
            .call_host(
                node,
                "train",
                |traceparent, port| {
                    ModelHostMessage::Train(
                        TrainRequest {
                            traceparent,
                            ..request
                        },
                        port,
                    )
                },
                self.training_timeout(),
            )
            .await?;
        match outcome {
            TrainOutcome::Trained(version) => Ok(version),
            TrainOutcome::Failed(reason) => Err(ClusterError::Failed { store, reason }),
            TrainOutcome::Refused(reason) => Err(ClusterError::Refused {
                node: node.to_string(),
                reason,
            }),
        }
    }

    /// Forecasts a series on `node`'s model host from its loaded version, without refitting.
    pub async fn forecast(
        &self,
        node: &str,
        request: ForecastRequest,
    ) -> Result<Forecast, ClusterError> {
        let store = request.store;
        let reply: ForecastReply = self
            .call_host(
                node,
                "forecast",
                |traceparent, port| {
                    ModelHostMessage::Forecast(
                        ForecastRequest {
                            traceparent,
                            ..request
                        },
                        port,
                    )
                },
                FORECAST_TIMEOUT,
            )
            .await?;
        match reply.version {
            Some(version) => Ok(Forecast {
                version,
                points: reply.points,
            }),
            None => Err(ClusterError::Failed {
                store,
                reason: reply.error.unwrap_or_else(|| "no forecast".to_string()),
            }),
        }
    }

    /// The version a series' actor on `node` has loaded (version 0: none).
    pub async fn info(
        &self,
        node: &str,
        request: InfoRequest,
    ) -> Result<VersionInfo, ClusterError> {
        self.call_host(
            node,
            "info",
            |traceparent, port| {
                ModelHostMessage::Info(
                    InfoRequest {
                        traceparent,
                        ..request
                    },
                    port,
                )
            },
            FORECAST_TIMEOUT,
        )
        .await
    }

    /// The series `node`'s model host runs actors for.
    pub async fn hosted(&self, node: &str) -> Result<Hosted, ClusterError> {
        self.call_host(
            node,
            "hosted",
            |traceparent, port| ModelHostMessage::Hosted(HostedRequest { traceparent }, port),
            QUICK_CALL,
        )
        .await
    }

    /// Calls `node`'s model host (`method` names the call in its span).
    async fn call_host<Reply: Send + 'static>(
        &self,
        node: &str,
        method: &'static str,
        message: impl FnOnce(String, RpcReplyPort<Reply>) -> ModelHostMessage,
        timeout: Duration,
    ) -> Result<Reply, ClusterError> {
        call(&self.host(node)?, node, Some(method), message, timeout).await
    }

    /// Tells `node`'s model host to stop the actors of series it no longer owns.
    pub fn release(&self, node: &str, stores: Stores) -> Result<(), ClusterError> {
        cast(&self.host(node)?, node, ModelHostMessage::Release(stores))
    }

    /// Tells `node`'s model host to start (load) the actors of series it now owns.
    pub fn adopt(&self, node: &str, stores: Stores) -> Result<(), ClusterError> {
        cast(&self.host(node)?, node, ModelHostMessage::Adopt(stores))
    }

    /// What every live ingest node consumes and sees of its consumer group, but the actor
    /// `except` (the caller itself); nodes that do not answer within a moment are left out.
    pub async fn ingest_statuses(&self, except: Option<ractor::ActorId>) -> Vec<IngestStatus> {
        let asking = pg::get_members(&ingest::GROUP.to_string())
            .into_iter()
            .filter(|cell| Some(cell.get_id()) != except)
            .map(|cell| async move {
                let node = cell.get_id().to_string();
                let actor: ActorRef<IngestMessage> = cell.into();
                call(
                    &actor,
                    &node,
                    None,
                    |_, port| IngestMessage::Status(port),
                    QUICK_CALL,
                )
                .await
            });
        futures_util::future::join_all(asking)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// Tells every model host which series got new sales (hosts ignore the series they do
    /// not run).
    pub fn data_arrived(&self, by_product: &BTreeMap<String, BTreeSet<u32>>) {
        for group in pg::which_groups() {
            let Some(node) = group.strip_prefix(model_host::GROUP_PREFIX) else {
                continue;
            };
            let Ok(host) = self.host(node) else {
                continue;
            };
            for (product, stores) in by_product {
                let stores = Stores {
                    product: product.clone(),
                    stores: stores.iter().copied().collect(),
                };
                // A host that went away misses a notice it had no use for.
                let _ = cast(&host, node, ModelHostMessage::DataArrived(stores));
            }
        }
    }

    /// Starts a retrain job of a series on its owner, or joins the one running. The owner's
    /// model actor records the outcome in the job; when no model actor could be reached,
    /// the failure is recorded here instead, so the job always ends. The job continues the
    /// current trace.
    pub async fn start_retrain(
        &self,
        key: SeriesKey,
        profile: &str,
    ) -> Result<RetrainStarted, ClusterError> {
        let owner = self.owner(&key).await?;
        let abandon_after = self.training_timeout() + ABANDONED_AFTER_TIMEOUT;
        let traceparent = telemetry::traceparent();
        let (job_id, created) = self
            .database()?
            .start_retrain_job(
                key.store,
                &key.product,
                profile,
                &owner.node,
                abandon_after,
                &traceparent,
            )
            .await?;
        let answer = created.then(|| {
            let client = self.clone();
            let node = owner.node.clone();
            let job = JobRef {
                id: job_id,
                kind: JobKind::Retrain,
            };
            // A span of its own, continuing the caller's trace without holding the caller's
            // span open until the training ends.
            let span = tracing::info_span!(
                "retrain job",
                job.id = job_id,
                store = key.store,
                product = %key.product,
                node = %node
            );
            telemetry::follow(&span, &traceparent);
            tokio::spawn(client.run_retrain(job, key, node).instrument(span))
        });
        Ok(RetrainStarted {
            job_id,
            created,
            owner: owner.node,
            answer,
        })
    }

    async fn run_retrain(
        self,
        job: JobRef,
        key: SeriesKey,
        node: String,
    ) -> Result<VersionInfo, ClusterError> {
        let request = TrainRequest::new(key.store, key.product.clone(), Some(job));
        let answer = self.train(&node, request).await;
        if let Err(error) = &answer
            && error.never_delivered()
        {
            tracing::warn!(job = job.id, store = key.store, %error, "retrain failed");
            let failed = TrainOutcome::Failed(error.to_string());
            if let Err(error) =
                model::record_outcome(self.database()?, &key, job, &failed, &node).await
            {
                tracing::warn!(job = job.id, %error, "cannot record the retrain's outcome");
            }
        }
        answer
    }

    /// Asks the leading scheduler to start a train-all job, waiting up to `wait` for one to
    /// lead. Returns the job's id and whether it is new (an active train-all job is returned
    /// instead of a second one).
    pub async fn start_train_all(&self, wait: Duration) -> Result<(i64, bool), ClusterError> {
        let started = Instant::now();
        let mut last_error = "no scheduler in the cluster".to_string();
        while started.elapsed() < wait {
            for scheduler in pg::get_members(&scheduler::GROUP.to_string()) {
                let scheduler: ActorRef<SchedulerMessage> = scheduler.into();
                let answer = call(
                    &scheduler,
                    "scheduler",
                    Some("start train-all"),
                    |traceparent, port| {
                        SchedulerMessage::StartTrainAll(JobRequest { traceparent }, port)
                    },
                    START_JOB_TIMEOUT,
                )
                .await;
                match answer {
                    Ok(JobReply {
                        job_id: Some(id),
                        created,
                        ..
                    }) => return Ok((id, created)),
                    Ok(reply) => last_error = reply.error.unwrap_or_default(),
                    Err(error) => last_error = error.to_string(),
                }
            }
            // Leadership is settling (a lease to take or expire): ask again shortly.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(ClusterError::NoScheduler(last_error))
    }

    /// Has a forecaster (this node's, if it has one) write a job's batch forecasts.
    pub async fn write_batch(&self, request: BatchRequest) -> Result<BatchReply, ClusterError> {
        let forecasters = pg::get_members(&forecaster::GROUP.to_string());
        let chosen = forecasters
            .iter()
            .find(|cell| cell.get_id().is_local())
            .or_else(|| forecasters.first())
            .cloned()
            .ok_or(ClusterError::NoForecaster)?;
        let forecaster: ActorRef<ForecasterMessage> = chosen.into();
        call(
            &forecaster,
            "forecaster",
            Some("write batch forecasts"),
            |traceparent, port| {
                ForecasterMessage::WriteBatch(
                    BatchRequest {
                        traceparent,
                        ..request
                    },
                    port,
                )
            },
            BATCH_TIMEOUT,
        )
        .await
    }
}

/// Calls an actor of `node` and waits up to `timeout`: the one place an answer, a silence or
/// a lost node becomes a result. A call with a `method` runs in a client span of that name,
/// and the message is given that span's W3C `traceparent`, so the receiver's span continues
/// it.
async fn call<Msg, Reply>(
    actor: &ActorRef<Msg>,
    node: &str,
    method: Option<&'static str>,
    message: impl FnOnce(String, RpcReplyPort<Reply>) -> Msg,
    timeout: Duration,
) -> Result<Reply, ClusterError>
where
    Msg: Message,
    Reply: Send + 'static,
{
    let span = match method {
        Some(method) => tracing::info_span!(
            "cluster call",
            otel.name = %format!("call {method}"),
            otel.kind = "client",
            rpc.method = method,
            peer.node = %node,
            otel.status_code = tracing::field::Empty,
        ),
        None => tracing::Span::none(),
    };
    let traceparent = telemetry::traceparent_of(&span);
    let answer = actor
        .call(|port| message(traceparent, port), Some(timeout))
        .instrument(span.clone())
        .await;
    let result = match answer {
        Ok(CallResult::Success(reply)) => Ok(reply),
        Ok(CallResult::Timeout) => Err(ClusterError::Timeout {
            node: node.to_string(),
            timeout,
        }),
        Ok(CallResult::SenderError) => Err(ClusterError::Unreachable {
            node: node.to_string(),
            reason: "it went away before answering".to_string(),
        }),
        Err(error) => Err(ClusterError::Unreachable {
            node: node.to_string(),
            reason: error.to_string(),
        }),
    };
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    result
}

fn cast<Msg: Message>(actor: &ActorRef<Msg>, node: &str, message: Msg) -> Result<(), ClusterError> {
    actor
        .cast(message)
        .map_err(|error| ClusterError::Unreachable {
            node: node.to_string(),
            reason: error.to_string(),
        })
}
