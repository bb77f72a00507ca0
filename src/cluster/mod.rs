//! The cluster: how nodes find each other and which node owns what.
//!
//! - [`placement`]: the owner of every series among the live model hosts, a pure function
//!   of the member view (bounded-load rendezvous hashing).
//!
//! Membership, the failure detector and the scheduler lease join this module with the
//! `storecast node` command (issue 4).

pub mod placement;
