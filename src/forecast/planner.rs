//! Planned days: what is known in advance about the days after a series ends, projected from
//! its history when no plan is given.
//!
//! - public holidays: Germany's nation-wide ones, plus any holiday the store observed a year
//!   before on the same date or at the same distance from Easter (regional holidays such as
//!   Corpus Christi);
//! - promotions: Rossmann runs them in a two-week rhythm, so a day repeats the day 14 days
//!   earlier;
//! - school holidays: as on the same weekday 52 weeks earlier;
//! - open: closed on holidays; otherwise open when the store opened on most of the last eight
//!   same weekdays (so Sunday closures and Sunday openings both carry forward).

use chrono::{Datelike, Days, NaiveDate};

use super::series::{Day, Series};
use crate::dataset::StateHoliday;
use crate::dataset::calendar::{easter_sunday, public_holiday};

/// The planned days `dates` (after the series' end) for `series`.
pub fn plan(series: &Series, dates: &[NaiveDate]) -> Vec<Day> {
    let mut extended = series.clone();
    let mut planned = Vec::with_capacity(dates.len());
    for &date in dates {
        let day = plan_day(&extended, date);
        planned.push(day);
        // Later planned days may look back at this one (a 14-day rhythm over a long horizon).
        if let Ok(next) = extended.extended(&[day]) {
            extended = next;
        }
    }
    planned
}

/// `count` calendar days after the series' last day.
pub fn days_after(series: &Series, count: u32) -> Vec<NaiveDate> {
    let Some(last) = series.last_date() else {
        return Vec::new();
    };
    (1..=u64::from(count))
        .filter_map(|offset| last.checked_add_days(Days::new(offset)))
        .collect()
}

fn plan_day(series: &Series, date: NaiveDate) -> Day {
    let back = |days: u64| {
        date.checked_sub_days(Days::new(days))
            .and_then(|earlier| series.get(earlier))
    };
    let state_holiday =
        public_holiday(date) != StateHoliday::None || observed_a_year_before(series, date);
    let promo = back(14).is_some_and(|day| day.promo);
    let school_holiday = back(364).is_some_and(|day| day.school_holiday);
    let recent_same_weekday: Vec<&Day> = (1..=8).filter_map(|weeks| back(7 * weeks)).collect();
    let opened = recent_same_weekday.iter().filter(|day| day.open).count();
    let open = !state_holiday && opened * 2 > recent_same_weekday.len();
    Day {
        date,
        sales: 0.0,
        open,
        promo: promo && open,
        state_holiday,
        school_holiday,
    }
}

/// Whether the store had a holiday a year before on the same date, or on the day at the same
/// distance from that year's Easter.
fn observed_a_year_before(series: &Series, date: NaiveDate) -> bool {
    let previous_year = date.year() - 1;
    let same_date = NaiveDate::from_ymd_opt(previous_year, date.month(), date.day());
    let from_easter = (date - easter_sunday(date.year())).num_days();
    let same_easter_offset =
        easter_sunday(previous_year).checked_add_signed(chrono::TimeDelta::days(from_easter));
    [same_date, same_easter_offset]
        .into_iter()
        .flatten()
        .any(|earlier| series.get(earlier).is_some_and(|day| day.state_holiday))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: NaiveDate, open: bool, promo: bool, state_holiday: bool) -> Day {
        Day {
            date,
            sales: if open { 100.0 } else { 0.0 },
            open,
            promo,
            state_holiday,
            school_holiday: false,
        }
    }

    /// 2014-01-01 .. 2015-06-19: closed Sundays, promo in alternate weeks Monday to Friday
    /// (weeks starting on even ISO weeks), Corpus Christi 2014 (2014-06-19) observed.
    fn history() -> Series {
        let start = NaiveDate::from_ymd_opt(2014, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2015, 6, 19).unwrap();
        let corpus_christi_2014 = NaiveDate::from_ymd_opt(2014, 6, 19).unwrap();
        let days = start
            .iter_days()
            .take_while(|date| *date <= end)
            .map(|date| {
                let holiday =
                    public_holiday(date) != StateHoliday::None || date == corpus_christi_2014;
                let weekday = date.weekday().number_from_monday();
                let open = weekday != 7 && !holiday;
                let promo = open && weekday <= 5 && date.iso_week().week() % 2 == 0;
                day(date, open, promo, holiday)
            })
            .collect();
        Series::new(days).unwrap()
    }

    #[test]
    fn plans_promotions_sundays_and_holidays() {
        let series = history();
        let dates = days_after(&series, 21);
        assert_eq!(dates[0], NaiveDate::from_ymd_opt(2015, 6, 20).unwrap());
        let planned = plan(&series, &dates);
        for day in &planned {
            let weekday = day.date.weekday().number_from_monday();
            let expected_promo = weekday <= 5 && day.date.iso_week().week() % 2 == 0 && day.open;
            assert_eq!(day.promo, expected_promo, "{}", day.date);
            assert_eq!(day.open, weekday != 7, "{}", day.date);
        }
        // Corpus Christi 2015 (Easter + 60 = 2015-06-04) is found from 2014's.
        let earlier = history().until(NaiveDate::from_ymd_opt(2015, 6, 1).unwrap());
        let corpus_christi = NaiveDate::from_ymd_opt(2015, 6, 4).unwrap();
        let planned = plan(&earlier, &[corpus_christi]);
        assert!(planned[0].state_holiday && !planned[0].open);
    }
}
