//! Demo benchmark: `storecast demo --nodes 3 --exit` on its defaults (1,115 synthetic stores,
//! SQLite, the embedded broker), release build, from process start to every forecast written.
//!
//! Run with `cargo bench --bench demo`; `STORECAST_BENCH_RUNS` sets the runs (3). Each run
//! starts in a fresh folder; the bench reads the demo's own output as it is printed and times
//! each step from the process's start: data generated and loaded, the cluster formed, today's
//! rows streamed in, the train-all job done, every forecast counted (the target: under 60 s on
//! 2 cores), and the process's exit (nodes stopped). Figures are printed as a Markdown table.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The lines timed, by the prefix the demo prints them with (after trimming).
const STEPS: &[(&str, &str)] = &[
    ("4. broker", "data generated and loaded"),
    ("formed:", "cluster formed"),
    ("7. training", "today's rows streamed in"),
    ("job 1 succeeded", "train-all done"),
    ("9. forecasts", "every forecast written"),
];

fn main() {
    let runs: usize = std::env::var("STORECAST_BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(3);
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    let mut table: Vec<Vec<Duration>> = Vec::new();
    for run in 1..=runs {
        let dir = tempfile::tempdir().expect("a folder for the run");
        let started = Instant::now();
        let mut child = support::storecast(dir.path())
            .args(["--set", "gateway.listen=127.0.0.1:0"])
            .args(["demo", "--nodes", "3", "--exit"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("the demo's output");
        let mut times = Vec::new();
        let mut printed = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let trimmed = line.trim_start();
            if let Some((prefix, _)) = STEPS.get(times.len())
                && trimmed.starts_with(prefix)
            {
                times.push(started.elapsed());
            }
            printed.push(line);
        }
        let status = child.wait().expect("the demo exits");
        times.push(started.elapsed());
        let text = printed.join("\n");
        assert!(status.success(), "run {run}: the demo failed:\n{text}");
        assert!(
            text.contains("forecasts next 7 days of 1,115 of 1,115 series"),
            "run {run}: not every series has a forecast:\n{text}"
        );
        assert_eq!(
            times.len(),
            STEPS.len() + 1,
            "run {run}: steps missing:\n{text}"
        );
        eprintln!(
            "run {run}: every forecast after {:.1} s",
            times[STEPS.len() - 1].as_secs_f64()
        );
        table.push(times);
    }

    println!("\n`storecast demo --nodes 3 --exit`, release build, {cores} cores, {runs} runs");
    println!("(seconds from the process's start; median, min, max)\n");
    println!("| step | median | min | max |");
    println!("| --- | ---: | ---: | ---: |");
    let names: Vec<&str> = STEPS
        .iter()
        .map(|(_, name)| *name)
        .chain(["process exited (nodes stopped)"])
        .collect();
    for (index, name) in names.iter().enumerate() {
        let mut seconds: Vec<f64> = table
            .iter()
            .map(|times| times[index].as_secs_f64())
            .collect();
        seconds.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            seconds[seconds.len() / 2],
            seconds[0],
            seconds[seconds.len() - 1]
        );
    }
}
