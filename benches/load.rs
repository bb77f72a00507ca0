//! Bulk-load benchmark: the whole Kaggle train set through `storecast load`, end to end.
//!
//! Run with `cargo bench --bench load` (release build). It starts a throwaway PostgreSQL
//! server with its default (durable) settings, then runs the real binary
//! `storecast load train.csv.gz --months 0` three times against it and three times against a
//! SQLite file, and prints wall times (process start to exit: read, parse, window, write,
//! commit) with the binary's own read/write breakdown.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const RUNS: usize = 3;

fn main() {
    let data = std::env::var_os("STORECAST_ROSSMANN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/rossmann")
        })
        .join("train.csv.gz");
    assert!(data.is_file(), "the benchmark needs {}", data.display());
    let postgres_url = support::postgres::fresh_database_with(
        "load benchmark",
        support::postgres::Durability::Durable,
    )
    .expect("the benchmark needs PostgreSQL");
    let sqlite_dir = tempfile::tempdir().expect("temporary folder");
    let sqlite_url = format!("sqlite:{}", sqlite_dir.path().join("bench.db").display());

    println!("| database | run | wall time | storecast's own report |");
    println!("| --- | --- | --- | --- |");
    for (name, url) in [("PostgreSQL", &postgres_url), ("SQLite", &sqlite_url)] {
        let mut times = Vec::new();
        for run in 1..=RUNS {
            let started = Instant::now();
            let output = Command::new(env!("CARGO_BIN_EXE_storecast"))
                .args(["--database-url", url, "load", "--months", "0"])
                .arg(&data)
                .output()
                .expect("run storecast");
            let elapsed = started.elapsed().as_secs_f64();
            let report = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "storecast load failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let summary: Vec<&str> = report
                .lines()
                .filter(|line| line.starts_with("read ") || line.starts_with("wrote "))
                .collect();
            println!(
                "| {name} | {run} | {elapsed:.2} s | {} |",
                summary.join("; ")
            );
            times.push(elapsed);
        }
        times.sort_by(f64::total_cmp);
        println!("| {name} | median | {:.2} s | |", times[RUNS / 2]);
    }
}
