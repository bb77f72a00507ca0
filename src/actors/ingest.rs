//! The ingest actor: one per node with the `ingest` role. It runs a Kafka consumer-group
//! member on the sales topic (Kafka spreads the partitions over the ingest nodes) in a task of
//! its own. Steps, per batch:
//! 1. gather messages until `ingest.batch_rows` or `ingest.batch_ms` after the first;
//! 2. parse each: a sale of a known store, or a reject with its reason;
//! 3. write sales (COPY, or an upsert by store, product, date when some are already stored)
//!    and rejects in one transaction, retrying with backoff while the database is away;
//! 4. commit the batch's offsets, only now: a crash before this replays the batch, and the
//!    upsert makes the replay change nothing;
//! 5. tell the model hosts which series got new data.
//!
//! Steps 3-5 of one batch run while the next batch gathers; the loop waits for them before
//! handing that batch over, so one write is in flight and offsets commit in order. While the
//! database is away nothing more than that next batch is consumed: the backpressure.
//!
//! A rebalance drops the batches not yet stored (their offsets were not committed: the
//! partitions' next owner reads them again), and waits for a commit under way (see
//! [`RebalanceWatch`]).
//!
//! Every few seconds the actor also looks at the group as a whole ([`CoverageWatch`]): the
//! topic's partitions and their lag, and what the other live ingest nodes (its process group)
//! consume. Partitions left without a live consumer while messages wait on them are logged,
//! counted (`storecast_ingest_unassigned_partitions`) and shown by readiness; if they stay so
//! past a bound, the node leaves the group and joins again, so a broker that left them with
//! a dead member hands them out anew (see `crate::ingest::coverage`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, pg};
use ractor_cluster::RactorClusterMessage;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::background::Background;
use super::client::ClusterClient;
use super::node::{IngestHealth, NodeStatus};
use crate::ingest::batch::Batch;
use crate::ingest::coverage::{self, Coverage, PartitionLag};
use crate::ingest::kafka::{self, IngestConsumer, RebalanceWatch};
use crate::metrics;
use crate::store::Database;

/// How the ingest consumer runs (from `[ingest]`).
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub batch_rows: usize,
    pub batch_wait: Duration,
    pub session_timeout: Duration,
    pub reject_payload_bytes: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

pub struct IngestArguments {
    pub settings: IngestSettings,
    pub database: Database,
    /// Tells the model hosts which series got data; asks the other ingest nodes what they
    /// consume.
    pub client: ClusterClient,
    /// Where readiness reads this role's health.
    pub status: NodeStatus,
    pub node: String,
}

/// The process group every ingest actor joins, so each can ask the others what they consume.
pub const GROUP: &str = "storecast.ingest";

/// What one ingest node consumes and sees of the consumer group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestStatus {
    pub node: String,
    /// Partitions this node consumes.
    pub assigned: Vec<i32>,
    /// Every partition of the topic with the group's lag on it, as last seen.
    pub lag: Vec<(i32, i64)>,
    /// Partitions no live ingest node consumes, as last seen.
    pub unassigned: Vec<i32>,
    /// Unassigned partitions with messages waiting, and for how long.
    pub stalled: Vec<i32>,
    pub stalled_for_ms: u64,
    /// Why the last look at the group failed (the broker away, say).
    pub error: Option<String>,
}

crate::bincode_message_payload!(IngestStatus);

impl IngestStatus {
    /// Messages waiting over the whole topic.
    pub fn total_lag(&self) -> i64 {
        self.lag.iter().map(|(_, lag)| lag).sum()
    }
}

/// Messages of the ingest actor; `Status` crosses the network.
#[derive(RactorClusterMessage)]
pub enum IngestMessage {
    /// What this node consumes and sees of the group.
    #[rpc]
    Status(RpcReplyPort<IngestStatus>),
    /// Timer: look at whether every partition has a consumer.
    Look,
    /// A look's findings (sent to itself).
    Looked(GroupSeen),
}

/// What one look found: this node's partitions, every partition's lag, and what the other
/// live ingest nodes said they consume; or why it could not look.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSeen {
    pub assigned: Vec<i32>,
    pub lag: Vec<(i32, i64)>,
    pub others: Vec<IngestStatus>,
    pub error: Option<String>,
}

crate::bincode_message_payload!(GroupSeen);

pub struct Ingest;

pub struct IngestState {
    consumer: Background,
    /// Watches the group's coverage (none when no broker is configured).
    coverage: Option<CoverageWatch>,
}

/// Longest a batch's write retries before the batch is given up and read again.
const GIVE_UP_AFTER: Duration = Duration::from_secs(240);

