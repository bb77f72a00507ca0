//! Kaggle's Rossmann files, read and written as Kaggle ships them.
//!
//! `train.csv` (optionally gzipped, chosen by a `.gz` suffix) holds one row per store and day;
//! `store.csv` one row per store. Columns are found by header name (any letter case, any
//! order, quoted or not), so a file with extra columns still reads. A malformed value stops
//! the read with an error naming the file, the line and the field.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::{DatasetError, SalesRow, StateHoliday, StoreRow};

/// `train.csv` columns in Kaggle's order.
pub const SALES_COLUMNS: [&str; 9] = [
    "Store",
    "DayOfWeek",
    "Date",
    "Sales",
    "Customers",
    "Open",
    "Promo",
    "StateHoliday",
    "SchoolHoliday",
];

/// `store.csv` columns in Kaggle's order.
pub const STORE_COLUMNS: [&str; 10] = [
    "Store",
    "StoreType",
    "Assortment",
    "CompetitionDistance",
    "CompetitionOpenSinceMonth",
    "CompetitionOpenSinceYear",
    "Promo2",
    "Promo2SinceWeek",
    "Promo2SinceYear",
    "PromoInterval",
];

/// Reads a whole `train.csv` or `train.csv.gz`.
pub fn read_sales(path: &Path) -> Result<Vec<SalesRow>, DatasetError> {
    read_sales_from(open(path)?, path)
}

/// Reads `train.csv` content from any reader; `path` only names the source in errors.
pub fn read_sales_from(input: impl Read, path: &Path) -> Result<Vec<SalesRow>, DatasetError> {
    let mut table = Table::new(input, path, &SALES_COLUMNS)?;
    let mut rows = Vec::new();
    while let Some(record) = table.next_record()? {
        let row = SalesRow {
            store: record.store_id(0)?,
            day_of_week: record.number_in(1, 1, 7)? as u8,
            date: record.date(2)?,
            sales: record.number(3)?,
            customers: record.number(4)?,
            open: record.flag(5)?,
            promo: record.flag(6)?,
            state_holiday: record.state_holiday(7)?,
            school_holiday: record.flag(8)?,
        };
        let weekday = row.date.weekday().number_from_monday() as u8;
        if weekday != row.day_of_week {
            return Err(record.bad(
                1,
                format!("is {} but {} is day {weekday}", row.day_of_week, row.date),
            ));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(rows)
}

/// Reads a whole `store.csv`.
pub fn read_stores(path: &Path) -> Result<Vec<StoreRow>, DatasetError> {
    read_stores_from(open(path)?, path)
}

/// Reads `store.csv` content from any reader; `path` only names the source in errors.
pub fn read_stores_from(input: impl Read, path: &Path) -> Result<Vec<StoreRow>, DatasetError> {
    let mut table = Table::new(input, path, &STORE_COLUMNS)?;
    let mut stores = Vec::new();
    while let Some(record) = table.next_record()? {
        let competition_month = record.optional_number(4)?;
        let competition_year = record.optional_number(5)?;
        let promo2_week = record.optional_number(7)?;
        let promo2_year = record.optional_number(8)?;
        stores.push(StoreRow {
            store: record.store_id(0)?,
            store_type: record.letter(1, "abcd")?,
            assortment: record.letter(2, "abc")?,
            competition_distance: record.optional_number(3)?,
            competition_open_since: competition_month.zip(competition_year),
            promo2: record.flag(6)?,
            promo2_since: promo2_week.zip(promo2_year),
            promo_interval: record.text(9).to_string(),
        });
    }
    if stores.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(stores)
}

/// Whether `path` is a `store.csv` (its header names `StoreType`) rather than a sales file.
pub fn is_store_file(path: &Path) -> Result<bool, DatasetError> {
    let mut header = String::new();
    open(path)?
        .read_line(&mut header)
        .map_err(|error| DatasetError::Read {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
    Ok(header.to_ascii_lowercase().contains("storetype"))
}

/// Writes rows in Kaggle's exact `train.csv` layout; gzipped when `path` ends in `.gz`.
pub fn write_sales(path: &Path, rows: &[SalesRow]) -> Result<(), DatasetError> {
    write_with(path, |out| {
        writeln!(out, "{}", quoted_header(&SALES_COLUMNS))?;
        for row in rows {
            writeln!(
                out,
                "{},{},{},{},{},{},{},\"{}\",\"{}\"",
                row.store,
                row.day_of_week,
                row.date,
                row.sales,
                row.customers,
                u8::from(row.open),
                u8::from(row.promo),
                row.state_holiday.code(),
                u8::from(row.school_holiday),
            )?;
        }
        Ok(())
    })
}

/// Writes stores in Kaggle's exact `store.csv` layout.
pub fn write_stores(path: &Path, stores: &[StoreRow]) -> Result<(), DatasetError> {
    fn optional(value: Option<u32>) -> String {
        value.map(|number| number.to_string()).unwrap_or_default()
    }
    write_with(path, |out| {
        writeln!(out, "{}", quoted_header(&STORE_COLUMNS))?;
        for store in stores {
            writeln!(
                out,
                "{},\"{}\",\"{}\",{},{},{},{},{},{},\"{}\"",
                store.store,
                store.store_type,
                store.assortment,
                optional(store.competition_distance),
                optional(store.competition_open_since.map(|(month, _)| month)),
                optional(store.competition_open_since.map(|(_, year)| year)),
                u8::from(store.promo2),
                optional(store.promo2_since.map(|(week, _)| week)),
                optional(store.promo2_since.map(|(_, year)| year)),
                store.promo_interval,
            )?;
        }
        Ok(())
    })
}

fn quoted_header(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|column| format!("\"{column}\""))
        .collect::<Vec<_>>()
        .join(",")
}

fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "gz")
}

fn open(path: &Path) -> Result<Box<dyn BufRead>, DatasetError> {
    let file = File::open(path).map_err(|error| DatasetError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    const BUFFER: usize = 1 << 20;
    Ok(if is_gzip(path) {
        Box::new(BufReader::with_capacity(
            BUFFER,
            MultiGzDecoder::new(BufReader::with_capacity(BUFFER, file)),
        ))
    } else {
        Box::new(BufReader::with_capacity(BUFFER, file))
    })
}

fn write_with(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), DatasetError> {
    let fail = |error| DatasetError::Write {
        path: path.to_path_buf(),
        error,
    };
    let file = File::create(path).map_err(fail)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    if is_gzip(path) {
        let mut encoder = GzEncoder::new(out, Compression::default());
        body(&mut encoder).map_err(fail)?;
        out = encoder.finish().map_err(fail)?;
    } else {
        body(&mut out).map_err(fail)?;
    }
    out.flush().map_err(fail)
}

/// A CSV source whose wanted columns were found by header name.
struct Table<'p, R: Read> {
    reader: csv::Reader<R>,
    path: &'p Path,
    columns: &'static [&'static str],
    /// Position of each wanted column in the file's records.
    indexes: Vec<usize>,
    record: csv::ByteRecord,
}

