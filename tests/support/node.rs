//! A `storecast node` process for multi-process tests: its log lines arrive on a channel, so
//! tests wait for events (a line) instead of sleeping; it is killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Upper bound for events that normally take well under a second: a failure, not a sleep.
pub const PATIENCE: Duration = Duration::from_secs(30);

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
        let mut child = super::storecast(dir)
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
            // Many nodes share this machine: each gateway takes a free port (logged), unless
            // `extra` sets one.
            .args(["--set", "gateway.listen=127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start storecast node");
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

/// A loopback address with a port free right now.
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("address").to_string()
}
