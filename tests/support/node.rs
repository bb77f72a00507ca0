//! A `storecast node` process for multi-process tests: its log lines arrive on a channel, so
//! tests wait for events (a line) instead of sleeping; it is killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Upper bound for events that normally take well under a second: a failure, not a sleep.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Settings for takeover tests: a peer is declared down 2.5 s after it falls silent, a
/// departed peer is dialled again within a second, the scheduler's lease lasts 3 s, and no
/// weekly job fires while the test runs.
pub const FAST_TAKEOVER: [&str; 5] = [
    "cluster.heartbeat_ms=200",
    "cluster.failure_timeout_ms=2500",
    "cluster.reconnect_max_ms=1000",
    "scheduler.lease_ms=3000",
    "scheduler.train_all_at=",
];

/// `settings` as `--set KEY=VALUE` arguments.
pub fn set_arguments<'a>(settings: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    settings
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting.to_string()])
        .collect()
}

pub struct NodeProcess {
    pub name: String,
    pub address: String,
    pub child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl NodeProcess {
    /// Starts `storecast [global..] node --name NAME --listen ADDRESS --seeds SEEDS [extra..]`.
    pub fn start(
        dir: &Path,
        global: &[String],
        name: &str,
        address: &str,
        seeds: &[&str],
        extra: &[String],
    ) -> NodeProcess {
        Self::start_with_env(dir, global, name, address, seeds, extra, &[])
    }

    /// As [`NodeProcess::start`], with environment variables set for the node.
    pub fn start_with_env(
        dir: &Path,
        global: &[String],
        name: &str,
        address: &str,
        seeds: &[&str],
        extra: &[String],
        env: &[(&str, &str)],
    ) -> NodeProcess {
        let mut command = super::storecast(dir);
        command
            .envs(env.iter().copied())
            .args(global)
            .args([
                "node",
                "--name",
                name,
                "--listen",
                address,
                "--seeds",
                &seeds.join(","),
            ])
            // Many nodes share this machine: each gateway and admin listener takes a free port
            // (logged), unless `extra` sets one.
            .args(["--set", "gateway.listen=127.0.0.1:0"])
            .args(["--set", "admin.listen=127.0.0.1:0"])
            .args(extra);
        Self::spawn(name, address, command)
    }

    /// Starts `command`, a node (or any long-running storecast process) that logs to stderr.
    pub fn spawn(name: &str, address: &str, mut command: Command) -> NodeProcess {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("start {name}: {error}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProcess {
            name: name.to_string(),
            address: address.to_string(),
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing every needle; returns how long it took.
    pub fn wait_for(&mut self, needles: &[&str]) -> Duration {
        self.wait_for_within(needles, PATIENCE)
    }

    /// As [`NodeProcess::wait_for`], failing after `patience` instead of [`PATIENCE`].
    pub fn wait_for_within(&mut self, needles: &[&str], patience: Duration) -> Duration {
        let started = Instant::now();
        self.wait_for_matching(
            |line| needles.iter().all(|needle| line.contains(needle)),
            &format!("{needles:?}"),
            patience,
        );
        started.elapsed()
    }

    /// Waits for a log line containing one of `alternatives`; returns it.
    pub fn wait_for_any(&mut self, alternatives: &[&str]) -> String {
        self.wait_for_matching(
            |line| alternatives.iter().any(|needle| line.contains(needle)),
            &format!("any of {alternatives:?}"),
            PATIENCE,
        )
    }

    /// Waits for a log line that `matches` (described as `what`); returns it.
    fn wait_for_matching(
        &mut self,
        matches: impl Fn(&str) -> bool,
        what: &str,
        patience: Duration,
    ) -> String {
        let started = Instant::now();
        loop {
            let left = patience.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = matches(&line);
                    self.log.push(line.clone());
                    if found {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let state = match self.child.try_wait() {
                        Ok(Some(status)) => format!("it exited ({status})"),
                        Ok(None) => "it is still running".to_string(),
                        Err(error) => format!("its state is unknown ({error})"),
                    };
                    panic!(
                        "node {} never logged {what}; {state}; its log:\n{}",
                        self.name,
                        self.log.join("\n")
                    )
                }
            }
        }
    }

    /// Waits for a log line containing `needle` and returns it (`None` never: it panics
    /// after [`PATIENCE`] with the log).
    pub fn wait_for_line(&mut self, needle: &str) -> Option<String> {
        if let Some(line) = self.log.iter().find(|line| line.contains(needle)) {
            return Some(line.clone());
        }
        self.wait_for(&[needle]);
        self.log
            .iter()
            .rev()
            .find(|line| line.contains(needle))
            .cloned()
    }

    /// Every line the node has logged so far, reading what has arrived without waiting.
    pub fn log_so_far(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        &self.log
    }

    /// Whether a line read so far (by `wait_for`) contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log.iter().any(|line| line.contains(needle))
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        let result = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(result, 0, "kill({signal}) of node {}", self.name);
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // A stopped node must run again to die; one already gone makes this fail, harmlessly.
        // SAFETY: sending a signal to our own child process.
        let _ = unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use super::ports::free_address;

/// `count` TCP connections to `address` that never send a byte: what a port scanner, a
/// half-open client or an attacker leaves behind.
pub fn idle_sockets(address: &str, count: usize) -> Vec<std::net::TcpStream> {
    (0..count)
        .map(|_| std::net::TcpStream::connect(address).expect("connect an idle socket"))
        .collect()
}

/// Whether the other end closed `socket` within `patience` (it reads end-of-stream or a
/// reset instead of waiting).
pub fn closed_by_peer(socket: &mut std::net::TcpStream, patience: Duration) -> bool {
    use std::io::Read;
    let deadline = Instant::now() + patience;
    let mut buffer = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        socket
            .set_read_timeout(Some(left))
            .expect("set a read timeout");
        match socket.read(&mut buffer) {
            Ok(0) => return true,
            // A TLS alert or a protocol message before the close: keep reading.
            Ok(_) => continue,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}
