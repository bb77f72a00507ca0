//! The weekly schedule fires by itself, once per slot: two scheduler nodes with a slot a few
//! seconds ahead; the leader fires the train-all when the slot comes and is killed at once;
//! the other node takes the lease over, finds the slot fired, and finishes that same job.
//! One job, one version per series.

mod support;

use std::time::Duration;

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use storecast::store::{Database, JobState};
use support::node::{NodeProcess, free_address};

/// The next whole minute at least `ahead` from now, in UTC.
fn next_minute(ahead: chrono::Duration) -> DateTime<Utc> {
    let earliest = Utc::now() + ahead;
    let floor = earliest
        .with_second(0)
        .and_then(|time| time.with_nanosecond(0))
        .unwrap();
    floor + chrono::Duration::minutes(1)
}

/// The timestamp a log line starts with.
fn logged_at(line: &str) -> DateTime<Utc> {
    line.split_whitespace()
        .next()
        .and_then(|stamp| stamp.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"))
}

#[test]
fn the_weekly_slot_fires_once_even_when_its_scheduler_dies() {
    let Some(url) = support::postgres::fresh_database("weekly_schedule") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    support::load_synthetic(dir.path(), &url, 3, 150);

    let slot = next_minute(chrono::Duration::seconds(15));
    let slot_text = format!("{} {:02}:{:02}", slot.weekday(), slot.hour(), slot.minute());
    let start = |name: &str, seeds: &[&str]| {
        let settings: Vec<String> = [
            "cluster.roles=models,scheduler,forecast".to_string(),
            "cluster.heartbeat_ms=200".to_string(),
            "cluster.failure_timeout_ms=2500".to_string(),
            "scheduler.lease_ms=3000".to_string(),
            "train.profile=reference".to_string(),
            format!("scheduler.train_all_at={slot_text}"),
        ]
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting])
        .collect();
        let global = vec!["--database-url".to_string(), url.clone()];
        NodeProcess::start(dir.path(), &global, name, &free_address(), seeds, &settings)
    };
    // alpha leads (the lowest name); bravo stands by.
    let mut alpha = start("alpha", &[]);
    alpha.wait_for(&["leading the scheduler"]);
    let seed = alpha.address.clone();
    let mut bravo = start("bravo", &[&seed]);
    bravo.wait_for(&["cluster view: 2 members [alpha, bravo]"]);

    // The slot comes: alpha fires it by itself, not before its time.
    let until_slot = (slot - Utc::now()).to_std().unwrap_or_default();
    alpha.wait_for_within(
        &["weekly train-all fired"],
        until_slot + Duration::from_secs(30),
    );
    let fired = alpha.wait_for_line("weekly train-all fired").unwrap();
    assert!(logged_at(&fired) >= slot, "fired before {slot}: {fired}");
    let due = format!("train_all@{}", slot.format("%Y-%m-%dT%H:%MZ"));
    assert!(fired.contains(&due), "{fired}");

    // alpha dies at once; bravo takes over, finds the slot fired and does not fire it again.
    alpha.signal(libc::SIGKILL);
    bravo.wait_for(&["leading the scheduler"]);
    let again = bravo.wait_for_line("weekly train-all").unwrap();
    assert!(
        again.contains("already fired or running") && again.contains(&due),
        "{again}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let database = Database::connect(&support::database_config(&url))
            .await
            .unwrap();
        let began = std::time::Instant::now();
        let jobs = loop {
            let jobs = database.jobs_before(None, 10).await.unwrap();
            if jobs.iter().all(|job| !job.is_active()) {
                break jobs;
            }
            assert!(
                began.elapsed() < Duration::from_secs(120),
                "the job never ended: {jobs:?}"
            );
            // The job runs in another process; its row is what shows it.
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(jobs.len(), 1, "one job for the slot: {jobs:?}");
        let job = &jobs[0];
        assert_eq!(job.slot.as_deref(), Some(due.as_str()));
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!((job.total, job.succeeded), (3, 3), "{job:?}");
        for store in 1..=3 {
            let versions = database
                .version_history(store, "product_A", 10)
                .await
                .unwrap();
            assert_eq!(versions.len(), 1, "store {store}: {versions:?}");
        }
        database.close().await;
    });
    assert!(
        !bravo
            .log_so_far()
            .iter()
            .any(|line| line.contains("weekly train-all fired")),
        "bravo fired the slot a second time"
    );
}
