//! Streaming ingest: sale messages from Kafka into the database.
//!
//! - [`message`]: the reference stack's JSON sale message, parsed and checked (pure).
//!
//! The ingest actors that consume the topic live in `crate::actors`.

pub mod message;