impl<'p, R: Read> Table<'p, R> {
    fn new(
        input: R,
        path: &'p Path,
        columns: &'static [&'static str],
    ) -> Result<Self, DatasetError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let headers = reader
            .headers()
            .map_err(|error| read_error(path, &error))?
            .clone();
        let indexes = columns
            .iter()
            .map(|column| {
                headers
                    .iter()
                    .position(|header| header.eq_ignore_ascii_case(column))
                    .ok_or_else(|| DatasetError::MissingColumn {
                        path: path.to_path_buf(),
                        column,
                        found: headers.iter().collect::<Vec<_>>().join(","),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            reader,
            path,
            columns,
            indexes,
            record: csv::ByteRecord::new(),
        })
    }

    fn next_record(&mut self) -> Result<Option<Record<'_>>, DatasetError> {
        let more = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|error| read_error(self.path, &error))?;
        if !more {
            return Ok(None);
        }
        Ok(Some(Record {
            table_path: self.path,
            columns: self.columns,
            indexes: &self.indexes,
            record: &self.record,
        }))
    }
}

fn read_error(path: &Path, error: &csv::Error) -> DatasetError {
    DatasetError::Read {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// One record, with typed accessors that name the field when they fail.
struct Record<'a> {
    table_path: &'a Path,
    columns: &'static [&'static str],
    indexes: &'a [usize],
    record: &'a csv::ByteRecord,
}

