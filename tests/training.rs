//! Training from the database to the registry and back, on PostgreSQL and SQLite, and the
//! `train`, `forecast` and `backtest` commands.

mod support;

use support::storecast;

use chrono::NaiveDate;
use storecast::dataset::rossmann::write_sales;
use storecast::dataset::synth::{SynthOptions, generate};
use storecast::dataset::window::recent_window;
use storecast::forecast::model::{forecast_after, restore};
use storecast::forecast::profile::{Feature, Profile};
use storecast::forecast::series::Series;
use storecast::store::Database;
use storecast::training::{TrainSettings, train_one, train_stores};

/// Store 3 closes for months; store 5 is cut to a few days below.
fn load_rows() -> Vec<storecast::dataset::SalesRow> {
    let data = generate(&SynthOptions {
        stores: 5,
        days: 500,
        seed: 21,
        ..SynthOptions::default()
    })
    .unwrap();
    let rows: Vec<_> = data
        .sales
        .into_iter()
        .filter(|row| row.store != 5 || row.date > NaiveDate::from_ymd_opt(2015, 7, 20).unwrap())
        .collect();
    recent_window(rows, 0, NaiveDate::from_ymd_opt(2015, 7, 31).unwrap())
        .unwrap()
        .rows
}

fn settings() -> TrainSettings {
    TrainSettings {
        product: "product_A".to_string(),
        profile_name: "weekly".to_string(),
        profile: Profile {
            yearly_order: 0,
            features: vec![Feature::Promo],
            closed_days_zero: true,
            ..Profile::reference()
        },
        horizon_days: 7,
        seed: 42,
        workers: 2,
        node: "test-node".to_string(),
        retrain_on_new_data: false,
    }
}

async fn training_registers_versions_and_batch_forecasts(database: Database) {
    database
        .replace_sales("product_A", &load_rows())
        .await
        .unwrap();
    let mut progress = Vec::new();
    let outcomes = train_stores(&database, &[1, 2, 5], &settings(), |step| {
        progress.push(step.done)
    })
    .await;
    assert_eq!(progress, vec![1, 2, 3]);
    assert_eq!(
        outcomes
            .iter()
            .map(|outcome| outcome.store)
            .collect::<Vec<_>>(),
        vec![1, 2, 5]
    );
    let error = outcomes[2].result.as_ref().unwrap_err();
    assert!(error.contains("too little history"), "store 5: {error}");

    for outcome in &outcomes[..2] {
        let trained = outcome.result.as_ref().unwrap();
        assert_eq!(trained.version, 1);
        assert_eq!(trained.forecast.len(), 7);
        assert_eq!(
            trained.forecast[0].date,
            NaiveDate::from_ymd_opt(2015, 8, 1).unwrap()
        );
        assert!(
            trained.metrics.mape < 0.2,
            "store {}: {:?}",
            outcome.store,
            trained.metrics
        );

        // The batch forecast is in the database with its version...
        let stored = database
            .latest_forecast(outcome.store, "product_A")
            .await
            .unwrap();
        assert_eq!(stored.len(), 7);
        assert!(stored.iter().all(|row| row.record.model_version == 1));
        // ...and the registered model reproduces it without refitting.
        let version = database
            .latest_model_version(outcome.store, "product_A")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(version.node, "test-node");
        assert_eq!(version.profile, "weekly");
        let model = restore(&version.params).unwrap();
        let series = Series::from_rows(
            &database
                .series_sales(outcome.store, "product_A")
                .await
                .unwrap(),
        )
        .unwrap();
        let again = forecast_after(&series, &model, 7, 42).unwrap();
        for (row, point) in stored.iter().zip(&again) {
            assert_eq!(row.record.date, point.date);
            for (stored_value, value) in [
                (row.record.yhat, point.yhat),
                (row.record.lower, point.lower),
                (row.record.upper, point.upper),
            ] {
                assert!(
                    (stored_value - value).abs() <= 1e-9 * value.abs().max(1.0),
                    "{stored_value} vs {value}"
                );
            }
        }
    }

    // Training again makes version 2, never a duplicate, even when two run at once.
    let settings = settings();
    let (first, second) = tokio::join!(
        train_one(&database, 1, &settings),
        train_one(&database, 1, &settings)
    );
    let mut versions = vec![first.unwrap().version, second.unwrap().version];
    versions.sort();
    assert_eq!(versions, vec![2, 3]);
    assert_eq!(
        database
            .model_version_numbers(1, "product_A")
            .await
            .unwrap(),
        vec![1, 2, 3]
    );
}

on_both_backends!(training_registers_versions_and_batch_forecasts);

#[test]
fn train_forecast_and_backtest_commands() {
    let dir = tempfile::tempdir().unwrap();
    let rows = load_rows();
    write_sales(&dir.path().join("train.csv"), &rows).unwrap();
    let url = format!("sqlite:{}", dir.path().join("cli.db").display());
    let run = |args: &[&str]| {
        let output = storecast(dir.path())
            .args(["--database-url", &url])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (code, _, stderr) = run(&["forecast", "--store", "1"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no trained model"), "{stderr}");

    let (code, stdout, stderr) = run(&[
        "load",
        "train.csv",
        "--months",
        "0",
        "--last-day",
        "2015-07-31",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("wrote"), "{stdout}");

    let (code, stdout, stderr) = run(&["train", "--all", "--profile", "reference"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("trained 4 of 5 series of product_A with profile reference"),
        "{stdout}"
    );
    assert!(stdout.contains("store 5: too little history"), "{stdout}");
    assert!(stdout.contains("wrote 28 forecast days"), "{stdout}");
    assert!(stderr.contains("5/5 series"), "progress: {stderr}");

    let (code, stdout, stderr) = run(&["forecast", "--store", "2", "--days", "10"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("model reference version 1"), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("2015-08-"))
            .count(),
        10,
        "{stdout}"
    );

    let (code, _, stderr) = run(&["train", "--store", "1", "--profile", "fancy"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown profile `fancy`"), "{stderr}");

    let (code, stdout, stderr) = run(&[
        "backtest",
        "--data",
        "train.csv",
        "--origin",
        "2015-06-30,2015-07-28",
        "--horizon",
        "7",
        "--profile",
        "default",
        "--out",
        "backtest.csv",
        "--store",
        "1,2",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("origin 2015-06-30, 7 days: RMSPE"),
        "{stdout}"
    );
    // The interval's coverage of the scored days is a share.
    let coverage: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("all origins: RMSPE "))
        .and_then(|rest| rest.split("95% interval coverage ").nth(1))
        .and_then(|share| share.trim().parse().ok())
        .unwrap_or_else(|| panic!("no coverage over all origins in: {stdout}"));
    assert!((0.0..=1.0).contains(&coverage), "{stdout}");
    let csv = std::fs::read_to_string(dir.path().join("backtest.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("store,origin,date,yhat,yhat_lower,yhat_upper")
    );
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert!(
        rows.iter()
            .all(|row| row[1] == "2015-06-30" || row[1] == "2015-07-28")
    );
    assert!(
        rows.iter().any(|row| row[2] == "2015-08-01"),
        "horizon past the data is forecast too"
    );
}
