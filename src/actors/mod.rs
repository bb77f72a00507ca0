//! The actors of a node, one file each, wiring the libraries together, and the one client
//! through which anything reaches another node.
//!
//! - [`client`]: the cluster client (not an actor): where a series lives, how a node is
//!   reached, retrain and train-all jobs;
//! - [`node`]: the node supervisor: the cluster transport and the role actors below it;
//! - [`membership`]: heartbeats, the failure detector, reconnection, the live member view;
//! - [`model`]: one actor per series: train (single flight), forecast, info;
//! - [`model_host`]: the model actors of the series placed on this node, and routing to them;
//! - [`scheduler`]: the cluster singleton that runs train-all jobs;
//! - [`forecaster`]: batch forecasts, fanned out to the model actors and written in bulk;
//! - [`ingest`]: the Kafka consumer-group member that stores sale messages in batches;
//! - [`gateway`]: runs the HTTP gateway's server, handed in by `crate::web`;
//! - [`background`]: the stoppable task an actor runs beside its mailbox.

pub mod background;
pub mod client;
pub mod forecaster;
pub mod gateway;
pub mod ingest;
pub mod membership;
pub mod model;
pub mod model_host;
pub mod node;
pub mod scheduler;