/// Longest the consumer waits for a message before looking at its stop signal again.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// How often an ingest node looks at whether every partition has a consumer.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Longest each request of a look (metadata, offsets, watermarks) may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);

impl Actor for Ingest {
    type Msg = IngestMessage;
    type State = IngestState;
    type Arguments = IngestArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: IngestArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let settings = arguments.settings;
        if settings.brokers.trim().is_empty() {
            tracing::info!("ingest: no brokers configured (ingest.brokers); consuming nothing");
            return Ok(IngestState {
                consumer: Background::idle(),
                coverage: None,
            });
        }
        let (consumer, rebalances) =
            kafka::consumer(&settings.brokers, &settings.group, settings.session_timeout)?;
        consumer.subscribe(&[settings.topic.as_str()])?;
        tracing::info!(brokers = %settings.brokers, topic = %settings.topic, group = %settings.group, "ingest consuming");
        let consumer = Arc::new(consumer);
        pg::join(GROUP.to_string(), vec![myself.get_cell()]);
        myself.send_interval(LOOK_EVERY, || IngestMessage::Look);
        let coverage = CoverageWatch {
            consumer: Arc::clone(&consumer),
            topic: settings.topic.clone(),
            session_timeout: settings.session_timeout,
            node: arguments.node.clone(),
            client: arguments.client.clone(),
            status: arguments.status,
            coverage: Coverage::default(),
            last: IngestStatus {
                node: arguments.node.clone(),
                ..IngestStatus::default()
            },
            looking: false,
        };
        let (database, client) = (arguments.database, arguments.client);
        let consumer = Background::spawn(|stopped| {
            consume(consumer, rebalances, database, client, settings, stopped)
        });
        Ok(IngestState {
            consumer,
            coverage: Some(coverage),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            IngestMessage::Status(reply) => {
                let status = state
                    .coverage
                    .as_ref()
                    .map(|coverage| coverage.last.clone())
                    .unwrap_or_default();
                let _ = reply.send(status);
            }
            IngestMessage::Look => {
                if let Some(coverage) = &mut state.coverage {
                    coverage.start_look(&myself);
                }
            }
            IngestMessage::Looked(seen) => {
                if let Some(coverage) = &mut state.coverage {
                    coverage.judge(seen);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(coverage) = &state.coverage {
            coverage.status.set_ingest(None);
        }
        // The loop stores and commits the batch it holds, then leaves the group.
        state.consumer.stop().await;
        Ok(())
    }
}

/// The ingest node's watch over the group: every partition consumed by a live node, or a
/// rejoin once partitions stay stalled too long (see `crate::ingest::coverage`).
struct CoverageWatch {
    consumer: Arc<IngestConsumer>,
    topic: String,
    session_timeout: Duration,
    node: String,
    client: ClusterClient,
    status: NodeStatus,
    coverage: Coverage,
    /// What the last look found, as `Status` answers it.
    last: IngestStatus,
    /// A look runs (in a task of its own, so `Status` is answered meanwhile: two nodes
    /// looking at once each ask the other).
    looking: bool,
}

impl CoverageWatch {
    /// Starts a look unless one runs; it reports as `Looked`.
    fn start_look(&mut self, myself: &ActorRef<IngestMessage>) {
        if self.looking {
            return;
        }
        self.looking = true;
        let (consumer, topic) = (Arc::clone(&self.consumer), self.topic.clone());
        let (client, myself) = (self.client.clone(), myself.clone());
        tokio::spawn(async move {
            let looked = tokio::task::spawn_blocking(move || {
                kafka::look_at_group(&consumer, &topic, LOOK_TIMEOUT)
            })
            .await;
            let seen = match looked {
                Ok(Ok(look)) => GroupSeen {
                    assigned: look.assigned.into_iter().collect(),
                    lag: look
                        .partitions
                        .iter()
                        .map(|partition| (partition.partition, partition.lag))
                        .collect(),
                    others: client.ingest_statuses(Some(myself.get_id())).await,
                    error: None,
                },
                Ok(Err(error)) => GroupSeen {
                    error: Some(error.to_string()),
                    ..GroupSeen::default()
                },
                Err(error) => GroupSeen {
                    error: Some(error.to_string()),
                    ..GroupSeen::default()
                },
            };
            let _ = myself.cast(IngestMessage::Looked(seen));
        });
    }

    /// Judges a look: publishes what it found, warns of stalls, rejoins when due.
    fn judge(&mut self, seen: GroupSeen) {
        self.looking = false;
        if let Some(error) = seen.error {
            return self.cannot_look(error);
        }
        let mut consumed: BTreeSet<i32> = seen.assigned.iter().copied().collect();
        let mut names: Vec<&str> = vec![self.node.as_str()];
        for other in &seen.others {
            consumed.extend(&other.assigned);
            names.push(other.node.as_str());
        }
        names.sort_unstable();
        let rank = names
            .iter()
            .position(|name| *name == self.node)
            .unwrap_or_default();
        let partitions: Vec<PartitionLag> = seen
            .lag
            .iter()
            .map(|(partition, lag)| PartitionLag {
                partition: *partition,
                lag: *lag,
            })
            .collect();
        let was_stalled = std::mem::take(&mut self.last.stalled);
        let verdict = self.coverage.look(
            Instant::now(),
            &partitions,
            &consumed,
            coverage::patience(self.session_timeout, rank),
        );
        self.last = IngestStatus {
            node: self.node.clone(),
            assigned: seen.assigned,
            lag: seen.lag,
            unassigned: verdict.unassigned.clone(),
            stalled: verdict.stalled.clone(),
            stalled_for_ms: verdict.stalled_for.as_millis() as u64,
            error: None,
        };
        self.publish();
        if !verdict.stalled.is_empty() && verdict.stalled != was_stalled {
            tracing::warn!(
                partitions = ?verdict.stalled,
                lag = self.last.total_lag(),
                "ingest partitions with messages waiting have no live consumer"
            );
        } else if verdict.stalled.is_empty() && !was_stalled.is_empty() {
            tracing::info!("every ingest partition has a live consumer again");
        }
        if verdict.rejoin {
            tracing::warn!(
                partitions = ?verdict.stalled,
                stalled_s = verdict.stalled_for.as_secs(),
                "ingest partitions stayed without a consumer; leaving the group and joining again to start a new generation"
            );
            metrics::metrics().ingest_rejoins.inc();
            let (consumer, topic) = (Arc::clone(&self.consumer), self.topic.clone());
            tokio::task::spawn_blocking(move || {
                consumer.unsubscribe();
                if let Err(error) = consumer.subscribe(&[topic.as_str()]) {
                    tracing::error!(%error, "ingest cannot join the group again");
                }
            });
        }
    }

    fn cannot_look(&mut self, reason: String) {
        if self.last.error.is_none() {
            tracing::warn!(%reason, "ingest cannot look at its consumer group");
        }
        self.last.error = Some(reason);
        self.publish();
    }

    /// Metrics and readiness from the last look.
    fn publish(&self) {
        let recorded = metrics::metrics();
        recorded
            .ingest_unassigned_partitions
            .set(self.last.unassigned.len() as i64);
        for (partition, lag) in &self.last.lag {
            recorded
                .ingest_partition_lag
                .get_or_create(&metrics::PartitionLabels {
                    topic: self.topic.clone(),
                    partition: *partition,
                })
                .set(*lag);
        }
        let last = &self.last;
        let detail = match (&last.error, last.stalled.is_empty()) {
            (Some(error), _) => format!("cannot look at the consumer group: {error}"),
            (None, true) => format!(
                "consuming partitions {:?}; {} messages waiting in the group",
                last.assigned,
                last.total_lag()
            ),
            (None, false) => format!(
                "stalled: partitions {:?} have had no live consumer for {} s with {} messages waiting; consuming {:?}",
                last.stalled,
                last.stalled_for_ms / 1000,
                last.total_lag(),
                last.assigned
            ),
        };
        self.status.set_ingest(Some(IngestHealth {
            stalled: !last.stalled.is_empty(),
            detail,
        }));
    }
}

/// The consumer loop, until asked to stop: gather a batch while the previous one is stored
/// and committed (one write in flight at a time, so offsets commit in order).
async fn consume(
    consumer: Arc<IngestConsumer>,
    rebalances: RebalanceWatch,
    database: Database,
    client: ClusterClient,
    settings: IngestSettings,
    mut stopped: watch::Receiver<bool>,
) {
    let mut known = database.known_stores().await.unwrap_or_default();
    let mut writing: Option<JoinHandle<Written>> = None;
    loop {
        let (batch, generation, stopping) =
            gather(&consumer, &rebalances, &settings, &known, &mut stopped).await;
        let previous = finish(writing.take()).await;
        if let Some(refreshed) = previous.refreshed {
            known = refreshed;
        }
        if !previous.settled {
            // The batch before this one is neither stored nor handed over: nothing after it
            // may commit offsets past it. Read both again from the committed offsets.
            if stopping || *stopped.borrow() {
                consumer.unsubscribe();
                tracing::info!("ingest stopped; its last batches are read again after restart");
                return;
            }
            tracing::warn!(
                "an ingest batch was not stored; reading again from the committed offsets"
            );
            consumer.unsubscribe();
            if let Err(error) = consumer.subscribe(&[settings.topic.as_str()]) {
                tracing::error!(%error, "ingest cannot subscribe again; consuming nothing");
                return;
            }
            continue;
        }
        if rebalances.generation() != generation {
            if !batch.is_empty() {
                tracing::debug!(
                    messages = batch.len(),
                    "dropping a batch gathered across a rebalance"
                );
            }
        } else if !batch.is_empty() {
            let write = Write {
                consumer: consumer.clone(),
                rebalances: rebalances.clone(),
                database: database.clone(),
                client: client.clone(),
                settings: settings.clone(),
                known: known.clone(),
                stopped: stopped.clone(),
            };
            let span = batch_span(&batch);
            writing = Some(tokio::spawn(
                write.store_and_commit(batch, generation).instrument(span),
            ));
        }
        if stopping || *stopped.borrow() {
            finish(writing.take()).await;
            consumer.unsubscribe();
            tracing::info!("ingest stopped");
            return;
        }
    }
}

/// How a batch's write ended.
#[derive(Debug, Default)]
struct Written {
    /// Stored (and its offsets committed, or left for a replay that changes nothing), or
    /// dropped because its partitions moved (their next owner reads it). False when it was
    /// given up, so later batches must not commit past it.
    settled: bool,
    /// The known stores, when the write read them again.
    refreshed: Option<BTreeSet<u32>>,
}

/// Waits for a batch's write (none: settled).
async fn finish(writing: Option<JoinHandle<Written>>) -> Written {
    let Some(writing) = writing else {
        return Written {
            settled: true,
            refreshed: None,
        };
    };
    writing.await.unwrap_or_else(|error| {
        tracing::error!(%error, "an ingest batch write failed");
        Written::default()
    })
}

/// Gathers one batch; returns it, the rebalance generation its messages belong to, and
/// whether a stop was asked for meanwhile. Messages from before a rebalance are dropped as
/// soon as one from after it arrives: the new assignment reads them again from the committed
/// offsets, and keeping them would only delay the batch.
async fn gather(
    consumer: &IngestConsumer,
    rebalances: &RebalanceWatch,
    settings: &IngestSettings,
    known: &BTreeSet<u32>,
    stopped: &mut watch::Receiver<bool>,
) -> (Batch, u64, bool) {
    let mut batch = Batch::default();
    let mut generation = rebalances.generation();
    let mut deadline: Option<Instant> = None;
    loop {
        let wait = deadline.map_or(IDLE_POLL, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = stopped.changed() => return (batch, generation, true),
            received = tokio::time::timeout(wait, consumer.recv()) => match received {
                Err(_) if batch.is_empty() => continue,
                Err(_) => return (batch, generation, false),
                Ok(Err(error)) => {
                    // librdkafka reconnects by itself.
                    tracing::debug!(%error, "ingest consumer error");
                }
                Ok(Ok(message)) => {
                    let now = rebalances.generation();
                    if now != generation {
                        if !batch.is_empty() {
                            tracing::debug!(messages = batch.len(), "dropping messages gathered before a rebalance");
                        }
                        batch = Batch::default();
                        deadline = None;
                        generation = now;
                    }
                    batch.add(
                        (message.topic(), message.partition(), message.offset()),
                        message.payload(),
                        settings.reject_payload_bytes,
                        known,
                    );
                    deadline.get_or_insert_with(|| Instant::now() + settings.batch_wait);
                    if batch.len() >= settings.batch_rows {
                        return (batch, generation, false);
                    }
                }
            },
        }
    }
}

/// The span of one batch: its partitions, the offsets it commits and its rows (a trace of
/// its own: the messages carry no trace context).
fn batch_span(batch: &Batch) -> tracing::Span {
    let partitions: Vec<String> = batch
        .next_offsets
        .keys()
        .map(|(_, partition)| partition.to_string())
        .collect();
    let offsets: Vec<String> = batch
        .next_offsets
        .iter()
        .map(|((_, partition), next)| format!("{partition}:{next}"))
        .collect();
    let first_offsets: Vec<String> = batch
        .first_offsets
        .iter()
        .map(|((_, partition), first)| format!("{partition}:{first}"))
        .collect();
    tracing::info_span!(
        parent: None,
        "ingest batch",
        messaging.system = "kafka",
        partitions = %partitions.join(","),
        next_offsets = %offsets.join(","),
        first_offsets = %first_offsets.join(","),
        rows = batch.sales.len(),
        rejects = batch.rejects.len(),
    )
}

/// What storing one batch needs, owned, as it runs in a task of its own.
struct Write {
    consumer: Arc<IngestConsumer>,
    rebalances: RebalanceWatch,
    database: Database,
    client: ClusterClient,
    settings: IngestSettings,
    known: BTreeSet<u32>,
    stopped: watch::Receiver<bool>,
}

impl Write {
    /// Stores a batch gathered in rebalance `generation` (retrying while the database is
    /// away) and commits its offsets. A rebalance first makes it give the batch up: its
    /// partitions' next owner reads it again. Returns the known stores if it read them again.
    async fn store_and_commit(mut self, mut batch: Batch, generation: u64) -> Written {
        let mut refreshed = None;
        let mut delay = self.settings.retry_min;
        let mut failures = 0u32;
        let started = Instant::now();
        let written = loop {
            if self.rebalances.generation() != generation {
                tracing::debug!(
                    messages = batch.len(),
                    "partitions moved before the batch was stored; dropping it"
                );
                return Written {
                    settled: true,
                    refreshed,
                };
            }
            let attempt = async {
                if !batch.unknown.is_empty() {
                    // Stores may have been loaded since the list was read.
                    self.known = self.database.known_stores().await?;
                    batch.resolve_unknown(&self.known);
                    refreshed = Some(self.known.clone());
                }
                self.database
                    .write_ingest_batch_gated(&batch.sales, &batch.origins, &batch.rejects, || {
                        self.rebalances.commit_gate(generation)
                    })
                    .await
            };
            match attempt.await {
                Ok(Some(written)) => break written,
                Ok(None) => continue, // a rebalance: the loop's first check drops the batch
                Err(error) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(%error, messages = batch.len(), "cannot store an ingest batch; retrying with backoff, nothing is committed meanwhile");
                    }
                    if *self.stopped.borrow() && failures >= 3 {
                        tracing::warn!(
                            messages = batch.len(),
                            "stopping with a batch not stored: it is read again after restart"
                        );
                        return Written {
                            settled: false,
                            refreshed,
                        };
                    }
                    if started.elapsed() >= GIVE_UP_AFTER {
                        // The consumer is not polled while the loop waits for this write, and
                        // a member not polled for librdkafka's `max.poll.interval.ms` (300 s)
                        // leaves the group unnoticed by the commit gate. Give the batch up
                        // before that: the loop joins again and reads it from the committed
                        // offsets.
                        tracing::warn!(
                            messages = batch.len(),
                            "ingest batch still not stored; reading it again from the committed offsets"
                        );
                        return Written {
                            settled: false,
                            refreshed,
                        };
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.settings.retry_max);
                }
            }
        };
        if failures > 0 {
            tracing::info!(
                attempts = failures + 1,
                "ingest batch stored after the database came back"
            );
        }
        let stored = started.elapsed();
        self.commit_offsets(&batch).await;
        let recorded = metrics::metrics();
        let refused = written.refused as usize;
        if refused > 0 {
            tracing::warn!(
                refused,
                "the database refused some sales of a batch; they are in ingest_rejects with its reasons, the others landed"
            );
        }
        for (outcome, count) in [
            ("accepted", batch.sales.len().saturating_sub(refused)),
            ("rejected", batch.rejects.len() + refused),
        ] {
            recorded
                .ingest_messages
                .get_or_create(&metrics::OutcomeLabels::new(outcome))
                .inc_by(count as u64);
        }
        recorded
            .ingest_batch_duration
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            rows = written.rows,
            rejects = written.rejects,
            copied = written.copied,
            store_ms = stored.as_millis() as u64,
            offsets_ms = (started.elapsed() - stored).as_millis() as u64,
            "ingest batch stored and committed"
        );
        self.client.data_arrived(&batch.stores_by_product());
        Written {
            settled: true,
            refreshed,
        }
    }

    /// Commits the batch's offsets (a blocking call, so off the runtime's workers).
    async fn commit_offsets(&self, batch: &Batch) {
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &batch.next_offsets {
            if let Err(error) =
                offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))
            {
                tracing::warn!(%error, "cannot name an offset to commit");
            }
        }
        let consumer = self.consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync)).await;
        match committed {
            Ok(Ok(())) => {}
            // The rows are stored; whoever reads them again writes the same rows.
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot commit ingest offsets; the batch will be read again")
            }
            Err(error) => tracing::warn!(%error, "the ingest offset commit failed"),
        }
    }
}
