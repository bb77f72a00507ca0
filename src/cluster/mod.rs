//! The cluster: how nodes find each other and which node owns what.
//!
//! - [`codec`]: how message payloads cross the network (serde + bincode);
//! - [`member`]: who a node is (name, address, roles) and the live member view;
//! - [`placement`]: the owner of every series among the live model hosts, a pure function
//!   of the member view (bounded-load rendezvous hashing);
//! - [`transport`]: cluster connections, accepted and dialled, each handshake on its own
//!   under a time limit;
//! - [`tls`]: mutual TLS between nodes (rustls), when configured.
//!
//! The actors that keep the view live are in `crate::actors::membership`.

pub mod codec;
pub mod member;
pub mod placement;
pub mod tls;
pub mod transport;
