//! A TCP proxy on loopback whose client-to-server direction can be frozen: what one process
//! sends to a server (a node's statements to PostgreSQL) stops on the way, without an error
//! and without reaching the server, until the proxy thaws; other clients of the server are
//! not affected. Frozen bytes are counted, so a test can wait until the client has sent
//! something that is held.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub address: String,
    frozen: watch::Sender<bool>,
    /// Client bytes that arrived while the proxy was frozen.
    held: Arc<AtomicU64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (frozen, watching) = watch::channel(false);
        let held = Arc::new(AtomicU64::new(0));
        let target = target.to_string();
        let counter = held.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(
                    client_read,
                    server_write,
                    Some((watching.clone(), counter.clone())),
                ));
                tokio::spawn(forward(server_read, client_write, None));
            }
        });
        Proxy {
            address,
            frozen,
            held,
            accepting,
        }
    }

    /// From now on, bytes from clients wait in the proxy.
    pub fn freeze(&self) {
        self.held.store(0, Ordering::SeqCst);
        self.frozen.send_replace(true);
    }

    /// Sends on what waited, and everything after it.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Client bytes held since the last freeze.
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Copies `from` to `to`; with `gate`, each chunk read while frozen is counted and waits
/// for the thaw before it is written.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: Option<(watch::Receiver<bool>, Arc<AtomicU64>)>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if let Some((frozen, held)) = &mut gate
            && *frozen.borrow()
        {
            held.fetch_add(read as u64, Ordering::SeqCst);
            if frozen.wait_for(|frozen| !*frozen).await.is_err() {
                break;
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
