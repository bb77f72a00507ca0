//! A Prophet model of one series: fitted with the native optimizer, stored as plain data,
//! restored without refitting, and asked for forecasts with seeded intervals.
//!
//! `augurs-prophet` does the feature engineering (scaling, changepoints, Fourier terms,
//! regressors) and the point forecasts. Two things are storecast's own:
//! - the fitted parameters are captured from the optimizer (augurs exposes no accessor) in
//!   canonical column order, and a stored model is restored by "fitting" with an optimizer that
//!   returns them, which reproduces the forecasts exactly without optimizing;
//! - intervals are sampled here, as Prophet samples them (future trend changes drawn from the
//!   history's changepoint rate and size, plus observation noise), but from a seeded
//!   generator, so the same request gets the same interval.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use augurs_prophet::optimizer::{
    Data, Error as OptimizerError, InitialParams, OptimizeOpts, OptimizedParams, Optimizer,
};
use augurs_prophet::{
    FeatureMode, PositiveFloat, PredictionData, Prophet, ProphetOptions, Regressor,
    SeasonalityOption, Standardize, TrainingData,
};
use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

use super::optimizer::{NativeOptimizer, canonical_column_order};
use super::planner::{days_after, plan};
use super::profile::{Mode, Profile, ProfileError};
use super::series::{Day, Series, SeriesError};
use crate::random::SplitMix64;

/// Forecasts the `days` calendar days after the series' end, on planned days (what is known
/// ahead of them: holidays, promotions, opening).
pub fn forecast_after(
    series: &Series,
    model: &FittedModel,
    days: u32,
    seed: u64,
) -> Result<Vec<ForecastPoint>, ModelError> {
    let dates = days_after(series, days);
    let calendar = series.extended(&plan(series, &dates))?;
    model.forecast(&calendar, &dates, seed)
}

/// Restores a model from its encoded parameters (a registry entry's), without refitting.
pub fn restore(params: &[u8]) -> Result<FittedModel, ModelError> {
    FittedModel::restore(StoredModel::decode(params)?)
}

/// The fitted parameters of Prophet's model, coefficients in canonical column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    pub k: f64,
    pub m: f64,
    pub sigma_obs: f64,
    pub delta: Vec<f64>,
    pub beta: Vec<f64>,
}

/// Exactly what the model was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInputs {
    pub dates: Vec<NaiveDate>,
    pub y: Vec<f64>,
    /// Regressor columns by name, aligned with `dates`.
    pub regressors: BTreeMap<String, Vec<f64>>,
}

/// A model as plain data: enough to rebuild it without refitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredModel {
    pub profile: Profile,
    pub inputs: TrainingInputs,
    pub params: ModelParams,
}

/// Version of the encoding written by [`StoredModel::encode`].
const ENCODING_VERSION: u32 = 1;

impl StoredModel {
    /// Bytes for the registry: an encoding version, then the model (floats bit-exact).
    pub fn encode(&self) -> Vec<u8> {
        let config = bincode::config::standard();
        // Encoding plain structs of numbers, strings and vectors into a Vec cannot fail.
        bincode::serde::encode_to_vec((ENCODING_VERSION, self), config).unwrap_or_default()
    }

    /// Reads bytes written by [`StoredModel::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
        let config = bincode::config::standard();
        let ((version, model), _): ((u32, StoredModel), usize) =
            bincode::serde::decode_from_slice(bytes, config)
                .map_err(|_| ModelError::Corrupt("undecodable model bytes"))?;
        if version != ENCODING_VERSION {
            return Err(ModelError::Corrupt(
                "model encoded by another storecast version",
            ));
        }
        Ok(model)
    }
}

/// One forecast day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForecastPoint {
    pub date: NaiveDate,
    pub yhat: f64,
    pub lower: f64,
    pub upper: f64,
}

/// Why a model could not be fitted, restored or asked.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("prophet: {0}")]
    Prophet(String),
    #[error("the stored model does not fit its own data: {0}")]
    Corrupt(&'static str),
}

impl From<augurs_prophet::Error> for ModelError {
    fn from(error: augurs_prophet::Error) -> Self {
        ModelError::Prophet(error.to_string())
    }
}

