//! The database layer, run the same way on a real PostgreSQL server and on SQLite.

mod support;

use chrono::NaiveDate;
use std::time::Duration;
use storecast::dataset::synth::{SynthOptions, generate};
use storecast::dataset::window::recent_window;
use storecast::dataset::{SalesRow, StateHoliday};

use storecast::store::{Database, Fence, JobKind, NewJob, Registered, StoreError, TaskRef};

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
            "leases",
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
    assert_eq!(product_a.last_date, rows.iter().map(|row| row.date).max());
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
        rmspe: value / 90.0,
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
        task: None,
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
        Registered::New(1)
    );
    assert_eq!(
        database
            .insert_model_version(&new_version(1, &[4, 5], "node-b"))
            .await
            .unwrap(),
        Registered::New(2)
    );
    assert_eq!(
        database
            .insert_model_version(&new_version(2, &[6], "node-a"))
            .await
            .unwrap(),
        Registered::New(1)
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

    // The history, newest first, with what each version was and where it was trained.
    let history = database.version_history(1, "product_A", 10).await.unwrap();
    let summary: Vec<(i32, &str)> = history
        .iter()
        .map(|version| (version.version, version.node.as_str()))
        .collect();
    assert_eq!(summary, vec![(2, "node-b"), (1, "node-a")]);
    assert_eq!(history[0].metrics, metrics(120.5));
    assert_eq!(history[0].trained_at, latest.trained_at);
    assert_eq!(history[0].profile, latest.profile);
    let newest = database.version_history(1, "product_A", 1).await.unwrap();
    assert_eq!(newest, history[..1]);
    assert!(
        database
            .version_history(3, "product_A", 10)
            .await
            .unwrap()
            .is_empty()
    );
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
        versions.push(task.await.unwrap().unwrap().version());
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

async fn lease_is_held_renewed_and_taken_over_only_when_expired(database: Database) {
    let long = Duration::from_secs(60);
    let first = database
        .acquire_lease("scheduler", "node-a", long)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(first.epoch, 1);
    let renewed = database
        .acquire_lease("scheduler", "node-a", long)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.epoch, 1, "renewing keeps the epoch");
    assert_eq!(
        database
            .acquire_lease("scheduler", "node-b", long)
            .await
            .unwrap(),
        None,
        "an unexpired lease is not taken"
    );
    // node-a lets it lapse: it expires at once.
    database
        .acquire_lease("scheduler", "node-a", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let taken = database
        .acquire_lease("scheduler", "node-b", long)
        .await
        .unwrap()
        .expect("an expired lease is taken");
    assert_eq!(taken.epoch, 2, "a new holder gets a new epoch");
    // The old holder's fence is refused, the new one's is not.
    let job = NewJob {
        kind: JobKind::TrainAll,
        product: "product_A",
        profile: "default",
        slot: None,
        stores: &[1, 2, 3],
        traceparent: "",
    };
    let refused = database.create_job(&first, &job).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("no longer held by node-a at epoch 1"),
        "{refused}"
    );
    database.create_job(&taken, &job).await.unwrap();
    database.release_lease(&taken).await.unwrap();
    let after_release = database
        .acquire_lease("scheduler", "node-a", long)
        .await
        .unwrap()
        .expect("a released lease is free");
    assert_eq!(after_release.epoch, 3);
}

