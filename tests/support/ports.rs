//! Ports for the servers that tests start as child processes (nodes, PostgreSQL, the broker,
//! ChromeDriver, Prometheus).
//!
//! A port found free and handed to a child can be taken before the child binds it. Ports the
//! OS picks (a listener on port 0, the local end of every outgoing connection) come from its
//! ephemeral range, and one test's many nodes pick dozens of them; a CI run lost a node of the
//! TLS test that way. So the ports handed out here lie below that range, where the OS never
//! picks, and one process never hands the same port out twice. Each process starts at its own
//! offset, so the rare concurrent test processes (a bench beside the suite) do not collide.

use std::net::TcpListener;
use std::sync::Mutex;

/// Lowest port handed out: above the well-known and most registered service ports.
const LOWEST: u16 = 10_000;

/// Where the OS's ephemeral range starts (Linux reports it; 32768 is its default).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|start| *start > LOWEST + 1_000)
        .unwrap_or(32_768)
}

/// The next candidate port of this process (`None` before the first call).
static NEXT: Mutex<Option<u16>> = Mutex::new(None);

/// A loopback port nobody listens on, outside the OS's ephemeral range and never handed out
/// before by this process.
pub fn free_port() -> u16 {
    let end = ephemeral_start();
    let span = end - LOWEST;
    let mut next = NEXT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut candidate =
        next.unwrap_or_else(|| LOWEST + (std::process::id() % u32::from(span)) as u16);
    for _ in 0..span {
        let port = candidate;
        candidate = if candidate + 1 >= end {
            LOWEST
        } else {
            candidate + 1
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            *next = Some(candidate);
            return port;
        }
    }
    panic!("no free loopback port between {LOWEST} and {end}");
}

/// `127.0.0.1:PORT` for a port from [`free_port`].
pub fn free_address() -> String {
    format!("127.0.0.1:{}", free_port())
}
