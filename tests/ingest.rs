//! Streaming ingest against a real Kafka-protocol broker (tansu, its own process), a real
//! PostgreSQL and real `storecast node` processes: malformed messages go to `ingest_rejects`
//! with their reason while every good row lands; a restarted broker is consumed again
//! without help; the producer seeds and publishes; model actors hear of new data. (A node
//! killed mid-stream: `ingest_kill.rs`; the database going away: `ingest_db_outage.rs`.)

mod support;

use std::time::{Duration, Instant};

use storecast::cli::produce::publish;
use storecast::ingest::kafka;
use support::kafka::Broker;
use support::streaming::{
    LANDING_PATIENCE, TOPIC, sales_sum, start_node, stream, wait_for_rows, with_field,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_rejected_with_reasons_and_every_good_row_lands() {
    let Some(stream) = stream("ingest_malformed", 4, false).await else {
        return;
    };
    let _node = stream.ingest_node("ingest-a");

    // 2,000 good rows and, among them, 1% bad ones of every kind.
    let good: Vec<(String, String)> = stream
        .setup
        .templates
        .distinct("product_A", stream.setup.today, 2_000)
        .collect();
    let bad: Vec<(&str, String)> = vec![
        ("not JSON", "sales: lots".to_string()),
        ("not a JSON object", "[1, 2, 3]".to_string()),
        ("field `date` is missing", r#"{"store": 1}"#.to_string()),
        (
            "must not be negative",
            good[0].1.replace(r#""sales":"#, r#""sales":-"#),
        ),
        (
            "not a real YYYY-MM-DD date",
            good[1]
                .1
                .replace(&stream.setup.today.to_string(), "2026-02-30"),
        ),
        (
            "unknown store 99999",
            with_field(&good[2].1, "store", 99_999),
        ),
    ];
    let mut messages = Vec::new();
    let mut bad_sent = Vec::new();
    for (index, message) in good.iter().enumerate() {
        messages.push(message.clone());
        if index % 100 == 99 {
            let (reason, payload) = &bad[bad_sent.len() % bad.len()];
            messages.push(("bad".to_string(), payload.clone()));
            bad_sent.push(*reason);
        }
    }
    assert_eq!(bad_sent.len(), 20);
    let producer = kafka::producer(&stream.broker.address).unwrap();
    publish(&producer, TOPIC, &messages, 0).await.unwrap();

    let sum = wait_for_rows(&stream.setup.database, stream.setup.today, 2_000).await;
    assert_eq!(
        sum,
        sales_sum(&good),
        "every good row landed with its values"
    );
    let started = Instant::now();
    let rejects = loop {
        let rejects = stream.setup.database.ingest_rejects(100).await.unwrap();
        if rejects.len() >= bad_sent.len() || started.elapsed() > LANDING_PATIENCE {
            break rejects;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        rejects.len(),
        20,
        "every bad message is in ingest_rejects, once"
    );
    for reason in bad.iter().map(|(reason, _)| *reason) {
        let matching = rejects
            .iter()
            .filter(|reject| reject.reason.contains(reason))
            .count();
        assert!(
            matching >= 3,
            "{matching} rejects say {reason:?}: {rejects:?}"
        );
    }
    for reject in &rejects {
        assert_eq!(reject.topic, TOPIC);
        assert!(!reject.payload.is_empty() && reject.offset >= 0);
    }
}

/// A message with the text field `field` set to `value`.
fn with_text(json: &str, field: &str, value: &str) -> String {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).unwrap();
    object.insert(field.to_string(), value.into());
    serde_json::Value::Object(object).to_string()
}

/// The consumer lag a node reports, summed over its partitions, once its statistics have
/// reported any partition.
fn reported_lag(admin: &str) -> Option<i64> {
    let scrape = support::http::get(admin, "/metrics");
    let samples: Vec<i64> = scrape
        .body
        .lines()
        .filter(|line| line.starts_with("storecast_ingest_consumer_lag_messages{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_the_database_would_refuse_never_stall_ingest() {
    let Some(stream) = stream("ingest_poison", 2, false).await else {
        return;
    };
    let mut node = stream.ingest_node("ingest-a");
    let admin_line = node.wait_for_line("admin listening on").unwrap();
    let admin = admin_line
        .rsplit("address=")
        .next()
        .unwrap()
        .trim()
        .to_string();

    // Messages that parse as JSON sales but do not fit PostgreSQL's columns: numbers beyond
    // `integer`, a NUL character in text. One between every 100 good rows.
    let good: Vec<(String, String)> = stream
        .setup
        .templates
        .distinct("product_A", stream.setup.today, 1_000)
        .collect();
    let poison = [
        ("sales", with_field(&good[0].1, "sales", 3_000_000_000)),
        (
            "customers",
            with_field(&good[1].1, "customers", 2_147_483_648),
        ),
        (
            "productname",
            with_text(&good[2].1, "productname", "product_A\u{0}"),
        ),
        (
            "productname",
            with_text(&good[3].1, "productname", "nul\u{0}in the middle"),
        ),
        (
            "sales",
            with_field(&good[4].1, "sales", i64::from(u32::MAX)),
        ),
    ];
    let mut messages = Vec::new();
    let mut poison_sent = Vec::new();
    for (index, message) in good.iter().enumerate() {
        messages.push(message.clone());
        if index % 100 == 99 {
            let (field, payload) = &poison[poison_sent.len() % poison.len()];
            messages.push(("poison".to_string(), payload.clone()));
            poison_sent.push(*field);
        }
    }
    let producer = kafka::producer(&stream.broker.address).unwrap();
    let published = Instant::now();
    publish(&producer, TOPIC, &messages, 0).await.unwrap();

    let sum = wait_for_rows(&stream.setup.database, stream.setup.today, 1_000).await;
    let landed = published.elapsed();
    assert_eq!(
        sum,
        sales_sum(&good),
        "every good row landed with its values"
    );
    assert!(
        landed < Duration::from_secs(30),
        "the good rows took {landed:?}"
    );
    let started = Instant::now();
    let rejects = loop {
        let rejects = stream.setup.database.ingest_rejects(100).await.unwrap();
        if rejects.len() >= poison_sent.len() || started.elapsed() > LANDING_PATIENCE {
            break rejects;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        rejects.len(),
        poison_sent.len(),
        "every poison message is a reject: {rejects:?}"
    );
    for reject in &rejects {
        assert!(
            poison
                .iter()
                .any(|(field, _)| reject.reason.contains(field)),
            "the reason names the field: {}",
            reject.reason
        );
    }

    // The consumer is not stuck behind them: its lag (librdkafka's statistics, every few
    // seconds) comes back to zero.
    let started = Instant::now();
    loop {
        if reported_lag(&admin) == Some(0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "lag stays at {:?}",
            reported_lag(&admin)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_resumes_by_itself_after_the_broker_restarts() {
    let Some(mut stream) = stream("ingest_broker_restart", 2, true).await else {
        return;
    };
    let mut node = stream.ingest_node("ingest-a");
    let messages: Vec<(String, String)> = stream
        .setup
        .templates
        .distinct("product_A", stream.setup.today, 1_000)
        .collect();
    let producer = kafka::producer(&stream.broker.address).unwrap();
    publish(&producer, TOPIC, &messages[..500], 0)
        .await
        .unwrap();
    wait_for_rows(&stream.setup.database, stream.setup.today, 500).await;
    drop(producer);

    // The broker crashes and comes back (its data kept); the node, untouched, reconnects and
    // consumes what is published after.
    stream.broker.restart();
    let producer = kafka::producer(&stream.broker.address).unwrap();
    publish(&producer, TOPIC, &messages[500..], 0)
        .await
        .unwrap();
    let sum = wait_for_rows(&stream.setup.database, stream.setup.today, 1_000).await;
    assert_eq!(sum, sales_sum(&messages));
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "the node never stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_seeds_history_creates_the_topic_and_publishes_rounds() {
    let Some(url) = support::postgres::fresh_database("ingest_produce") else {
        return;
    };
    let Some(broker) = Broker::start("ingest_produce") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let produce = |args: &[&str]| {
        let output = support::storecast(dir.path())
            .args(["--database-url", &url, "produce", "--stores", "12"])
            .args(["--brokers", &broker.address, "--partitions", "3"])
            .args(args)
            .output()
            .unwrap();
        support::succeeded(&output)
    };
    let first = produce(&["--once"]);
    assert!(
        first.contains("seeded") && first.contains("(12 stores)"),
        "{first}"
    );
    assert!(
        first.contains("created topic sale_rossman_store with 3 partitions"),
        "{first}"
    );
    let today = storecast::cli::load::yesterday().succ_opt().unwrap();
    assert!(
        first.contains(&format!("round 1: published 12 rows for {today}")),
        "{first}"
    );
    let again = produce(&["--no-history", "--count", "300", "--rate", "1000"]);
    assert!(
        !again.contains("created topic"),
        "the topic exists: {again}"
    );
    assert!(
        again.contains("published 300 rows with distinct keys"),
        "{again}"
    );

    // A node consumes both: today's round and the distinct rows (today's keys overlap: 12
    // stores x 25 days from today, the first day being the round's).
    let database = storecast::store::Database::connect(&support::database_config(&url))
        .await
        .unwrap();
    let setup = support::streaming::Setup {
        url: url.clone(),
        database,
        templates: Default::default(),
        today,
    };
    let mut node = start_node(dir.path(), &setup, &broker, "ingest-a");
    node.wait_for(&["ingest partitions assigned"]);
    wait_for_rows(&setup.database, today, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_actor_learns_that_newer_sales_arrived() {
    let Some(stream) = stream("ingest_fresh_data", 2, false).await else {
        return;
    };
    // One node that ingests and hosts the model actors.
    let address = support::node::free_address();
    let settings: Vec<String> = [
        "cluster.roles=ingest,models".to_string(),
        format!("ingest.brokers={}", stream.broker.address),
        "ingest.batch_ms=100".to_string(),
        "train.profile=reference".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), stream.setup.url.clone()];
    let mut node = support::node::NodeProcess::start(
        stream.dir.path(),
        &global,
        "solo",
        &address,
        &[],
        &settings,
    );
    node.wait_for(&["ingest partitions assigned"]);
    let client = |args: &[&str]| {
        let output = support::storecast(stream.dir.path())
            .args(["--database-url", &stream.setup.url, "cluster"])
            .args(args)
            .args(["--seeds", &address])
            .output()
            .unwrap();
        support::succeeded(&output)
    };
    let trained = client(&["retrain", "--store", "3"]);
    assert!(
        trained.contains("version 1 trained on node solo"),
        "{trained}"
    );
    assert!(!client(&["forecast", "--store", "3"]).contains("newer"));

    // Today's round lands; the store's model actor hears of it.
    let round = stream
        .setup
        .templates
        .round("product_A", stream.setup.today);
    let producer = kafka::producer(&stream.broker.address).unwrap();
    publish(&producer, TOPIC, &round, 0).await.unwrap();
    wait_for_rows(
        &stream.setup.database,
        stream.setup.today,
        round.len() as i64,
    )
    .await;
    let forecast = client(&["forecast", "--store", "3"]);
    assert!(
        forecast.contains("note: sales newer than this version have arrived"),
        "{forecast}"
    );
    let retrained = client(&["retrain", "--store", "3"]);
    assert!(retrained.contains("version 2 trained"), "{retrained}");
    assert!(!client(&["forecast", "--store", "3"]).contains("newer"));
}

/// With `ingest.retrain_on_new_data`, sales landing for a series retrain it once: two nodes
/// ingest and host the model actors; a round for stores 1 to 10 gives each of them exactly
/// one version and no other store any; a later round for stores 11 and 12, once it has given
/// them theirs, shows that no second retrain of the first ten followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sales_retrain_each_of_their_series_exactly_once_when_configured() {
    let Some(stream) = stream("ingest_retrain_on_new_data", 4, false).await else {
        return;
    };
    let addresses = [support::node::free_address(), support::node::free_address()];
    let settings: Vec<String> = [
        "cluster.roles=ingest,models".to_string(),
        format!("ingest.brokers={}", stream.broker.address),
        "ingest.batch_ms=100".to_string(),
        "ingest.retrain_on_new_data=true".to_string(),
        "train.profile=reference".to_string(),
        "cluster.heartbeat_ms=200".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), stream.setup.url.clone()];
    let mut nodes: Vec<support::node::NodeProcess> = ["alpha", "bravo"]
        .iter()
        .zip(&addresses)
        .map(|(name, address)| {
            support::node::NodeProcess::start(
                stream.dir.path(),
                &global,
                name,
                address,
                &[addresses[0].as_str()],
                &settings,
            )
        })
        .collect();
    for node in &mut nodes {
        node.wait_for(&["cluster view: 2 members"]);
    }
    wait_for_every_series_hosted(&stream, &addresses[0], 40);

    let stores_of = |round: &[(String, String)], stores: std::ops::RangeInclusive<u32>| {
        round
            .iter()
            .filter(|(key, _)| {
                key.parse::<u32>()
                    .is_ok_and(|store| stores.contains(&store))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let round = stream
        .setup
        .templates
        .round("product_A", stream.setup.today);
    let producer = kafka::producer(&stream.broker.address).unwrap();
    publish(&producer, TOPIC, &stores_of(&round, 1..=10), 0)
        .await
        .unwrap();
    let versions = wait_for_versions(&stream.setup.url, 10).await;
    assert_eq!(
        versions,
        (1..=10).map(|store| (store, 1, 1)).collect::<Vec<_>>(),
        "(store, versions, latest) after the first round"
    );

    publish(&producer, TOPIC, &stores_of(&round, 11..=12), 0)
        .await
        .unwrap();
    let versions = wait_for_versions(&stream.setup.url, 12).await;
    assert_eq!(
        versions,
        (1..=12).map(|store| (store, 1, 1)).collect::<Vec<_>>(),
        "(store, versions, latest) after the second round: one retrain per series"
    );
}

/// Waits until the model actors of `series` series run on the cluster's nodes.
fn wait_for_every_series_hosted(stream: &support::streaming::Stream, seed: &str, series: usize) {
    let started = Instant::now();
    loop {
        let output = support::storecast(stream.dir.path())
            .args(["--database-url", &stream.setup.url, "cluster", "status"])
            .args(["--seeds", seed])
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        let hosted: usize = printed
            .lines()
            .filter_map(|line| line.split_once("]: ")?.1.strip_suffix(" series active"))
            .filter_map(|count| count.parse::<usize>().ok())
            .sum();
        if hosted == series {
            return;
        }
        assert!(
            started.elapsed() < LANDING_PATIENCE,
            "{hosted} of {series} series hosted:\n{printed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `stores` stores have a model version; returns (store, versions, latest) of
/// every store with one.
async fn wait_for_versions(url: &str, stores: usize) -> Vec<(i32, i64, i32)> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let started = Instant::now();
    loop {
        let versions: Vec<(i32, i64, i32)> = sqlx::query_as(
            "SELECT store, count(*), max(version) FROM model_versions GROUP BY store ORDER BY store",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if versions.len() >= stores {
            return versions;
        }
        assert!(
            started.elapsed() < LANDING_PATIENCE,
            "{} of {stores} stores retrained: {versions:?}",
            versions.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
