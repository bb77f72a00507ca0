//! Kaggle's real Rossmann files (from ../shared/datasets/rossmann), read as they are.

mod support;

use std::collections::BTreeSet;

use chrono::NaiveDate;
use storecast::dataset::StateHoliday;
use storecast::dataset::rossmann::{read_sales, read_stores};
use storecast::dataset::window::recent_window;

#[test]
fn the_real_train_file_reads_completely() {
    let Some(dir) = support::rossmann_dir("the_real_train_file_reads_completely") else {
        return;
    };
    let rows = read_sales(&dir.join("train.csv.gz")).unwrap();
    // Figures from the data set's SOURCE.md.
    assert_eq!(rows.len(), 970_379);
    let stores: BTreeSet<u32> = rows.iter().map(|row| row.store).collect();
    assert_eq!(stores.len(), 1_115);
    assert_eq!(stores.first(), Some(&1));
    assert_eq!(stores.last(), Some(&1_115));
    let last = rows.iter().map(|row| row.date).max().unwrap();
    let first = rows.iter().map(|row| row.date).min().unwrap();
    assert_eq!(first, NaiveDate::from_ymd_opt(2013, 1, 1).unwrap());
    assert_eq!(last, NaiveDate::from_ymd_opt(2015, 6, 19).unwrap());
    for code in [
        StateHoliday::None,
        StateHoliday::Public,
        StateHoliday::Easter,
        StateHoliday::Christmas,
    ] {
        assert!(rows.iter().any(|row| row.state_holiday == code), "{code:?}");
    }
    assert!(
        rows.iter()
            .filter(|row| !row.open)
            .all(|row| row.sales == 0)
    );

    // The reference loader's window: five months ending 2015-06-19 start 2015-01-20 (151 days);
    // 180 stores have no rows in late 2014 but all have rows in 2015.
    let window = recent_window(rows, 5, NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()).unwrap();
    assert_eq!(
        window.source_span.0,
        NaiveDate::from_ymd_opt(2015, 1, 20).unwrap()
    );
    assert_eq!(window.store_count(), 1_115);
    assert_eq!(window.rows.len(), 1_115 * 151);
}

#[test]
fn the_real_store_file_reads_completely() {
    let Some(dir) = support::rossmann_dir("the_real_store_file_reads_completely") else {
        return;
    };
    let stores = read_stores(&dir.join("store.csv")).unwrap();
    assert_eq!(stores.len(), 1_115);
    assert_eq!(stores[0].store_type, 'c');
    assert_eq!(stores[0].competition_distance, Some(1270));
    assert!(
        stores
            .iter()
            .any(|store| store.competition_distance.is_none())
    );
    assert_eq!(stores[1].promo_interval, "Jan,Apr,Jul,Oct");
}
