//! The database layer, run the same way on a real PostgreSQL server and on SQLite.

mod support;

use chrono::NaiveDate;
use storecast::dataset::synth::{SynthOptions, generate};
use storecast::dataset::window::recent_window;
use storecast::dataset::{SalesRow, StateHoliday};
use storecast::store::Database;

fn sample_rows(stores: u32, days: u32) -> Vec<SalesRow> {
    let data = generate(&SynthOptions {
        stores,
        days,
        seed: 9,
        ..SynthOptions::default()
    })
    .unwrap();
    let last_day = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
    recent_window(data.sales, 0, last_day).unwrap().rows
}

async fn migrations_create_every_table(database: Database) {
    let tables = database.table_names().await.unwrap();
    assert_eq!(
        tables,
        [
            "forecast_results",
            "ingest_rejects",
            "job_tasks",
            "jobs",
            "model_versions",
            "sales"
        ]
    );
}

async fn sales_round_trip_exactly(database: Database) {
    let mut rows = sample_rows(3, 40);
    // Cover every holiday code and flag, whatever the generator drew.
    rows[0].state_holiday = StateHoliday::Public;
    rows[1].state_holiday = StateHoliday::Easter;
    rows[2].state_holiday = StateHoliday::Christmas;
    rows[3].promo = true;
    rows[3].school_holiday = true;
    let written = database.replace_sales("product_A", &rows).await.unwrap();
    assert_eq!(written, rows.len() as u64);
    for store in 1..=3 {
        let stored = database.series_sales(store, "product_A").await.unwrap();
        let expected: Vec<SalesRow> = rows
            .iter()
            .filter(|row| row.store == store)
            .copied()
            .collect();
        assert_eq!(stored, expected, "store {store}");
    }
    assert!(
        database
            .series_sales(1, "product_B")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn replacing_is_idempotent_and_keeps_other_products(database: Database) {
    let rows = sample_rows(4, 30);
    database
        .replace_sales("product_B", &rows[..10])
        .await
        .unwrap();
    database.replace_sales("product_A", &rows).await.unwrap();
    let once = database.sales_summary().await.unwrap();
    database.replace_sales("product_A", &rows).await.unwrap();
    let twice = database.sales_summary().await.unwrap();
    assert_eq!(once, twice);
    assert_eq!(twice.len(), 2);
    let product_a = &twice[0];
    assert_eq!(product_a.product, "product_A");
    assert_eq!(product_a.rows, 120);
    assert_eq!(product_a.stores, 4);
    assert_eq!(
        product_a.open_days,
        rows.iter().filter(|row| row.open).count() as i64
    );
    assert_eq!(
        product_a.total_sales,
        rows.iter().map(|row| i64::from(row.sales)).sum::<i64>()
    );
    assert_eq!(
        product_a.last_date,
        Some(NaiveDate::from_ymd_opt(2026, 11, 28).unwrap())
    );
    assert_eq!(twice[1].rows, 10, "product_B untouched");

    // A smaller replacement removes what is no longer there.
    database
        .replace_sales("product_A", &rows[..5])
        .await
        .unwrap();
    let summary = database.sales_summary().await.unwrap();
    assert_eq!(summary[0].rows, 5);
    assert_eq!(summary[1].rows, 10);
}

async fn a_failed_replacement_leaves_the_old_rows(database: Database) {
    let rows = sample_rows(2, 20);
    database.replace_sales("product_A", &rows).await.unwrap();
    let before = database.sales_summary().await.unwrap();

    // The same store and day twice violates the primary key half-way through.
    let mut broken = sample_rows(2, 20);
    broken.push(broken[0]);
    let error = database
        .replace_sales("product_A", &broken)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("replacing sales"), "{error}");
    assert_eq!(database.sales_summary().await.unwrap(), before);
}

async fn unusual_product_names_are_stored_verbatim(database: Database) {
    let rows = sample_rows(1, 3);
    let product = "shampoo\t'big' \\ 500ml";
    database.replace_sales(product, &rows).await.unwrap();
    assert_eq!(database.series_sales(1, product).await.unwrap(), rows);
}

on_both_backends!(
    migrations_create_every_table,
    sales_round_trip_exactly,
    replacing_is_idempotent_and_keeps_other_products,
    a_failed_replacement_leaves_the_old_rows,
    unusual_product_names_are_stored_verbatim,
);

#[tokio::test]
async fn connecting_twice_does_not_reapply_migrations() {
    let Some(url) = support::postgres::fresh_database("connecting_twice") else {
        return;
    };
    let config = support::database_config(&url);
    let first = Database::connect(&config).await.unwrap();
    first
        .replace_sales("product_A", &sample_rows(1, 5))
        .await
        .unwrap();
    let second = Database::connect(&config).await.unwrap();
    assert_eq!(second.sales_summary().await.unwrap()[0].rows, 5);
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_explained() {
    let error = Database::connect(&support::database_config("mysql://localhost/x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("unsupported database URL"), "{error}");

    // Nothing listens on a port we just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:secret@127.0.0.1:{port}/sales");
    let error = Database::connect(&support::database_config(&url))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("cannot connect to database postgres://app:***@127.0.0.1"),
        "{error}"
    );
    assert!(error.to_lowercase().contains("refused"), "{error}");
    assert!(!error.contains("secret"), "{error}");

    let error = Database::connect(&support::database_config("sqlite:/nonexistent/dir/x.db"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("/nonexistent/dir/x.db"), "{error}");
}

fn metrics(value: f64) -> storecast::forecast::validation::Metrics {
    storecast::forecast::validation::Metrics {
        rmse: value,
        mape: value / 100.0,
        mae: value / 2.0,
        median_ae: value / 3.0,
    }
}

fn new_version<'a>(
    store: u32,
    params: &'a [u8],
    node: &'a str,
) -> storecast::store::NewModelVersion<'a> {
    storecast::store::NewModelVersion {
        store,
        product: "product_A",
        profile: "reference",
        params,
        metrics: metrics(120.5),
        trained_from: NaiveDate::from_ymd_opt(2015, 1, 1).unwrap(),
        trained_to: NaiveDate::from_ymd_opt(2015, 6, 19).unwrap(),
        node,
    }
}

async fn registry_numbers_versions_per_series(database: Database) {
    assert!(
        database
            .latest_model_version(1, "product_A")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        database
            .insert_model_version(&new_version(1, &[1, 2, 3], "node-a"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        database
            .insert_model_version(&new_version(1, &[4, 5], "node-b"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        database
            .insert_model_version(&new_version(2, &[6], "node-a"))
            .await
            .unwrap(),
        1
    );
    let latest = database
        .latest_model_version(1, "product_A")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.version, 2);
    assert_eq!(latest.params, vec![4, 5]);
    assert_eq!(latest.node, "node-b");
    assert_eq!(latest.metrics, metrics(120.5));
    assert_eq!(
        latest.trained_to,
        NaiveDate::from_ymd_opt(2015, 6, 19).unwrap()
    );
    assert!((chrono::Utc::now() - latest.trained_at).num_seconds().abs() < 60);
}

async fn concurrent_trainings_never_share_a_version(database: Database) {
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let database = database.clone();
            tokio::spawn(async move {
                let params = vec![task as u8];
                database
                    .insert_model_version(&new_version(7, &params, "racer"))
                    .await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=16).collect::<Vec<i32>>());
    assert_eq!(
        database
            .model_version_numbers(7, "product_A")
            .await
            .unwrap(),
        (1..=16).collect::<Vec<i32>>()
    );
}

async fn forecasts_are_written_idempotently_per_version(database: Database) {
    let record = |day: u32, version: i32, yhat: f64| storecast::store::ForecastRecord {
        store: 3,
        product: "product_A".to_string(),
        date: NaiveDate::from_ymd_opt(2015, 6, day).unwrap(),
        yhat,
        lower: yhat - 10.0,
        upper: yhat + 10.0,
        model_version: version,
    };
    database
        .write_forecasts(&[record(20, 1, 100.0), record(21, 1, 110.0)])
        .await
        .unwrap();
    database
        .write_forecasts(&[record(20, 1, 101.0), record(21, 1, 111.0)])
        .await
        .unwrap();
    let latest = database.latest_forecast(3, "product_A").await.unwrap();
    assert_eq!(latest.len(), 2, "rewriting a version replaces its rows");
    assert_eq!(latest[0].record, record(20, 1, 101.0));

    database
        .write_forecasts(&[record(22, 2, 120.0)])
        .await
        .unwrap();
    let latest = database.latest_forecast(3, "product_A").await.unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|row| row.record.clone())
            .collect::<Vec<_>>(),
        vec![record(22, 2, 120.0)]
    );
    assert!(
        database
            .latest_forecast(4, "product_A")
            .await
            .unwrap()
            .is_empty()
    );
}

on_both_backends!(
    registry_numbers_versions_per_series,
    concurrent_trainings_never_share_a_version,
    forecasts_are_written_idempotently_per_version,
);
