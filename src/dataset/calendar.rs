//! German public and school holidays, as the synthetic generator needs them.
//!
//! Public holidays are the nation-wide ones (Easter-dependent ones computed), coded as in
//! Kaggle's `StateHoliday`. School holidays are approximations: Germany's 16 states stagger
//! their summer breaks, so a store's state shifts its summer holiday.

use chrono::{Datelike, Days, NaiveDate};

use super::StateHoliday;

/// Easter Sunday of `year` (Gregorian calendar; the anonymous "Meeus/Jones/Butcher" algorithm).
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    // The algorithm yields March or April with a valid day for every year.
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).unwrap_or(NaiveDate::MIN)
}

/// The nation-wide public holiday on `date`, if any.
pub fn public_holiday(date: NaiveDate) -> StateHoliday {
    match (date.month(), date.day()) {
        (1, 1) | (5, 1) | (10, 3) => return StateHoliday::Public,
        (12, 25) | (12, 26) => return StateHoliday::Christmas,
        _ => {}
    }
    let easter = easter_sunday(date.year());
    let offset = (date - easter).num_days();
    match offset {
        // Good Friday and Easter Monday.
        -2 | 1 => StateHoliday::Easter,
        // Ascension Day and Whit Monday.
        39 | 50 => StateHoliday::Public,
        _ => StateHoliday::None,
    }
}

/// Whether schools are out on `date` in German state number `state` (0..16).
pub fn school_holiday(date: NaiveDate, state: u32) -> bool {
    let year = date.year();
    let day_of_year = date.ordinal();
    // Christmas break: 23 December to 6 January.
    if (date.month() == 12 && date.day() >= 23) || (date.month() == 1 && date.day() <= 6) {
        return true;
    }
    // Easter break: the two weeks around Easter Sunday.
    let easter = easter_sunday(year);
    let from_easter = (date - easter).num_days();
    if (-8..=6).contains(&from_easter) {
        return true;
    }
    // Summer break: six weeks starting between late June and late July, staggered by state.
    let summer_start = NaiveDate::from_ymd_opt(year, 6, 22)
        .and_then(|start| start.checked_add_days(Days::new(u64::from(state % 16) * 2)))
        .map_or(173, |start| start.ordinal());
    if (summer_start..summer_start + 42).contains(&day_of_year) {
        return true;
    }
    // Autumn break: one to two weeks late in October.
    let autumn_start = 292 + (state % 4) * 2;
    (autumn_start..autumn_start + 10).contains(&day_of_year)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn easter_dates_match_the_calendar() {
        assert_eq!(easter_sunday(2013), date(2013, 3, 31));
        assert_eq!(easter_sunday(2014), date(2014, 4, 20));
        assert_eq!(easter_sunday(2015), date(2015, 4, 5));
        assert_eq!(easter_sunday(2026), date(2026, 4, 5));
    }

    #[test]
    fn public_holidays_are_coded_like_kaggle() {
        assert_eq!(public_holiday(date(2015, 1, 1)), StateHoliday::Public);
        assert_eq!(public_holiday(date(2015, 4, 3)), StateHoliday::Easter);
        assert_eq!(public_holiday(date(2015, 4, 6)), StateHoliday::Easter);
        assert_eq!(public_holiday(date(2015, 5, 14)), StateHoliday::Public);
        assert_eq!(public_holiday(date(2015, 12, 25)), StateHoliday::Christmas);
        assert_eq!(public_holiday(date(2015, 7, 31)), StateHoliday::None);
    }

    #[test]
    fn school_holidays_cover_summer_and_christmas() {
        assert!(school_holiday(date(2015, 7, 20), 3));
        assert!(school_holiday(date(2015, 12, 28), 0));
        assert!(!school_holiday(date(2015, 3, 10), 0));
        assert!(!school_holiday(date(2015, 11, 20), 5));
    }
}
