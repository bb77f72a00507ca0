//! A Kafka-protocol broker for tests: `tansu` (from crates.io) as its own process on a free
//! loopback port, with its in-memory storage engine, or its SQLite one (a file in a temporary
//! folder) when a test restarts the broker and needs its topics and offsets back.
//!
//! The binary is `STORECAST_TANSU_BIN`, or `~/.cache/storecast/tansu-0.6.0/bin/tansu` where
//! `scripts/test` installs it. Missing binary: with `STORECAST_REQUIRE_SERVICES=1` that is a
//! test failure; otherwise the caller is told to skip and says so loudly.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres::services_required;

/// How long a broker may take to accept connections.
const START_PATIENCE: Duration = Duration::from_secs(30);

pub struct Broker {
    binary: PathBuf,
    pub address: String,
    child: Option<Child>,
    /// The folder of the SQLite engine's file, when the broker persists.
    data: Option<tempfile::TempDir>,
}

/// Where the broker binary is, if it is installed.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STORECAST_TANSU_BIN") {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".cache/storecast/tansu-0.6.0/bin/tansu");
    path.is_file().then_some(path)
}

impl Broker {
    /// Starts a broker, or returns `None` (after saying so) when it is not installed and
    /// services are not required.
    pub fn start(test: &str) -> Option<Broker> {
        Broker::start_with(test, false)
    }

    /// A broker whose topics, messages and committed offsets survive its restarts.
    pub fn start_persistent(test: &str) -> Option<Broker> {
        Broker::start_with(test, true)
    }

    fn start_with(test: &str, persistent: bool) -> Option<Broker> {
        let Some(binary) = tansu_binary().filter(|path| path.is_file()) else {
            if services_required() {
                panic!(
                    "the tansu broker is required (STORECAST_REQUIRE_SERVICES=1) but is not installed: run scripts/test, or set STORECAST_TANSU_BIN"
                );
            }
            super::skipped(test, "no tansu broker installed (scripts/test installs it)");
            return None;
        };
        let address = super::node::free_address();
        let data = persistent.then(|| tempfile::tempdir().expect("a folder for the broker's data"));
        let mut broker = Broker {
            binary,
            address,
            child: None,
            data,
        };
        broker.launch();
        Some(broker)
    }

    /// Stops the broker (SIGKILL: a crash) and starts it again on the same address; with
    /// the memory engine, topics and committed offsets are gone, with SQLite they stay.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn launch(&mut self) {
        let url = format!("tcp://{}", self.address);
        let mut command = Command::new(&self.binary);
        // The SQLite engine takes a path relative to the working folder.
        let engine = match &self.data {
            Some(folder) => {
                command.current_dir(folder.path());
                "sqlite://tansu.db"
            }
            None => "memory://tansu/",
        };
        let child = command
            .env(
                "RUST_LOG",
                std::env::var("STORECAST_TANSU_LOG").unwrap_or_default(),
            )
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                engine,
            ])
            .stdout(Stdio::null())
            .stderr(log_file(&self.address))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary.display()));
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(&self.address).is_err() {
            assert!(
                started.elapsed() < START_PATIENCE,
                "the broker did not listen on {} within {START_PATIENCE:?}",
                self.address
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The broker's log, kept in the temporary folder for a failing test to be read.
fn log_file(address: &str) -> Stdio {
    let path =
        std::env::temp_dir().join(format!("storecast-tansu-{}.log", address.replace(':', "-")));
    std::fs::File::create(&path).map_or_else(|_| Stdio::null(), Stdio::from)
}
