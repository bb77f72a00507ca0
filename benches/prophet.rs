//! The Rust side of the Prophet benchmark against Python Prophet (`bench/prophet/run.sh`
//! runs both and compares them; see bench/prophet/README.md).
//!
//! For every store of Kaggle's train set, per config (`yearly`: the last 120 open days with
//! sales, yearly + weekly seasonality, the reference model; `weekly`: the same, weekly only;
//! `default`: storecast's own model as config/default.toml defines it, on the last 1,000 open
//! days, log sales, four regressors) a timed fit and a timed 7-day forecast with a 95%
//! interval from 1,000 samples; then, for
//! `yearly`, the reference stack's full training (5-split walk-forward CV + final fit + 7-day
//! forecast) of all stores on a pool of 2 threads, timed as a whole.
//!
//! `cargo bench --bench prophet -- --data train.csv.gz --out DIR [--stores N]
//! [--configs yearly,weekly,default] [--skip-cv]` writes `rust_forecasts.csv`, `rust_timings.csv` and
//! `rust_summary.json` into DIR.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{Days, NaiveDate};
use storecast::dataset::rossmann::read_sales;
use storecast::forecast::model::FittedModel;
use storecast::forecast::profile::Profile;
use storecast::forecast::series::Series;
use storecast::forecast::validation::{Metrics, SPLITS, train};

const CV_WORKERS: usize = 2;
const SEED: u64 = 42;

struct Args {
    data: PathBuf,
    out: PathBuf,
    stores: Option<usize>,
    configs: Vec<String>,
    skip_cv: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/datasets/rossmann/train.csv.gz"),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-prophet"),
        stores: None,
        configs: vec![
            "yearly".to_string(),
            "weekly".to_string(),
            "default".to_string(),
        ],
        skip_cv: false,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || {
            given
                .next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--data" => args.data = PathBuf::from(value()),
            "--out" => args.out = PathBuf::from(value()),
            "--stores" => args.stores = Some(value().parse().expect("--stores N")),
            "--configs" => args.configs = value().split(',').map(str::to_string).collect(),
            "--skip-cv" => args.skip_cv = true,
            // cargo bench passes `--bench`; anything else is a mistake.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn profile(config: &str) -> Profile {
    match config {
        "yearly" => Profile::reference(),
        "weekly" => Profile {
            yearly_order: 0,
            ..Profile::reference()
        },
        // storecast's own model, as config/default.toml defines it.
        "default" => storecast::config::Config::defaults()
            .expect("the built-in configuration")
            .profile("default")
            .expect("the default profile")
            .clone(),
        other => panic!("unknown config {other} (yearly, weekly or default)"),
    }
}

