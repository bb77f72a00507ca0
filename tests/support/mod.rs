//! Helpers shared by the integration tests: real services and real data.
#![allow(dead_code)] // Each test binary uses its own subset.

pub mod browser;
pub mod http;
pub mod kafka;
pub mod measure;
pub mod node;
pub mod otlp;
pub mod ports;
pub mod postgres;
pub mod prometheus;
pub mod proxy;
pub mod schema;
pub mod streaming;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;

use storecast::config::DatabaseConfig;
use storecast::store::Database;

/// Kaggle's Rossmann files (`../shared/datasets/rossmann`, or `STORECAST_ROSSMANN_DIR`), or
/// `None` after saying so when they are absent and services are not required.
pub fn rossmann_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("STORECAST_ROSSMANN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/rossmann")
        });
    if dir.join("train.csv.gz").is_file() && dir.join("store.csv").is_file() {
        return Some(dir);
    }
    if postgres::services_required() {
        panic!(
            "the Rossmann data set is required (STORECAST_REQUIRE_SERVICES=1) but {} has no train.csv.gz and store.csv",
            dir.display()
        );
    }
    skipped(test, &format!("no Rossmann data in {}", dir.display()));
    None
}

/// Says that `test` skipped for a missing service (only when STORECAST_REQUIRE_SERVICES is
/// not set), on stderr and in the file `STORECAST_SKIP_LOG` names: `scripts/test` counts
/// those lines, as cargo shows a passing test's stderr to nobody.
pub fn skipped(test: &str, reason: &str) {
    use std::io::Write as _;
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("STORECAST_SKIP_LOG") {
        let line = format!("{test}: {reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(error) = written {
            panic!("cannot note a skipped test in {}: {error}", path.display());
        }
    }
}

/// The `storecast` binary, run in `dir`, with no `STORECAST_*` or `OTEL_*` variable, nor
/// `RUST_LOG`, of the caller leaking in (the tests read the logs they configure).
pub fn storecast(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_storecast"));
    command.current_dir(dir);
    without_callers_settings(&mut command);
    command
}

/// Removes the caller's `STORECAST_*`, `OTEL_*` and `RUST_LOG` variables from `command`'s
/// environment.
pub fn without_callers_settings(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("STORECAST_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
}

/// The stdout of a run that must have succeeded; fails with its whole output otherwise.
pub fn succeeded(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `command` to its end with its output captured; kills it and fails after `limit`.
pub fn run_within(command: &mut Command, limit: std::time::Duration) -> std::process::Output {
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the command");
    output_within(child, limit, &format!("{command:?}"))
}

/// Waits for `child` (its output piped) to end and returns its output; kills it and fails,
/// naming it `what`, after `limit`. Blocking: from async code, run it in `spawn_blocking`.
pub fn output_within(
    child: std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::Output {
    let pid = child.id();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(child.wait_with_output());
    });
    match receive.recv_timeout(limit) {
        Ok(output) => output.expect("the command's output"),
        Err(_) => {
            // SAFETY: a signal to our own child process, which has not been reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

pub fn database_config(url: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: url.to_string(),
        max_connections: 4,
        reader_connections: 2,
        connect_timeout_secs: 10,
    }
}

/// A migrated database on the test PostgreSQL server, or `None` when it is unavailable.
pub async fn postgres_database(test: &str) -> Option<Database> {
    let url = postgres::fresh_database(test)?;
    Some(
        Database::connect(&database_config(&url))
            .await
            .expect("connect to the test PostgreSQL"),
    )
}

/// A migrated SQLite database in a temporary folder (kept alive by the returned guard).
pub async fn sqlite_database() -> (Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite:{}", dir.path().join("test.db").display());
    let database = Database::connect(&database_config(&url))
        .await
        .expect("open a SQLite database");
    (database, dir)
}

/// Runs the same async test body on PostgreSQL and on SQLite, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn postgres() {
                let test = concat!(stringify!($name), "::postgres");
                if let Some(database) = $crate::support::postgres_database(test).await {
                    super::$name(database).await;
                }
            }

            #[tokio::test]
            async fn sqlite() {
                let (database, _dir) = $crate::support::sqlite_database().await;
                super::$name(database).await;
            }
        }
    )*};
}

/// Makes `stores` synthetic stores of `days` days (`storecast dataset synth`) in `dir/data`
/// and loads them into `url`'s database (`storecast load`), as a user would; returns the last
/// day of the loaded sales (within the last week: the loader moves dates by whole weeks).
pub fn load_synthetic(dir: &Path, url: &str, stores: u32, days: u32) -> chrono::NaiveDate {
    let data = dir.join("data");
    let (stores, days) = (stores.to_string(), days.to_string());
    let out = data.display().to_string();
    let file = data.join("train.csv").display().to_string();
    let mut printed = String::new();
    for args in [
        vec![
            "dataset", "synth", "--stores", &stores, "--days", &days, "--out", &out,
        ],
        vec!["load", &file],
    ] {
        let output = storecast(dir)
            .args(["--database-url", url])
            .args(&args)
            .output()
            .expect("run storecast");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        printed = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    loaded_last_day(&printed)
}

/// The last day `storecast load` printed ("... shifted +N weeks to FIRST..LAST ...").
pub fn loaded_last_day(printed: &str) -> chrono::NaiveDate {
    printed
        .split_once(" weeks to ")
        .and_then(|(_, rest)| rest.split_once(".."))
        .and_then(|(_, rest)| rest.get(..10))
        .and_then(|date| date.parse().ok())
        .unwrap_or_else(|| panic!("storecast load printed no date span: {printed}"))
}
