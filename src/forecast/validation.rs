//! Training a series as the reference stack does: anchored walk-forward cross-validation
//! with 5 splits over the training window, then a final fit on the whole window.
//!
//! The splits follow scikit-learn's `TimeSeriesSplit`: test blocks of `n / (splits + 1)` days
//! at the end of the window; split `i` trains on every day before its block and is scored on
//! the block. Metrics are averaged over the splits.

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::model::{FittedModel, MIN_TRAINING_DAYS, ModelError};
use super::profile::Profile;
use super::series::{Series, SeriesError};

/// Error measures of forecasts against actual sales, averaged over the CV splits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub rmse: f64,
    /// Mean absolute percentage error, as a fraction (0.1 = 10%).
    pub mape: f64,
    pub mae: f64,
    pub median_ae: f64,
    /// Root mean square percentage error, as a fraction: Kaggle's Rossmann metric. Versions
    /// registered before it was measured read as 0.
    #[serde(default)]
    pub rmspe: f64,
}

impl Metrics {
    /// Metrics of `forecast` against `actual` (same length, actual > 0).
    pub fn of(actual: &[f64], forecast: &[f64]) -> Metrics {
        let count = actual.len().max(1) as f64;
        let errors: Vec<f64> = actual.iter().zip(forecast).map(|(a, f)| f - a).collect();
        let mut absolute: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
        absolute.sort_by(f64::total_cmp);
        let median_ae = match absolute.len() {
            0 => 0.0,
            n if n % 2 == 1 => absolute[n / 2],
            n => 0.5 * (absolute[n / 2 - 1] + absolute[n / 2]),
        };
        Metrics {
            rmse: (errors.iter().map(|e| e * e).sum::<f64>() / count).sqrt(),
            mape: actual
                .iter()
                .zip(&errors)
                .map(|(a, e)| (e / a).abs())
                .sum::<f64>()
                / count,
            mae: absolute.iter().sum::<f64>() / count,
            median_ae,
            rmspe: (actual
                .iter()
                .zip(&errors)
                .map(|(a, e)| (e / a).powi(2))
                .sum::<f64>()
                / count)
                .sqrt(),
        }
    }

    fn mean(all: &[Metrics]) -> Metrics {
        let count = all.len().max(1) as f64;
        let average = |field: fn(&Metrics) -> f64| all.iter().map(field).sum::<f64>() / count;
        Metrics {
            rmse: average(|m| m.rmse),
            mape: average(|m| m.mape),
            mae: average(|m| m.mae),
            median_ae: average(|m| m.median_ae),
            rmspe: average(|m| m.rmspe),
        }
    }
}

/// A trained series: the final model and its cross-validated metrics.
#[derive(Debug)]
pub struct Trained {
    pub model: FittedModel,
    pub metrics: Metrics,
}

/// Number of CV splits, as the reference stack uses.
pub const SPLITS: usize = 5;

/// Cross-validates `profile` on `series` with `splits` anchored splits, then fits the whole
/// training window.
pub fn train(series: &Series, profile: &Profile, splits: usize) -> Result<Trained, ModelError> {
    profile.validate()?;
    let days = series.training_days(profile);
    let test_size = days.len() / (splits + 1);
    // The first split trains on what the later test blocks leave, remainder included.
    let first_train = days.len() - splits * test_size;
    if test_size == 0 || first_train < MIN_TRAINING_DAYS {
        return Err(SeriesError::TooLittleHistory {
            open_days: days.len(),
            needed: (splits + 1) * MIN_TRAINING_DAYS,
        }
        .into());
    }
    // Every split's training and test days lie in the window: its feature columns are
    // computed once and sliced.
    let dates: Vec<NaiveDate> = days.iter().map(|day| day.date).collect();
    let columns = series.feature_columns(&profile.features, &dates);
    let mut scores = Vec::with_capacity(splits);
    for split in 0..splits {
        let train_end = first_train + split * test_size;
        let _split = tracing::info_span!("cv split", split, train_days = train_end).entered();
        let tested = train_end..train_end + test_size;
        let model = FittedModel::fit_with_columns(
            profile,
            &days[..train_end],
            rows_of(&columns, 0..train_end),
        )?;
        // The scores need the point forecast only.
        let forecast = model.point_forecast_with_columns(
            series,
            &dates[tested.clone()],
            &rows_of(&columns, tested.clone()),
        )?;
        let actual: Vec<f64> = days[tested].iter().map(|day| day.sales).collect();
        let predicted: Vec<f64> = forecast.iter().map(|point| point.yhat).collect();
        scores.push(Metrics::of(&actual, &predicted));
    }
    let _final = tracing::info_span!("final fit", train_days = days.len()).entered();
    let model = FittedModel::fit_with_columns(profile, &days, columns)?;
    Ok(Trained {
        model,
        metrics: Metrics::mean(&scores),
    })
}

