//! A deterministic generator of Rossmann-like data, so storecast runs without Kaggle's files.
//!
//! Each store gets its own random stream (derived from the seed and the store number, so
//! store 7 is the same whether 10 or 1,000 stores are generated) and these traits:
//! a sales level and trend, a weekly pattern (Mondays strongest, Saturdays weaker, closed on
//! Sundays except for a few type `b` stores), a December peak, public holidays closed,
//! school holidays, two-weekly promotions that lift sales, rare random closures, and noise.
//! Store 3 (or the last store, when fewer are asked for) closes for months for a refit, as
//! some Rossmann stores did. Rows come out in Kaggle's order: date descending, then store.

use chrono::{Datelike, Days, NaiveDate};

use super::calendar::{public_holiday, school_holiday};
use super::{SalesRow, StateHoliday, StoreRow};
use crate::random::SplitMix64;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOptions {
    /// Number of stores, numbered from 1.
    pub stores: u32,
    /// Number of consecutive days per store, ending at `end`.
    pub days: u32,
    pub seed: u64,
    /// The last day generated.
    pub end: NaiveDate,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            stores: 50,
            days: 942,
            seed: 42,
            // Kaggle's training data ends on 2015-07-31; the generator mimics that span.
            end: NaiveDate::from_ymd_opt(2015, 7, 31).unwrap_or(NaiveDate::MIN),
        }
    }
}

/// Generated stores and their daily sales.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthData {
    pub stores: Vec<StoreRow>,
    pub sales: Vec<SalesRow>,
}

/// Why options cannot be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SynthError {
    #[error("--stores must be between 1 and 100000, got {0}")]
    Stores(u32),
    #[error("--days must be between 1 and 36500, got {0}")]
    Days(u32),
}

/// The store that closes for months (a refit), as Kaggle's data has.
pub fn refit_store(stores: u32) -> u32 {
    stores.min(3)
}

/// Generates the data set described by `options`.
pub fn generate(options: &SynthOptions) -> Result<SynthData, SynthError> {
    if !(1..=100_000).contains(&options.stores) {
        return Err(SynthError::Stores(options.stores));
    }
    if !(1..=36_500).contains(&options.days) {
        return Err(SynthError::Days(options.days));
    }
    let start = options
        .end
        .checked_sub_days(Days::new(u64::from(options.days - 1)))
        .ok_or(SynthError::Days(options.days))?;
    let dates: Vec<NaiveDate> = start.iter_days().take(options.days as usize).collect();

    let profiles: Vec<StoreProfile> = (1..=options.stores)
        .map(|store| StoreProfile::draw(store, options))
        .collect();
    let mut rows_by_store: Vec<Vec<SalesRow>> = profiles
        .iter()
        .map(|profile| profile.simulate(&dates, start))
        .collect();

    // Kaggle's order: newest date first, stores ascending within a date.
    let mut sales = Vec::with_capacity(dates.len() * profiles.len());
    for day in (0..dates.len()).rev() {
        for rows in &mut rows_by_store {
            sales.push(rows[day]);
        }
    }
    let stores = profiles
        .into_iter()
        .map(|profile| profile.store_row)
        .collect();
    Ok(SynthData { stores, sales })
}

/// The traits drawn for one store.
struct StoreProfile {
    store_row: StoreRow,
    /// German state, for the school-holiday calendar.
    state: u32,
    /// Mean sales of an ordinary open weekday.
    level: f64,
    /// Relative growth per year.
    trend_per_year: f64,
    /// Multiplier for a promotion day.
    promo_lift: f64,
    /// Mean sales per customer.
    basket: f64,
    open_sundays: bool,
    /// Days (as offsets from the first date) of a months-long closure.
    refit_closure: Option<std::ops::Range<usize>>,
    rng: SplitMix64,
}

