//! The Kafka clients as storecast sets them up: the ingest consumer (a consumer-group member
//! that commits offsets by hand, only after its batch is stored), the producer, and topic
//! creation. Only librdkafka settings live here; what is done with messages is elsewhere.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::RuntimeFlavor;

use super::coverage::PartitionLag;
use crate::metrics;

/// Why a Kafka client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot create the Kafka {what} for {brokers}: {error}")]
    Client {
        what: &'static str,
        brokers: String,
        error: KafkaError,
    },
    #[error("cannot create topic {topic} on {brokers}: {reason}")]
    Topic {
        topic: String,
        brokers: String,
        reason: String,
    },
}

/// Counts partition revocations, so the ingest loop can tell that a rebalance happened while
/// it gathered or wrote a batch (and drop what it has not stored), and keeps a revocation from
/// completing while a batch's transaction commits.
///
/// Why the second part: the ingest loop writes one batch while it gathers the next, so a
/// rebalance can arrive mid-write. Were the write to commit after the partitions' next owner
/// wrote the same keys, an older value could overwrite a newer one. So a write commits only
/// through [`RebalanceWatch::commit_gate`] (refused once a revocation happened) and a
/// revocation waits for a commit already under way.
#[derive(Debug, Default, Clone)]
pub struct RebalanceWatch {
    revocations: Arc<AtomicU64>,
    committing: Arc<AtomicBool>,
}

/// Held while a batch's transaction commits; see [`RebalanceWatch::commit_gate`].
#[derive(Debug)]
pub struct CommitGate {
    committing: Arc<AtomicBool>,
}

impl Drop for CommitGate {
    fn drop(&mut self) {
        self.committing.store(false, Ordering::SeqCst);
    }
}

/// Longest a revocation waits for a batch's commit under way.
const REVOKE_WAITS_FOR_COMMIT: Duration = Duration::from_secs(30);

impl RebalanceWatch {
    /// Revocations so far.
    pub fn generation(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }

    /// Permission to commit a batch gathered in `generation`: `None` once a revocation
    /// happened since. While the gate is held, a revocation waits.
    pub fn commit_gate(&self, generation: u64) -> Option<CommitGate> {
        // Announce first, then check: with a revocation that counts first and then looks,
        // at least one of the two sees the other (both are SeqCst).
        self.committing.store(true, Ordering::SeqCst);
        let gate = CommitGate {
            committing: self.committing.clone(),
        };
        (self.generation() == generation).then_some(gate)
    }

    /// Counts a revocation, then waits for a commit already under way to finish.
    fn revoke(&self) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
        if !self.committing.load(Ordering::SeqCst) {
            return;
        }
        let wait = || {
            let deadline = Instant::now() + REVOKE_WAITS_FOR_COMMIT;
            while self.committing.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if self.committing.load(Ordering::SeqCst) {
                tracing::warn!(
                    "an ingest batch is still committing after {REVOKE_WAITS_FOR_COMMIT:?}; \
                     giving its partitions up anyway"
                );
            }
        };
        // The callback runs inside the consumer's poll, on a runtime worker: let the other
        // workers run the commit meanwhile.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }
}

/// The ingest consumer's context: logs rebalances, counts revocations, and publishes the
/// consumer's lag per partition from librdkafka's statistics.
pub struct IngestContext {
    watch: RebalanceWatch,
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        let lag = &metrics::metrics().ingest_consumer_lag;
        // Partitions this member no longer fetches drop out of the gauge.
        lag.clear();
        for (topic, stats) in &statistics.topics {
            for partition in stats.partitions.values() {
                // -1 is librdkafka's internal partition; a lag of -1 is not known yet.
                if partition.partition < 0 || partition.consumer_lag < 0 {
                    continue;
                }
                let labels = metrics::PartitionLabels {
                    topic: topic.clone(),
                    partition: partition.partition,
                };
                lag.get_or_create(&labels).set(partition.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Which partitions, as "0,3": tells an operator (and a test) where each key went.
        let ids = |partitions: &rdkafka::TopicPartitionList| {
            let ids: Vec<String> = partitions
                .elements()
                .iter()
                .map(|element| element.partition().to_string())
                .collect();
            ids.join(",")
        };
        match rebalance {
            Rebalance::Revoke(partitions) => {
                self.watch.revoke();
                tracing::info!(
                    partitions = partitions.count(),
                    ids = %ids(partitions),
                    "ingest partitions revoked; batches not yet stored are dropped"
                );
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(
                    partitions = partitions.count(),
                    ids = %ids(partitions),
                    "ingest partitions assigned"
                );
            }
            Rebalance::Error(error) => tracing::warn!(%error, "ingest rebalance error"),
        }
    }
}

pub type IngestConsumer = StreamConsumer<IngestContext>;

/// Settings shared by every client: IPv4 loopback names resolve the same way everywhere.
/// `STORECAST_KAFKA_DEBUG` (librdkafka's `debug` contexts, such as `cgrp,topic`) turns on
/// librdkafka's debug log, for investigating a broker's behaviour.
fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .set("log_level", "4");
    if let Some(debug) = std::env::var("STORECAST_KAFKA_DEBUG")
        .ok()
        .filter(|debug| !debug.trim().is_empty())
    {
        config.set("debug", debug.trim()).set("log_level", "7");
    }
    config
}

/// How long the broker may hold a fetch for more data. librdkafka's 500 ms default is most
/// of a row's latency when the topic is quiet, and caps a busy consumer's rate (measured in
/// BENCHMARKS.md).
pub const FETCH_WAIT_MAX_MS: u32 = 100;

/// How long librdkafka waits before fetching again for a partition whose local queue is over
/// its thresholds. Its 1,000 ms default made a busy consumer idle most of the time: measured
/// on the test broker, 150,000 messages/s with it and 665,000 with 10 ms.
pub const FETCH_QUEUE_BACKOFF_MS: u32 = 10;

/// How often librdkafka reports the consumer's statistics (its lag per partition).
const STATISTICS_INTERVAL_MS: u32 = 5_000;

/// A consumer-group member of `group`: offsets are committed by hand only, and a new group
/// starts from the earliest message.
pub fn consumer(
    brokers: &str,
    group: &str,
    session_timeout: Duration,
) -> Result<(IngestConsumer, RebalanceWatch), KafkaSetupError> {
    let watch = RebalanceWatch::default();
    let context = IngestContext {
        watch: watch.clone(),
    };
    let heartbeat = (session_timeout / 4).max(Duration::from_millis(100));
    let consumer = base_config(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            session_timeout.as_millis().to_string(),
        )
        .set("heartbeat.interval.ms", heartbeat.as_millis().to_string())
        .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS.to_string())
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.to_string())
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string())
        .create_with_context(context)
        .map_err(|error| KafkaSetupError::Client {
            what: "consumer",
            brokers: brokers.to_string(),
            error,
        })?;
    Ok((consumer, watch))
}