impl Record<'_> {
    fn raw(&self, column: usize) -> &[u8] {
        self.record.get(self.indexes[column]).unwrap_or_default()
    }

    fn text(&self, column: usize) -> &str {
        std::str::from_utf8(self.raw(column)).unwrap_or_default()
    }

    fn bad(&self, column: usize, problem: impl Into<String>) -> DatasetError {
        DatasetError::BadField {
            path: self.table_path.to_path_buf(),
            line: self.record.position().map_or(0, csv::Position::line),
            field: self.columns[column],
            value: String::from_utf8_lossy(self.raw(column)).into_owned(),
            problem: problem.into(),
        }
    }

    fn number(&self, column: usize) -> Result<u32, DatasetError> {
        parse_digits(self.raw(column))
            .ok_or_else(|| self.bad(column, "is not a non-negative whole number"))
    }

    fn optional_number(&self, column: usize) -> Result<Option<u32>, DatasetError> {
        if self.raw(column).is_empty() {
            return Ok(None);
        }
        self.number(column).map(Some)
    }

    fn number_in(&self, column: usize, low: u32, high: u32) -> Result<u32, DatasetError> {
        let value = self.number(column)?;
        if (low..=high).contains(&value) {
            Ok(value)
        } else {
            Err(self.bad(column, format!("must be between {low} and {high}")))
        }
    }

    fn store_id(&self, column: usize) -> Result<u32, DatasetError> {
        let id = self.number(column)?;
        if id == 0 {
            return Err(self.bad(column, "must be a positive store id"));
        }
        Ok(id)
    }

    fn flag(&self, column: usize) -> Result<bool, DatasetError> {
        match self.raw(column) {
            b"0" => Ok(false),
            b"1" => Ok(true),
            _ => Err(self.bad(column, "must be 0 or 1")),
        }
    }

    fn letter(&self, column: usize, allowed: &str) -> Result<char, DatasetError> {
        match self.raw(column) {
            [byte] if allowed.as_bytes().contains(byte) => Ok(char::from(*byte)),
            _ => Err(self.bad(column, format!("must be one of the letters {allowed}"))),
        }
    }

    fn state_holiday(&self, column: usize) -> Result<StateHoliday, DatasetError> {
        StateHoliday::from_code(self.text(column))
            .ok_or_else(|| self.bad(column, "must be 0, a, b or c"))
    }

    fn date(&self, column: usize) -> Result<NaiveDate, DatasetError> {
        parse_date(self.raw(column)).ok_or_else(|| self.bad(column, "is not a date YYYY-MM-DD"))
    }
}

fn parse_digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 9 {
        return None;
    }
    bytes.iter().try_fold(0u32, |value, byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u32::from(byte - b'0'))
    })
}

