//! storecast: retail sales forecasting as one binary forming one cluster.
//!
//! # Layout
//! - [`actors`]: the node's actors (supervisor, membership, model hosts, scheduler,
//!   forecaster), one file each;
//! - [`cli`]: the `storecast` command line, one file per subcommand;
//! - [`cluster`]: who is in the cluster and where series live (placement, pure);
//! - [`config`]: layered configuration (defaults < file < `STORECAST_*` env < flags);
//! - [`dataset`]: Kaggle's Rossmann files, the loader's window, the synthetic generator;
//! - [`forecast`]: the forecast engine (Prophet fits with a native optimizer), a pure library;
//! - [`ingest`]: the sale messages streamed through Kafka, parsed and checked;
//! - [`metrics`]: process-wide gauges and counters in the Prometheus text format;
//! - [`random`]: a seeded generator whose output never changes (synthetic data, intervals);
//! - [`schedule`]: when the weekly job fires (pure time arithmetic);
//! - [`store`]: the database (PostgreSQL or SQLite) and all SQL;
//! - [`telemetry`]: logging to stderr;
//! - [`web`]: the HTTP gateway's routes (health, metrics, cluster view);
//! - [`training`]: training series from the database: fit on a bounded pool, register, forecast.
//!
//! Dependencies point one way: `cli` uses everything; `training` wires `forecast` to `store`;
//! `store` knows the row and metric types of `dataset` and `forecast`; `forecast` knows only
//! `dataset`'s types; `config` knows `forecast`'s profiles.

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
