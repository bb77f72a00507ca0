//! Streaming ingest: sale messages from Kafka into the database.
//!
//! - [`message`]: the reference stack's JSON sale message, parsed and checked (pure);
//! - [`batch`]: consumed messages gathered into a batch: sales, rejects, offsets to commit;
//! - [`kafka`]: the Kafka clients (consumer, producer, topic creation) as storecast sets them up;
//! - [`coverage`]: whether every partition has a live consumer, and when to rejoin (pure);
//! - [`producer`]: the messages `storecast produce` publishes (pure).
//!
//! The ingest actors that consume the topic live in `crate::actors`.

pub mod batch;
pub mod coverage;
pub mod kafka;
pub mod message;
pub mod producer;
