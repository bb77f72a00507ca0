//! The `storecast` binary as a user runs it: subcommands, their output, their errors.

mod support;

use support::{run_within, storecast};

use std::path::Path;

use chrono::Datelike as _;
use std::process::{Command, Output};

use storecast::dataset::rossmann;
use storecast::store::Database;

fn run(command: &mut Command) -> Output {
    command.output().expect("run storecast")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a failure reported as exactly one `error:` line mentioning every `needle`.
fn assert_one_line_error(output: &Output, needles: &[&str]) {
    let stderr = stderr(output);
    assert_eq!(output.status.code(), Some(1), "exit code; stderr: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "`{needle}` missing from: {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn synth(dir: &Path, args: &[&str]) -> Output {
    let output = run(storecast(dir).args(["dataset", "synth"]).args(args));
    assert!(output.status.success(), "{}", stderr(&output));
    output
}

#[test]
fn help_explains_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(storecast(dir.path()).arg("--help"));
    assert!(output.status.success());
    let text = stdout(&output);
    for command in ["demo", "load", "dataset", "config"] {
        assert!(
            text.contains(&format!("  {command} ")),
            "{command} in {text}"
        );
    }
}

#[test]
fn synth_is_deterministic_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--stores", "4", "--days", "60", "--seed", "5"];
    synth(dir.path(), &[&args[..], &["--out", "a"]].concat());
    synth(dir.path(), &[&args[..], &["--out", "b"]].concat());
    synth(
        dir.path(),
        &["--stores", "4", "--days", "60", "--seed", "6", "--out", "c"],
    );
    let read =
        |folder: &str, file: &str| std::fs::read(dir.path().join(folder).join(file)).unwrap();
    assert_eq!(read("a", "train.csv"), read("b", "train.csv"));
    assert_eq!(read("a", "store.csv"), read("b", "store.csv"));
    assert_ne!(read("a", "train.csv"), read("c", "train.csv"));

    let rows = rossmann::read_sales(&dir.path().join("a/train.csv")).unwrap();
    assert_eq!(rows.len(), 240);
    let stores = rossmann::read_stores(&dir.path().join("a/store.csv")).unwrap();
    assert_eq!(stores.len(), 4);

    synth(dir.path(), &[&args[..], &["--out", "z", "--gzip"]].concat());
    let gzipped = rossmann::read_sales(&dir.path().join("z/train.csv.gz")).unwrap();
    assert_eq!(gzipped, rows);

    let output =
        run(storecast(dir.path()).args(["dataset", "check", "a/train.csv", "a/store.csv"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout(&output);
    assert!(
        report.contains("a/train.csv: 240 rows, 4 stores, 2015-06-02..2015-07-31"),
        "{report}"
    );
    assert!(report.contains("a/store.csv: 4 stores"), "{report}");
}

#[test]
fn malformed_files_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), &["--stores", "2", "--days", "10"]);
    let text = std::fs::read_to_string(dir.path().join("train.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[5] = lines[5].replacen(",\"0\",", ",\"x\",", 1);
    std::fs::write(dir.path().join("bad.csv"), lines.join("\n")).unwrap();
    let output = run(storecast(dir.path()).args(["dataset", "check", "bad.csv"]));
    assert_one_line_error(&output, &["bad.csv:6:", "`StateHoliday`", "\"x\""]);

    std::fs::write(
        dir.path().join("columns.csv"),
        "Store,Date,Sales\n1,2015-01-01,3\n",
    )
    .unwrap();
    let output = run(storecast(dir.path()).args(["dataset", "check", "columns.csv"]));
    assert_one_line_error(&output, &["columns.csv", "missing column `DayOfWeek`"]);

    let output = run(storecast(dir.path()).args(["load", "missing.csv"]));
    assert_one_line_error(&output, &["missing.csv", "No such file"]);

    let output = run(storecast(dir.path()).args(["dataset", "synth", "--stores", "0"]));
    assert_one_line_error(&output, &["--stores"]);
}

#[test]
fn config_layers_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(storecast(dir.path()).arg("config"));
    assert!(output.status.success(), "{}", stderr(&output));
    let defaults = stdout(&output);
    assert!(defaults.contains("product = \"product_A\""), "{defaults}");
    assert!(defaults.contains("months = 5"), "{defaults}");

    std::fs::write(
        dir.path().join("site.toml"),
        "[load]\nmonths = 2\nproduct = \"file\"\n",
    )
    .unwrap();
    let output = run(storecast(dir.path())
        .args([
            "--config",
            "site.toml",
            "--set",
            "database.max_connections=3",
            "config",
        ])
        .env("STORECAST_LOAD_PRODUCT", "env")
        .env("STORECAST_DATABASE_MAX_CONNECTIONS", "2")
        .env("STORECAST_DATABASE_URL", "postgres://app:hidden@db/sales")
        .env("STORECAST_GATEWAY_TOKEN", "token-hidden-too")
        .env("STORECAST_CLUSTER_COOKIE", "cookie-hidden-as-well"));
    assert!(output.status.success(), "{}", stderr(&output));
    let effective = stdout(&output);
    assert!(effective.contains("months = 2"), "file: {effective}");
    assert!(
        effective.contains("product = \"env\""),
        "env over file: {effective}"
    );
    assert!(
        effective.contains("max_connections = 3"),
        "flag over env: {effective}"
    );
    assert!(
        effective.contains("postgres://app:***@db/sales"),
        "masked: {effective}"
    );
    assert!(!effective.contains("hidden"), "secrets masked: {effective}");
    assert!(effective.contains("token = \"***\""), "{effective}");

    std::fs::write(dir.path().join("typo.toml"), "[load]\nmonth = 2\n").unwrap();
    let output = run(storecast(dir.path()).args(["--config", "typo.toml", "config"]));
    assert_one_line_error(
        &output,
        &["unknown configuration key `load.month`", "typo.toml"],
    );

    let output = run(storecast(dir.path())
        .arg("config")
        .env("STORECAST_LOAD_MONTH", "2"));
    assert_one_line_error(&output, &["STORECAST_LOAD_MONTH"]);

    let output = run(storecast(dir.path()).args(["--set", "load.month=2", "config"]));
    assert_one_line_error(&output, &["`load.month`"]);

    let output = run(storecast(dir.path()).args(["--config", "absent.toml", "config"]));
    assert_one_line_error(&output, &["absent.toml"]);
}

#[test]
fn bad_database_urls_and_a_database_that_is_down_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), &["--stores", "1", "--days", "10"]);

    let output =
        run(storecast(dir.path()).args(["--database-url", "mysql://x/y", "load", "train.csv"]));
    assert_one_line_error(&output, &["unsupported database URL `mysql://x/y`"]);

    let output =
        run(storecast(dir.path()).args(["--database-url", "postgres://[bad", "load", "train.csv"]));
    assert_one_line_error(&output, &["invalid database URL"]);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/storecast");
    let output = run(storecast(dir.path()).args(["--database-url", &url, "load", "train.csv"]));
    assert_one_line_error(
        &output,
        &["cannot connect to database", &format!("127.0.0.1:{port}")],
    );
}

