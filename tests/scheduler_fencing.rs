//! Fencing with real processes, the classic case: the scheduler's node is paused (SIGSTOP)
//! past its lease in the middle of a train-all; the other scheduler node takes the lease
//! and goes on with the job; the paused node resumes (SIGCONT) believing it still leads, and
//! the first thing its scheduler says is that it stands by: a write it attempted with its
//! old epoch, or the renewal of its lease, was refused. The job ends once, succeeded, with
//! one new version per series.
//!
//! What varies is what matters: when the pause hits (early in the job, or late) and how long
//! it lasts beyond the takeover (resumed at once, or seconds later). The store test
//! `a_stale_lease_epoch_is_refused_by_every_fenced_write` checks each fenced write alone.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use storecast::store::Database;
use support::node::{FAST_TAKEOVER, NodeProcess, PATIENCE, free_address, set_arguments};
use support::succeeded;

const STORES: u32 = 240;
/// Upper bound for one train-all here, pause included: a failure, not a wait.
const JOB_PATIENCE: Duration = Duration::from_secs(600);

/// Fast failure detection and a short lease, so the takeover happens within seconds; one
/// training worker per node and a light profile, so the job lasts long enough to be paused
/// in the middle on any machine and still ends soon.
fn settings() -> Vec<String> {
    set_arguments(FAST_TAKEOVER.into_iter().chain([
        "cluster.roles=scheduler,models,forecast",
        "train.workers=1",
        "train.profile=reference",
        "profiles.reference.uncertainty_samples=100",
    ]))
}