fn next_week(last: NaiveDate) -> Vec<NaiveDate> {
    (1..=7)
        .filter_map(|offset| last.checked_add_days(Days::new(offset)))
        .collect()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.out).expect("create the output folder");
    eprintln!("reading {}", args.data.display());
    let rows = read_sales(&args.data).expect("read the train set");
    let mut by_store: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for row in &rows {
        by_store.entry(row.store).or_default().push(row);
    }
    let stores: Vec<(u32, Series)> = by_store
        .into_iter()
        .take(args.stores.unwrap_or(usize::MAX))
        .map(|(store, rows)| (store, Series::from_rows(rows).expect("one row per day")))
        .collect();
    eprintln!("{} stores", stores.len());

    let mut forecasts = String::from("store,config,date,yhat,yhat_lower,yhat_upper\n");
    let mut timings = String::from("store,config,fit_ms,predict_ms\n");
    for config in &args.configs {
        let profile = profile(config);
        let mut fit_ms = Vec::new();
        for (index, (store, series)) in stores.iter().enumerate() {
            let days = series.training_days(&profile);
            let started = Instant::now();
            let model = match FittedModel::fit_days(series, &profile, &days) {
                Ok(model) => model,
                Err(error) => {
                    eprintln!("store {store} ({config}): {error}");
                    continue;
                }
            };
            let fit_time = started.elapsed().as_secs_f64() * 1e3;
            let dates = next_week(days[days.len() - 1].date);
            let started = Instant::now();
            let forecast = model.forecast(series, &dates, SEED).expect("forecast");
            let predict_time = started.elapsed().as_secs_f64() * 1e3;
            for point in forecast {
                let _ = writeln!(
                    forecasts,
                    "{store},{config},{},{:?},{:?},{:?}",
                    point.date, point.yhat, point.lower, point.upper
                );
            }
            let _ = writeln!(timings, "{store},{config},{fit_time:.4},{predict_time:.4}");
            fit_ms.push(fit_time);
            if (index + 1) % 100 == 0 {
                eprintln!("{config}: {} stores fitted", index + 1);
            }
        }
        fit_ms.sort_by(f64::total_cmp);
        if !fit_ms.is_empty() {
            eprintln!(
                "{config}: fit median {:.2} ms, p90 {:.2} ms",
                percentile(&fit_ms, 0.5),
                percentile(&fit_ms, 0.9)
            );
        }
    }
    std::fs::write(args.out.join("rust_forecasts.csv"), forecasts).expect("write forecasts");
    std::fs::write(args.out.join("rust_timings.csv"), timings).expect("write timings");

    let (cv_seconds, cv_metrics) = if args.skip_cv {
        (None, None)
    } else {
        let (seconds, metrics) = cross_validate_all(&stores, &profile("yearly"));
        eprintln!(
            "cv: all {} stores in {seconds:.2} s on {CV_WORKERS} threads",
            stores.len()
        );
        (Some(seconds), Some(metrics))
    };
    let json_number = |value: Option<f64>| value.map_or("null".to_string(), |v| format!("{v:?}"));
    let summary = format!(
        "{{\"side\": \"rust\", \"prophet_version\": \"augurs-prophet 0.10.3 + storecast native L-BFGS\", \"stores\": {}, \"cv_total_seconds\": {}, \"cv_workers\": {CV_WORKERS}, \"cv_metrics_mean\": {}}}\n",
        stores.len(),
        json_number(cv_seconds),
        cv_metrics.map_or("null".to_string(), |m: Metrics| format!(
            "{{\"rmse\": {:?}, \"mape\": {:?}, \"mae\": {:?}, \"median_ae\": {:?}}}",
            m.rmse, m.mape, m.mae, m.median_ae
        )),
    );
    std::fs::write(args.out.join("rust_summary.json"), summary).expect("write summary");
    eprintln!("wrote {}", args.out.display());
}

/// The reference stack's weekly training of every store (CV, final fit, next week's
/// forecast), on a pool of threads; returns the wall time and the mean CV metrics.
fn cross_validate_all(stores: &[(u32, Series)], profile: &Profile) -> (f64, Metrics) {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(stores.len()));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CV_WORKERS {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((store, series)) = stores.get(index) else {
                        break;
                    };
                    match train(series, profile, SPLITS) {
                        Ok(trained) => {
                            let (_, last) = trained.model.trained_span();
                            let _ = trained.model.forecast(series, &next_week(last), SEED);
                            if let Ok(mut results) = results.lock() {
                                results.push(trained.metrics);
                            }
                        }
                        Err(error) => eprintln!("store {store}: {error}"),
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let results = results.into_inner().unwrap_or_default();
    let count = results.len().max(1) as f64;
    let mean = |field: fn(&Metrics) -> f64| results.iter().map(field).sum::<f64>() / count;
    (
        seconds,
        Metrics {
            rmse: mean(|m| m.rmse),
            mape: mean(|m| m.mape),
            mae: mean(|m| m.mae),
            median_ae: mean(|m| m.median_ae),
            rmspe: mean(|m| m.rmspe),
        },
    )
}