/// A fitted model, ready to forecast.
#[derive(Debug)]
pub struct FittedModel {
    stored: StoredModel,
    prophet: Prophet<ModelOptimizer>,
    /// Prophet's scales, for the interval sampler.
    y_scale: f64,
    t_change: Vec<f64>,
}

/// Fewest training days a fit accepts.
pub const MIN_TRAINING_DAYS: usize = 14;

impl FittedModel {
    /// Fits `profile` to the training days it selects from `series`.
    pub fn fit(series: &Series, profile: &Profile) -> Result<Self, ModelError> {
        Self::fit_days(series, profile, &series.training_days(profile))
    }

    /// Fits `profile` to exactly `days` (regressor values come from `series`).
    pub fn fit_days(series: &Series, profile: &Profile, days: &[Day]) -> Result<Self, ModelError> {
        let dates: Vec<NaiveDate> = days.iter().map(|day| day.date).collect();
        let columns = series.feature_columns(&profile.features, &dates);
        Self::fit_with_columns(profile, days, columns)
    }

    /// As [`FittedModel::fit_days`], given the feature columns of `days` (the series'
    /// [`Series::feature_columns`] of their dates, one value per day): cross-validation
    /// computes them once for the whole window and fits on its prefixes.
    pub(crate) fn fit_with_columns(
        profile: &Profile,
        days: &[Day],
        columns: BTreeMap<String, Vec<f64>>,
    ) -> Result<Self, ModelError> {
        profile.validate()?;
        let inputs = training_inputs(days, columns)?;
        Self::build(
            profile.clone(),
            inputs,
            Strategy::Fit(NativeOptimizer::default()),
        )
    }

    /// Rebuilds a stored model; its forecasts are those of the model that was stored.
    pub fn restore(stored: StoredModel) -> Result<Self, ModelError> {
        let params = stored.params.clone();
        Self::build(stored.profile, stored.inputs, Strategy::Fixed(params))
    }

    fn build(
        profile: Profile,
        inputs: TrainingInputs,
        strategy: Strategy,
    ) -> Result<Self, ModelError> {
        let captured = Arc::new(Mutex::new(None));
        let optimizer = ModelOptimizer {
            strategy,
            captured: Arc::clone(&captured),
        };
        let span_days = match (inputs.dates.first(), inputs.dates.last()) {
            (Some(first), Some(last)) => (*last - *first).num_days(),
            _ => 0,
        };
        let mut prophet = Prophet::new(prophet_options(&profile, span_days), optimizer);
        for name in inputs.regressors.keys() {
            prophet.add_regressor(name.clone(), regressor(&profile));
        }
        let y: Vec<f64> = if profile.log_sales {
            inputs.y.iter().map(|sales| sales.max(1.0).ln()).collect()
        } else {
            inputs.y.clone()
        };
        let y_scale = y.iter().fold(0f64, |max: f64, value| max.max(value.abs()));
        let data = TrainingData::new(timestamps(&inputs.dates), y)?
            .with_regressors(to_hash_map(&inputs.regressors))?;
        prophet.fit(data, OptimizeOpts::default())?;
        let captured = captured
            .lock()
            .map_err(|_| ModelError::Corrupt("optimizer state poisoned"))?
            .take()
            .ok_or(ModelError::Corrupt("the optimizer was not called"))?;
        Ok(Self {
            stored: StoredModel {
                profile,
                inputs,
                params: captured.params,
            },
            prophet,
            y_scale: if y_scale == 0.0 { 1.0 } else { y_scale },
            t_change: captured.t_change,
        })
    }

    /// The model as plain data, for the registry.
    pub fn stored(&self) -> &StoredModel {
        &self.stored
    }

    pub fn profile(&self) -> &Profile {
        &self.stored.profile
    }

    /// First and last training date.
    pub fn trained_span(&self) -> (NaiveDate, NaiveDate) {
        let dates = &self.stored.inputs.dates;
        (dates[0], dates[dates.len() - 1])
    }

    /// Forecasts `dates`, taking regressor values and open days from `calendar` (history
    /// and planned days). Intervals are sampled with `seed`.
    pub fn forecast(
        &self,
        calendar: &Series,
        dates: &[NaiveDate],
        seed: u64,
    ) -> Result<Vec<ForecastPoint>, ModelError> {
        self.forecast_with(calendar, dates, Some(seed))
    }

