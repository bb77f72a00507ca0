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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, pg};
use ractor_cluster::RactorMessage;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::background::Background;
use super::model_host::{self, ModelHostMessage};
use crate::ingest::batch::Batch;
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
}

#[derive(RactorMessage)]
pub enum IngestMessage {}

pub struct Ingest;

pub struct IngestState {
    consumer: Background,
}

/// Longest a batch's write retries before the batch is given up and read again.
const GIVE_UP_AFTER: Duration = Duration::from_secs(240);

/// Longest the consumer waits for a message before looking at its stop signal again.
const IDLE_POLL: Duration = Duration::from_millis(500);

impl Actor for Ingest {
    type Msg = IngestMessage;
    type State = IngestState;
    type Arguments = IngestArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        arguments: IngestArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let settings = arguments.settings;
        if settings.brokers.trim().is_empty() {
            tracing::info!("ingest: no brokers configured (ingest.brokers); consuming nothing");
            return Ok(IngestState {
                consumer: Background::idle(),
            });
        }
        let (consumer, rebalances) =
            kafka::consumer(&settings.brokers, &settings.group, settings.session_timeout)?;
        consumer.subscribe(&[settings.topic.as_str()])?;
        tracing::info!(brokers = %settings.brokers, topic = %settings.topic, group = %settings.group, "ingest consuming");
        let database = arguments.database;
        let consumer =
            Background::spawn(|stopped| consume(consumer, rebalances, database, settings, stopped));
        Ok(IngestState { consumer })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // The loop stores and commits the batch it holds, then leaves the group.
        state.consumer.stop().await;
        Ok(())
    }
}

/// The consumer loop, until asked to stop: gather a batch while the previous one is stored
/// and committed (one write in flight at a time, so offsets commit in order).
async fn consume(
    consumer: IngestConsumer,
    rebalances: RebalanceWatch,
    database: Database,
    settings: IngestSettings,
    mut stopped: watch::Receiver<bool>,
) {
    let consumer = Arc::new(consumer);
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
                settings: settings.clone(),
                known: known.clone(),
                stopped: stopped.clone(),
            };
            writing = Some(tokio::spawn(write.store_and_commit(batch, generation)));
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

/// What storing one batch needs, owned, as it runs in a task of its own.
struct Write {
    consumer: Arc<IngestConsumer>,
    rebalances: RebalanceWatch,
    database: Database,
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
                    .write_ingest_batch_gated(&batch.sales, &batch.rejects, || {
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
        let accepted = batch.sales.len() as f64;
        metrics::add(metrics::INGEST_ROWS, &[("outcome", "accepted")], accepted);
        metrics::add(
            metrics::INGEST_ROWS,
            &[("outcome", "rejected")],
            batch.rejects.len() as f64,
        );
        tracing::debug!(
            rows = written.rows,
            rejects = written.rejects,
            copied = written.copied,
            store_ms = stored.as_millis() as u64,
            offsets_ms = (started.elapsed() - stored).as_millis() as u64,
            "ingest batch stored and committed"
        );
        notify_model_hosts(&batch);
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

/// Tells every model host which of its series got new data (a cheap cast; hosts ignore the
/// series they do not run).
fn notify_model_hosts(batch: &Batch) {
    let by_product = batch.stores_by_product();
    if by_product.is_empty() {
        return;
    }
    for group in pg::which_groups() {
        if !group.starts_with(model_host::GROUP_PREFIX) {
            continue;
        }
        for host in pg::get_members(&group) {
            let host: ActorRef<ModelHostMessage> = host.into();
            for (product, stores) in &by_product {
                let stores: Vec<u32> = stores.iter().copied().collect();
                let _ = host.cast(ModelHostMessage::DataArrived(stores, product.clone()));
            }
        }
    }
}
