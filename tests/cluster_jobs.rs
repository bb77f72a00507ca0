//! The cluster with Kaggle's 1,115 real stores, real node processes and a real PostgreSQL:
//! the series spread over the nodes as placement says, within its balance bound; a killed
//! node's series move to the survivors and come back when it restarts; a train-all job
//! whose scheduler node is killed mid-job is finished by another, with exactly one new
//! version per series.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use storecast::cluster::placement::{DEFAULT_LOAD_FACTOR, Placement, SeriesKey};
use storecast::store::Database;
use support::node::{FAST_TAKEOVER, NodeProcess, PATIENCE, free_address, set_arguments};
use support::succeeded;

const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];
/// Upper bound for the train-all of 1,115 series on this machine, kill and takeover included:
/// a failure, not a wait.
const JOB_PATIENCE: Duration = Duration::from_secs(600);

/// Fast failure detection and a short lease, so takeovers happen within seconds; a light
/// model profile, so 1,115 fits take seconds in a debug build.
fn settings() -> Vec<String> {
    set_arguments(FAST_TAKEOVER.into_iter().chain([
        "train.profile=reference",
        "profiles.reference.yearly_order=0",
        "profiles.reference.uncertainty_samples=100",
    ]))
}

fn client(dir: &Path, url: &str, seed: &str, args: &[&str]) -> std::process::Command {
    let mut command = support::storecast(dir);
    command
        .args(["--database-url", url])
        .args(settings())
        .arg("cluster")
        .args(args)
        .args(["--seeds", seed]);
    command
}

/// Series active per node, from `storecast cluster status`.
fn active_series(dir: &Path, url: &str, seed: &str) -> BTreeMap<String, usize> {
    let stdout = succeeded(&client(dir, url, seed, &["status"]).output().unwrap());
    stdout
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.trim().split_once(" at ")?;
            let count = rest.split("]: ").nth(1)?.strip_suffix(" series active")?;
            Some((name.to_string(), count.parse().ok()?))
        })
        .collect()
}

/// Waits until the nodes run exactly the series placement gives them. Rebalancing runs
/// every second on every node, so this is a bounded wait for a state, checked by asking.
fn wait_for_placement(dir: &Path, url: &str, seed: &str, expected: &BTreeMap<String, usize>) {
    let started = Instant::now();
    loop {
        let active = active_series(dir, url, seed);
        if &active == expected {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "series never settled as placed: expected {expected:?}, last seen {active:?}"
        );
    }
}

fn expected_counts(stores: &[u32], nodes: &[&str]) -> BTreeMap<String, usize> {
    let keys: Vec<SeriesKey> = stores
        .iter()
        .map(|store| SeriesKey::new(*store, "product_A"))
        .collect();
    let hosts: Vec<String> = nodes.iter().map(|name| name.to_string()).collect();
    let placement = Placement::compute(&keys, &hosts, DEFAULT_LOAD_FACTOR);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for key in &keys {
        *counts
            .entry(placement.owner(key).unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

fn kill(node: &mut NodeProcess) {
    node.signal(libc::SIGKILL);
    let _ = node.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_series_spread_move_back_and_train_all_survives_its_scheduler() {
    let Some(rossmann) = support::rossmann_dir("cluster_jobs") else {
        return;
    };
    let Some(url) = support::postgres::fresh_database("cluster_jobs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let train_file = rossmann.join("train.csv.gz");
    succeeded(
        &support::storecast(dir.path())
            .args(["--database-url", &url, "load"])
            .arg(&train_file)
            .output()
            .unwrap(),
    );
    let database = Database::connect(&support::database_config(&url))
        .await
        .unwrap();
    let stores = database.stores_with_sales("product_A").await.unwrap();
    assert_eq!(stores.len(), 1115);

    let addresses: Vec<String> = NAMES.iter().map(|_| free_address()).collect();
    let global = vec!["--database-url".to_string(), url.clone()];
    let start = |index: usize, seeds: &[&str]| {
        NodeProcess::start(
            dir.path(),
            &global,
            NAMES[index],
            &addresses[index],
            seeds,
            &settings(),
        )
    };
    let mut nodes = vec![
        start(0, &[]),
        start(1, &[&addresses[0]]),
        start(2, &[&addresses[1]]),
    ];
    for node in &mut nodes {
        node.wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    }

    // 1. The 1,115 series spread as placement says, within its balance bound.
    let all_three = expected_counts(&stores, &NAMES);
    let mean = 1115.0 / 3.0;
    for (node, count) in &all_three {
        assert!(
            *count as f64 <= 1.15 * mean,
            "{node} hosts {count}, more than 15% above the mean {mean:.0}"
        );
    }
    wait_for_placement(dir.path(), &url, &addresses[1], &all_three);

    // 2. kill -9 charlie: its series move to the survivors.
    kill(&mut nodes[2]);
    nodes[0].wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    let survivors = expected_counts(&stores, &NAMES[..2]);
    wait_for_placement(dir.path(), &url, &addresses[1], &survivors);

    // 3. charlie restarts, rejoins by itself and takes its share back.
    nodes[2] = start(2, &[&addresses[1]]);
    nodes[0].wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    wait_for_placement(dir.path(), &url, &addresses[1], &all_three);

    // 4. A train-all job; its scheduler (alpha, the lowest name) is killed mid-job.
    let follower: Child = client(dir.path(), &url, &addresses[1], &["train-all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    nodes[0].wait_for(&["train-all job created"]);
    // Kill once the job is well under way, from its rows.
    let job_started = Instant::now();
    let job_id = loop {
        let jobs = database.jobs_before(None, 1).await.unwrap();
        if let Some(job) = jobs.first()
            && job.succeeded >= 100
        {
            assert!(job.is_active(), "the job ended before the kill: {job:?}");
            break job.id;
        }
        assert!(
            job_started.elapsed() < JOB_PATIENCE,
            "the train-all never trained 100 series: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    kill(&mut nodes[0]);
    nodes[1].wait_for(&["leading the scheduler"]);
    nodes[1].wait_for(&["running job", &format!("job={job_id}")]);

    let output = tokio::task::spawn_blocking(move || {
        support::output_within(follower, JOB_PATIENCE, &format!("job {job_id}"))
    })
    .await
    .unwrap();
    let stdout = succeeded(&output);
    assert!(
        stdout.contains(&format!("job {job_id} succeeded in"))
            && stdout.contains("1115 of 1115 series trained, 0 failed"),
        "{stdout}"
    );
    let job = database.job(job_id).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.succeeded, job.failed),
        ("succeeded", 1115, 0)
    );

    // Exactly one new version per series, whoever trained it.
    let tasks = database.job_tasks(job_id).await.unwrap();
    let mut trained_by: BTreeMap<String, usize> = BTreeMap::new();
    for task in &tasks {
        assert_eq!(task.model_version, Some(1), "{task:?}");
        *trained_by.entry(task.node.clone().unwrap()).or_default() += 1;
    }
    for store in &stores {
        assert_eq!(
            database
                .model_version_numbers(*store, "product_A")
                .await
                .unwrap(),
            vec![1],
            "store {store}"
        );
    }
    assert!(
        trained_by.contains_key("alpha")
            && trained_by.contains_key("bravo")
            && trained_by.contains_key("charlie"),
        "every node trained a share: {trained_by:?}"
    );
    // The forecaster wrote next week for every series, with the job's versions.
    for store in [1, 500, 1115] {
        let forecast = database.latest_forecast(store, "product_A").await.unwrap();
        assert_eq!(forecast.len(), 7, "store {store}");
        assert!(forecast.iter().all(|day| day.record.model_version == 1));
    }
}
