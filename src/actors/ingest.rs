//! The ingest actor: one per node with the `ingest` role. It runs a Kafka consumer-group
//! member on the sales topic (Kafka spreads the partitions over the ingest nodes) in a task of
//! its own. Steps, per batch:
//! 1. gather messages until `ingest.batch_rows` or `ingest.batch_ms` after the first;
//! 2. parse each: a sale of a known store, or a reject with its reason;
//! 3. write sales (upsert by store, product, date) and rejects in one transaction, retrying
//!    with backoff while the database is away; nothing more is consumed meanwhile, which is the
//!    backpressure;
//! 4. commit the batch's offsets, only now: a crash before this replays the batch, and the
//!    upsert makes the replay change nothing;
//! 5. tell the model hosts which series got new data.
//!
//! A rebalance while a batch gathers drops the batch (it was not stored, so its offsets were
//! not committed: the partitions' next owner reads it again).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, pg};
use ractor_cluster::RactorMessage;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

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

/// The consumer loop: gather, store, commit, until asked to stop.
async fn consume(
    consumer: IngestConsumer,
    rebalances: RebalanceWatch,
    database: Database,
    settings: IngestSettings,
    mut stopped: watch::Receiver<bool>,
) {
    let mut known = database.known_stores().await.unwrap_or_default();
    loop {
        let (mut batch, generation, stopping) =
            gather(&consumer, &rebalances, &settings, &known, &mut stopped).await;
        if rebalances.generation() != generation {
            if !batch.is_empty() {
                tracing::debug!(
                    messages = batch.len(),
                    "dropping a batch gathered across a rebalance"
                );
            }
            continue;
        }
        if !batch.is_empty() {
            store_and_commit(
                &consumer,
                &database,
                &settings,
                &mut known,
                &mut batch,
                &mut stopped,
            )
            .await;
        }
        if stopping || *stopped.borrow() {
            consumer.unsubscribe();
            tracing::info!("ingest stopped");
            return;
        }
    }
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

/// Stores a batch (retrying while the database is away) and commits its offsets.
async fn store_and_commit(
    consumer: &IngestConsumer,
    database: &Database,
    settings: &IngestSettings,
    known: &mut BTreeSet<u32>,
    batch: &mut Batch,
    stopped: &mut watch::Receiver<bool>,
) {
    let mut delay = settings.retry_min;
    let mut failures = 0u32;
    let written = loop {
        let attempt = async {
            if !batch.unknown.is_empty() {
                // Stores may have been loaded since the list was read.
                *known = database.known_stores().await?;
                batch.resolve_unknown(known);
            }
            database
                .write_ingest_batch(&batch.sales, &batch.rejects)
                .await
        };
        match attempt.await {
            Ok(written) => break written,
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(%error, messages = batch.len(), "cannot store an ingest batch; retrying with backoff, nothing is committed meanwhile");
                }
                if *stopped.borrow() && failures >= 3 {
                    tracing::warn!(
                        messages = batch.len(),
                        "stopping with a batch not stored: it is read again after restart"
                    );
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(settings.retry_max);
            }
        }
    };
    if failures > 0 {
        tracing::info!(
            attempts = failures + 1,
            "ingest batch stored after the database came back"
        );
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), next) in &batch.next_offsets {
        if let Err(error) = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::warn!(%error, "cannot name an offset to commit");
        }
    }
    if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
        // The rows are stored; whoever reads them again writes the same rows.
        tracing::warn!(%error, "cannot commit ingest offsets; the batch will be read again");
    }
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
        "ingest batch stored and committed"
    );
    notify_model_hosts(batch);
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
