//! A real Prometheus server for tests (Debian's `prometheus` package, which the test script
//! installs): it scrapes the given targets every second into a throwaway folder, and the
//! test asks its HTTP query API. Killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http::get;

pub struct Prometheus {
    /// host:port of its HTTP API.
    pub address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The `prometheus` binary, or `None` (after saying so) when it is missing and services are
/// not required.
fn binary(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        if super::postgres::services_required() {
            panic!("prometheus is required (STORECAST_REQUIRE_SERVICES=1) but not on PATH");
        }
        super::skipped(test, "no prometheus binary on PATH");
    }
    found
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port, path `/metrics`) every second.
    pub fn start(test: &str, targets: &[String]) -> Option<Prometheus> {
        let binary = binary(test)?;
        let dir = tempfile::tempdir().expect("a folder for Prometheus");
        let listed: Vec<String> = targets.iter().map(|target| format!("'{target}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: storecast\n    static_configs:\n      - targets: [{}]\n",
            listed.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let address = super::node::free_address();
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prometheus");
        let stderr = child.stderr.take().expect("piped");
        let (ready, readiness) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready to receive web requests") {
                    let _ = ready.send(());
                }
            }
        });
        readiness
            .recv_timeout(Duration::from_secs(60))
            .expect("prometheus never became ready");
        Some(Prometheus {
            address,
            child,
            _dir: dir,
        })
    }

    /// The result vector of an instant query.
    pub fn query(&self, query: &str) -> Vec<serde_json::Value> {
        let encoded: String = query
            .bytes()
            .map(|byte| match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    (byte as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        let answer = get(&self.address, &format!("/api/v1/query?query={encoded}"));
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
        let body = answer.json();
        assert_eq!(body["status"], "success", "{query}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `query` gives results that satisfy `done`; returns them.
    pub fn wait_for(
        &self,
        query: &str,
        patience: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let started = Instant::now();
        loop {
            let result = self.query(query);
            if done(&result) {
                return result;
            }
            assert!(
                started.elapsed() < patience,
                "`{query}` never gave what was expected; last: {result:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The number in an instant query's sample.
pub fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or(f64::NAN)
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