/// `storecast load` twice on the same day leaves the same rows, on SQLite and PostgreSQL.
#[tokio::test]
async fn load_is_idempotent_on_both_databases() {
    let dir = tempfile::tempdir().unwrap();
    synth(
        dir.path(),
        &["--stores", "3", "--days", "400", "--seed", "11"],
    );
    let sqlite_url = format!("sqlite:{}", dir.path().join("load.db").display());
    let mut urls = vec![sqlite_url];
    urls.extend(support::postgres::fresh_database(
        "load_is_idempotent::postgres",
    ));

    for url in urls {
        let load = |extra: &[&str]| {
            let output = run(storecast(dir.path())
                .args([
                    "--database-url",
                    &url,
                    "load",
                    "train.csv",
                    "--last-day",
                    "2026-11-28",
                ])
                .args(extra));
            assert!(output.status.success(), "{url}: {}", stderr(&output));
            stdout(&output)
        };
        let report = load(&[]);
        // The file ends 2015-07-31: five months back starts 2015-03-01, 153 days.
        assert!(
            report.contains("kept 459 rows of 3 stores (last 5 months: 2015-03-01..2015-07-31)"),
            "{report}"
        );
        // Whole weeks: the Friday the file ends on lands on the Friday before 2026-11-28.
        assert!(
            report.contains("weeks to 2026-06-28..2026-11-27 (weekdays kept)"),
            "{report}"
        );

        let database = Database::connect(&support::database_config(&url))
            .await
            .unwrap();
        let first = snapshot(&database).await;
        database.close().await;
        load(&[]);
        let database = Database::connect(&support::database_config(&url))
            .await
            .unwrap();
        assert_eq!(
            snapshot(&database).await,
            first,
            "{url}: second load changed the rows"
        );
        let summary = database.sales_summary().await.unwrap();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].rows, 459);
        assert_eq!(summary[0].last_date.unwrap().to_string(), "2026-11-27");
        database.close().await;

        // Window and product options.
        load(&["--months", "1", "--product", "product_B"]);
        let database = Database::connect(&support::database_config(&url))
            .await
            .unwrap();
        let summary = database.sales_summary().await.unwrap();
        assert_eq!(summary[1].product, "product_B");
        assert_eq!(summary[1].rows, 3 * 31, "July has 31 days");
        assert_eq!(summary[0].rows, 459, "product_A untouched");
        database.close().await;
    }
}

async fn snapshot(database: &Database) -> Vec<storecast::dataset::SalesRow> {
    let mut rows = Vec::new();
    for store in 1..=3 {
        rows.extend(database.series_sales(store, "product_A").await.unwrap());
    }
    rows
}

