//! One scheduler even when two processes share a name.
//!
//! - Two nodes called `alpha` in one cluster: the later one stops with an error that says
//!   the name is taken; the first goes on leading.
//! - Two nodes called `alpha` that never meet (two clusters, one database): the scheduler
//!   lease is held per process (name and incarnation), so only one of them leads.
//!
//! Before the fix the lease holder was the name alone: both processes renewed one lease and
//! both led.

mod support;

use std::time::{Duration, Instant};

use support::node::{NodeProcess, free_address};

/// The scheduler lease in these tests: short, so a second leader would show within seconds.
const LEASE: Duration = Duration::from_secs(1);

fn start(dir: &std::path::Path, url: &str, seeds: &[&str]) -> NodeProcess {
    let settings: Vec<String> = [
        "cluster.roles=scheduler,models".to_string(),
        "scheduler.train_all_at=".to_string(),
        format!("scheduler.lease_ms={}", LEASE.as_millis()),
        "cluster.heartbeat_ms=200".to_string(),
        "cluster.failure_timeout_ms=2000".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), url.to_string()];
    NodeProcess::start(dir, &global, "alpha", &free_address(), seeds, &settings)
}

/// Waits for the process to end; its exit status.
fn wait_for_exit(node: &mut NodeProcess, patience: Duration) -> std::process::ExitStatus {
    let began = Instant::now();
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            began.elapsed() < patience,
            "node {} still runs after {patience:?}",
            node.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_later_of_two_nodes_with_one_name_is_refused() {
    let Some(url) = support::postgres::fresh_database("names_joined") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path(), &url, &[]);
    first.wait_for(&["leading the scheduler"]);
    let seed = first.address.clone();
    let mut second = start(dir.path(), &url, &[&seed]);
    let refusal = second
        .wait_for_line("another node named alpha is live in the cluster")
        .unwrap();
    assert!(refusal.contains(&seed), "{refusal}");
    assert!(refusal.contains("cluster.name"), "{refusal}");
    let status = wait_for_exit(&mut second, Duration::from_secs(30));
    assert!(!status.success(), "the refused node exited with {status}");
    assert!(!second.logged("leading the scheduler"));
    // The first still leads: its lease was never lost.
    let log = first.log_so_far().join("\n");
    assert_eq!(log.matches("leading the scheduler").count(), 1, "{log}");
    assert!(!log.contains("lease lost"), "{log}");
}

#[test]
fn two_nodes_with_one_name_that_never_meet_never_both_lead() {
    let Some(url) = support::postgres::fresh_database("names_apart") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path(), &url, &[]);
    first.wait_for(&["leading the scheduler"]);
    let mut second = start(dir.path(), &url, &[]);
    second.wait_for(&["cluster view: 1 members [alpha]"]);
    // An absence needs a window: several lease periods of the second node trying for the
    // lease (it ticks every few hundred milliseconds and believes it leads its cluster).
    std::thread::sleep(LEASE * 4);
    second.log_so_far();
    assert!(
        !second.logged("leading the scheduler"),
        "two processes named alpha both lead:\n{}",
        second.log_so_far().join("\n")
    );
    let log = first.log_so_far().join("\n");
    assert_eq!(log.matches("leading the scheduler").count(), 1, "{log}");
    assert!(!log.contains("lease lost"), "{log}");
}