/// The rows `range` of every column.
fn rows_of(
    columns: &BTreeMap<String, Vec<f64>>,
    range: Range<usize>,
) -> BTreeMap<String, Vec<f64>> {
    columns
        .iter()
        .map(|(name, values)| (name.clone(), values[range.clone()].to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::synth::{SynthOptions, generate};

    fn series(days: u32) -> Series {
        // Store 2: store 3 of a generated set closes for months.
        let data = generate(&SynthOptions {
            stores: 2,
            days,
            seed: 5,
            ..SynthOptions::default()
        })
        .unwrap();
        Series::from_rows(data.sales.iter().filter(|row| row.store == 2)).unwrap()
    }

    #[test]
    fn metrics_are_the_usual_formulas() {
        let metrics = Metrics::of(&[100.0, 200.0, 400.0, 100.0], &[110.0, 180.0, 400.0, 70.0]);
        assert!((metrics.mae - 15.0).abs() < 1e-12);
        assert!((metrics.rmse - (1400.0f64 / 4.0).sqrt()).abs() < 1e-12);
        assert!((metrics.mape - (0.1 + 0.1 + 0.0 + 0.3) / 4.0).abs() < 1e-12);
        assert!((metrics.median_ae - 15.0).abs() < 1e-12);
        let rmspe = ((0.01 + 0.01 + 0.0 + 0.09) / 4.0f64).sqrt();
        assert!((metrics.rmspe - rmspe).abs() < 1e-12);
        // A version registered before RMSPE was measured still reads.
        let old: Metrics =
            serde_json::from_str(r#"{"rmse": 1.0, "mape": 0.1, "mae": 1.0, "median_ae": 1.0}"#)
                .unwrap();
        assert_eq!(old.rmspe, 0.0);
    }

    /// Weekly seasonality and promotions: a well-posed model of the synthetic data.
    fn weekly_promo() -> Profile {
        Profile {
            yearly_order: 0,
            features: vec![crate::forecast::profile::Feature::Promo],
            ..Profile::reference()
        }
    }

    #[test]
    fn training_cross_validates_and_fits_the_whole_window() {
        let trained = train(&series(300), &weekly_promo(), SPLITS).unwrap();
        let (first, last) = trained.model.trained_span();
        assert_eq!(trained.model.stored().inputs.dates.len(), 120);
        assert!(first < last);
        let metrics = trained.metrics;
        assert!(metrics.mape > 0.0 && metrics.mape < 0.12, "{metrics:?}");
        assert!(
            metrics.rmse >= metrics.mae && metrics.mae > 0.0,
            "{metrics:?}"
        );
    }

    #[test]
    fn the_shared_feature_columns_give_the_fits_and_scores_of_columns_computed_per_fit() {
        use crate::forecast::profile::Feature;
        let profile = Profile {
            yearly_order: 0,
            features: vec![
                Feature::Promo,
                Feature::PromoWeekday,
                Feature::StateHoliday,
                Feature::BeforeHoliday,
                Feature::MonthDay,
                Feature::Christmas,
            ],
            ..Profile::reference()
        };
        let series = series(400);
        let trained = train(&series, &profile, SPLITS).unwrap();
        // The same cross-validation, each fit and forecast computing its own columns.
        let days = series.training_days(&profile);
        let test_size = days.len() / (SPLITS + 1);
        let first_train = days.len() - SPLITS * test_size;
        let scores: Vec<Metrics> = (0..SPLITS)
            .map(|split| {
                let train_end = first_train + split * test_size;
                let model = FittedModel::fit_days(&series, &profile, &days[..train_end]).unwrap();
                let test = &days[train_end..train_end + test_size];
                let dates: Vec<_> = test.iter().map(|day| day.date).collect();
                let forecast = model.point_forecast(&series, &dates).unwrap();
                let actual: Vec<f64> = test.iter().map(|day| day.sales).collect();
                let predicted: Vec<f64> = forecast.iter().map(|point| point.yhat).collect();
                Metrics::of(&actual, &predicted)
            })
            .collect();
        // The fits are the same to the bit (the optimizer puts the columns in a canonical
        // order); forecasts only to rounding, as augurs-prophet sums a forecast's columns in
        // the order of a hash map of its own.
        let separate = Metrics::mean(&scores);
        let field: [fn(&Metrics) -> f64; 5] = [
            |m| m.rmse,
            |m| m.mape,
            |m| m.mae,
            |m| m.median_ae,
            |m| m.rmspe,
        ];
        for value in field {
            let (shared, alone) = (value(&trained.metrics), value(&separate));
            assert!(
                (shared - alone).abs() <= 1e-9 * alone.abs(),
                "{:?} vs {separate:?}",
                trained.metrics
            );
        }
        let alone = FittedModel::fit_days(&series, &profile, &days).unwrap();
        assert_eq!(trained.model.stored(), alone.stored());
        assert!(
            trained
                .model
                .stored()
                .inputs
                .regressors
                .contains_key("promo_mon")
        );
    }

    #[test]
    fn too_little_history_for_five_splits_is_an_error() {
        let error = train(&series(60), &Profile::reference(), SPLITS)
            .unwrap_err()
            .to_string();
        assert!(error.contains("too little history"), "{error}");
    }
}
