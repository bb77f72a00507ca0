//! PostgreSQL stops for 10 s while rows stream: the ingest node keeps its batch, retries with
//! backoff without committing past it, never crashes, and no row is lost when the database
//! is back (rows are upserted by key, so duplicates could not be seen here). Its own test binary, so stopping the server disturbs no other test.

mod support;

use std::time::Duration;

use storecast::cli::produce::publish;
use storecast::ingest::kafka;
use support::streaming::{TOPIC, sales_sum, stream, streamed, wait_for_rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_row_streamed_while_the_database_is_down_is_lost() {
    let Some(stream) = stream("ingest_db_outage", 4, false).await else {
        return;
    };
    let mut node = stream.ingest_node("ingest-a");

    let messages: Vec<(String, String)> = stream
        .setup
        .templates
        .distinct("product_A", stream.setup.today, 30_000)
        .collect();
    let producer = kafka::producer(&stream.broker.address).unwrap();
    publish(&producer, TOPIC, &messages[..10_000], 0)
        .await
        .unwrap();
    wait_for_rows(&stream.setup.database, stream.setup.today, 10_000).await;

    // The database goes away; rows keep coming.
    let server = support::postgres::server().expect("the test's PostgreSQL server");
    server.stop();
    publish(&producer, TOPIC, &messages[10_000..20_000], 0)
        .await
        .unwrap();
    node.wait_for(&["cannot store an ingest batch; retrying with backoff"]);
    // Ten seconds of outage is the scenario under test, not a wait for an event.
    tokio::time::sleep(Duration::from_secs(10)).await;
    server.restart();
    node.wait_for(&["ingest batch stored after the database came back"]);

    publish(&producer, TOPIC, &messages[20_000..], 0)
        .await
        .unwrap();
    let sum = wait_for_rows(&stream.setup.database, stream.setup.today, 30_000).await;
    assert_eq!(
        sum,
        sales_sum(&messages),
        "every row landed, with its values"
    );
    assert_eq!(
        streamed(&stream.setup.database, stream.setup.today).await.0,
        30_000
    );
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "the node never stopped"
    );
}
