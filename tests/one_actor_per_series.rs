//! One actor per series, with three real node processes and a real PostgreSQL: a train-all
//! in which some series fail to train starts no model actor on a node that does not own its
//! series.
//!
//! Placement is bounded-load rendezvous hashing, so a series' owner depends on the whole set
//! of series placed. Every node must therefore place the same set: a caller that placed
//! only the series that trained (as the forecaster once did) sends some `Forecast`s to a
//! node that does not own the series, and that node's host starts a second actor for it.
//! The rebalance tick stops such an actor a second later, so the test watches the starts
//! themselves: each node logs `model actor activated` (at debug level) for every actor its
//! host starts. Once placement has settled, no start may happen on a node that does not
//! own the series.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::time::Instant;

use chrono::NaiveDate;
use storecast::cluster::placement::{DEFAULT_LOAD_FACTOR, Placement, SeriesKey};
use storecast::dataset::synth::{SynthOptions, generate};
use storecast::store::Database;
use support::node::{NodeProcess, PATIENCE, free_address};

const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];
const PRODUCT: &str = "product_A";
const STORES: u32 = 45;

fn settings() -> Vec<String> {
    [
        "cluster.heartbeat_ms=200",
        "cluster.failure_timeout_ms=2500",
        "scheduler.train_all_at=",
        "scheduler.max_attempts=1",
        "train.profile=reference",
        "profiles.reference.yearly_order=0",
        "profiles.reference.uncertainty_samples=100",
    ]
    .iter()
    .flat_map(|setting| ["--set".to_string(), setting.to_string()])
    .collect()
}

/// Every third store keeps only its last few days: too little history to train.
fn fails_to_train(store: u32) -> bool {
    store.is_multiple_of(3)
}

fn owners(stores: &[u32]) -> BTreeMap<u32, String> {
    let keys: Vec<SeriesKey> = stores
        .iter()
        .map(|store| SeriesKey::new(*store, PRODUCT))
        .collect();
    let hosts: Vec<String> = NAMES.iter().map(|name| name.to_string()).collect();
    let placement = Placement::compute(&keys, &hosts, DEFAULT_LOAD_FACTOR);
    stores
        .iter()
        .map(|store| {
            let owner = placement.owner(&SeriesKey::new(*store, PRODUCT)).unwrap();
            (*store, owner.to_string())
        })
        .collect()
}

fn cluster(dir: &Path, url: &str, seed: &str, args: &[&str]) -> Output {
    let output = support::storecast(dir)
        .args(["--database-url", url])
        .args(settings())
        .arg("cluster")
        .args(args)
        .args(["--seeds", seed])
        .output()
        .expect("run storecast cluster");
    assert!(
        output.status.success(),
        "storecast cluster {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Series active per node, from `storecast cluster status`.
fn active_series(dir: &Path, url: &str, seed: &str) -> BTreeMap<String, usize> {
    let stdout = String::from_utf8_lossy(&cluster(dir, url, seed, &["status"]).stdout).to_string();
    stdout
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.trim().split_once(" at ")?;
            let count = rest.split("]: ").nth(1)?.strip_suffix(" series active")?;
            Some((name.to_string(), count.parse().ok()?))
        })
        .collect()
}

/// The (store, node) of a `model actor activated` line.
fn activation(line: &str) -> Option<(u32, String)> {
    if !line.contains("model actor activated") {
        return None;
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .map(str::to_string)
    };
    Some((field("store=")?.parse().ok()?, field("node=")?))
}

#[test]
fn a_train_all_with_failing_series_starts_no_actor_off_its_owner() {
    let Some(url) = support::postgres::fresh_database("one_actor_per_series") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let data = generate(&SynthOptions {
        stores: STORES,
        days: 300,
        seed: 11,
        ..SynthOptions::default()
    })
    .unwrap();
    let last_day = data.sales.iter().map(|row| row.date).max().unwrap();
    let cut = last_day - chrono::Days::new(5);
    let rows: Vec<_> = data
        .sales
        .into_iter()
        .filter(|row| !fails_to_train(row.store) || row.date > cut)
        .collect();
    let database = runtime.block_on(async {
        let database = Database::connect(&support::database_config(&url))
            .await
            .unwrap();
        database.replace_sales(PRODUCT, &rows).await.unwrap();
        database
    });
    let stores: Vec<u32> = (1..=STORES).collect();
    let trainable: Vec<u32> = stores
        .iter()
        .copied()
        .filter(|store| !fails_to_train(*store))
        .collect();

    // The test can only fail if placing the trained series alone moves some of them.
    let (all, trained_only) = (owners(&stores), owners(&trainable));
    let moved: Vec<u32> = trainable
        .iter()
        .copied()
        .filter(|store| all[store] != trained_only[store])
        .collect();
    assert!(
        !moved.is_empty(),
        "placing only the trained series moves none of them: choose other failing series"
    );

    let dir = tempfile::tempdir().unwrap();
    let addresses: Vec<String> = NAMES.iter().map(|_| free_address()).collect();
    let global = vec![
        "--database-url".to_string(),
        url.clone(),
        "--log-level".to_string(),
        "info,ractor=warn,ractor_cluster=warn,ractor_cluster::node::node_session=error,\
         storecast::actors::model_host=debug"
            .to_string(),
    ];
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

    // Placement settles: each node runs exactly the series it owns.
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for owner in all.values() {
        *expected.entry(owner.clone()).or_default() += 1;
    }
    let started = Instant::now();
    loop {
        let active = active_series(dir.path(), &url, &addresses[1]);
        if active == expected {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "series never settled as placed: expected {expected:?}, last seen {active:?}"
        );
    }
    let settled: Vec<usize> = nodes
        .iter_mut()
        .map(|node| node.log_so_far().len())
        .collect();

    // A train-all in which a third of the series fail.
    let output = cluster(dir.path(), &url, &addresses[1], &["train-all"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failing = stores.len() - trainable.len();
    assert!(
        stdout.contains(&format!(
            "{} of {} series trained, {failing} failed",
            trainable.len(),
            stores.len()
        )),
        "{stdout}"
    );
    // The forecasts went to the model actors: every trained series has its batch.
    for store in [trainable[0], *trainable.last().unwrap()] {
        let forecast = runtime
            .block_on(database.latest_forecast(store, PRODUCT))
            .unwrap();
        assert_eq!(forecast.len(), 7, "store {store}");
        assert!(forecast[0].record.date > NaiveDate::from_ymd_opt(2015, 1, 1).unwrap());
    }

    // No actor started off its owner after placement settled.
    let mut off_owner = BTreeSet::new();
    let mut starts = 0;
    for (node, from) in nodes.iter_mut().zip(settled) {
        for line in &node.log_so_far()[from..] {
            if let Some((store, on)) = activation(line) {
                starts += 1;
                if all.get(&store) != Some(&on) {
                    off_owner.insert((store, on, all.get(&store).cloned()));
                }
            }
        }
    }
    assert!(
        off_owner.is_empty(),
        "{} model actors started on a node that does not own the series \
         (store, started on, owner): {off_owner:?}; series whose owner differs when only \
         the trained ones are placed: {moved:?}",
        off_owner.len()
    );
    assert_eq!(starts, 0, "every series' actor already ran on its owner");
}