    /// As [`FittedModel::forecast`], without the interval: `lower` and `upper` equal `yhat`.
    pub fn point_forecast(
        &self,
        calendar: &Series,
        dates: &[NaiveDate],
    ) -> Result<Vec<ForecastPoint>, ModelError> {
        self.forecast_with(calendar, dates, None)
    }

    /// As [`FittedModel::point_forecast`], given the feature columns of `dates` (as
    /// [`FittedModel::fit_with_columns`]).
    pub(crate) fn point_forecast_with_columns(
        &self,
        calendar: &Series,
        dates: &[NaiveDate],
        columns: &BTreeMap<String, Vec<f64>>,
    ) -> Result<Vec<ForecastPoint>, ModelError> {
        self.forecast_from(calendar, dates, columns, None)
    }

    /// The forecast of `dates`, with an interval sampled with `seed` when there is one.
    fn forecast_with(
        &self,
        calendar: &Series,
        dates: &[NaiveDate],
        seed: Option<u64>,
    ) -> Result<Vec<ForecastPoint>, ModelError> {
        let columns = calendar.feature_columns(&self.stored.profile.features, dates);
        self.forecast_from(calendar, dates, &columns, seed)
    }

    /// The forecast of `dates` whose feature columns are `columns`.
    fn forecast_from(
        &self,
        calendar: &Series,
        dates: &[NaiveDate],
        columns: &BTreeMap<String, Vec<f64>>,
        seed: Option<u64>,
    ) -> Result<Vec<ForecastPoint>, ModelError> {
        if dates.is_empty() {
            return Ok(Vec::new());
        }
        let profile = &self.stored.profile;
        let data = PredictionData::new(timestamps(dates)).with_regressors(to_hash_map(columns))?;
        let predictions = self.prophet.predict(data)?;
        // Without an interval (cross-validation scores the point forecast only), no sample
        // is drawn: the simulation costs far more than the fit.
        let (lower, upper) = match seed {
            Some(seed) => self.sample_interval(
                dates,
                &predictions.trend.point,
                &predictions.additive.point,
                &predictions.multiplicative.point,
                seed,
            ),
            None => (
                predictions.yhat.point.clone(),
                predictions.yhat.point.clone(),
            ),
        };
        Ok(dates
            .iter()
            .enumerate()
            .map(|(index, &date)| {
                let closed =
                    profile.closed_days_zero && calendar.get(date).is_some_and(|day| !day.open);
                let back = |value: f64| {
                    if profile.log_sales {
                        value.exp()
                    } else {
                        value
                    }
                };
                if closed {
                    ForecastPoint {
                        date,
                        yhat: 0.0,
                        lower: 0.0,
                        upper: 0.0,
                    }
                } else {
                    ForecastPoint {
                        date,
                        yhat: back(predictions.yhat.point[index]),
                        lower: back(lower[index]),
                        upper: back(upper[index]),
                    }
                }
            })
            .collect())
    }

    /// Prophet's predictive interval by simulation: each sample draws future trend changes
    /// (a Poisson number at the history's changepoint rate, Laplace sizes at the mean size of
    /// the fitted changes) and Gaussian noise of `sigma_obs`.
    fn sample_interval(
        &self,
        dates: &[NaiveDate],
        trend: &[f64],
        additive: &[f64],
        multiplicative: &[f64],
        seed: u64,
    ) -> (Vec<f64>, Vec<f64>) {
        let profile = &self.stored.profile;
        let params = &self.stored.params;
        let samples = profile.uncertainty_samples.max(1) as usize;
        let history = &self.stored.inputs.dates;
        let start = history[0];
        let span_days = (history[history.len() - 1] - start).num_days().max(1) as f64;
        let t: Vec<f64> = dates
            .iter()
            .map(|date| (*date - start).num_days() as f64 / span_days)
            .collect();
        let t_max = t.iter().copied().fold(1.0, f64::max);
        let change_rate = self.t_change.len() as f64;
        let change_scale = params.delta.iter().map(|d| d.abs()).sum::<f64>()
            / params.delta.len().max(1) as f64
            + 1e-8;

        let mut rng = SplitMix64::new(seed);
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); dates.len()];
        let mut changes: Vec<(f64, f64)> = Vec::new();
        for _ in 0..samples {
            changes.clear();
            if t_max > 1.0 {
                let count = rng.poisson(change_rate * (t_max - 1.0));
                for _ in 0..count {
                    changes.push((1.0 + rng.unit() * (t_max - 1.0), rng.laplace(change_scale)));
                }
            }
            for (index, column) in columns.iter_mut().enumerate() {
                let extra: f64 = changes
                    .iter()
                    .filter(|(at, _)| *at < t[index])
                    .map(|(at, size)| size * (t[index] - at))
                    .sum();
                let trend_sample = trend[index] + extra * self.y_scale;
                let noise = rng.normal() * params.sigma_obs * self.y_scale;
                column.push(trend_sample * (1.0 + multiplicative[index]) + additive[index] + noise);
            }
        }
        let lower_quantile = (1.0 - profile.interval_width) / 2.0;
        let upper_quantile = 1.0 - lower_quantile;
        columns
            .iter_mut()
            .map(|column| {
                column.sort_by(f64::total_cmp);
                (
                    quantile(column, lower_quantile),
                    quantile(column, upper_quantile),
                )
            })
            .unzip()
    }
}

