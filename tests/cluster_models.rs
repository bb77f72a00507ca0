//! Model actors across real node processes and a real PostgreSQL: a retrain sent from outside
//! reaches the actor on the owner node and registers a version there; when the owner is
//! killed, its series answer forecasts from a survivor, from the registry, without retraining.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use storecast::cluster::placement::{DEFAULT_LOAD_FACTOR, Placement, SeriesKey};
use storecast::dataset::synth::{SynthOptions, generate};
use storecast::store::Database;
use support::node::{NodeProcess, free_address};

fn common_settings() -> Vec<String> {
    [
        "cluster.heartbeat_ms=200",
        "cluster.failure_timeout_ms=2500",
        "train.profile=reference",
        // No weekly job may fire while the test runs.
        "scheduler.train_all_at=",
    ]
    .iter()
    .flat_map(|setting| ["--set".to_string(), setting.to_string()])
    .collect()
}

fn client(dir: &std::path::Path, url: &str, seed: &str, args: &[&str]) -> Output {
    support::storecast(dir)
        .args(["--database-url", url, "cluster"])
        .args(args)
        .args(["--seeds", seed])
        .args(common_settings())
        .output()
        .expect("run storecast cluster")
}

#[tokio::test]
async fn retrains_reach_the_owner_and_a_dead_owners_series_answer_from_a_survivor() {
    let Some(url) = support::postgres::fresh_database("cluster_models") else {
        return;
    };
    let database = Database::connect(&support::database_config(&url))
        .await
        .unwrap();
    let data = generate(&SynthOptions {
        stores: 12,
        days: 300,
        seed: 8,
        ..SynthOptions::default()
    })
    .unwrap();
    database
        .replace_sales("product_A", &data.sales)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let names = ["alpha", "bravo", "charlie"];
    let addresses: Vec<String> = names.iter().map(|_| free_address()).collect();
    let global = vec!["--database-url".to_string(), url.clone()];
    let start = |index: usize, seeds: &[&str]| {
        NodeProcess::start(
            dir.path(),
            &global,
            names[index],
            &addresses[index],
            seeds,
            &common_settings(),
        )
    };
    let mut nodes: Vec<Option<NodeProcess>> = vec![
        Some(start(0, &[])),
        Some(start(1, &[&addresses[0]])),
        Some(start(2, &[&addresses[1]])),
    ];
    for node in nodes.iter_mut().flatten() {
        node.wait_for(&["cluster view: 3 members [alpha, bravo, charlie]"]);
    }

    // Every node computes the same owner; pick a store owned by a node other than the seed
    // the client joins through.
    let keys: Vec<SeriesKey> = (1..=12)
        .map(|store| SeriesKey::new(store, "product_A"))
        .collect();
    let hosts: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let placement = Placement::compute(&keys, &hosts, DEFAULT_LOAD_FACTOR);
    let store = (1..=12)
        .find(|store| placement.owner(&SeriesKey::new(*store, "product_A")) != Some("alpha"))
        .unwrap();
    let owner = placement
        .owner(&SeriesKey::new(store, "product_A"))
        .unwrap()
        .to_string();

    let store_arg = store.to_string();
    let output = client(
        dir.path(),
        &url,
        &addresses[0],
        &["retrain", "--store", &store_arg],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("version 1 trained on node {owner}")),
        "{stdout}"
    );
    let version = database
        .latest_model_version(store, "product_A")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version.node, owner, "the owner's model actor trained it");

    // Kill the owner outright; its series answers from a survivor, loaded from the registry.
    let owner_index = names.iter().position(|name| *name == owner).unwrap();
    let killed = Instant::now();
    if let Some(mut node) = nodes[owner_index].take() {
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
    let survivor = addresses[(owner_index + 1) % 3].clone();
    let output = client(
        dir.path(),
        &url,
        &survivor,
        &["forecast", "--store", &store_arg, "--days", "7"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("version 1"), "{stdout}");
    assert!(
        !stdout.contains(&format!("forecast by node {owner}")),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("2015-"))
            .count(),
        7,
        "{stdout}"
    );
    // Failover within the failure timeout (2.5 s), plus room for the client process to
    // start and for a loaded 2-core machine.
    assert!(
        killed.elapsed() < Duration::from_millis(2_500) + Duration::from_secs(5),
        "answered {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(
        database
            .model_version_numbers(store, "product_A")
            .await
            .unwrap(),
        vec![1],
        "no retraining"
    );
}

#[tokio::test]
async fn a_stopping_node_finishes_its_training_and_leaves() {
    let Some(url) = support::postgres::fresh_database("cluster_models_drain") else {
        return;
    };
    let database = Database::connect(&support::database_config(&url))
        .await
        .unwrap();
    // Two years of data and the default profile: a training long enough to stop a node in.
    let data = generate(&SynthOptions {
        stores: 6,
        days: 800,
        seed: 3,
        ..SynthOptions::default()
    })
    .unwrap();
    database
        .replace_sales("product_A", &data.sales)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let names = ["alpha", "bravo"];
    let addresses: Vec<String> = names.iter().map(|_| free_address()).collect();
    let global = vec![
        "--database-url".to_string(),
        url.clone(),
        "--log-level".to_string(),
        "info,storecast::actors::model=debug,ractor=warn,ractor_cluster=warn".to_string(),
    ];
    let settings: Vec<String> = common_settings()
        .into_iter()
        .map(|setting| setting.replace("train.profile=reference", "train.profile=default"))
        .collect();
    let mut alpha = NodeProcess::start(dir.path(), &global, "alpha", &addresses[0], &[], &settings);
    let mut bravo = NodeProcess::start(
        dir.path(),
        &global,
        "bravo",
        &addresses[1],
        &[&addresses[0]],
        &settings,
    );
    for node in [&mut alpha, &mut bravo] {
        node.wait_for(&["cluster view: 2 members [alpha, bravo]"]);
    }
    let keys: Vec<SeriesKey> = (1..=6)
        .map(|store| SeriesKey::new(store, "product_A"))
        .collect();
    let hosts = vec!["alpha".to_string(), "bravo".to_string()];
    let placement = Placement::compute(&keys, &hosts, DEFAULT_LOAD_FACTOR);
    let store = (1..=6)
        .find(|store| placement.owner(&SeriesKey::new(*store, "product_A")) == Some("bravo"))
        .unwrap()
        .to_string();

    let retrain = support::storecast(dir.path())
        .args([
            "--database-url",
            &url,
            "cluster",
            "retrain",
            "--store",
            &store,
        ])
        .args(["--seeds", &addresses[0]])
        .args(common_settings())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    bravo.wait_for(&["train requested"]);
    bravo.signal(libc::SIGTERM);
    bravo.wait_for(&["finishing the trainings in flight"]);
    alpha.wait_for(&["member left member=bravo"]);
    // Every line alpha logged before the departure has been read: bravo, busy finishing its
    // training, still answered heartbeats until it left (once it has left, it cannot be
    // declared down: its peer entry is gone).
    assert!(
        !alpha
            .log_so_far()
            .iter()
            .any(|line| line.contains("member down") && line.contains("member=bravo")),
        "bravo was declared down before it left"
    );

    let output = tokio::task::spawn_blocking(move || {
        support::output_within(retrain, support::node::PATIENCE, "the retrain")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("version 1 trained on node bravo"),
        "{stdout}"
    );
    bravo.wait_for(&["stopped"]);
    let status = bravo.child.wait().unwrap();
    assert!(status.success(), "bravo exited with {status}");
}