/// The demo's smoke test, as CI runs it: three nodes, 1,115 synthetic stores, `--exit`.
/// Every series gets a forecast, every node trains a share of them, and the output says so.
#[test]
fn demo_forms_a_three_node_cluster_and_forecasts_every_store() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_within(
        storecast(dir.path()).args(["demo", "--nodes", "3", "--exit"]),
        std::time::Duration::from_secs(1_200),
    );
    let text = stdout(&output);
    assert!(output.status.success(), "{text}\n{}", stderr(&output));
    for needle in [
        "synthetic data (seed 42): 813,950 rows, 1,115 stores",
        "(weekdays kept)",
        "formed: 3 members [demo-1, demo-2, demo-3]",
        "1,115 of 1,115 arrived in the database",
        "1115 of 1115 series trained, 0 failed",
        "9. forecasts next 7 days of 1,115 of 1,115 series",
        "10. web page http://127.0.0.1:",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    // Series per node, as printed: every node owns a share, and the shares add up.
    let shares: Vec<u64> = text
        .lines()
        .filter_map(|line| {
            let (node, rest) = line.trim_start().split_once(": ")?;
            node.starts_with("demo-").then_some(())?;
            rest.split_once(" series (stores")?
                .0
                .replace(',', "")
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(shares.len(), 3, "{text}");
    assert!(shares.iter().all(|share| *share > 100), "{shares:?}");
    assert_eq!(shares.iter().sum::<u64>(), 1_115);

    // The database agrees: a forecast for every store, versions trained on every node, and
    // the loaded sales keep their weekdays (the generator closes stores on Sundays).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("sqlite:{}", dir.path().join("storecast.db").display());
        let database = Database::connect(&support::database_config(&url))
            .await
            .unwrap();
        let stores = database.stores_with_sales("product_A").await.unwrap();
        assert_eq!(stores.len(), 1_115);
        let mut trained_on = std::collections::BTreeSet::new();
        for store in &stores {
            let forecast = database.latest_forecast(*store, "product_A").await.unwrap();
            assert_eq!(forecast.len(), 7, "store {store}");
            let latest = database
                .latest_model_version(*store, "product_A")
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("store {store} has no model"));
            trained_on.insert(latest.node);
        }
        assert_eq!(
            trained_on.into_iter().collect::<Vec<_>>(),
            ["demo-1", "demo-2", "demo-3"]
        );
        let sales = database.series_sales(1, "product_A").await.unwrap();
        let sundays: Vec<bool> = sales
            .iter()
            .filter(|row| row.date.weekday() == chrono::Weekday::Sun)
            .map(|row| row.open)
            .collect();
        assert!(
            sundays.len() >= 20 && sundays.iter().all(|open| !open),
            "{sundays:?}"
        );
        database.close().await;
    });
}

#[test]
fn demo_runs_again_on_its_data_with_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "demo", "--nodes", "1", "--stores", "12", "--days", "200", "--exit",
    ];
    let output = run(storecast(dir.path()).args(args));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("synthetic data (seed 42): 2,400 rows, 12 stores"),
        "{text}"
    );
    assert!(text.contains("sqlite:storecast.db"), "{text}");
    assert!(text.contains("formed: 1 members [demo-1]"), "{text}");
    assert!(
        text.contains("6. streaming published 12 rows for")
            && text.contains("12 of 12 arrived in the database"),
        "{text}"
    );
    assert!(text.contains("7. training  train-all job 1"), "{text}");
    assert!(
        text.contains("job 1 succeeded") && text.contains("12 of 12 series trained, 0 failed"),
        "{text}"
    );
    assert!(text.contains("demo-1: 12 series (stores 1-12)"), "{text}");
    assert!(
        text.contains("9. forecasts next 7 days of 12 of 12 series"),
        "{text}"
    );
    assert!(text.contains("... and 2 more"), "{text}");
    assert!(text.contains("10. web page http://127.0.0.1:"), "{text}");
    assert!(dir.path().join("storecast.db").is_file());
    let first_store = |text: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|line| line.trim_start().starts_with("1 "))
            .unwrap()
            .to_string();
        line.split_whitespace().map(str::to_string).collect()
    };
    let first = first_store(&text);
    assert_eq!(first[1], "1", "version 1 on the first run: {text}");
    assert_eq!(first.len(), 2 + 7, "store, version and 7 days: {first:?}");

    // Running it again replaces the data and registers version 2 with the same forecast.
    let again = run(storecast(dir.path()).args(args));
    assert!(again.status.success(), "{}", stderr(&again));
    let again = stdout(&again);
    assert!(again.contains("train-all job 2"), "{again}");
    let second = first_store(&again);
    assert_eq!(second[1], "2");
    assert_eq!(second[2..], first[2..]);
}
