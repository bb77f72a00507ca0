//! storecast: retail sales forecasting as one binary forming one cluster.
//!
//! # Layout
//! - [`actors`]: the node's actors (supervisor, membership, model hosts, scheduler,
//!   forecaster, ingest, gateway), one file each, and the cluster client through which
//!   everything reaches another node;
//! - [`cli`]: the `storecast` command line, one file per subcommand;
//! - [`cluster`]: who is in the cluster and where series live (placement, pure);
//! - [`config`]: layered configuration (defaults < file < `STORECAST_*` env < flags);
//! - [`dataset`]: Kaggle's Rossmann files, the loader's window, the synthetic generator;
//! - [`forecast`]: the forecast engine (Prophet fits with a native optimizer), a pure library;
//! - [`ingest`]: the sale messages streamed through Kafka, parsed and checked (a rejected
//!   message included);
//! - [`metrics`]: the process's metrics (prometheus-client), rendered as OpenMetrics text;
//! - [`random`]: a seeded generator whose output never changes (synthetic data, intervals);
//! - [`schedule`]: when the weekly job fires (pure time arithmetic);
//! - [`store`]: the database (PostgreSQL or SQLite) and all SQL;
//! - [`telemetry`]: logs (text or JSON) and OpenTelemetry traces exported over OTLP;
//! - [`training`]: training series from the database: fit on low-priority fit threads, register,
//!   forecast;
//! - [`web`]: the HTTP gateway: routes, the page, the API, and its server.
//!
//! Dependencies point one way (`tests/module_cycles.rs` checks there is no cycle): `cli` uses
//! everything; `web` reaches the cluster through `actors` (its cluster client) and reads
//! `store`; `actors` wire `cluster`, `training`, `store` and `ingest` together; `training`
//! wires `forecast` to `store`; `store` knows the row, metric and message types of
//! `dataset`, `forecast` and `ingest`, and `config`'s database settings; `ingest` and
//! `forecast` know `dataset`'s types; `config` knows `forecast`'s profiles and `schedule`.

pub mod actors;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dataset;
pub mod forecast;
pub mod ingest;
pub mod metrics;
pub mod random;
pub mod schedule;
pub mod store;
pub mod telemetry;
pub mod training;
pub mod web;
