//! Ordering per key, with the real broker, PostgreSQL and node processes: a correction (a
//! second message for the same store and day, other values) is stored over the first, in
//! separate batches and within one; and a batch held across a revocation never lands over
//! the newer values the partitions' next owner stored meanwhile (the commit gate's promise).
//!
//! The held batch: node A's connection to PostgreSQL runs through a proxy; once A stored a
//! round, the test freezes it, so A's write of the next values waits on its way to the
//! server without an error. Node B joins, the group moves some of A's partitions to B, B
//! stores the newer values; then the proxy thaws and A's old write reaches the server.
//! Upserts alone would let it overwrite B's rows; the gate makes A give it up, uncommitted,
//! so the partitions are read again.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use storecast::ingest::kafka;
use support::node::{NodeProcess, PATIENCE, free_address};
use support::streaming::{LANDING_PATIENCE, TOPIC, start_node_joining, stream, with_field};

/// Sends one message to `partition`, acknowledged.
async fn send(producer: &FutureProducer, partition: i32, key: &str, json: &str) {
    producer
        .send(
            FutureRecord::to(TOPIC)
                .partition(partition)
                .key(key)
                .payload(json),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .expect("the broker acknowledges");
}

/// Today's `sales` of each store that has a row of `day`.
async fn sales_of(url: &str, day: chrono::NaiveDate) -> BTreeMap<i32, i32> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let rows: Vec<(i32, i32)> =
        sqlx::query_as("SELECT store, sales FROM sales WHERE product = 'product_A' AND date = $1")
            .bind(day)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter().collect()
}