impl StoreProfile {
    fn draw(store: u32, options: &SynthOptions) -> Self {
        let mut rng = SplitMix64::for_stream(options.seed, u64::from(store));
        let store_type = ['a', 'a', 'a', 'c', 'd', 'd', 'a', 'b'][rng.below(8) as usize];
        let assortment = ['a', 'a', 'c'][rng.below(3) as usize];
        let promo2 = rng.unit() < 0.5;
        let store_row = StoreRow {
            store,
            store_type,
            assortment,
            competition_distance: Some(20 + (rng.unit().powi(3) * 30_000.0) as u32),
            competition_open_since: Some((1 + rng.below(12) as u32, 2000 + rng.below(15) as u32)),
            promo2,
            promo2_since: promo2.then(|| (1 + rng.below(52) as u32, 2010 + rng.below(5) as u32)),
            promo_interval: if promo2 {
                ["Jan,Apr,Jul,Oct", "Feb,May,Aug,Nov", "Mar,Jun,Sept,Dec"][rng.below(3) as usize]
                    .to_string()
            } else {
                String::new()
            },
        };
        let days = options.days as usize;
        let refit_closure = (store == refit_store(options.stores) && days >= 60).then(|| {
            let begin = days * 35 / 100;
            let length = (days / 4).clamp(14, 180);
            begin..begin + length
        });
        Self {
            state: rng.below(16) as u32,
            level: (rng.normal() * 0.35 + 5500f64.ln()).exp(),
            trend_per_year: rng.normal() * 0.04 + 0.02,
            promo_lift: rng.normal() * 0.05 + 1.25,
            basket: rng.normal() * 1.0 + 9.5,
            open_sundays: store_type == 'b',
            refit_closure,
            store_row,
            rng,
        }
    }

    fn simulate(&self, dates: &[NaiveDate], start: NaiveDate) -> Vec<SalesRow> {
        let mut rng = self.rng.clone();
        dates
            .iter()
            .enumerate()
            .map(|(offset, &date)| {
                let day_of_week = date.weekday().number_from_monday() as u8;
                let state_holiday = public_holiday(date);
                let school = school_holiday(date, self.state);
                // Rossmann runs promotions Monday to Friday in alternate weeks.
                let promo = day_of_week <= 5 && date.iso_week().week() % 2 == 0;
                let closed_for_refit = self
                    .refit_closure
                    .as_ref()
                    .is_some_and(|range| range.contains(&offset));
                let random_closure = rng.unit() < 1.0 / 400.0;
                let open = !closed_for_refit
                    && !random_closure
                    && state_holiday == StateHoliday::None
                    && (day_of_week != 7 || self.open_sundays);
                let noise = (rng.normal() * 0.08).exp();
                let (sales, customers) = if open {
                    let years = (date - start).num_days() as f64 / 365.25;
                    let expected = self.level
                        * weekday_factor(day_of_week)
                        * season_factor(date)
                        * (1.0 + self.trend_per_year * years)
                        * if promo { self.promo_lift } else { 1.0 }
                        * if school { 1.03 } else { 1.0 };
                    let sales = (expected * noise).round().max(0.0);
                    let customers = (sales / (self.basket * (rng.normal() * 0.03).exp())).round();
                    (sales as u32, customers as u32)
                } else {
                    (0, 0)
                };
                SalesRow {
                    store: self.store_row.store,
                    day_of_week,
                    date,
                    sales,
                    customers,
                    open,
                    promo: promo && open,
                    state_holiday,
                    school_holiday: school,
                }
            })
            .collect()
    }
}

/// Relative sales by weekday (1 = Monday): strong Mondays, weak Saturdays.
fn weekday_factor(day_of_week: u8) -> f64 {
    match day_of_week {
        1 => 1.20,
        2 => 1.05,
        3 | 4 => 1.00,
        5 => 1.07,
        6 => 0.85,
        _ => 0.90,
    }
}