/// The group as one ingest member sees it: its own partitions, and every partition of the
/// topic with the group's lag on it.
#[derive(Debug, Clone, Default)]
pub struct GroupLook {
    pub assigned: BTreeSet<i32>,
    pub partitions: Vec<PartitionLag>,
}

/// Looks at the group from `consumer` (blocking: metadata, committed offsets and
/// watermarks are requests to the broker, each within `timeout`).
pub fn look_at_group(
    consumer: &IngestConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<GroupLook, KafkaError> {
    let assigned = consumer
        .assignment()?
        .elements_for_topic(topic)
        .iter()
        .map(|element| element.partition())
        .collect();
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic)
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect();
    let mut wanted = TopicPartitionList::new();
    for id in &ids {
        wanted.add_partition(topic, *id);
    }
    let committed = consumer.committed_offsets(wanted, timeout)?;
    let mut partitions = Vec::with_capacity(ids.len());
    for id in ids {
        let (low, high) = consumer.fetch_watermarks(topic, id, timeout)?;
        let from = match committed
            .find_partition(topic, id)
            .map(|element| element.offset())
        {
            Some(Offset::Offset(offset)) => offset.max(low),
            _ => low,
        };
        partitions.push(PartitionLag {
            partition: id,
            lag: (high - from).max(0),
        });
    }
    Ok(GroupLook {
        assigned,
        partitions,
    })
}

/// A producer that waits for every replica and never duplicates a message on retry.
pub fn producer(brokers: &str) -> Result<FutureProducer, KafkaSetupError> {
    base_config(brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .map_err(|error| KafkaSetupError::Client {
            what: "producer",
            brokers: brokers.to_string(),
            error,
        })
}

/// Creates `topic` with `partitions` unless it exists. Returns whether it was created.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: u32,
) -> Result<bool, KafkaSetupError> {
    let fail = |reason: String| KafkaSetupError::Topic {
        topic: topic.to_string(),
        brokers: brokers.to_string(),
        reason,
    };
    let admin: AdminClient<DefaultClientContext> =
        base_config(brokers)
            .create()
            .map_err(|error| KafkaSetupError::Client {
                what: "admin client",
                brokers: brokers.to_string(),
                error,
            })?;
    let partitions =
        i32::try_from(partitions).map_err(|_| fail("too many partitions".to_string()))?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|error| fail(error.to_string()))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(fail(code.to_string())),
        None => Err(fail("the broker gave no answer".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_refuses_later_commits_and_waits_for_one_under_way() {
        let watch = RebalanceWatch::default();
        let generation = watch.generation();
        let gate = watch.commit_gate(generation).expect("no revocation yet");
        let revoking = {
            let watch = watch.clone();
            std::thread::spawn(move || watch.revoke())
        };
        // Nothing to await here: the point is that the revocation does not finish.
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !revoking.is_finished(),
            "the revocation waits for the commit"
        );
        drop(gate);
        revoking.join().unwrap();
        assert!(
            watch.commit_gate(generation).is_none(),
            "a batch of the old generation may not commit"
        );
        assert!(watch.commit_gate(watch.generation()).is_some());
        // A refused gate leaves nothing held: the next revocation does not wait.
        let _ = watch.commit_gate(generation);
        watch.revoke();
    }
}