/// Parses `YYYY-MM-DD` without going through a format string (this runs a million times).
fn parse_date(bytes: &[u8]) -> Option<NaiveDate> {
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = parse_digits(&bytes[0..4])?;
    let month = parse_digits(&bytes[5..7])?;
    let day = parse_digits(&bytes[8..10])?;
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "train.csv";

    fn read(text: &str) -> Result<Vec<SalesRow>, DatasetError> {
        read_sales_from(text.as_bytes(), Path::new(PATH))
    }

    const HEADER: &str = "\"Store\",\"DayOfWeek\",\"Date\",\"Sales\",\"Customers\",\"Open\",\"Promo\",\"StateHoliday\",\"SchoolHoliday\"\n";

    #[test]
    fn reads_quoted_and_unquoted_rows() {
        let text = format!(
            "{HEADER}1,5,2015-07-31,5263,555,1,1,\"0\",\"1\"\n\"2\",\"4\",\"2015-07-30\",\"0\",\"0\",\"0\",\"0\",\"b\",\"0\"\n3,3,2015-07-29,10,2,1,0,a,0\n4,2,2015-07-28,1,1,1,0,c,0\n"
        );
        let rows = read(&text).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].store, 1);
        assert_eq!(rows[0].sales, 5263);
        assert!(rows[0].promo && rows[0].school_holiday && rows[0].open);
        assert_eq!(rows[1].state_holiday, StateHoliday::Easter);
        assert!(!rows[1].open);
        assert_eq!(rows[2].state_holiday, StateHoliday::Public);
        assert_eq!(rows[3].state_holiday, StateHoliday::Christmas);
        assert_eq!(rows[3].date, NaiveDate::from_ymd_opt(2015, 7, 28).unwrap());
    }

    #[test]
    fn columns_are_found_by_name_in_any_order_and_case() {
        let text = "date,store,sales,customers,open,promo,stateholiday,schoolholiday,dayofweek,extra\n2015-07-31,7,100,10,1,0,0,0,5,x\n";
        let rows = read(text).unwrap();
        assert_eq!(rows[0].store, 7);
        assert_eq!(rows[0].sales, 100);
    }

    #[test]
    fn a_bad_value_names_file_line_and_field() {
        let text =
            format!("{HEADER}1,5,2015-07-31,5263,555,1,1,0,1\n2,5,2015-07-31,-3,555,1,1,0,1\n");
        let error = read(&text).unwrap_err().to_string();
        assert!(error.starts_with("train.csv:3:"), "{error}");
        assert!(error.contains("`Sales`"), "{error}");
        assert!(error.contains("-3"), "{error}");
    }

    #[test]
    fn each_field_is_checked() {
        let cases = [
            ("x,5,2015-07-31,1,1,1,1,0,1", "Store"),
            ("0,5,2015-07-31,1,1,1,1,0,1", "Store"),
            ("1,8,2015-07-31,1,1,1,1,0,1", "DayOfWeek"),
            ("1,4,2015-07-31,1,1,1,1,0,1", "DayOfWeek"),
            ("1,5,2015-02-30,1,1,1,1,0,1", "Date"),
            ("1,5,31.07.2015,1,1,1,1,0,1", "Date"),
            ("1,5,2015-07-31,1,1.5,1,1,0,1", "Customers"),
            ("1,5,2015-07-31,1,1,2,1,0,1", "Open"),
            ("1,5,2015-07-31,1,1,1,yes,0,1", "Promo"),
            ("1,5,2015-07-31,1,1,1,1,d,1", "StateHoliday"),
            ("1,5,2015-07-31,1,1,1,1,0,", "SchoolHoliday"),
        ];
        for (line, field) in cases {
            let error = read(&format!("{HEADER}{line}\n")).unwrap_err().to_string();
            assert!(error.contains(&format!("`{field}`")), "{line}: {error}");
            assert!(error.contains("train.csv:2:"), "{line}: {error}");
        }
    }

    #[test]
    fn missing_columns_and_ragged_rows_are_errors() {
        let error = read("Store,Date,Sales\n1,2015-07-31,3\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing column `DayOfWeek`"), "{error}");

        let error = read(&format!("{HEADER}1,5,2015-07-31\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("train.csv"), "{error}");
        assert!(error.contains("line: 2"), "{error}");

        let error = read(HEADER).unwrap_err().to_string();
        assert!(error.contains("no data rows"), "{error}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = read_sales(Path::new("/nonexistent/train.csv"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/train.csv"), "{error}");
    }

    #[test]
    fn written_sales_read_back_identically_plain_and_gzipped() {
        let rows = read(&format!(
            "{HEADER}1,5,2015-07-31,5263,555,1,1,0,1\n2,4,2015-07-30,0,0,0,0,b,0\n"
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for name in ["train.csv", "train.csv.gz"] {
            let path = dir.path().join(name);
            write_sales(&path, &rows).unwrap();
            assert_eq!(read_sales(&path).unwrap(), rows, "{name}");
        }
        let text = std::fs::read_to_string(dir.path().join("train.csv")).unwrap();
        assert!(text.starts_with(HEADER));
        assert!(text.contains("1,5,2015-07-31,5263,555,1,1,\"0\",\"1\"\n"));
    }

    #[test]
    fn stores_read_with_missing_values_and_write_back() {
        let text = "\"Store\",\"StoreType\",\"Assortment\",\"CompetitionDistance\",\"CompetitionOpenSinceMonth\",\"CompetitionOpenSinceYear\",\"Promo2\",\"Promo2SinceWeek\",\"Promo2SinceYear\",\"PromoInterval\"\n1,\"c\",\"a\",1270,9,2008,0,,,\"\"\n879,\"d\",\"a\",,,,1,5,2013,\"Feb,May,Aug,Nov\"\n";
        let stores = read_stores_from(text.as_bytes(), Path::new("store.csv")).unwrap();
        assert_eq!(stores.len(), 2);
        assert_eq!(stores[0].competition_open_since, Some((9, 2008)));
        assert_eq!(stores[1].competition_distance, None);
        assert_eq!(stores[1].promo2_since, Some((5, 2013)));
        assert_eq!(stores[1].promo_interval, "Feb,May,Aug,Nov");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.csv");
        write_stores(&path, &stores).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

        let bad = text.replace("\"d\",\"a\"", "\"e\",\"a\"");
        let error = read_stores_from(bad.as_bytes(), Path::new("store.csv"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("store.csv:3: field `StoreType`"), "{error}");
    }
}
