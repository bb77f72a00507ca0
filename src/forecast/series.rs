//! One store's daily series, and the model inputs derived from it: the days a model trains
//! on and the regressor values of any day (past or planned).

use std::collections::BTreeMap;

use chrono::{Datelike, Days, Months, NaiveDate};

use super::profile::{Feature, Profile};
use crate::dataset::calendar::easter_sunday;
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

    /// The value of the `column`-th column of `feature` on `date` (see [`Feature::columns`]),
    /// looking at neighbouring days where it must.
    pub fn feature_value(&self, feature: Feature, column: usize, date: NaiveDate) -> f64 {
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
            Feature::StateHoliday => flag(self.get(date), |day| day.state_holiday),
            Feature::PromoWeekday => {
                // Columns are Monday (0) to Thursday (3).
                let weekday = date.weekday().num_days_from_monday() as usize;
                f64::from(u8::from(weekday == column)) * flag(self.get(date), |day| day.promo)
            }
            Feature::MonthDay => month_day_term(date, column),
            Feature::Christmas => {
                let in_december = |first: u32, last: u32| {
                    date.month() == 12 && (first..=last).contains(&date.day())
                };
                let window = match column {
                    0 => in_december(14, 23),
                    1 => in_december(24, 24),
                    _ => in_december(27, 31),
                };
                f64::from(u8::from(window))
            }
            Feature::Easter => {
                let to_easter = (easter_sunday(date.year()) - date).num_days();
                let window = match column {
                    0 => (4..=6).contains(&to_easter),
                    _ => to_easter == 1,
                };
                f64::from(u8::from(window))
            }
            Feature::Carnival => {
                let to_easter = (easter_sunday(date.year()) - date).num_days();
                let day = [52, 48, 47].get(column).copied().unwrap_or(-1);
                f64::from(u8::from(to_easter == day))
            }
            Feature::AfterClosure => f64::from(u8::from(self.reopened_recently(date))),
        }
    }

    /// Whether `date` is within [`REOPENING_DAYS`] days after the store reopened from a closure
    /// of at least [`LONG_CLOSURE_DAYS`] days (closed days and days missing from the data).
    fn reopened_recently(&self, date: NaiveDate) -> bool {
        let end = self.days.partition_point(|day| day.date <= date);
        let mut open_days = self.days[..end]
            .iter()
            .rev()
            .filter(|day| day.open)
            .map(|day| day.date);
        let Some(mut later) = open_days.next() else {
            return false;
        };
        // Walk back over the open days of the window, each with the open day before it,
        // however long ago that was.
        for earlier in open_days {
            if (date - later).num_days() >= REOPENING_DAYS {
                return false;
            }
            if (later - earlier).num_days() > LONG_CLOSURE_DAYS {
                return true;
            }
            later = earlier;
        }
        false
    }

    /// Regressor columns for `dates`, every column of each feature of the profile, by name.
    pub fn feature_columns(
        &self,
        features: &[Feature],
        dates: &[NaiveDate],
    ) -> BTreeMap<String, Vec<f64>> {
        features
            .iter()
            .flat_map(|&feature| {
                feature
                    .columns()
                    .iter()
                    .enumerate()
                    .map(move |(column, name)| (feature, column, name))
            })
            .map(|(feature, column, name)| {
                let values = dates
                    .iter()
                    .map(|&date| self.feature_value(feature, column, date))
                    .collect();
                (name.to_string(), values)
            })
            .collect()
    }
}

/// A closure at least this many days long (a refurbishment, not a weekend or a holiday) ...
const LONG_CLOSURE_DAYS: i64 = 5;
/// ... marks the days up to this many after the reopening.
const REOPENING_DAYS: i64 = 14;