/// A scheduler whose lease passed to another holder is refused by every fenced write, each
/// tried at the point where the current holder's same write succeeds, and the refused write
/// changes nothing: creating a job, starting it, claiming and releasing a task, entering
/// forecasting, finishing.
async fn a_stale_lease_epoch_is_refused_by_every_fenced_write(database: Database) {
    let stale = database
        .acquire_lease("scheduler", "node-a", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let current = fence(&database).await;
    assert_ne!(stale.epoch, current.epoch);
    let refused = |result: Result<(), StoreError>, write: &str| match result {
        Err(StoreError::LeaseLost { epoch, .. }) => assert_eq!(epoch, stale.epoch, "{write}"),
        other => panic!("{write} with a stale epoch: {other:?}"),
    };
    let job = NewJob {
        kind: JobKind::TrainAll,
        product: "product_A",
        profile: "default",
        slot: None,
        stores: &[1, 2],
        traceparent: "",
    };
    refused(
        database.create_job(&stale, &job).await.map(|_| ()),
        "creating a job",
    );
    assert!(database.active_jobs().await.unwrap().is_empty());
    let (id, _) = database.create_job(&current, &job).await.unwrap();
    // Each write, refused to the stale holder, then made by the current one; the job and
    // its tasks are compared before and after every refusal.
    let snapshot = || async {
        (
            database.job(id).await.unwrap().unwrap(),
            database.job_tasks(id).await.unwrap(),
        )
    };
    let task = TaskRef {
        job_id: id,
        store: 1,
        product: "product_A".to_string(),
    };
    let before = snapshot().await;
    refused(database.start_job(&stale, id).await, "starting a job");
    assert_eq!(snapshot().await, before);
    database.start_job(&current, id).await.unwrap();

    let before = snapshot().await;
    refused(
        database
            .claim_task(&stale, &task, "node-a")
            .await
            .map(|_| ()),
        "claiming a task",
    );
    assert_eq!(snapshot().await, before);
    assert_eq!(
        database
            .claim_task(&current, &task, "node-b")
            .await
            .unwrap(),
        Some(1)
    );
    // Each fenced write records the epoch it was made with.
    let (job_row, tasks) = snapshot().await;
    assert_eq!(job_row.epoch, Some(current.epoch));
    assert_eq!(tasks[0].epoch, Some(current.epoch));

    let before = snapshot().await;
    refused(
        database
            .release_task(&stale, &task, "node-b left", false)
            .await,
        "releasing a task",
    );
    assert_eq!(snapshot().await, before);
    database
        .release_task(&current, &task, "no sales", true)
        .await
        .unwrap();

    let before = snapshot().await;
    refused(
        database.enter_forecasting(&stale, id).await,
        "entering forecasting",
    );
    assert_eq!(snapshot().await, before);
    database.enter_forecasting(&current, id).await.unwrap();

    let before = snapshot().await;
    refused(
        database.finish_job(&stale, id, true, None).await,
        "finishing a job",
    );
    assert_eq!(snapshot().await, before);
    assert!(before.0.is_active());
    database
        .finish_job(&current, id, false, Some("1 series failed to train"))
        .await
        .unwrap();
    assert_eq!(
        database.job(id).await.unwrap().unwrap().state.as_str(),
        "failed"
    );
}

async fn fence(database: &Database) -> Fence {
    database
        .acquire_lease("scheduler", "node-a", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap()
}

async fn jobs_fire_once_per_slot_and_resume_from_rows(database: Database) {
    let fence = fence(&database).await;
    let weekly = NewJob {
        kind: JobKind::TrainAll,
        product: "product_A",
        profile: "default",
        slot: Some("train_all@2026-11-29T02:00Z"),
        stores: &[3, 1, 2],
        traceparent: "",
    };
    let (id, created) = database.create_job(&fence, &weekly).await.unwrap();
    assert!(created);
    assert_eq!(
        database.create_job(&fence, &weekly).await.unwrap(),
        (id, false),
        "a slot fires one job"
    );
    let on_demand = NewJob {
        slot: None,
        ..weekly.clone()
    };
    assert_eq!(
        database.create_job(&fence, &on_demand).await.unwrap(),
        (id, false),
        "a train-all while one is active joins it"
    );
    let job = database.job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.phase.as_str()),
        ("pending", "training")
    );
    assert_eq!((job.total, job.succeeded, job.failed), (3, 0, 0));
    assert_eq!(database.active_jobs().await.unwrap(), vec![job]);

    database.start_job(&fence, id).await.unwrap();
    let task = |store| TaskRef {
        job_id: id,
        store,
        product: "product_A".to_string(),
    };
    assert_eq!(
        database
            .claim_task(&fence, &task(1), "node-b")
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        database
            .claim_task(&fence, &task(1), "node-c")
            .await
            .unwrap(),
        Some(2)
    );
    database
        .release_task(&fence, &task(1), "node-c left", false)
        .await
        .unwrap();
    database
        .claim_task(&fence, &task(2), "node-b")
        .await
        .unwrap();
    database
        .release_task(&fence, &task(2), "no sales", true)
        .await
        .unwrap();
    let tasks = database.job_tasks(id).await.unwrap();
    let states: Vec<(i32, &str, i32)> = tasks
        .iter()
        .map(|task| (task.store, task.state.as_str(), task.attempts))
        .collect();
    assert_eq!(
        states,
        [(1, "pending", 2), (2, "failed", 1), (3, "pending", 0)]
    );
    assert_eq!(tasks[1].error.as_deref(), Some("no sales"));

    // The registry completes a task with its version, once.
    let mut version = new_version(1, &[1], "node-b");
    let task_one = task(1);
    version.task = Some(&task_one);
    assert_eq!(
        database.insert_model_version(&version).await.unwrap(),
        Registered::New(1)
    );
    assert_eq!(
        database.insert_model_version(&version).await.unwrap(),
        Registered::AlreadyDone(1),
        "a second training of the task registers nothing"
    );
    assert_eq!(
        database
            .model_version_numbers(1, "product_A")
            .await
            .unwrap(),
        [1]
    );
    assert_eq!(
        database
            .claim_task(&fence, &task(1), "node-b")
            .await
            .unwrap(),
        None,
        "a completed task is not given out again"
    );
    // A task completed by a training another request started.
    assert!(database.complete_task(&task(3), 7, "node-c").await.unwrap());
    assert!(!database.complete_task(&task(3), 8, "node-c").await.unwrap());
    let missing = TaskRef {
        store: 99,
        ..task(1)
    };
    let mut stray = new_version(99, &[1], "node-b");
    stray.task = Some(&missing);
    let error = database.insert_model_version(&stray).await.unwrap_err();
    assert!(
        error.to_string().contains("has no task for store 99"),
        "{error}"
    );
    assert!(
        database
            .model_version_numbers(99, "product_A")
            .await
            .unwrap()
            .is_empty()
    );

    database.enter_forecasting(&fence, id).await.unwrap();
    database
        .finish_job(&fence, id, true, Some("1 series failed to train"))
        .await
        .unwrap();
    let job = database.job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.phase.as_str()),
        ("succeeded", "done")
    );
    assert_eq!((job.succeeded, job.failed, job.running), (2, 1, 0));
    assert!(job.finished_at.is_some() && job.started_at.is_some());
    assert!(database.active_jobs().await.unwrap().is_empty());
    assert_eq!(database.jobs_before(None, 5).await.unwrap(), vec![job]);
    assert!(database.jobs_before(Some(id), 5).await.unwrap().is_empty());
}

