//! The actors of a node, one file each, wiring the libraries together.
//!
//! - [`node`]: the node supervisor: the cluster transport and the role actors below it;
//! - [`membership`]: heartbeats, the failure detector, reconnection, the live member view.
//!
//! The role actors (ingest, scheduler, model hosts, forecaster, gateway) join as their issues
//! are built.

pub mod membership;
pub mod node;
