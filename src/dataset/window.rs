//! What `storecast load` keeps of a data file: as the reference stack's loader does, the last
//! N months before the file's last date, with every date shifted by the same amount so the
//! data looks recent. Unlike that loader, which shifts by days so the last date becomes
//! yesterday, the shift is a whole number of weeks: the last date lands within the 7 days
//! ending yesterday, and every row keeps its weekday. A store closed on Sundays is then still
//! closed on Sundays, and a forecast's weekly pattern falls on the right days.

use chrono::{Datelike, Months, NaiveDate, TimeDelta};

use super::{DatasetError, SalesRow};

/// Rows selected and shifted by [`recent_window`], with what was done to them.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Sorted by (store, date), one row per store and day.
    pub rows: Vec<SalesRow>,
    /// First and last date kept, before shifting.
    pub source_span: (NaiveDate, NaiveDate),
    /// Days added to every date: a multiple of 7.
    pub shift_days: i64,
}

impl Window {
    /// First and last date after shifting.
    pub fn span(&self) -> (NaiveDate, NaiveDate) {
        let delta = TimeDelta::days(self.shift_days);
        (self.source_span.0 + delta, self.source_span.1 + delta)
    }

    /// Number of distinct stores.
    pub fn store_count(&self) -> usize {
        let mut count = 0;
        let mut previous = None;
        for row in &self.rows {
            if previous != Some(row.store) {
                count += 1;
                previous = Some(row.store);
            }
        }
        count
    }
}

/// Keeps the last `months` months of `rows` (all of them when `months` is 0) and shifts the
/// dates by whole weeks so that the last one falls within the 7 days ending on `last_day`.
/// Two rows for one store and day are an error.
pub fn recent_window(
    mut rows: Vec<SalesRow>,
    months: u32,
    last_day: NaiveDate,
) -> Result<Window, DatasetError> {
    let Some(source_last) = rows.iter().map(|row| row.date).max() else {
        return Ok(Window {
            rows,
            source_span: (last_day, last_day),
            shift_days: 0,
        });
    };
    // "The last 5 months" of a file ending 2015-07-31 starts on 2015-03-01.
    let first_kept = if months == 0 {
        NaiveDate::MIN
    } else {
        source_last
            .checked_sub_months(Months::new(months))
            .and_then(|date| date.succ_opt())
            .unwrap_or(NaiveDate::MIN)
    };
    rows.retain(|row| row.date >= first_kept);
    rows.sort_unstable_by_key(|row| (row.store, row.date));
    if let Some(pair) = rows
        .windows(2)
        .find(|pair| (pair[0].store, pair[0].date) == (pair[1].store, pair[1].date))
    {
        return Err(DatasetError::DuplicateDay {
            store: pair[0].store,
            date: pair[0].date,
        });
    }
    let source_first = rows.iter().map(|row| row.date).min().unwrap_or(source_last);

    let weeks = (last_day - source_last).num_days().div_euclid(7);
    let shift = TimeDelta::weeks(weeks);
    for row in &mut rows {
        row.date += shift;
        row.day_of_week = row.date.weekday().number_from_monday() as u8;
    }
    Ok(Window {
        rows,
        source_span: (source_first, source_last),
        shift_days: shift.num_days(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::StateHoliday;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn row(store: u32, day: &str, sales: u32) -> SalesRow {
        let date = date(day);
        SalesRow {
            store,
            day_of_week: date.weekday().number_from_monday() as u8,
            date,
            sales,
            customers: sales / 10,
            open: sales > 0,
            promo: false,
            state_holiday: StateHoliday::None,
            school_holiday: false,
        }
    }

    #[test]
    fn keeps_the_last_months_and_ends_on_the_given_day() {
        let rows = vec![
            row(1, "2015-07-31", 10),
            row(1, "2015-03-01", 20),
            row(1, "2015-02-28", 30),
            row(2, "2015-07-30", 40),
        ];
        // 2015-07-31 is a Friday, 2026-11-28 a Saturday: the data ends on Friday the 27th.
        let window = recent_window(rows, 5, date("2026-11-28")).unwrap();
        assert_eq!(window.source_span, (date("2015-03-01"), date("2015-07-31")));
        assert_eq!(window.span().1, date("2026-11-27"));
        let sales: Vec<u32> = window.rows.iter().map(|row| row.sales).collect();
        assert_eq!(
            sales,
            vec![20, 10, 40],
            "Feb 28 dropped; sorted by store, date"
        );
        assert_eq!(window.rows[1].date, date("2026-11-27"));
        assert_eq!(window.rows[2].date, date("2026-11-26"));
        assert!(
            window
                .rows
                .iter()
                .all(|row| row.day_of_week as u32 == row.date.weekday().number_from_monday())
        );
        assert_eq!(window.store_count(), 2);
    }

    #[test]
    fn the_shift_is_whole_weeks_ending_within_the_last_seven_days() {
        // A store closed on Sundays only, over four weeks ending on a Wednesday.
        let first = date("2015-07-02");
        let rows: Vec<SalesRow> = (0..27)
            .map(|offset| {
                let day = first + TimeDelta::days(offset);
                let sales = if day.weekday() == chrono::Weekday::Sun {
                    0
                } else {
                    100
                };
                row(1, &day.to_string(), sales)
            })
            .collect();
        let source_last = rows.iter().map(|row| row.date).max().unwrap();
        // Every weekday as the requested last day, before and after the file's own dates.
        for requested in (0..14).map(|offset| date("2026-11-20") + TimeDelta::days(offset)) {
            for target in [
                requested,
                date("2014-01-01") + TimeDelta::days(requested.ordinal0() as i64),
            ] {
                let window = recent_window(rows.clone(), 0, target).unwrap();
                let last = window.span().1;
                assert!(
                    last <= target && target - last < TimeDelta::days(7),
                    "asked for {target}, ends on {last}"
                );
                assert_eq!(last.weekday(), source_last.weekday(), "asked for {target}");
                assert_eq!(window.shift_days % 7, 0);
                for row in &window.rows {
                    assert_eq!(
                        row.date.weekday() == chrono::Weekday::Sun,
                        row.sales == 0,
                        "{row:?}"
                    );
                    assert_eq!(
                        row.day_of_week as u32,
                        row.date.weekday().number_from_monday()
                    );
                }
            }
        }
    }

    #[test]
    fn zero_months_keeps_everything() {
        let rows = vec![row(1, "2013-01-01", 1), row(1, "2015-07-31", 2)];
        let window = recent_window(rows, 0, date("2015-07-31")).unwrap();
        assert_eq!(window.rows.len(), 2);
        assert_eq!(window.shift_days, 0);
    }

    #[test]
    fn duplicate_days_are_named() {
        let rows = vec![row(4, "2015-07-31", 1), row(4, "2015-07-31", 2)];
        let error = recent_window(rows, 5, date("2026-01-01"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("store 4") && error.contains("2015-07-31"),
            "{error}"
        );
    }
}