async fn one_task_gets_one_version_under_racing_trainings(database: Database) {
    let fence = fence(&database).await;
    let (id, _) = database
        .create_job(
            &fence,
            &NewJob {
                kind: JobKind::TrainAll,
                product: "product_A",
                profile: "default",
                slot: None,
                stores: &[5],
                traceparent: "",
            },
        )
        .await
        .unwrap();
    let racers: Vec<_> = (0..8)
        .map(|racer| {
            let database = database.clone();
            tokio::spawn(async move {
                let task = TaskRef {
                    job_id: id,
                    store: 5,
                    product: "product_A".to_string(),
                };
                let params = vec![racer as u8];
                let mut version = new_version(5, &params, "racer");
                version.task = Some(&task);
                database.insert_model_version(&version).await.unwrap()
            })
        })
        .collect();
    let mut new = 0;
    for racer in racers {
        if let Registered::New(version) = racer.await.unwrap() {
            assert_eq!(version, 1);
            new += 1;
        }
    }
    assert_eq!(new, 1, "exactly one racer registers a version");
    assert_eq!(
        database
            .model_version_numbers(5, "product_A")
            .await
            .unwrap(),
        [1]
    );
}

async fn ingest_batches_upsert_and_replay_changes_nothing(database: Database) {
    use storecast::ingest::message::{Reject, Sale};
    database
        .replace_sales("product_A", &sample_rows(2, 10))
        .await
        .unwrap();
    let before = database.series_sales(1, "product_A").await.unwrap();
    let last = *before.last().unwrap();
    let next_day = last.date.succ_opt().unwrap();
    let sale = |store: u32, date: NaiveDate, sales: u32| Sale {
        product: "product_A".to_string(),
        row: SalesRow {
            store,
            day_of_week: date.format("%u").to_string().parse().unwrap(),
            date,
            sales,
            ..last
        },
    };
    let batch = vec![
        sale(1, next_day, 100),
        sale(1, last.date, 7), // corrects a stored day
        sale(2, next_day, 50),
        sale(2, next_day, 55), // a later message for the same day wins
    ];
    let reject = Reject {
        topic: "sale_rossman_store".to_string(),
        partition: 3,
        offset: 42,
        payload: b"{oops".to_vec(),
        reason: "not JSON: key must be a string".to_string(),
    };
    let written = database
        .write_ingest_batch(&batch, std::slice::from_ref(&reject))
        .await
        .unwrap();
    assert_eq!((written.rows, written.rejects), (3, 1));
    let replay = database
        .write_ingest_batch(&batch, std::slice::from_ref(&reject))
        .await
        .unwrap();
    assert_eq!(replay.rejects, 0, "a reject is recorded once per offset");

    let store_one = database.series_sales(1, "product_A").await.unwrap();
    assert_eq!(store_one.len(), before.len() + 1, "replaying added nothing");
    assert_eq!(store_one[store_one.len() - 2].sales, 7);
    assert_eq!(store_one.last().unwrap().sales, 100);
    let store_two = database.series_sales(2, "product_A").await.unwrap();
    assert_eq!(store_two.last().unwrap().sales, 55);

    let rejects = database.ingest_rejects(10).await.unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(
        (
            rejects[0].partition,
            rejects[0].offset,
            rejects[0].payload.as_slice()
        ),
        (3, 42, b"{oops".as_slice())
    );
    assert_eq!(rejects[0].reason, reject.reason);
    assert_eq!(
        database
            .known_stores()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [1, 2]
    );
    let last_dates = database
        .last_sale_dates("product_A", &[1, 2, 3])
        .await
        .unwrap();
    assert_eq!(last_dates.get(&1), Some(&next_day));
    assert_eq!(last_dates.get(&3), None);
}

