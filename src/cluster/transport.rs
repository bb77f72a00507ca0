//! The cluster port's connections, both ways, each under a time limit.
//!
//! ractor_cluster's own listener (0.16.5, `net/listener.rs`) runs each TLS handshake inside its
//! accept loop with no time limit, so one connection that sends nothing stops a node from
//! accepting any peer; and a connection that never authenticates keeps its session forever,
//! whichever side opened it. storecast therefore opens and accepts cluster connections
//! itself, instead of patching the crate. Each connection, in a task of its own:
//! 1. finishes the TLS handshake (when TLS is on) within the handshake timeout;
//! 2. is handed to the node server (`NodeServerMessage::ConnectionOpened`), which runs
//!    ractor_cluster's cookie authentication as it would for its own connections;
//! 3. is closed if it has not authenticated by the same deadline (a duplicate of the
//!    socket's descriptor is kept for that: shutting it down ends the session's reads); one
//!    that closes before authenticating was refused for its cookie (ractor_cluster's own log
//!    says only "auth_fail"), and both ends say so.
//!
//! [`serve`] does this for every connection accepted on the cluster port, [`dial`] for one
//! connection to a peer. The node server still starts its own listener; it is bound to an
//! ephemeral loopback port that nobody is told about (see [`INTERNAL_LISTEN`]), and the port
//! in the node's connection string is set back to the real one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::{NetworkStream, NodeServerMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::cluster::tls;
use crate::metrics;

/// Where the node server's own, unused, listener binds: loopback, a port the OS picks.
pub const INTERNAL_LISTEN: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How often a dial looks whether its session has authenticated.
const AUTHENTICATION_POLL: Duration = Duration::from_millis(25);

/// Pause after an accept error (out of file descriptors, usually) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What every connection's task needs.
#[derive(Clone)]
pub struct Handshakes {
    pub node_server: ActorRef<NodeServerMessage>,
    /// The TLS acceptor, when nodes talk TLS.
    pub tls: Option<TlsAcceptor>,
    /// Longest a connection may take to finish TLS and authenticate.
    pub timeout: Duration,
}

