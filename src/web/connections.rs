//! Serving HTTP connections within limits, for the gateway and the admin listener alike.
//!
//! axum's `serve` has no header-read or idle timeout and no connection cap, so a client that
//! opens sockets and sends nothing keeps them (and a file descriptor each) for ever. Here
//! every connection is served by hyper directly:
//! - at most [`Limits::max_connections`] at once: beyond that, new connections wait in the
//!   kernel's accept queue until one closes;
//! - a request's head must arrive within [`Limits::header_read_timeout`], counted from the
//!   moment the connection waits for it (so an idle keep-alive connection is closed after
//!   the same time);
//! - a connection with no byte read or written for [`Limits::idle_timeout`] is closed (a
//!   stalled upload, a client that stopped reading; event streams send a keep-alive comment
//!   every 15 s, so they stay);
//! - on stop, no new connection is taken and those open finish their requests in flight,
//!   for up to [`Limits::shutdown_grace`] (an event stream would otherwise last as long as
//!   its job).
//!
//! Open connections are counted in `storecast_http_connections{listener}`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::metrics;

/// What one listener allows its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a stopping listener lets open connections finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// Pause after an accept error (out of file descriptors, usually) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `stop` changes; then waits for the open connections to
/// finish their requests, or the grace to end. `name` labels the connection gauge (`gateway`, `admin`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let gauge = metrics::metrics()
        .http_connections
        .get_or_create(&metrics::ListenerLabels {
            listener: name.to_string(),
        })
        .clone();
    let mut last_error_logged: Option<Instant> = None;
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed; nothing left to do if it were
            },
            _ = stop.changed() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    let quiet = last_error_logged
                        .is_some_and(|logged| logged.elapsed() < Duration::from_secs(60));
                    if !quiet {
                        tracing::warn!(listener = name, %error, "cannot accept an HTTP connection");
                        last_error_logged = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let (app, stop, gauge) = (app.clone(), stop.clone(), gauge.clone());
        tokio::spawn(async move {
            gauge.inc();
            connection(stream, app, limits, stop).await;
            gauge.dec();
            drop(slot);
        });
    }
    // Every slot back means every connection has ended.
    let _ = slots
        .acquire_many(limits.max_connections.max(1) as u32)
        .await;
}

/// Serves one connection within the limits.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let stream = Watched::new(stream);
    let activity = Arc::clone(&stream.last_active);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let serving = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(serving);
    let mut cut_at: Option<Instant> = None;
    loop {
        let idle_until = Watched::deadline(&activity, limits.idle_timeout);
        tokio::select! {
            served = serving.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(idle_until) => {
                if Watched::deadline(&activity, limits.idle_timeout) <= Instant::now() {
                    tracing::debug!(idle_ms = limits.idle_timeout.as_millis() as u64, "HTTP connection closed: idle");
                    return;
                }
            }
            _ = stop.changed(), if cut_at.is_none() => {
                cut_at = Some(Instant::now() + limits.shutdown_grace);
                serving.as_mut().graceful_shutdown();
            }
            _ = sleep_until_some(cut_at) => {
                tracing::debug!("HTTP connection cut: the listener stopped");
                return;
            }
        }
    }
}

/// A TCP stream that notes when a byte last went through it.
struct Watched {
    stream: TcpStream,
    /// Milliseconds since `origin` at the last read or write.
    last_active: Arc<ActivityClock>,
}

/// When a connection was last active, readable from another task.
struct ActivityClock {
    origin: Instant,
    millis: AtomicU64,
}

impl ActivityClock {
    fn touch(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.millis.store(now, Ordering::Relaxed);
    }
}

impl Watched {
    fn new(stream: TcpStream) -> Self {
        Watched {
            stream,
            last_active: Arc::new(ActivityClock {
                origin: Instant::now(),
                millis: AtomicU64::new(0),
            }),
        }
    }

    /// When the connection counts as idle if nothing moves before.
    fn deadline(clock: &ActivityClock, idle: Duration) -> Instant {
        clock.origin + Duration::from_millis(clock.millis.load(Ordering::Relaxed)) + idle
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buffer.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(context, buffer);
        if matches!(polled, Poll::Ready(Ok(()))) && buffer.filled().len() > before {
            self.last_active.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(context, data);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.last_active.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(context, data);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.last_active.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