/// New rows take PostgreSQL's COPY path; a batch that meets one stored row is undone and
/// upserted whole, so no row is half-written or doubled.
async fn ingest_copies_new_rows_and_upserts_a_batch_that_meets_stored_ones(database: Database) {
    use storecast::ingest::message::Sale;
    database
        .replace_sales("product_A", &sample_rows(3, 10))
        .await
        .unwrap();
    let stored = database.series_sales(1, "product_A").await.unwrap();
    let last = *stored.last().unwrap();
    let day = |ahead: u64| last.date + chrono::Days::new(ahead);
    let sale = |store: u32, date: NaiveDate, sales: u32| Sale {
        product: "product_A".to_string(),
        row: SalesRow {
            store,
            date,
            sales,
            ..last
        },
    };
    let copies = matches!(database, Database::Postgres(_));

    let fresh: Vec<Sale> = (1..=3)
        .flat_map(|store| (1..=4).map(move |ahead| (store, ahead)))
        .map(|(store, ahead)| sale(store, day(ahead), 1_000 + store))
        .collect();
    let written = database.write_ingest_batch(&fresh, &[]).await.unwrap();
    assert_eq!((written.rows, written.copied), (12, copies));

    // New days for stores 1 and 2, and one already stored day of store 3, last.
    let mixed = vec![
        sale(1, day(5), 11),
        sale(2, day(5), 22),
        sale(3, day(2), 33),
    ];
    let written = database.write_ingest_batch(&mixed, &[]).await.unwrap();
    assert_eq!((written.rows, written.copied), (3, false));
    for (store, sales) in [(1, 11), (2, 22)] {
        let series = database.series_sales(store, "product_A").await.unwrap();
        assert_eq!(series.len(), stored.len() + 5, "store {store}");
        assert_eq!(series.last().unwrap().sales, sales);
    }
    let three = database.series_sales(3, "product_A").await.unwrap();
    assert_eq!(three.len(), stored.len() + 4, "nothing doubled");
    assert_eq!(
        three[three.len() - 3].sales,
        33,
        "the stored day was updated"
    );
}