fn train_all(dir: &Path, url: &str, seed: &str) -> Child {
    support::storecast(dir)
        .args(["--database-url", url])
        .args(settings())
        .args(["cluster", "train-all", "--seeds", seed])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One pause of the scheduler's node.
struct Pause {
    /// The share of the job's series trained when the pause hits.
    at_share: f64,
    /// How long the node stays paused after the other node has taken the job over.
    beyond_takeover: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_scheduler_finds_its_writes_refused_and_the_job_ends_once() {
    let Some(url) = support::postgres::fresh_database("scheduler_fencing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    support::load_synthetic(dir.path(), &url, STORES, 500);
    let database = Database::connect(&support::database_config(&url))
        .await
        .unwrap();
    let stores = database.stores_with_sales("product_A").await.unwrap();
    assert_eq!(stores.len(), STORES as usize);

    let addresses = [free_address(), free_address()];
    let global = vec!["--database-url".to_string(), url.clone()];
    let mut alpha = NodeProcess::start(
        dir.path(),
        &global,
        "alpha",
        &addresses[0],
        &[],
        &settings(),
    );
    let mut bravo = NodeProcess::start(
        dir.path(),
        &global,
        "bravo",
        &addresses[1],
        &[&addresses[0]],
        &settings(),
    );
    for node in [&mut alpha, &mut bravo] {
        node.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    }

    let pauses = [
        Pause {
            at_share: 0.1,
            beyond_takeover: Duration::ZERO,
        },
        Pause {
            at_share: 0.6,
            beyond_takeover: Duration::from_secs(4),
        },
    ];
    // Lines of alpha's log before the current round's events.
    let mut alpha_mark = 0;
    for (round, pause) in pauses.iter().enumerate() {
        let version = round as i32 + 1;
        // alpha, the lowest name, leads (again, after the first round's pause).
        wait_for_since(&mut alpha, alpha_mark, "leading the scheduler");
        let follower = train_all(dir.path(), &url, &addresses[1]);
        let job_id = wait_for_progress(&database, pause.at_share).await;

        let stale_epoch = epoch_of(
            alpha
                .log_so_far()
                .iter()
                .rev()
                .find(|line| line.contains("leading the scheduler")),
        );
        alpha.signal(libc::SIGSTOP);
        bravo.wait_for(&["leading the scheduler"]);
        let takeover = bravo
            .log_so_far()
            .iter()
            .rev()
            .find(|line| line.contains("leading the scheduler"))
            .cloned();
        bravo.wait_for(&["running job", &format!("job={job_id} ")]);
        let new_epoch = epoch_of(takeover.as_ref());
        assert!(new_epoch > stale_epoch, "{takeover:?}");
        // What alpha's epoch wrote before the pause; nothing may carry it from now on.
        let before_resume: BTreeMap<i32, (Option<i64>, i32)> = database
            .job_tasks(job_id)
            .await
            .unwrap()
            .into_iter()
            .map(|task| (task.store, (task.epoch, task.attempts)))
            .collect();
        tokio::time::sleep(pause.beyond_takeover).await;
        let resumed_from = alpha.log_so_far().len();
        let bravo_mark = bravo.log_so_far().len();
        alpha.signal(libc::SIGCONT);

        // The first word of alpha's scheduler after the pause is that it stands by: it
        // neither went on leading with its old epoch nor finished the job with it.
        alpha.wait_for(&["; standing by"]);
        let first = alpha.log_so_far()[resumed_from..]
            .iter()
            .find(|line| {
                line.contains("; standing by")
                    || line.contains("leading the scheduler")
                    || line.contains("job succeeded")
                    || line.contains("train-all job created")
            })
            .cloned()
            .unwrap_or_default();
        assert!(
            first.contains("; standing by"),
            "round {version}: alpha acted as the scheduler after its pause: {first}"
        );
        eprintln!("round {version}: alpha resumed and said: {first}");

        let output = tokio::task::spawn_blocking(move || {
            support::output_within(follower, JOB_PATIENCE, &format!("job {job_id}"))
        })
        .await
        .unwrap();
        let stdout = succeeded(&output);
        assert!(
            stdout.contains(&format!("job {job_id} succeeded in"))
                && stdout.contains(&format!("{STORES} of {STORES} series trained, 0 failed")),
            "{stdout}"
        );
        let job = database.job(job_id).await.unwrap().unwrap();
        assert_eq!(
            (job.state.as_str(), job.succeeded, job.failed),
            ("succeeded", i64::from(STORES), 0)
        );
        // No write with alpha's stale epoch landed after the takeover: a task that carries
        // it carried it before alpha resumed, with as many attempts; the job row does not.
        assert_ne!(job.epoch, Some(stale_epoch), "job {job_id}");
        for task in database.job_tasks(job_id).await.unwrap() {
            if task.epoch == Some(stale_epoch) {
                assert_eq!(
                    before_resume.get(&task.store),
                    Some(&(task.epoch, task.attempts)),
                    "store {}: written with the stale epoch {stale_epoch} after the takeover",
                    task.store
                );
            }
        }
        // One version per series per job, whichever node trained it, the paused one's
        // late trainings included.
        for store in &stores {
            assert_eq!(
                database
                    .model_version_numbers(*store, "product_A")
                    .await
                    .unwrap(),
                (1..=version).collect::<Vec<_>>(),
                "store {store} after round {version}"
            );
        }
        // The job ended once: one node logged its success, once.
        let ended = format!("job={job_id} ");
        let started = Instant::now();
        let successes = loop {
            let successes: usize = [&mut alpha, &mut bravo]
                .into_iter()
                .map(|node| {
                    node.log_so_far()
                        .iter()
                        .filter(|line| line.contains("job succeeded") && line.contains(&ended))
                        .count()
                })
                .sum();
            if successes > 0 || started.elapsed() > PATIENCE {
                break successes;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(successes, 1, "nodes that logged job {job_id}'s success");
        // alpha is back in bravo's view before the next round.
        wait_for_since(
            &mut bravo,
            bravo_mark,
            "cluster view: 2 members [alpha, bravo]",
        );
        alpha_mark = resumed_from;
    }
}

/// The `epoch=N` of a "leading the scheduler" line.
fn epoch_of(line: Option<&String>) -> i64 {
    line.and_then(|line| {
        line.split_once(" epoch=")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
    .unwrap_or_else(|| panic!("no epoch in {line:?}"))
}

/// Waits for a line containing `needle` among those `node` logged after its first `mark`.
fn wait_for_since(node: &mut NodeProcess, mark: usize, needle: &str) {
    if !node.log_so_far()[mark..]
        .iter()
        .any(|line| line.contains(needle))
    {
        node.wait_for(&[needle]);
    }
}

/// Waits until the newest job has trained `share` of its series; returns its id.
async fn wait_for_progress(database: &Database, share: f64) -> i64 {
    let started = Instant::now();
    loop {
        let jobs = database.jobs_before(None, 1).await.unwrap();
        if let Some(job) = jobs.first()
            && job.is_active()
            && job.total > 0
            && job.succeeded as f64 >= share * job.total as f64
        {
            return job.id;
        }
        assert!(
            started.elapsed() < JOB_PATIENCE,
            "no job trained {:.0}% of its series: {jobs:?}",
            share * 100.0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
