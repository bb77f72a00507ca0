//! Real `storecast node` processes on loopback: a cluster forms from a partial seed list,
//! the failure detector declares a stopped node down within its timeout, and nodes that come
//! back (resumed, restarted) rejoin by themselves.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

const HEARTBEAT_MS: u64 = 200;
const FAILURE_TIMEOUT_MS: u64 = 1_500;
/// Upper bound for events that should take well under a second; a failure, not a sleep.
const PATIENCE: Duration = Duration::from_secs(20);

/// A node process whose log lines arrive on a channel; killed when dropped.
struct Node {
    name: String,
    address: String,
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Node {
    fn start(dir: &std::path::Path, name: &str, address: &str, seeds: &[&str]) -> Node {
        let mut command = support::storecast(dir);
        command
            .args([
                "node",
                "--name",
                name,
                "--listen",
                address,
                "--seeds",
                &seeds.join(","),
            ])
            .args(["--set", &format!("cluster.heartbeat_ms={HEARTBEAT_MS}")])
            .args([
                "--set",
                &format!("cluster.failure_timeout_ms={FAILURE_TIMEOUT_MS}"),
            ])
            .args(["--set", "cluster.reconnect_max_ms=1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start storecast node");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Node {
            name: name.to_string(),
            address: address.to_string(),
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing every needle; returns how long it took.
    fn wait_for(&mut self, needles: &[&str]) -> Duration {
        let started = Instant::now();
        loop {
            let left = PATIENCE.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = needles.iter().all(|needle| line.contains(needle));
                    self.log.push(line);
                    if found {
                        return started.elapsed();
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "node {} never logged {needles:?}; its log:\n{}",
                    self.name,
                    self.log.join("\n")
                ),
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        let result = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(result, 0, "kill({signal}) of node {}", self.name);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("address").to_string()
}

#[test]
fn nodes_form_detect_failures_and_rejoin() {
    let dir = tempfile::tempdir().unwrap();
    let (a_address, b_address, c_address) = (free_address(), free_address(), free_address());
    let mut a = Node::start(dir.path(), "alpha", &a_address, &[]);
    let mut b = Node::start(dir.path(), "bravo", &b_address, &[&a_address]);
    // Charlie knows only Bravo; it meets Alpha through Bravo.
    let mut c = Node::start(dir.path(), "charlie", &c_address, &[&b_address]);
    let full = "cluster view: 3 members [alpha, bravo, charlie]";
    for node in [&mut a, &mut b, &mut c] {
        node.wait_for(&[full]);
    }

    // A stopped node is declared down within the failure timeout (plus one heartbeat).
    c.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    a.wait_for(&["member down", "member=charlie"]);
    b.wait_for(&["member down", "member=charlie"]);
    let detected = stopped.elapsed();
    assert!(
        detected <= Duration::from_millis(FAILURE_TIMEOUT_MS + 2 * HEARTBEAT_MS + 1_000),
        "declared down after {detected:?}"
    );
    assert!(
        detected >= Duration::from_millis(FAILURE_TIMEOUT_MS - HEARTBEAT_MS),
        "too eager: {detected:?}"
    );
    a.wait_for(&["cluster view: 2 members [alpha, bravo]"]);

    // Resumed, it answers again and is back.
    c.signal(libc::SIGCONT);
    a.wait_for(&[full]);
    c.wait_for(&[full]);

    // Killed outright, it leaves; restarted on its address, it rejoins by itself.
    b.signal(libc::SIGKILL);
    a.wait_for(&["cluster view: 2 members [alpha, charlie]"]);
    c.wait_for(&["cluster view: 2 members [alpha, charlie]"]);
    let (b_name, b_seed) = (b.name.clone(), b.address.clone());
    drop(b);
    let mut b = Node::start(dir.path(), &b_name, &b_seed, &[&a_address]);
    b.wait_for(&[full]);
    a.wait_for(&[full]);
    c.wait_for(&[full]);

    // A node that is told to stop leaves cleanly: the others see it go at once, not after
    // the failure timeout.
    a.signal(libc::SIGTERM);
    a.wait_for(&["stopped", "node=alpha"]);
    let left = c.wait_for(&["cluster view: 2 members [bravo, charlie]"]);
    assert!(
        left < Duration::from_millis(FAILURE_TIMEOUT_MS),
        "took {left:?}: seen as a failure, not a departure"
    );
}

#[test]
fn a_node_refuses_to_listen_beyond_loopback_without_a_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let output = support::storecast(dir.path())
        .args(["node", "--name", "lonely", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without a cluster cookie"),
        "{stderr}"
    );

    let output = support::storecast(dir.path())
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--roles",
            "models,cooking",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown role `cooking`"));
}