/// Prophet's inputs for the chosen training days and their feature columns.
fn training_inputs(
    days: &[Day],
    mut regressors: BTreeMap<String, Vec<f64>>,
) -> Result<TrainingInputs, ModelError> {
    if days.len() < MIN_TRAINING_DAYS {
        return Err(SeriesError::TooLittleHistory {
            open_days: days.len(),
            needed: MIN_TRAINING_DAYS,
        }
        .into());
    }
    if days.iter().all(|day| day.sales == days[0].sales) {
        return Err(SeriesError::Constant {
            value: days[0].sales,
        }
        .into());
    }
    let dates: Vec<NaiveDate> = days.iter().map(|day| day.date).collect();
    // A regressor that never changes in training carries no information and would make
    // Prophet's standardisation divide by zero.
    regressors.retain(|_, values| values.iter().any(|value| *value != values[0]));
    Ok(TrainingInputs {
        y: days.iter().map(|day| day.sales).collect(),
        dates,
        regressors,
    })
}

fn prophet_options(profile: &Profile, span_days: i64) -> ProphetOptions {
    let seasonality = |order: u32| match NonZeroU32::new(order) {
        Some(order) => SeasonalityOption::Fourier(order),
        None => SeasonalityOption::Manual(false),
    };
    let positive = |value: f64| PositiveFloat::try_new(value).unwrap_or(PositiveFloat::one());
    ProphetOptions {
        n_changepoints: profile.changepoints,
        changepoint_range: positive(profile.changepoint_range),
        yearly_seasonality: if span_days >= i64::from(profile.yearly_min_days) {
            seasonality(profile.yearly_order)
        } else {
            SeasonalityOption::Manual(false)
        },
        weekly_seasonality: seasonality(profile.weekly_order),
        daily_seasonality: SeasonalityOption::Manual(false),
        seasonality_mode: feature_mode(profile.mode),
        seasonality_prior_scale: positive(profile.seasonality_prior_scale),
        changepoint_prior_scale: positive(profile.changepoint_prior_scale),
        // Intervals are sampled by `FittedModel::sample_interval`, seeded.
        uncertainty_samples: 0,
        ..ProphetOptions::default()
    }
}

fn feature_mode(mode: Mode) -> FeatureMode {
    match mode {
        Mode::Additive => FeatureMode::Additive,
        Mode::Multiplicative => FeatureMode::Multiplicative,
    }
}

/// A feature column as a Prophet regressor. None is standardized: every column is a flag or a
/// Fourier term, already on the scale of Prophet's seasonality columns (which Prophet never
/// standardizes either). Standardizing would also part from Python Prophet: augurs takes the
/// mean and spread of a column's distinct values, Prophet those of all its rows.
fn regressor(profile: &Profile) -> Regressor {
    let base = match profile.mode {
        Mode::Additive => Regressor::additive(),
        Mode::Multiplicative => Regressor::multiplicative(),
    };
    base.with_prior_scale(
        PositiveFloat::try_new(profile.feature_prior_scale).unwrap_or(PositiveFloat::one()),
    )
    .with_standardize(Standardize::No)
}

