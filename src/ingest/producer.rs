//! What `storecast produce` publishes: "today" rows for every store, made from each store's
//! last days in a data file (the row of the same weekday, re-dated), as the reference
//! producer does; and, for load tests, any number of rows with distinct keys. Pure: messages
//! in, no broker.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};

use super::message::{Sale, to_json};
use crate::dataset::SalesRow;

/// Each store's most recent row per weekday (Monday first).
#[derive(Debug, Clone, Default)]
pub struct Templates {
    by_store: BTreeMap<u32, [Option<SalesRow>; 7]>,
}

impl Templates {
    /// Takes each store's last row of every weekday from `rows`.
    pub fn from_rows(rows: &[SalesRow]) -> Templates {
        let mut by_store: BTreeMap<u32, [Option<SalesRow>; 7]> = BTreeMap::new();
        for row in rows {
            let weekday = row.date.weekday().num_days_from_monday() as usize;
            let slot = &mut by_store.entry(row.store).or_default()[weekday];
            if slot.is_none_or(|kept| kept.date < row.date) {
                *slot = Some(*row);
            }
        }
        Templates { by_store }
    }

    pub fn stores(&self) -> usize {
        self.by_store.len()
    }

    /// The store's row for `date`: its last row of that weekday (or of any day), re-dated.
    fn row(&self, store: u32, date: NaiveDate) -> Option<SalesRow> {
        let rows = self.by_store.get(&store)?;
        let weekday = date.weekday().num_days_from_monday() as usize;
        let template = rows[weekday].or_else(|| rows.iter().flatten().next().copied())?;
        Some(SalesRow {
            date,
            day_of_week: date.weekday().number_from_monday() as u8,
            ..template
        })
    }

    /// One message per store for `date`: (key, JSON).
    pub fn round(&self, product: &str, date: NaiveDate) -> Vec<(String, String)> {
        self.by_store
            .keys()
            .filter_map(|store| self.message(*store, product, date))
            .collect()
    }

    /// `count` messages with distinct (store, date) keys: every store for `first`, then every
    /// store for the next day, and so on.
    pub fn distinct(
        &self,
        product: &str,
        first: NaiveDate,
        count: usize,
    ) -> impl Iterator<Item = (String, String)> + '_ {
        let product = product.to_string();
        let stores: Vec<u32> = self.by_store.keys().copied().collect();
        (0..count).filter_map(move |index| {
            let store = *stores.get(index % stores.len().max(1))?;
            let day = u64::try_from(index / stores.len().max(1)).ok()?;
            let date = first.checked_add_days(Days::new(day))?;
            self.message(store, &product, date)
        })
    }

    fn message(&self, store: u32, product: &str, date: NaiveDate) -> Option<(String, String)> {
        let row = self.row(store, date)?;
        let sale = Sale {
            product: product.to_string(),
            row,
        };
        Some((store.to_string(), to_json(&sale)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::dataset::synth::{SynthOptions, generate};
    use crate::ingest::message::parse_sale;

    fn templates() -> Templates {
        let data = generate(&SynthOptions {
            stores: 3,
            days: 30,
            ..SynthOptions::default()
        })
        .unwrap();
        Templates::from_rows(&data.sales)
    }

    #[test]
    fn a_round_is_one_row_per_store_of_the_same_weekday() {
        let templates = templates();
        let sunday = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let round = templates.round("product_A", sunday);
        assert_eq!(round.len(), 3);
        for (key, json) in &round {
            let sale = parse_sale(json.as_bytes()).unwrap();
            assert_eq!(key, &sale.row.store.to_string(), "keyed by store");
            assert_eq!(sale.row.date, sunday);
            assert_eq!(sale.row.day_of_week, 7);
            assert!(
                !sale.row.open,
                "the synthetic stores close on Sundays, as templated"
            );
        }
    }

    #[test]
    fn distinct_rows_never_repeat_a_key() {
        let templates = templates();
        let first = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let keys: BTreeSet<(u32, NaiveDate)> = templates
            .distinct("product_A", first, 100)
            .map(|(_, json)| {
                let sale = parse_sale(json.as_bytes()).unwrap();
                (sale.row.store, sale.row.date)
            })
            .collect();
        assert_eq!(keys.len(), 100);
        assert_eq!(keys.iter().map(|(_, date)| *date).min(), Some(first));
    }
}
