//! Backtests: train on a series up to an origin, forecast the open days after it, and score
//! the forecasts against what happened with Kaggle's metric (RMSPE).

use chrono::{Days, NaiveDate};

use super::model::{FittedModel, ModelError};
use super::planner::plan;
use super::profile::Profile;
use super::series::Series;

/// One forecast day of a backtest, with the actual sales where known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BacktestRow {
    pub store: u32,
    pub origin: NaiveDate,
    pub date: NaiveDate,
    pub yhat: f64,
    pub lower: f64,
    pub upper: f64,
    /// Sales that day, when the series has it.
    pub actual: Option<f64>,
}

/// Backtests one series at each origin over `horizon` days. Days the calendar says are closed
/// are skipped; the calendar is the series itself (promotions and holidays are known in
/// advance) and, past its end, the planned days.
pub fn backtest_series(
    series: &Series,
    store: u32,
    profile: &Profile,
    origins: &[NaiveDate],
    horizon: u32,
    seed: u64,
) -> Result<Vec<BacktestRow>, ModelError> {
    let mut rows = Vec::new();
    for &origin in origins {
        let history = series.until(origin);
        let model = FittedModel::fit(&history, profile)?;
        let dates: Vec<NaiveDate> = (1..=u64::from(horizon))
            .filter_map(|offset| origin.checked_add_days(Days::new(offset)))
            .collect();
        let beyond: Vec<NaiveDate> = dates
            .iter()
            .copied()
            .filter(|date| series.last_date().is_none_or(|last| *date > last))
            .collect();
        let calendar = series.extended(&plan(series, &beyond))?;
        let open_dates: Vec<NaiveDate> = dates
            .into_iter()
            .filter(|date| calendar.get(*date).is_some_and(|day| day.open))
            .collect();
        for point in model.forecast(&calendar, &open_dates, seed)? {
            rows.push(BacktestRow {
                store,
                origin,
                date: point.date,
                yhat: point.yhat,
                lower: point.lower,
                upper: point.upper,
                actual: series.get(point.date).map(|day| day.sales),
            });
        }
    }
    Ok(rows)
}

/// Share of the rows with actual sales above zero whose actual lies inside the forecast
/// interval; `None` when there is none.
pub fn coverage<'a>(rows: impl IntoIterator<Item = &'a BacktestRow>) -> Option<f64> {
    mean_over_scored(rows, |row, actual| {
        f64::from(u8::from(row.lower <= actual && actual <= row.upper))
    })
}

/// Kaggle's Root Mean Square Percentage Error over the rows with actual sales above zero;
/// `None` when there is none.
pub fn rmspe<'a>(rows: impl IntoIterator<Item = &'a BacktestRow>) -> Option<f64> {
    mean_over_scored(rows, |row, actual| ((actual - row.yhat) / actual).powi(2)).map(f64::sqrt)
}

/// The mean of `value(row, actual)` over the rows Kaggle's metric scores: those with actual
/// sales above zero. `None` when there is none.
fn mean_over_scored<'a>(
    rows: impl IntoIterator<Item = &'a BacktestRow>,
    value: impl Fn(&BacktestRow, f64) -> f64,
) -> Option<f64> {
    let (sum, count) = rows
        .into_iter()
        .filter_map(|row| {
            row.actual
                .filter(|actual| *actual > 0.0)
                .map(|actual| value(row, actual))
        })
        .fold((0.0, 0usize), |(sum, count), value| {
            (sum + value, count + 1)
        });
    (count > 0).then(|| sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::synth::{SynthOptions, generate};
    use crate::forecast::profile::Feature;

    fn row(actual: Option<f64>, yhat: f64) -> BacktestRow {
        let date = NaiveDate::from_ymd_opt(2015, 1, 1).unwrap();
        BacktestRow {
            store: 1,
            origin: date,
            date,
            yhat,
            lower: yhat,
            upper: yhat,
            actual,
        }
    }

    #[test]
    fn rmspe_is_kaggles_formula() {
        let rows = [
            row(Some(100.0), 110.0),
            row(Some(200.0), 160.0),
            row(Some(0.0), 5.0),
            row(None, 1.0),
        ];
        let expected = ((0.1f64.powi(2) + 0.2f64.powi(2)) / 2.0).sqrt();
        assert!((rmspe(&rows).unwrap() - expected).abs() < 1e-12);
        assert_eq!(rmspe(&[row(None, 1.0)]), None);
    }

    #[test]
    fn coverage_counts_actuals_inside_the_interval() {
        let mut inside = row(Some(100.0), 100.0);
        (inside.lower, inside.upper) = (90.0, 110.0);
        let mut on_the_edge = row(Some(110.0), 100.0);
        (on_the_edge.lower, on_the_edge.upper) = (90.0, 110.0);
        let mut outside = row(Some(120.0), 100.0);
        (outside.lower, outside.upper) = (90.0, 110.0);
        let rows = [
            inside,
            on_the_edge,
            outside,
            row(Some(0.0), 1.0),
            row(None, 1.0),
        ];
        assert!((coverage(&rows).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(coverage(&[row(None, 1.0)]), None);
    }

    #[test]
    fn backtests_forecast_open_days_after_each_origin() {
        let data = generate(&SynthOptions {
            stores: 2,
            days: 400,
            seed: 1,
            ..SynthOptions::default()
        })
        .unwrap();
        let series = Series::from_rows(data.sales.iter().filter(|row| row.store == 2)).unwrap();
        let last = series.last_date().unwrap();
        let origins = [
            last - chrono::TimeDelta::days(30),
            last - chrono::TimeDelta::days(3),
        ];
        let profile = Profile {
            yearly_order: 0,
            features: vec![Feature::Promo],
            ..Profile::reference()
        };
        let rows = backtest_series(&series, 2, &profile, &origins, 7, 0).unwrap();
        assert!(rows.iter().all(
            |row| row.date > row.origin && row.date <= row.origin + chrono::TimeDelta::days(7)
        ));
        assert!(
            rows.iter()
                .all(|row| series.get(row.date).is_none_or(|day| day.open))
        );
        // The second origin's horizon runs past the data: those days have no actuals.
        assert!(rows.iter().any(|row| row.actual.is_none()));
        let score = rmspe(&rows).unwrap();
        assert!(score > 0.0 && score < 0.2, "RMSPE {score}");
    }
}