fn timestamps(dates: &[NaiveDate]) -> Vec<i64> {
    dates
        .iter()
        .map(|date| date.and_time(NaiveTime::MIN).and_utc().timestamp())
        .collect()
}

fn to_hash_map(columns: &BTreeMap<String, Vec<f64>>) -> HashMap<String, Vec<f64>> {
    columns
        .iter()
        .map(|(name, values)| (name.clone(), values.clone()))
        .collect()
}

/// Linear interpolation between order statistics, as numpy's default percentile.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let weight = position - below as f64;
    sorted[below] * (1.0 - weight) + sorted[above] * weight
}

/// How the model's optimizer finds its parameters.
#[derive(Debug)]
enum Strategy {
    Fit(NativeOptimizer),
    /// Returns stored parameters: a restore, not a fit.
    Fixed(ModelParams),
}

/// What the optimizer saw and found, kept for the model.
#[derive(Debug)]
struct Captured {
    params: ModelParams,
    t_change: Vec<f64>,
}

/// The optimizer handed to augurs: fits or restores, and records the result.
#[derive(Debug)]
struct ModelOptimizer {
    strategy: Strategy,
    captured: Arc<Mutex<Option<Captured>>>,
}

impl Optimizer for ModelOptimizer {
    fn optimize(
        &self,
        init: &InitialParams,
        data: &Data,
        opts: &OptimizeOpts,
    ) -> Result<OptimizedParams, OptimizerError> {
        let order = canonical_column_order(data);
        let optimized = match &self.strategy {
            Strategy::Fit(native) => native.optimize(init, data, opts)?,
            Strategy::Fixed(params) => {
                if params.beta.len() != order.len() || params.delta.len() != data.t_change.len() {
                    return Err(OptimizerError::static_str(
                        "stored parameters do not match the model's shape",
                    ));
                }
                let mut beta = vec![0.0; order.len()];
                for (canonical_index, &column) in order.iter().enumerate() {
                    beta[column] = params.beta[canonical_index];
                }
                OptimizedParams {
                    k: params.k,
                    m: params.m,
                    sigma_obs: PositiveFloat::try_new(params.sigma_obs)
                        .map_err(OptimizerError::custom)?,
                    delta: params.delta.clone(),
                    beta,
                    trend: Vec::new(),
                }
            }
        };
        let params = ModelParams {
            k: optimized.k,
            m: optimized.m,
            sigma_obs: *optimized.sigma_obs,
            delta: optimized.delta.clone(),
            beta: order.iter().map(|&column| optimized.beta[column]).collect(),
        };
        if let Ok(mut slot) = self.captured.lock() {
            *slot = Some(Captured {
                params,
                t_change: data.t_change.clone(),
            });
        }
        Ok(optimized)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Days;

    use super::*;
    use crate::dataset::synth::{SynthOptions, generate};
    use crate::forecast::profile::Feature;

    /// Store 2 of the synthetic data set, `days` long, ending 2015-07-31.
    pub(crate) fn synthetic_series(days: u32) -> Series {
        // Store 2: store 3 of a generated set closes for months.
        let data = generate(&SynthOptions {
            stores: 2,
            days,
            seed: 3,
            ..SynthOptions::default()
        })
        .unwrap();
        Series::from_rows(data.sales.iter().filter(|row| row.store == 2)).unwrap()
    }

    fn next_week(series: &Series) -> Vec<NaiveDate> {
        let last = series.last_date().unwrap();
        (1..=7)
            .map(|offset| last.checked_add_days(Days::new(offset)).unwrap())
            .collect()
    }

    #[test]
    fn forecasts_have_intervals_around_them_and_are_seeded() {
        let history = synthetic_series(400);
        let model = FittedModel::fit(&history, &Profile::reference()).unwrap();
        let dates = next_week(&history);
        let forecast = model.forecast(&history, &dates, 7).unwrap();
        assert_eq!(forecast.len(), 7);
        for point in &forecast {
            assert!(
                point.lower < point.yhat && point.yhat < point.upper,
                "{point:?}"
            );
        }
        assert_eq!(
            forecast,
            model.forecast(&history, &dates, 7).unwrap(),
            "same seed, same interval"
        );
        assert_ne!(
            forecast,
            model.forecast(&history, &dates, 8).unwrap(),
            "another seed, another draw"
        );
        // The point forecast (cross-validation's) is the same yhat, without an interval.
        let points = model.point_forecast(&history, &dates).unwrap();
        for (point, full) in points.iter().zip(&forecast) {
            assert_eq!((point.date, point.yhat), (full.date, full.yhat));
            assert_eq!((point.lower, point.upper), (point.yhat, point.yhat));
        }
    }

    #[test]
    fn a_restored_model_forecasts_exactly_as_the_fitted_one() {
        // The last 20 days are the future; one of them is planned closed.
        let mut days = synthetic_series(420).days().to_vec();
        days[410].open = false;
        let calendar = Series::new(days).unwrap();
        let history = calendar.until(calendar.days()[399].date);
        let profile = Profile {
            features: vec![Feature::Promo, Feature::SchoolHoliday],
            closed_days_zero: true,
            ..Profile::reference()
        };
        let model = FittedModel::fit(&history, &profile).unwrap();
        let stored = model.stored().clone();
        let restored = FittedModel::restore(stored.clone()).unwrap();
        assert_eq!(restored.stored(), &stored);
        let dates: Vec<NaiveDate> = calendar.days()[400..].iter().map(|day| day.date).collect();
        let original = model.forecast(&calendar, &dates, 1).unwrap();
        let again = restored.forecast(&calendar, &dates, 1).unwrap();
        for (a, b) in original.iter().zip(&again) {
            for (x, y) in [(a.yhat, b.yhat), (a.lower, b.lower), (a.upper, b.upper)] {
                assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{a:?} vs {b:?}");
            }
        }
        assert_eq!(original[10].yhat, 0.0, "planned closed day");
        assert!(original[9].yhat > 0.0 || !calendar.days()[409].open);
    }

    #[test]
    fn the_95_percent_interval_covers_most_actual_days() {
        let calendar = synthetic_series(500);
        let history = calendar.until(calendar.days()[459].date);
        // Weekly seasonality and promotions: well-posed for the synthetic data (yearly
        // seasonality on 120 days is not, see notes/prophet.md).
        let profile = Profile {
            yearly_order: 0,
            features: vec![Feature::Promo],
            ..Profile::reference()
        };
        let model = FittedModel::fit(&history, &profile).unwrap();
        let future: Vec<&Day> = calendar.days()[460..]
            .iter()
            .filter(|day| day.is_trading())
            .collect();
        let dates: Vec<NaiveDate> = future.iter().map(|day| day.date).collect();
        let forecast = model.forecast(&calendar, &dates, 11).unwrap();
        let covered = forecast
            .iter()
            .zip(&future)
            .filter(|(point, day)| point.lower <= day.sales && day.sales <= point.upper)
            .count();
        let share = covered as f64 / future.len() as f64;
        assert!(
            share >= 0.75,
            "only {covered} of {} trading days inside the interval",
            future.len()
        );
    }

    #[test]
    fn short_and_constant_series_are_clear_errors() {
        let series = synthetic_series(10);
        let error = FittedModel::fit(&series, &Profile::reference())
            .unwrap_err()
            .to_string();
        assert!(error.contains("too little history"), "{error}");

        let constant = Series::new(
            synthetic_series(60)
                .days()
                .iter()
                .map(|day| Day {
                    sales: if day.is_trading() { 100.0 } else { 0.0 },
                    ..*day
                })
                .collect(),
        )
        .unwrap();
        let error = FittedModel::fit(&constant, &Profile::reference())
            .unwrap_err()
            .to_string();
        assert!(error.contains("constant series"), "{error}");
    }

    #[test]
    fn stored_models_survive_encoding_bit_for_bit() {
        let model = FittedModel::fit(&synthetic_series(300), &Profile::reference()).unwrap();
        let bytes = model.stored().encode();
        assert_eq!(&StoredModel::decode(&bytes).unwrap(), model.stored());
        assert!(StoredModel::decode(&bytes[..bytes.len() / 2]).is_err());
        let mut other_version = bytes.clone();
        other_version[0] = 9;
        assert!(StoredModel::decode(&other_version).is_err());
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&sorted, 0.0), 1.0);
        assert_eq!(quantile(&sorted, 0.5), 3.0);
        assert_eq!(quantile(&sorted, 0.9), 4.6);
        assert_eq!(quantile(&sorted, 1.0), 5.0);
    }
}
