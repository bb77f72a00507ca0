//! The Rossmann data set: its row types, Kaggle's CSV format (read and written), the loader's
//! history window, and a synthetic generator that writes the same format.
//!
//! - [`rossmann`]: read and write `train.csv[.gz]` and `store.csv` exactly as Kaggle ships them;
//! - [`window`]: what `storecast load` keeps of a file (last N months, dates shifted to end
//!   yesterday);
//! - [`synth`]: deterministic Rossmann-like data for running without Kaggle's files;
//! - [`calendar`]: German public holidays, used by the generator.

pub mod calendar;
pub mod rossmann;
pub mod synth;
pub mod window;

use std::path::PathBuf;

use chrono::NaiveDate;

/// Kaggle's `StateHoliday` column: `0` none, `a` public holiday, `b` Easter, `c` Christmas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StateHoliday {
    #[default]
    None,
    Public,
    Easter,
    Christmas,
}

impl StateHoliday {
    /// The one-character code used in Kaggle's files and in the database.
    pub fn code(self) -> &'static str {
        match self {
            StateHoliday::None => "0",
            StateHoliday::Public => "a",
            StateHoliday::Easter => "b",
            StateHoliday::Christmas => "c",
        }
    }

    /// Parses Kaggle's code; `None` for anything else.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "0" => Some(StateHoliday::None),
            "a" => Some(StateHoliday::Public),
            "b" => Some(StateHoliday::Easter),
            "c" => Some(StateHoliday::Christmas),
            _ => None,
        }
    }
}

/// One day of one store, as in Kaggle's `train.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalesRow {
    pub store: u32,
    /// 1 = Monday .. 7 = Sunday, always consistent with `date`.
    pub day_of_week: u8,
    pub date: NaiveDate,
    pub sales: u32,
    pub customers: u32,
    pub open: bool,
    pub promo: bool,
    pub state_holiday: StateHoliday,
    pub school_holiday: bool,
}

/// Static facts about one store, as in Kaggle's `store.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRow {
    pub store: u32,
    /// `a`..`d`.
    pub store_type: char,
    /// `a` basic, `b` extra, `c` extended.
    pub assortment: char,
    /// Metres to the nearest competitor; unknown for a few stores.
    pub competition_distance: Option<u32>,
    /// (month, year) the nearest competitor opened, where known.
    pub competition_open_since: Option<(u32, u32)>,
    /// Whether the store takes part in the continuing "Promo2" promotion.
    pub promo2: bool,
    /// (ISO week, year) the store joined Promo2, where it did.
    pub promo2_since: Option<(u32, u32)>,
    /// Months in which Promo2 restarts, e.g. `Jan,Apr,Jul,Oct`; empty when not in Promo2.
    pub promo_interval: String,
}

/// Why a data file could not be read. Row-level errors name file, line and field.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot open {path}: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: missing column `{column}` (found: {found})")]
    MissingColumn {
        path: PathBuf,
        column: &'static str,
        found: String,
    },
    #[error("{path}:{line}: field `{field}` {problem} (value {value:?})")]
    BadField {
        path: PathBuf,
        line: u64,
        field: &'static str,
        value: String,
        problem: String,
    },
    #[error("{path}: no data rows")]
    Empty { path: PathBuf },
    #[error("store {store} has two rows for {date}")]
    DuplicateDay { store: u32, date: NaiveDate },
}