/// A sale the database cannot store becomes a reject of its message and the rest of the
/// batch lands; without the origins to reject it by, the batch fails whole and nothing is
/// written.
async fn ingest_refused_rows_become_rejects_and_the_rest_lands(database: Database) {
    use std::sync::Arc;
    use storecast::ingest::message::{Origin, Sale};
    database
        .replace_sales("product_A", &sample_rows(2, 10))
        .await
        .unwrap();
    let last = *database
        .series_sales(1, "product_A")
        .await
        .unwrap()
        .last()
        .unwrap();
    let sale = |store: u32, ahead: u64| {
        let date = last.date + chrono::Days::new(ahead);
        Sale {
            product: "product_A".to_string(),
            row: SalesRow {
                store,
                day_of_week: date.format("%u").to_string().parse().unwrap(),
                date,
                sales: 100 * store + ahead as u32,
                ..last
            },
        }
    };
    let mut batch: Vec<Sale> = (1..=2)
        .flat_map(|store| (1..=10).map(move |ahead| (store, ahead)))
        .map(|(store, ahead)| sale(store, ahead))
        .collect();
    let good = batch.len();
    let mut too_big = sale(1, 11);
    too_big.row.sales = 3_000_000_000;
    let mut nul = sale(2, 11);
    nul.product = "product\u{0}A".to_string();
    let mut bad_day = sale(1, 12);
    bad_day.row.day_of_week = 9;
    let mut bad = vec![
        (too_big, "`sales`"),
        (nul, "`productname`"),
        (bad_day, "`dayofweek`"),
    ];
    if matches!(database, Database::Postgres(_)) {
        // Nothing checks this before PostgreSQL does: the batch is split until it stands alone.
        let mut ancient = sale(2, 12);
        ancient.row.date = NaiveDate::from_ymd_opt(-5000, 1, 1).unwrap();
        bad.push((ancient, "[SQLSTATE 22"));
    }
    // The bad ones among the good: the third, the ninth, ...
    for (position, (sale, _)) in bad.iter().enumerate() {
        batch.insert(2 + position * 6, sale.clone());
    }
    let origins: Vec<Origin> = (0..batch.len())
        .map(|offset| Origin {
            topic: Arc::from("sale_rossman_store"),
            partition: 0,
            offset: offset as i64,
        })
        .collect();

    // Without origins: an error naming the row, and nothing written.
    let error = database.write_ingest_batch(&batch, &[]).await.unwrap_err();
    assert!(
        error.to_string().contains("cannot store the sale of store"),
        "{error}"
    );
    let stored = database.series_sales(1, "product_A").await.unwrap();
    assert_eq!(stored.last().unwrap().date, last.date, "nothing landed");

    let written = database
        .write_ingest_batch_gated(&batch, &origins, &[], || Some(()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.rows, good as u64, "every good row landed");
    assert_eq!(written.refused, bad.len() as u64);
    assert_eq!(written.rejects, bad.len() as u64);
    for store in [1, 2] {
        let series = database.series_sales(store, "product_A").await.unwrap();
        assert_eq!(
            series.last().unwrap().date,
            last.date + chrono::Days::new(10)
        );
        assert_eq!(series.last().unwrap().sales, 100 * store + 10);
    }
    let rejects = database.ingest_rejects(100).await.unwrap();
    assert_eq!(rejects.len(), bad.len());
    for (position, (sale, field)) in bad.iter().enumerate() {
        let offset = (2 + position * 6) as i64;
        let reject = rejects
            .iter()
            .find(|reject| reject.offset == offset)
            .unwrap();
        assert!(reject.reason.contains(field), "{field}: {}", reject.reason);
        let payload: serde_json::Value = serde_json::from_slice(&reject.payload).unwrap();
        assert_eq!(payload["store"], sale.row.store);
    }
}

/// How long a retrain job may run before a new request takes it for abandoned.
const ABANDON_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// A retrain of a series already retraining joins its job; the job ends with its outcome,
/// and is not the scheduler's work.
async fn retrain_jobs_join_and_end_with_their_outcome(database: Database) {
    let (first, created) = database
        .start_retrain_job(4, "product_A", "default", "node-a", ABANDON_AFTER, "")
        .await
        .unwrap();
    assert!(created);
    let (joined, created) = database
        .start_retrain_job(4, "product_A", "default", "node-b", ABANDON_AFTER, "")
        .await
        .unwrap();
    assert_eq!((joined, created), (first, false));
    let (other, created) = database
        .start_retrain_job(5, "product_A", "default", "node-a", ABANDON_AFTER, "")
        .await
        .unwrap();
    assert!(created && other != first, "another series, another job");
    assert!(
        database.active_jobs().await.unwrap().is_empty(),
        "retrain jobs are not the scheduler's"
    );
    assert_eq!(
        database.job(first).await.unwrap().map(|job| job.kind),
        Some(JobKind::Retrain)
    );

    database.finish_retrain_job(first, Ok(3)).await.unwrap();
    let job = database.job(first).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.succeeded, job.total),
        ("succeeded", 1, 1)
    );
    let tasks = database.job_tasks(first).await.unwrap();
    assert_eq!(tasks[0].model_version, Some(3));
    // Ended: a late outcome changes nothing, and a new request starts a new job.
    database
        .finish_retrain_job(first, Err("late"))
        .await
        .unwrap();
    assert_eq!(
        database.job(first).await.unwrap().unwrap().state.as_str(),
        "succeeded"
    );
    let (next, created) = database
        .start_retrain_job(4, "product_A", "default", "node-a", ABANDON_AFTER, "")
        .await
        .unwrap();
    assert!(created && next > first);

    database
        .finish_retrain_job(other, Err("no sales"))
        .await
        .unwrap();
    let failed = database.job(other).await.unwrap().unwrap();
    assert_eq!((failed.state.as_str(), failed.failed), ("failed", 1));
    assert_eq!(failed.error.as_deref(), Some("no sales"));
    assert_eq!(
        database.job_tasks(other).await.unwrap()[0].error.as_deref(),
        Some("no sales")
    );

    // The registry completed the task, but the requester heard only an error: the version
    // stands.
    let (timed_out, _) = database
        .start_retrain_job(6, "product_A", "default", "node-a", ABANDON_AFTER, "")
        .await
        .unwrap();
    let task = TaskRef {
        job_id: timed_out,
        store: 6,
        product: "product_A".to_string(),
    };
    assert!(database.complete_task(&task, 9, "node-a").await.unwrap());
    database
        .finish_retrain_job(timed_out, Err("node-a did not answer"))
        .await
        .unwrap();
    let job = database.job(timed_out).await.unwrap().unwrap();
    assert_eq!((job.state.as_str(), job.error), ("succeeded", None));
    assert_eq!(
        database.job_tasks(timed_out).await.unwrap()[0].model_version,
        Some(9)
    );
}

on_both_backends!(
    ingest_batches_upsert_and_replay_changes_nothing,
    retrain_jobs_join_and_end_with_their_outcome,
    ingest_copies_new_rows_and_upserts_a_batch_that_meets_stored_ones,
    ingest_refused_rows_become_rejects_and_the_rest_lands,
    lease_is_held_renewed_and_taken_over_only_when_expired,
    a_stale_lease_epoch_is_refused_by_every_fenced_write,
    jobs_fire_once_per_slot_and_resume_from_rows,
    one_task_gets_one_version_under_racing_trainings,
    registry_numbers_versions_per_series,
    concurrent_trainings_never_share_a_version,
    forecasts_are_written_idempotently_per_version,
);
