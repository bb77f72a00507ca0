//! One store's daily series, and the model inputs derived from it: the days a model trains
//! on and the regressor values of any day (past or planned).

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};

use super::profile::{Feature, Profile};
use crate::dataset::{SalesRow, StateHoliday};

/// One calendar day of a store: what happened, or for a future day what is planned
/// (`sales` is then unknown and 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Day {
    pub date: NaiveDate,
    pub sales: f64,
    pub open: bool,
    pub promo: bool,
    pub state_holiday: bool,
    pub school_holiday: bool,
}

impl Day {
    /// A day a model learns from: open, with sales recorded.
    pub fn is_trading(&self) -> bool {
        self.open && self.sales > 0.0
    }
}

impl From<&SalesRow> for Day {
    fn from(row: &SalesRow) -> Self {
        Day {
            date: row.date,
            sales: f64::from(row.sales),
            open: row.open,
            promo: row.promo,
            state_holiday: row.state_holiday != StateHoliday::None,
            school_holiday: row.school_holiday,
        }
    }
}

/// Days sorted by date, at most one per date (gaps allowed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    days: Vec<Day>,
}

/// Why a series cannot be modelled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeriesError {
    #[error("too little history: {open_days} open days with sales, {needed} needed")]
    TooLittleHistory { open_days: usize, needed: usize },
    #[error("constant series: every open day sold {value}, nothing to model")]
    Constant { value: f64 },
    #[error("two rows for {0}")]
    DuplicateDate(NaiveDate),
}

impl Series {
    /// Sorts `days` by date; two days with the same date are an error.
    pub fn new(mut days: Vec<Day>) -> Result<Self, SeriesError> {
        days.sort_by_key(|day| day.date);
        if let Some(pair) = days.windows(2).find(|pair| pair[0].date == pair[1].date) {
            return Err(SeriesError::DuplicateDate(pair[0].date));
        }
        Ok(Self { days })
    }

    pub fn from_rows<'a>(
        rows: impl IntoIterator<Item = &'a SalesRow>,
    ) -> Result<Self, SeriesError> {
        Self::new(rows.into_iter().map(Day::from).collect())
    }

    pub fn days(&self) -> &[Day] {
        &self.days
    }

    pub fn last_date(&self) -> Option<NaiveDate> {
        self.days.last().map(|day| day.date)
    }

    /// The day on `date`, if the series has it.
    pub fn get(&self, date: NaiveDate) -> Option<&Day> {
        self.days
            .binary_search_by_key(&date, |day| day.date)
            .ok()
            .map(|index| &self.days[index])
    }

    /// The part of the series up to and including `last`.
    pub fn until(&self, last: NaiveDate) -> Series {
        let end = self.days.partition_point(|day| day.date <= last);
        Series {
            days: self.days[..end].to_vec(),
        }
    }

    /// This series followed by `future` days (later dates replace nothing: they must come after).
    pub fn extended(&self, future: &[Day]) -> Result<Series, SeriesError> {
        let mut days = self.days.clone();
        days.extend_from_slice(future);
        Series::new(days)
    }

    /// The trading days a profile trains on: the last `history_open_days` of them.
    pub fn training_days(&self, profile: &Profile) -> Vec<Day> {
        let trading: Vec<Day> = self
            .days
            .iter()
            .filter(|day| day.is_trading())
            .copied()
            .collect();
        let keep = (profile.history_open_days as usize).min(trading.len());
        trading[trading.len() - keep..].to_vec()
    }

    /// The value of `feature` on `date`, looking at neighbouring days where it must.
    pub fn feature_value(&self, feature: Feature, date: NaiveDate) -> f64 {
        let flag =
            |day: Option<&Day>, test: fn(&Day) -> bool| f64::from(u8::from(day.is_some_and(test)));
        match feature {
            Feature::Promo => flag(self.get(date), |day| day.promo),
            Feature::SchoolHoliday => flag(self.get(date), |day| day.school_holiday),
            Feature::BeforeHoliday => flag(
                date.checked_add_days(Days::new(1))
                    .and_then(|next| self.get(next)),
                |day| day.state_holiday,
            ),
            Feature::AfterHoliday => flag(
                date.checked_sub_days(Days::new(1))
                    .and_then(|previous| self.get(previous)),
                |day| day.state_holiday,
            ),
        }
    }

    /// Regressor columns for `dates`, one per feature of the profile, keyed by name.
    pub fn feature_columns(
        &self,
        features: &[Feature],
        dates: &[NaiveDate],
    ) -> BTreeMap<String, Vec<f64>> {
        features
            .iter()
            .map(|&feature| {
                let values = dates
                    .iter()
                    .map(|&date| self.feature_value(feature, date))
                    .collect();
                (feature.name().to_string(), values)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str, sales: f64) -> Day {
        Day {
            date: date.parse().unwrap(),
            sales,
            open: sales > 0.0,
            promo: false,
            state_holiday: false,
            school_holiday: false,
        }
    }

    #[test]
    fn days_are_sorted_and_unique() {
        let series = Series::new(vec![day("2015-01-03", 1.0), day("2015-01-01", 2.0)]).unwrap();
        assert_eq!(series.days()[0].sales, 2.0);
        let error = Series::new(vec![day("2015-01-01", 1.0), day("2015-01-01", 2.0)]).unwrap_err();
        assert_eq!(
            error,
            SeriesError::DuplicateDate("2015-01-01".parse().unwrap())
        );
    }

    #[test]
    fn training_takes_the_last_trading_days() {
        let mut days: Vec<Day> = (1..=28)
            .map(|d| day(&format!("2015-02-{d:02}"), f64::from(d)))
            .collect();
        days[27].open = false; // the last day is closed
        days[26].sales = 0.0; // open but sold nothing
        let series = Series::new(days).unwrap();
        let profile = Profile {
            history_open_days: 14,
            ..Profile::reference()
        };
        let training = series.training_days(&profile);
        assert_eq!(training.len(), 14);
        assert_eq!(training.last().unwrap().sales, 26.0);
        assert_eq!(training[0].sales, 13.0);
    }

    #[test]
    fn holiday_neighbours_are_features() {
        let mut days = vec![
            day("2015-12-24", 5.0),
            day("2015-12-25", 0.0),
            day("2015-12-26", 0.0),
            day("2015-12-27", 3.0),
        ];
        days[1].state_holiday = true;
        days[2].state_holiday = true;
        days[0].promo = true;
        let series = Series::new(days).unwrap();
        let dates: Vec<NaiveDate> = ["2015-12-24", "2015-12-27"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect();
        let columns = series.feature_columns(&Feature::ALL, &dates);
        assert_eq!(columns["before_holiday"], vec![1.0, 0.0]);
        assert_eq!(columns["after_holiday"], vec![0.0, 1.0]);
        assert_eq!(columns["promo"], vec![1.0, 0.0]);
        assert_eq!(columns["school_holiday"], vec![0.0, 0.0]);
    }
}