/// Yearly pattern: a mild summer dip and the pre-Christmas peak.
fn season_factor(date: NaiveDate) -> f64 {
    let day = f64::from(date.ordinal());
    let summer_dip = 0.04 * ((day - 200.0) / 365.25 * std::f64::consts::TAU).cos();
    let christmas = 0.35 * (-((day - 355.0) / 9.0).powi(2)).exp();
    1.0 - summer_dip + christmas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(stores: u32, days: u32, seed: u64) -> SynthOptions {
        SynthOptions {
            stores,
            days,
            seed,
            ..SynthOptions::default()
        }
    }

    fn mean(values: impl Iterator<Item = f64>) -> f64 {
        let (sum, count) = values.fold((0.0, 0usize), |(sum, count), value| {
            (sum + value, count + 1)
        });
        sum / count as f64
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let first = generate(&options(5, 100, 7)).unwrap();
        assert_eq!(first, generate(&options(5, 100, 7)).unwrap());
        assert_ne!(first.sales, generate(&options(5, 100, 8)).unwrap().sales);
    }

    #[test]
    fn a_store_does_not_depend_on_how_many_are_generated() {
        let few = generate(&options(4, 60, 1)).unwrap();
        let many = generate(&options(9, 60, 1)).unwrap();
        let store_4 = |data: &SynthData| -> Vec<SalesRow> {
            data.sales
                .iter()
                .filter(|row| row.store == 4)
                .copied()
                .collect()
        };
        assert_eq!(store_4(&few), store_4(&many));
    }

    #[test]
    fn rows_come_in_kaggle_order_with_every_day() {
        let data = generate(&options(3, 30, 1)).unwrap();
        assert_eq!(data.sales.len(), 90);
        assert_eq!(data.sales[0].date, SynthOptions::default().end);
        assert_eq!(
            data.sales
                .iter()
                .take(3)
                .map(|row| row.store)
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(
            data.sales
                .windows(2)
                .all(|pair| pair[0].date >= pair[1].date)
        );
        assert_eq!(data.stores.len(), 3);
    }

    #[test]
    fn structure_is_rossmann_like() {
        let data = generate(&options(8, 3 * 365, 3)).unwrap();
        let open_days = || data.sales.iter().filter(|row| row.open);

        // Closed days sell nothing; most Sundays and all public holidays are closed.
        assert!(
            data.sales
                .iter()
                .filter(|row| !row.open)
                .all(|row| row.sales == 0 && row.customers == 0)
        );
        let sundays = data.sales.iter().filter(|row| row.day_of_week == 7);
        let open_sundays = sundays.clone().filter(|row| row.open).count();
        assert!(open_sundays * 2 < sundays.count());
        assert!(
            data.sales
                .iter()
                .filter(|row| row.state_holiday != StateHoliday::None)
                .all(|row| !row.open)
        );
        assert!(
            data.sales
                .iter()
                .any(|row| row.state_holiday == StateHoliday::Christmas)
        );
        assert!(data.sales.iter().any(|row| row.school_holiday));

        // Promotions lift sales; Mondays beat Saturdays.
        let promo = mean(
            open_days()
                .filter(|row| row.promo)
                .map(|row| f64::from(row.sales)),
        );
        let plain = mean(
            open_days()
                .filter(|row| !row.promo)
                .map(|row| f64::from(row.sales)),
        );
        assert!(promo > plain * 1.1, "promo {promo} vs {plain}");
        let monday = mean(
            open_days()
                .filter(|row| row.day_of_week == 1)
                .map(|row| f64::from(row.sales)),
        );
        let saturday = mean(
            open_days()
                .filter(|row| row.day_of_week == 6)
                .map(|row| f64::from(row.sales)),
        );
        assert!(
            monday > saturday * 1.2,
            "monday {monday} vs saturday {saturday}"
        );

        // One store is closed for months on end.
        let refit = refit_store(8);
        let longest_closure = data
            .sales
            .iter()
            .rev()
            .filter(|row| row.store == refit)
            .fold((0, 0), |(current, longest), row| {
                let current = if row.open { 0 } else { current + 1 };
                (current, longest.max(current))
            })
            .1;
        assert!(
            longest_closure >= 60,
            "longest closure {longest_closure} days"
        );
    }

    #[test]
    fn stores_differ_from_each_other() {
        let data = generate(&options(40, 30, 42)).unwrap();
        let series = |store: u32| -> Vec<u32> {
            data.sales
                .iter()
                .filter(|row| row.store == store)
                .map(|row| row.sales)
                .collect()
        };
        for first in 1..=40 {
            for second in first + 1..=40 {
                assert_ne!(series(first), series(second), "stores {first} and {second}");
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert_eq!(
            generate(&options(0, 10, 1)).unwrap_err(),
            SynthError::Stores(0)
        );
        assert_eq!(
            generate(&options(1, 0, 1)).unwrap_err(),
            SynthError::Days(0)
        );
    }
}
