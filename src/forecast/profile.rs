//! Model profiles: everything that decides how a series is modelled, as configuration.
//!
//! `reference` is exactly the reference stack's model; `default` is storecast's own, chosen by
//! backtests on the real data (BENCHMARKS.md explains its settings). Both live in
//! `config/default.toml` under `[profiles.NAME]` and can be tuned there.

use serde::{Deserialize, Serialize};

/// Extra regressors a profile can use; their future values are known in advance (promotions
/// are planned, holidays are in the calendar). A feature is one or more regressor columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// The store runs its promotion that day.
    Promo,
    /// Schools are closed that day.
    SchoolHoliday,
    /// The next day is a public holiday (shoppers stock up).
    BeforeHoliday,
    /// The previous day was a public holiday.
    AfterHoliday,
    /// The day is a public holiday (the few stores open on one sell far less).
    StateHoliday,
    /// The promotion's extra effect on Monday to Thursday (Friday's is `promo` itself):
    /// Rossmann's promotions lift the first days of their week most.
    PromoWeekday,
    /// Position in the month as a Fourier series (paydays at the turn of the month).
    MonthDay,
    /// The Christmas rush (14-23 December), Christmas Eve, and the days between the years.
    Christmas,
    /// Holy Week before Easter: Monday to Wednesday, and Easter Saturday (Maundy Thursday is
    /// `before_holiday`), when shoppers stock up for the long weekend.
    Easter,
    /// Carnival in its strongholds (the Rhineland): Weiberfastnacht, Rosenmontag and Shrove
    /// Tuesday, when shops there sell far less (stores elsewhere learn a zero effect).
    Carnival,
    /// An open day in the first two weeks after the store was closed for five days or more
    /// (a refurbishment): customers come back gradually, or to a reopening sale.
    AfterClosure,
}

impl Feature {
    pub const ALL: [Feature; 11] = [
        Feature::Promo,
        Feature::SchoolHoliday,
        Feature::BeforeHoliday,
        Feature::AfterHoliday,
        Feature::StateHoliday,
        Feature::PromoWeekday,
        Feature::MonthDay,
        Feature::Christmas,
        Feature::Easter,
        Feature::Carnival,
        Feature::AfterClosure,
    ];

    /// The feature's name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Promo => "promo",
            Feature::SchoolHoliday => "school_holiday",
            Feature::BeforeHoliday => "before_holiday",
            Feature::AfterHoliday => "after_holiday",
            Feature::StateHoliday => "state_holiday",
            Feature::PromoWeekday => "promo_weekday",
            Feature::MonthDay => "month_day",
            Feature::Christmas => "christmas",
            Feature::Easter => "easter",
            Feature::Carnival => "carnival",
            Feature::AfterClosure => "after_closure",
        }
    }

    /// The regressor columns the feature adds to the Prophet model, by name.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Feature::Promo => &["promo"],
            Feature::SchoolHoliday => &["school_holiday"],
            Feature::BeforeHoliday => &["before_holiday"],
            Feature::AfterHoliday => &["after_holiday"],
            Feature::StateHoliday => &["state_holiday"],
            Feature::PromoWeekday => &["promo_mon", "promo_tue", "promo_wed", "promo_thu"],
            Feature::MonthDay => &MONTH_DAY_COLUMNS,
            Feature::Christmas => &["christmas_rush", "christmas_eve", "between_years"],
            Feature::Easter => &["holy_week", "easter_saturday"],
            Feature::Carnival => &["weiberfastnacht", "rosenmontag", "shrove_tuesday"],
            Feature::AfterClosure => &["after_closure"],
        }
    }
}

/// Fourier order of the `month_day` feature.
pub const MONTH_DAY_ORDER: usize = 3;

const MONTH_DAY_COLUMNS: [&str; 2 * MONTH_DAY_ORDER] = [
    "month_sin1",
    "month_cos1",
    "month_sin2",
    "month_cos2",
    "month_sin3",
    "month_cos3",
];

/// Additive or multiplicative components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Additive,
    Multiplicative,
}

/// How to model one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Number of most recent open days the model is trained on.
    pub history_open_days: u32,
    /// Fourier order of the yearly seasonality; 0 turns it off.
    pub yearly_order: u32,
    /// Fit the yearly seasonality only when the training days span at least this many days
    /// (0: always). Yearly seasonality on a few months is ill-posed (notes/prophet.md).
    pub yearly_min_days: u32,
    /// Fourier order of the weekly seasonality; 0 turns it off.
    pub weekly_order: u32,
    /// Whether seasonalities (and regressors) add to the trend or scale it.
    pub mode: Mode,
    /// Fit the logarithm of sales (errors become relative, as RMSPE scores them) and
    /// forecast its exponential.
    pub log_sales: bool,
    /// Extra regressors.
    pub features: Vec<Feature>,
    /// Forecast days the calendar says are closed as zero (otherwise, as any day).
    pub closed_days_zero: bool,
    /// Number of potential trend changepoints.
    pub changepoints: u32,
    /// Share of the history in which changepoints may fall.
    pub changepoint_range: f64,
    /// Prior scale of trend changes (larger: more flexible trend).
    pub changepoint_prior_scale: f64,
    /// Prior scale of seasonality coefficients.
    pub seasonality_prior_scale: f64,
    /// Prior scale of the extra regressors' coefficients.
    pub feature_prior_scale: f64,
    /// Width of the forecast interval, e.g. 0.95.
    pub interval_width: f64,
    /// Samples drawn to estimate the interval.
    pub uncertainty_samples: u32,
}

/// Why a profile cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("profile setting {field} {problem}")]
pub struct ProfileError {
    pub field: &'static str,
    pub problem: &'static str,
}

impl Profile {
    /// The reference stack's model: last 120 open days, yearly + weekly seasonality, no
    /// daily seasonality, Prophet's defaults otherwise, 95% interval.
    pub fn reference() -> Self {
        Self {
            history_open_days: 120,
            yearly_order: 10,
            yearly_min_days: 0,
            weekly_order: 3,
            mode: Mode::Additive,
            log_sales: false,
            features: Vec::new(),
            closed_days_zero: false,
            changepoints: 25,
            changepoint_range: 0.8,
            changepoint_prior_scale: 0.05,
            seasonality_prior_scale: 10.0,
            feature_prior_scale: 10.0,
            interval_width: 0.95,
            uncertainty_samples: 1000,
        }
    }

    /// Checks the settings that would otherwise fail deep inside a fit.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let fail = |field, problem| Err(ProfileError { field, problem });
        if self.history_open_days < 14 {
            return fail("history_open_days", "must be at least 14");
        }
        if !(self.changepoint_range > 0.0 && self.changepoint_range <= 1.0) {
            return fail("changepoint_range", "must be in (0, 1]");
        }
        for (field, value) in [
            ("changepoint_prior_scale", self.changepoint_prior_scale),
            ("seasonality_prior_scale", self.seasonality_prior_scale),
            ("feature_prior_scale", self.feature_prior_scale),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return fail(field, "must be a positive number");
            }
        }
        if !(self.interval_width > 0.0 && self.interval_width < 1.0) {
            return fail("interval_width", "must be between 0 and 1");
        }
        Ok(())
    }
}