/// Accepts connections on `listener` until `stop` turns true; each is handled on its own.
pub async fn serve(listener: TcpListener, handshakes: Handshakes, mut stop: watch::Receiver<bool>) {
    let mut last_error_logged: Option<Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(handshake(stream, peer, handshakes.clone()));
                }
                Err(error) => {
                    let quiet = last_error_logged
                        .is_some_and(|logged| logged.elapsed() < Duration::from_secs(60));
                    if !quiet {
                        tracing::warn!(%error, "cannot accept a cluster connection");
                        last_error_logged = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}

/// How a connection's handshake ended, as counted.
fn count(outcome: &str) {
    metrics::metrics()
        .cluster_handshakes
        .get_or_create(&metrics::OutcomeLabels::new(outcome))
        .inc();
}

/// One connection: TLS, hand-over and the authentication deadline.
async fn handshake(stream: TcpStream, peer: SocketAddr, handshakes: Handshakes) {
    let deadline = Instant::now() + handshakes.timeout;
    let (stream, watchdog) = match with_watchdog(stream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::warn!(%peer, %error, "cannot set up a cluster connection");
            return;
        }
    };
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(error) => {
            tracing::debug!(%peer, %error, "a cluster connection closed at once");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let network = match &handshakes.tls {
        None => NetworkStream::Raw {
            peer_addr: peer,
            local_addr: local,
            stream,
        },
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => NetworkStream::TlsServer {
                peer_addr: peer,
                local_addr: local,
                stream,
            },
            Ok(Err(error)) => {
                count("refused");
                tracing::warn!(%peer, %error, "cluster connection refused: the TLS handshake failed");
                return;
            }
            Err(_) => {
                count("timed_out");
                tracing::debug!(%peer, timeout_ms = handshakes.timeout.as_millis() as u64, "cluster connection closed: no TLS handshake in time");
                return;
            }
        },
    };
    let opened = NodeServerMessage::ConnectionOpened {
        stream: Box::new(network),
        is_server: true,
    };
    if handshakes.node_server.cast(opened).is_err() {
        return; // the node is stopping
    }
    match await_authentication(&handshakes.node_server, peer, &watchdog, deadline).await {
        Authentication::Done => count("authenticated"),
        Authentication::ClosedBefore => {
            count("refused");
            tracing::warn!(%peer, "cluster connection closed before it authenticated: {COOKIE_HINT}");
        }
        // The node server may be too busy to answer quickly: one patient look before closing.
        Authentication::TimedOut if authenticated(&handshakes.node_server, peer).await => {
            count("authenticated");
        }
        Authentication::TimedOut => {
            count("timed_out");
            // Past a TLS handshake, a peer that does not authenticate is a storecast node
            // (our CA signed it) that the cookie check refused: ractor_cluster drops a TLS
            // session without closing the socket, so this deadline is where it shows.
            if handshakes.tls.is_some() {
                tracing::warn!(%peer, "cluster connection closed: not authenticated in time after its TLS handshake: {COOKIE_HINT}");
            } else {
                tracing::debug!(%peer, "cluster connection closed: not authenticated in time");
            }
            let _ = watchdog.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// What a connection that ends during ractor_cluster's authentication most likely means.
const COOKIE_HINT: &str =
    "the peer's cluster.cookie differs from this node's, or it is not a storecast node";

/// How a connection's authentication ended.
enum Authentication {
    Done,
    /// The session ended first: one side refused the other's cookie.
    ClosedBefore,
    TimedOut,
}

/// Waits until the node server has an authenticated session with `peer`, the connection
/// closes, or `deadline` passes.
async fn await_authentication(
    node_server: &ActorRef<NodeServerMessage>,
    peer: SocketAddr,
    watchdog: &std::net::TcpStream,
    deadline: Instant,
) -> Authentication {
    let peer = peer.to_string();
    while Instant::now() < deadline {
        if let Ok(sessions) = ractor::call_t!(
            node_server,
            NodeServerMessage::GetSessions,
            AUTHENTICATION_POLL.as_millis() as u64 * 20
        ) && sessions.values().any(|session| session.peer_addr == peer)
        {
            return Authentication::Done;
        }
        if closed(watchdog) {
            return Authentication::ClosedBefore;
        }
        tokio::time::sleep(AUTHENTICATION_POLL).await;
    }
    Authentication::TimedOut
}

/// Whether the socket has been closed, by either end (it reads end-of-stream or an error).
fn closed(socket: &std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match socket.peek(&mut byte) {
        Ok(read) => read == 0,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// The stream, and a second descriptor of the same socket to look at it and shut it down by
/// later (non-blocking, as the stream is).
fn with_watchdog(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let stream = stream.into_std()?;
    let watchdog = stream.try_clone()?;
    watchdog.set_nonblocking(true)?;
    Ok((TcpStream::from_std(stream)?, watchdog))
}

/// Whether the node server has an authenticated session with `peer`.
async fn authenticated(node_server: &ActorRef<NodeServerMessage>, peer: SocketAddr) -> bool {
    let peer = peer.to_string();
    match ractor::call_t!(node_server, NodeServerMessage::GetSessions, 5_000) {
        Ok(sessions) => sessions.values().any(|session| session.peer_addr == peer),
        // The node server is stopping or swamped: leave the connection be.
        Err(_) => true,
    }
}

/// What a node needs to dial its peers.
#[derive(Clone)]
pub struct Dialler {
    pub node_server: ActorRef<NodeServerMessage>,
    /// The TLS connector, when nodes talk TLS.
    pub tls: Option<TlsConnector>,
    /// Longest a dial may take: TCP connect, TLS and authentication.
    pub timeout: Duration,
}

/// Opens a session to the node at `address`; `Ok` once it has authenticated. On an error
/// the connection is closed, so a peer that accepts and never answers keeps nothing open.
pub async fn dial(dialler: &Dialler, address: &str) -> Result<(), String> {
    let deadline = Instant::now() + dialler.timeout;
    let late = || format!("no handshake within {:?}", dialler.timeout);
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(address))
        .await
        .map_err(|_| late())?
        .map_err(|error| error.to_string())?;
    let (stream, watchdog) = with_watchdog(stream).map_err(|error| error.to_string())?;
    let peer = stream.peer_addr().map_err(|error| error.to_string())?;
    let local = stream.local_addr().map_err(|error| error.to_string())?;
    let _ = stream.set_nodelay(true);
    let network = match &dialler.tls {
        None => NetworkStream::Raw {
            peer_addr: peer,
            local_addr: local,
            stream,
        },
        Some(connector) => {
            let name = tls::server_name(address).map_err(|error| error.to_string())?;
            let stream = tokio::time::timeout_at(deadline, connector.connect(name, stream))
                .await
                .map_err(|_| late())?
                .map_err(|error| format!("TLS handshake failed: {error}"))?;
            NetworkStream::TlsClient {
                peer_addr: peer,
                local_addr: local,
                stream,
            }
        }
    };
    let opened = NodeServerMessage::ConnectionOpened {
        stream: Box::new(network),
        is_server: false,
    };
    dialler
        .node_server
        .cast(opened)
        .map_err(|_| "the node is stopping".to_string())?;
    match await_authentication(&dialler.node_server, peer, &watchdog, deadline).await {
        Authentication::Done => Ok(()),
        Authentication::ClosedBefore => Err(format!(
            "the connection closed before it authenticated: {COOKIE_HINT}"
        )),
        Authentication::TimedOut => {
            let _ = watchdog.shutdown(std::net::Shutdown::Both);
            Err(format!(
                "not authenticated within {:?}: {COOKIE_HINT}, or it is too busy to answer",
                dialler.timeout
            ))
        }
    }
}
