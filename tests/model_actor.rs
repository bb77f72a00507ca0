//! The model actor of one series: trainings are single-flight, forecasts come from the
//! registered version without refitting, and a restarted actor picks up the latest version.

mod support;

use std::sync::Arc;

use chrono::NaiveDate;
use ractor::{Actor, ActorRef};
use std::time::Duration;
use storecast::actors::model::{
    ForecastRequest, InfoRequest, ModelActor, ModelArguments, ModelMessage, TrainOutcome,
    TrainRequest, VersionInfo,
};
use storecast::cluster::placement::SeriesKey;
use storecast::dataset::synth::{SynthOptions, generate};
use storecast::forecast::profile::{Feature, Profile};

use storecast::store::{Database, JobKind, JobRef, NewJob};
use storecast::training::TrainSettings;

fn settings() -> Arc<TrainSettings> {
    Arc::new(TrainSettings {
        product: "product_A".to_string(),
        profile_name: "weekly".to_string(),
        profile: Profile {
            yearly_order: 0,
            features: vec![Feature::Promo],
            ..Profile::reference()
        },
        horizon_days: 7,
        seed: 42,
        workers: 2,
        node: "node-under-test".to_string(),
        retrain_on_new_data: false,
    })
}

async fn start(database: &Database) -> ActorRef<ModelMessage> {
    let (actor, _) = Actor::spawn(
        None,
        ModelActor,
        ModelArguments {
            key: SeriesKey::new(2, "product_A"),
            database: database.clone(),
            settings: settings(),
            fits: Arc::new(tokio::sync::Semaphore::new(2)),
        },
    )
    .await
    .expect("start the model actor");
    actor
}

async fn forecast_week(actor: &ActorRef<ModelMessage>) -> storecast::actors::model::ForecastReply {
    let request = ForecastRequest {
        store: 2,
        product: "product_A".to_string(),
        days: 7,
        traceparent: String::new(),
    };
    ractor::call_t!(actor, ModelMessage::Forecast, 10_000, request).unwrap()
}

fn request() -> TrainRequest {
    TrainRequest {
        store: 2,
        product: "product_A".to_string(),
        job: None,
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
    }
}

fn info_request() -> InfoRequest {
    InfoRequest {
        store: 2,
        product: "product_A".to_string(),
        traceparent: String::new(),
    }
}

/// The version a training answered with.
fn trained(outcome: TrainOutcome) -> VersionInfo {
    match outcome {
        TrainOutcome::Trained(version) => version,
        other => panic!("no version: {other:?}"),
    }
}

async fn trainings_are_single_flight_and_forecasts_need_no_refit(database: Database) {
    let data = generate(&SynthOptions {
        stores: 2,
        days: 300,
        seed: 4,
        ..SynthOptions::default()
    })
    .unwrap();
    database
        .replace_sales("product_A", &data.sales)
        .await
        .unwrap();
    let actor = start(&database).await;

    let forecast = forecast_week(&actor).await;
    assert!(
        forecast.error.unwrap().contains("no trained model"),
        "before any training"
    );

    // Three requests while one training runs: one training, one version, three answers.
    let train = || {
        let actor = actor.clone();
        async move { ractor::call_t!(actor, ModelMessage::Train, 60_000, request()) }
    };
    let (first, second, third) = tokio::join!(train(), train(), train());
    let (first, second, third) = (first.unwrap(), second.unwrap(), third.unwrap());
    assert_eq!(first, second);
    assert_eq!(first, third);
    assert_eq!(trained(first).version, 1);
    assert_eq!(
        database
            .model_version_numbers(2, "product_A")
            .await
            .unwrap(),
        vec![1]
    );

    // The forecast comes from the registered version and matches the batch written by training.
    let forecast = forecast_week(&actor).await;
    assert_eq!(forecast.error, None);
    assert_eq!(forecast.version.unwrap().version, 1);
    let batch = database.latest_forecast(2, "product_A").await.unwrap();
    assert_eq!(forecast.points.len(), 7);
    assert_eq!(
        forecast.points[0].date,
        NaiveDate::from_ymd_opt(2015, 8, 1).unwrap()
    );
    for (point, row) in forecast.points.iter().zip(&batch) {
        assert!((point.yhat - row.record.yhat).abs() <= 1e-9 * point.yhat.abs().max(1.0));
    }

    // A new actor for the series (as after a move to another node) loads the latest version.
    let second_train = ractor::call_t!(actor, ModelMessage::Train, 60_000, request()).unwrap();
    assert_eq!(trained(second_train).version, 2);
    actor.stop(None);
    let moved = start(&database).await;
    let info = ractor::call_t!(moved, ModelMessage::Info, 10_000, info_request()).unwrap();
    assert_eq!(info.version, 2);
    assert_eq!(info.profile, "weekly");
    assert!(!info.new_data);
    // Ingest stored newer sales: the version says so until the next training.
    moved.cast(ModelMessage::DataArrived).unwrap();
    let info = ractor::call_t!(moved, ModelMessage::Info, 10_000, info_request()).unwrap();
    assert!(info.new_data, "the actor knows newer sales exist");

    // A job's Train that joins a retrain in flight: one training, and it completes the task.
    let fence = database
        .acquire_lease("scheduler", "test", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let (job_id, _) = database
        .create_job(
            &fence,
            &NewJob {
                kind: JobKind::TrainAll,
                product: "product_A",
                profile: "weekly",
                slot: None,
                stores: &[2],
                traceparent: "",
            },
        )
        .await
        .unwrap();
    let for_job = TrainRequest {
        job: Some(JobRef {
            id: job_id,
            kind: JobKind::TrainAll,
        }),
        ..request()
    };
    let (manual, job) = tokio::join!(
        async { ractor::call_t!(moved, ModelMessage::Train, 60_000, request()) },
        async { ractor::call_t!(moved, ModelMessage::Train, 60_000, for_job.clone()) }
    );
    let job = job.unwrap();
    assert_eq!(manual.unwrap(), job);
    assert_eq!(trained(job).version, 3);
    let task = &database.job_tasks(job_id).await.unwrap()[0];
    assert_eq!(
        (task.state.as_str(), task.model_version),
        ("succeeded", Some(3))
    );
    // Asked again for the same job (as after a scheduler takeover): no new training.
    let again = ractor::call_t!(moved, ModelMessage::Train, 60_000, for_job).unwrap();
    assert_eq!(trained(again).version, 3);
    let info = ractor::call_t!(moved, ModelMessage::Info, 10_000, info_request()).unwrap();
    assert!(!info.new_data, "the new version was trained on them");
    assert_eq!(
        database
            .model_version_numbers(2, "product_A")
            .await
            .unwrap(),
        vec![1, 2, 3]
    );
    moved.stop(None);
}

on_both_backends!(trainings_are_single_flight_and_forecasts_need_no_refit);
