//! The actors of a node, one file each, wiring the libraries together.
//!
//! - [`node`]: the node supervisor: the cluster transport and the role actors below it;
//! - [`membership`]: heartbeats, the failure detector, reconnection, the live member view;
//! - [`model`]: one actor per series: train (single flight), forecast, info.
//!
//! The other role actors (model host, ingest, scheduler, forecaster, gateway) join as their
//! issues are built.

pub mod membership;
pub mod model;
pub mod node;