/// The `column`-th term of the month-position Fourier series: sine and cosine of order
/// `column / 2 + 1` of the day's position in its month (0 on the 1st, near 1 on the last day).
fn month_day_term(date: NaiveDate, column: usize) -> f64 {
    let first = date.with_day(1).unwrap_or(date);
    let next_month = first.checked_add_months(Months::new(1)).unwrap_or(first);
    let month_length = (next_month - first).num_days().max(1) as f64;
    let position = f64::from(date.day() - 1) / month_length;
    let angle = 2.0 * std::f64::consts::PI * (column / 2 + 1) as f64 * position;
    if column.is_multiple_of(2) {
        angle.sin()
    } else {
        angle.cos()
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

    fn dates(list: &[&str]) -> Vec<NaiveDate> {
        list.iter().map(|d| d.parse().unwrap()).collect()
    }

    #[test]
    fn promotions_have_a_column_per_weekday_from_monday_to_thursday() {
        // 2015-06-01 is a Monday; the promotion runs Monday to Friday.
        let days: Vec<Day> = (1..=7)
            .map(|d| Day {
                promo: d <= 5,
                ..day(&format!("2015-06-{d:02}"), 100.0)
            })
            .collect();
        let series = Series::new(days).unwrap();
        let all = dates(&[
            "2015-06-01",
            "2015-06-02",
            "2015-06-03",
            "2015-06-04",
            "2015-06-05",
            "2015-06-06",
        ]);
        let columns = series.feature_columns(&[Feature::PromoWeekday], &all);
        assert_eq!(columns.len(), 4);
        assert_eq!(columns["promo_mon"], vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(columns["promo_thu"], vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        // Friday's promotion is `promo` itself; Saturday has none.
        let friday_and_saturday: f64 = columns.values().map(|values| values[4] + values[5]).sum();
        assert_eq!(friday_and_saturday, 0.0);
    }

    #[test]
    fn the_month_day_terms_follow_the_position_in_the_month() {
        let series = Series::default();
        let columns = series.feature_columns(
            &[Feature::MonthDay],
            &dates(&["2015-06-01", "2015-06-16", "2015-02-15"]),
        );
        assert_eq!(columns.len(), 2 * crate::forecast::profile::MONTH_DAY_ORDER);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // The 1st is position 0; the 16th of a 30-day month and the 15th of February (28
        // days) are half-way.
        assert!(close(columns["month_sin1"][0], 0.0) && close(columns["month_cos1"][0], 1.0));
        assert!(close(columns["month_cos1"][1], -1.0));
        assert!(close(columns["month_cos1"][2], -1.0));
        assert!(close(columns["month_cos2"][1], 1.0));
    }

    #[test]
    fn christmas_easter_and_carnival_come_from_the_calendar() {
        let series = Series::default();
        let features = [Feature::Christmas, Feature::Easter, Feature::Carnival];
        // Easter Sunday 2015 was 5 April, so Rosenmontag was 16 February.
        let days = dates(&[
            "2014-12-13",
            "2014-12-14",
            "2014-12-24",
            "2014-12-25",
            "2014-12-29",
            "2015-03-30",
            "2015-04-01",
            "2015-04-02",
            "2015-04-04",
            "2015-02-12",
            "2015-02-16",
            "2015-02-17",
            "2015-02-18",
        ]);
        let columns = series.feature_columns(&features, &days);
        let on = |name: &str| -> Vec<NaiveDate> {
            days.iter()
                .zip(&columns[name])
                .filter(|(_, value)| **value == 1.0)
                .map(|(date, _)| *date)
                .collect()
        };
        assert_eq!(on("christmas_rush"), dates(&["2014-12-14"]));
        assert_eq!(on("christmas_eve"), dates(&["2014-12-24"]));
        assert_eq!(on("between_years"), dates(&["2014-12-29"]));
        assert_eq!(on("holy_week"), dates(&["2015-03-30", "2015-04-01"]));
        assert_eq!(on("easter_saturday"), dates(&["2015-04-04"]));
        assert_eq!(on("weiberfastnacht"), dates(&["2015-02-12"]));
        assert_eq!(on("rosenmontag"), dates(&["2015-02-16"]));
        assert_eq!(on("shrove_tuesday"), dates(&["2015-02-17"]));
    }

    #[test]
    fn the_first_two_weeks_after_a_long_closure_are_a_reopening() {
        // Open in January, no rows from 11 January to 31 March (a refurbishment), open again
        // from 1 April; one ordinary closed Sunday (5 April) on the way.
        let mut days: Vec<Day> = (1..=10)
            .map(|d| day(&format!("2015-01-{d:02}"), 100.0))
            .collect();
        days.extend((1..=30).map(|d| day(&format!("2015-04-{d:02}"), f64::from(u8::from(d != 5)))));
        let series = Series::new(days).unwrap();
        let checked = dates(&[
            "2015-01-09",
            "2015-04-01",
            "2015-04-05",
            "2015-04-14",
            "2015-04-15",
            "2015-04-30",
        ]);
        let columns = series.feature_columns(&[Feature::AfterClosure], &checked);
        assert_eq!(columns["after_closure"], vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn a_public_holiday_is_a_feature_of_its_own_day() {
        let mut days = vec![day("2015-05-13", 5.0), day("2015-05-14", 2.0)];
        days[1].state_holiday = true;
        let series = Series::new(days).unwrap();
        let columns = series.feature_columns(
            &[Feature::StateHoliday],
            &dates(&["2015-05-13", "2015-05-14", "2015-05-15"]),
        );
        assert_eq!(columns["state_holiday"], vec![0.0, 1.0, 0.0]);
    }
}