/// Waits until the stored sales of `expected`'s stores are the expected ones.
async fn wait_for_sales(url: &str, day: chrono::NaiveDate, expected: &BTreeMap<i32, i32>) {
    let started = Instant::now();
    loop {
        let stored = sales_of(url, day).await;
        let now: BTreeMap<i32, i32> = expected
            .keys()
            .filter_map(|store| Some((*store, *stored.get(store)?)))
            .collect();
        if &now == expected {
            return;
        }
        assert!(
            started.elapsed() < LANDING_PATIENCE,
            "stored {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Today's message of `store` with its sales set to `sales`.
fn message(stream: &support::streaming::Stream, store: u32, sales: i64) -> String {
    let round = stream
        .setup
        .templates
        .round("product_A", stream.setup.today);
    let (_, json) = round
        .iter()
        .find(|(key, _)| key == &store.to_string())
        .unwrap_or_else(|| panic!("no message of store {store}"));
    with_field(json, "sales", sales)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_is_stored_over_the_first_message() {
    let Some(stream) = stream("ingest_correction", 2, false).await else {
        return;
    };
    let _node = stream.ingest_node("ingest-a");
    let producer = kafka::producer(&stream.broker.address).unwrap();
    let (url, today) = (&stream.setup.url, stream.setup.today);

    // In separate batches: the first lands, then its correction replaces it.
    send(&producer, 0, "1", &message(&stream, 1, 1_111)).await;
    wait_for_sales(url, today, &BTreeMap::from([(1, 1_111)])).await;
    send(&producer, 0, "1", &message(&stream, 1, 2_222)).await;
    wait_for_sales(url, today, &BTreeMap::from([(1, 2_222)])).await;

    // Within one batch: the later message wins. A third store's message, sent after both,
    // shows the batch was stored before the check.
    send(&producer, 1, "2", &message(&stream, 2, 3_333)).await;
    send(&producer, 1, "2", &message(&stream, 2, 4_444)).await;
    send(&producer, 1, "3", &message(&stream, 3, 5_555)).await;
    wait_for_sales(url, today, &BTreeMap::from([(3, 5_555)])).await;
    let stored = sales_of(url, today).await;
    assert_eq!(
        (stored.get(&1), stored.get(&2)),
        (Some(&2_222), Some(&4_444)),
        "{stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_held_across_a_revocation_never_overwrites_newer_values() {
    const PARTITIONS: u32 = 4;
    let Some(stream) = stream("ingest_ordering", PARTITIONS, false).await else {
        return;
    };
    let (url, today) = (stream.setup.url.clone(), stream.setup.today);
    let server = url
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(address, _)| address.to_string())
        .expect("a host:port in the database URL");
    let proxy = support::proxy::Proxy::start(&server).await;
    let proxied = url.replace(&server, &proxy.address);

    // Node A: all partitions; its database connections through the proxy, with patience
    // for a connection that waits there. Its batches wait 3 s for messages, so the first
    // values make one batch: while a batch waits for the write before it, the loop does not
    // poll the broker, and A would not hand its partitions over.
    let settings: Vec<String> = [
        "cluster.roles=ingest".to_string(),
        format!("ingest.brokers={}", stream.broker.address),
        "ingest.session_timeout_ms=3000".to_string(),
        "ingest.batch_ms=3000".to_string(),
        "database.connect_timeout_secs=120".to_string(),
        "log.level=info,storecast::actors::ingest=debug,ractor=warn,ractor_cluster=warn,ractor_cluster::node::node_session=error".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--set".to_string(), setting])
    .collect();
    let global = vec!["--database-url".to_string(), proxied];
    let a_address = free_address();
    let mut a = NodeProcess::start(
        stream.dir.path(),
        &global,
        "ingest-a",
        &a_address,
        &[],
        &settings,
    );
    a.wait_for(&["ingest partitions assigned", "partitions=4"]);

    // Two stores per partition: store s goes to partition (s - 1) % 4.
    let stores: Vec<u32> = (1..=2 * PARTITIONS).collect();
    let partition_of = |store: u32| ((store - 1) % PARTITIONS) as i32;
    let producer = kafka::producer(&stream.broker.address).unwrap();
    let values = |base: i32, stores: &mut dyn Iterator<Item = &u32>| -> BTreeMap<i32, i32> {
        stores
            .map(|store| (*store as i32, base + *store as i32))
            .collect()
    };

    // A stores a round of its own first, in one batch: its consumer loop is then past the
    // queries it starts with, so the next bytes A sends the database are a batch's write
    // (a start-up query held by the freeze would keep A from gathering at all).
    for store in &stores {
        let json = message(&stream, *store, 500 + i64::from(*store));
        send(&producer, partition_of(*store), &store.to_string(), &json).await;
    }
    a.wait_for(&["ingest batch stored and committed"]);
    let first = values(500, &mut stores.iter());
    wait_for_sales(&url, today, &first).await;

    // A gathers the next values and starts writing them; the write waits in the proxy.
    proxy.freeze();
    for store in &stores {
        let json = message(&stream, *store, 1_000 + i64::from(*store));
        send(&producer, partition_of(*store), &store.to_string(), &json).await;
    }
    let started = Instant::now();
    while proxy.held_bytes() == 0 {
        assert!(started.elapsed() < PATIENCE, "node A never wrote");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // B joins A's cluster and the consumer group; the group moves some partitions from A to
    // B. (In one cluster, each node's ingest sees the partitions the other consumes; alone,
    // B would take A's partitions for unconsumed while A's batches wait, and make the group
    // rebalance again and again.)
    let mut b = start_node_joining(
        stream.dir.path(),
        &stream.setup,
        &stream.broker,
        "ingest-b",
        &[],
        &[&a_address],
    );
    // (A first assignment may be empty, while the group settles.)
    let moved: Vec<i32> = loop {
        let assigned = b.wait_for_any(&["ingest partitions assigned"]);
        let ids: Vec<i32> = assigned
            .split_once(" ids=")
            .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default())
            .unwrap_or_default()
            .split(',')
            .filter_map(|id| id.parse().ok())
            .collect();
        if !ids.is_empty() {
            break ids;
        }
    };
    a.wait_for(&["ingest partitions revoked"]);

    // The newer values; B stores those of its partitions while A's write still waits.
    for store in &stores {
        let json = message(&stream, *store, 2_000 + i64::from(*store));
        send(&producer, partition_of(*store), &store.to_string(), &json).await;
    }
    let on_b = values(
        2_000,
        &mut stores
            .iter()
            .filter(|store| moved.contains(&partition_of(**store))),
    );
    wait_for_sales(&url, today, &on_b).await;
    let before_thaw = sales_of(&url, today).await;
    let mut expected = first;
    expected.extend(&on_b);
    assert_eq!(
        before_thaw, expected,
        "while A's write waits, B's stores have their newer values and the others their first"
    );

    // A's old write reaches the server: it must not land.
    proxy.thaw();
    let outcome = a.wait_for_any(&[
        "partitions moved before the batch was stored; dropping it",
        "ingest batch stored and committed",
    ]);
    let after = sales_of(&url, today).await;
    for (store, sales) in &on_b {
        assert_eq!(
            after.get(store),
            Some(sales),
            "store {store}: A's held batch ({outcome}) overwrote B's newer value"
        );
    }
    // A gave the held batch up without committing its offsets, so its partitions are read
    // again and every store ends with its newer value. B reads them: A leaves first, as its
    // 3 s batches need a spell without rebalances, and this group of two on the test broker
    // was seen rebalancing every few seconds for minutes (why is not established).
    drop(a);
    wait_for_sales(&url, today, &values(2_000, &mut stores.iter())).await;
    drop(b);
}
