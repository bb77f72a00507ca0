//! The sale message of the reference stack: one JSON object per sale row on the topic, e.g.
//!
//! ```json
//! {"store": 1, "dayofweek": 5, "date": "2015-07-31", "sales": 5263, "customers": 555,
//!  "open": 1, "promo": 1, "stateholiday": "0", "schoolholiday": 1, "productname": "product_A"}
//! ```
//!
//! The reference producer writes some numbers as strings, so every numeric field takes a JSON
//! number or a string holding one; flags take 0/1, "0"/"1" or true/false. Keys beyond these
//! are ignored. A message that breaks the schema is rejected with a reason naming the field
//! and the value; parsing never panics, whatever the bytes.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use serde_json::{Map, Value};

use crate::dataset::{SalesRow, StateHoliday};

/// A sale row and the product it is of.
#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    pub product: String,
    pub row: SalesRow,
}

/// A message that could not be used, with where it came from and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The payload as received, cut to a bounded size.
    pub payload: Vec<u8>,
    pub reason: String,
}

/// Where a consumed message came from: what a row the database refuses is rejected as.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl Origin {
    /// The reject of the message this sale came from, with `reason`. The payload is the sale
    /// as understood (the message itself is not kept past parsing).
    pub fn reject(&self, sale: &Sale, reason: String) -> Reject {
        Reject {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            payload: to_json(sale).into_bytes(),
            reason,
        }
    }
}

/// Longest product name accepted.
const PRODUCT_MAX_CHARS: usize = 100;

/// Largest store id, sales or customers count: the database's `integer` columns.
pub const COLUMN_MAX: i64 = i32::MAX as i64;

/// Parses and checks one message; the error is the reason it is rejected.
pub fn parse_sale(payload: &[u8]) -> Result<Sale, String> {
    // The usual message reads straight into its fields; anything odd (not an object, a key
    // twice) goes the general way, which also words the error.
    let is_object = payload.trim_ascii_start().first() == Some(&b'{');
    let fast = is_object.then(|| serde_json::from_slice::<Fields>(payload).ok());
    let fields = match fast.flatten() {
        Some(fields) => fields,
        None => {
            let value: Value =
                serde_json::from_slice(payload).map_err(|error| format!("not JSON: {error}"))?;
            let Value::Object(object) = value else {
                return Err(format!("not a JSON object but {}", kind(&value)));
            };
            Fields::from_object(object)
        }
    };
    let store = integer(&fields, "store", 1, COLUMN_MAX)? as u32;
    let date = date(&fields)?;
    let day_of_week = integer(&fields, "dayofweek", 1, 7)? as u8;
    let weekday = date.weekday().number_from_monday() as u8;
    if day_of_week != weekday {
        return Err(format!(
            "dayofweek {day_of_week} does not match date {date} (a {}, {weekday})",
            date.weekday()
        ));
    }
    let sales = integer(&fields, "sales", 0, COLUMN_MAX)? as u32;
    let customers = integer(&fields, "customers", 0, COLUMN_MAX)? as u32;
    let open = flag(&fields, "open")?;
    let promo = flag(&fields, "promo")?;
    let school_holiday = flag(&fields, "schoolholiday")?;
    let state_holiday = state_holiday(&fields)?;
    let product = match field(&fields, "productname")? {
        Value::String(name) if name.chars().any(char::is_control) => {
            return Err(
                "field `productname` must not contain control characters (NUL, newline, ...)"
                    .to_string(),
            );
        }
        Value::String(name)
            if !name.trim().is_empty() && name.chars().count() <= PRODUCT_MAX_CHARS =>
        {
            name.clone()
        }
        Value::String(name) => {
            return Err(format!(
                "productname must have 1 to {PRODUCT_MAX_CHARS} characters (got {})",
                name.chars().count()
            ));
        }
        other => return Err(wrong_type("productname", "a string", other)),
    };
    Ok(Sale {
        product,
        row: SalesRow {
            store,
            day_of_week,
            date,
            sales,
            customers,
            open,
            promo,
            state_holiday,
            school_holiday,
        },
    })
}

/// Whether the database's columns and checks take `sale` (the parser never makes one they do
/// not; a sale built in code may be): the reason, naming the field, if not. PostgreSQL may
/// still refuse a value beyond these (a date before 4713 BC); SQLite takes anything they let
/// through.
pub fn storable(sale: &Sale) -> Result<(), String> {
    let row = &sale.row;
    for (name, value) in [
        ("store", row.store),
        ("sales", row.sales),
        ("customers", row.customers),
    ] {
        if i64::from(value) > COLUMN_MAX {
            return Err(format!(
                "field `{name}` must be at most {COLUMN_MAX} (value {value})"
            ));
        }
    }
    if row.store == 0 {
        return Err("field `store` must be at least 1 (value 0)".to_string());
    }
    if !(1..=7).contains(&row.day_of_week) {
        return Err(format!(
            "field `dayofweek` must be 1 to 7 (value {})",
            row.day_of_week
        ));
    }
    if sale.product.contains('\0') {
        return Err("field `productname` must not contain NUL characters".to_string());
    }
    Ok(())
}

/// The message the reference producer writes for `sale` (numbers as numbers).
pub fn to_json(sale: &Sale) -> String {
    let row = &sale.row;
    serde_json::json!({
        "store": row.store,
        "dayofweek": row.day_of_week,
        "date": row.date.format("%Y-%m-%d").to_string(),
        "sales": row.sales,
        "customers": row.customers,
        "open": u8::from(row.open),
        "promo": u8::from(row.promo),
        "stateholiday": row.state_holiday.code(),
        "schoolholiday": u8::from(row.school_holiday),
        "productname": sale.product,
    })
    .to_string()
}

/// The fields of a sale message; others are ignored.
#[derive(Debug, Default, serde::Deserialize)]
struct Fields {
    #[serde(default, deserialize_with = "present")]
    store: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    dayofweek: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    date: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    sales: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    customers: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    open: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    promo: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    stateholiday: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    schoolholiday: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    productname: Option<Value>,
}

/// A field that is there, `null` included (a plain `Option` would read `null` as missing).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(deserializer).map(Some)
}

impl Fields {
    /// The fields of a parsed object (the last of a repeated key, as JSON readers do).
    fn from_object(mut object: Map<String, Value>) -> Fields {
        let mut take = |name: &str| object.remove(name);
        Fields {
            store: take("store"),
            dayofweek: take("dayofweek"),
            date: take("date"),
            sales: take("sales"),
            customers: take("customers"),
            open: take("open"),
            promo: take("promo"),
            stateholiday: take("stateholiday"),
            schoolholiday: take("schoolholiday"),
            productname: take("productname"),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        match name {
            "store" => self.store.as_ref(),
            "dayofweek" => self.dayofweek.as_ref(),
            "date" => self.date.as_ref(),
            "sales" => self.sales.as_ref(),
            "customers" => self.customers.as_ref(),
            "open" => self.open.as_ref(),
            "promo" => self.promo.as_ref(),
            "stateholiday" => self.stateholiday.as_ref(),
            "schoolholiday" => self.schoolholiday.as_ref(),
            "productname" => self.productname.as_ref(),
            _ => None,
        }
    }
}

fn field<'a>(object: &'a Fields, name: &'static str) -> Result<&'a Value, String> {
    object
        .get(name)
        .ok_or_else(|| format!("field `{name}` is missing"))
}

/// A whole number in `min..=max`, from a JSON number or a string holding one.
fn integer(object: &Fields, name: &'static str, min: i64, max: i64) -> Result<i64, String> {
    let value = field(object, name)?;
    let number = match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|float| float.fract() == 0.0 && float.abs() < 1e15)
                .map(|float| float as i64)
        }),
        Value::String(text) => text.trim().parse::<i64>().ok().or_else(|| {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|float| float.fract() == 0.0 && float.abs() < 1e15)
                .map(|float| float as i64)
        }),
        _ => None,
    }
    .ok_or_else(|| wrong_type(name, "a whole number", value))?;
    if number < min {
        return Err(match (name, min) {
            (_, 0) => format!("field `{name}` must not be negative (value {number})"),
            _ => format!("field `{name}` must be at least {min} (value {number})"),
        });
    }
    if number > max {
        return Err(format!(
            "field `{name}` must be at most {max} (value {number})"
        ));
    }
    Ok(number)
}

/// 0/1, "0"/"1" or true/false.
fn flag(object: &Fields, name: &'static str) -> Result<bool, String> {
    let value = field(object, name)?;
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::Number(number) if number.as_f64() == Some(0.0) => Ok(false),
        Value::Number(number) if number.as_f64() == Some(1.0) => Ok(true),
        Value::String(text) if text.trim() == "0" => Ok(false),
        Value::String(text) if text.trim() == "1" => Ok(true),
        other => Err(wrong_type(name, "0 or 1", other)),
    }
}

fn state_holiday(object: &Fields) -> Result<StateHoliday, String> {
    let value = field(object, "stateholiday")?;
    let code = match value {
        Value::String(text) => text.trim().to_string(),
        Value::Number(number) if number.as_f64() == Some(0.0) => "0".to_string(),
        other => return Err(wrong_type("stateholiday", "0, a, b or c", other)),
    };
    StateHoliday::from_code(&code).ok_or_else(|| wrong_type("stateholiday", "0, a, b or c", value))
}

/// `YYYY-MM-DD`, optionally followed by a time of day (as pandas writes timestamps).
fn date(object: &Fields) -> Result<NaiveDate, String> {
    let value = field(object, "date")?;
    let Value::String(text) = value else {
        return Err(wrong_type("date", "a YYYY-MM-DD string", value));
    };
    let day = text.trim().get(..10).unwrap_or(text.trim());
    let rest = text.trim().get(10..).unwrap_or("");
    let time_ok = rest.is_empty() || rest.starts_with(' ') || rest.starts_with('T');
    match NaiveDate::parse_from_str(day, "%Y-%m-%d") {
        Ok(date) if time_ok && (1900..=2200).contains(&date.year()) => Ok(date),
        Ok(date) if time_ok => Err(format!("field `date` is out of range (value {date})")),
        _ => Err(format!(
            "field `date` is not a real YYYY-MM-DD date (value {})",
            shown(value)
        )),
    }
}

fn wrong_type(name: &str, expected: &str, value: &Value) -> String {
    format!("field `{name}` must be {expected} (value {})", shown(value))
}

/// A value as the reason shows it: JSON, cut to a readable length.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GOOD: &str = r#"{"store": 1, "dayofweek": 5, "date": "2015-07-31", "sales": 5263,
        "customers": 555, "open": 1, "promo": 1, "stateholiday": "0", "schoolholiday": 1,
        "productname": "product_A"}"#;

    fn with(key: &str, value: Value) -> Vec<u8> {
        let mut object: Map<String, Value> = serde_json::from_str(GOOD).unwrap();
        object.insert(key.to_string(), value);
        serde_json::to_vec(&object).unwrap()
    }

    fn without(key: &str) -> Vec<u8> {
        let mut object: Map<String, Value> = serde_json::from_str(GOOD).unwrap();
        object.remove(key);
        serde_json::to_vec(&object).unwrap()
    }

    #[test]
    fn the_reference_message_parses() {
        let sale = parse_sale(GOOD.as_bytes()).unwrap();
        assert_eq!(sale.product, "product_A");
        assert_eq!(sale.row.store, 1);
        assert_eq!(sale.row.date, NaiveDate::from_ymd_opt(2015, 7, 31).unwrap());
        assert_eq!((sale.row.sales, sale.row.customers), (5263, 555));
        assert!(sale.row.open && sale.row.promo && sale.row.school_holiday);
        assert_eq!(sale.row.state_holiday, StateHoliday::None);
    }

    #[test]
    fn numeric_strings_and_pandas_timestamps_are_accepted() {
        let text = r#"{"store": "7", "dayofweek": "5", "date": "2015-07-31 00:00:00",
            "sales": "5263.0", "customers": " 555 ", "open": "1", "promo": false,
            "stateholiday": 0, "schoolholiday": true, "productname": "product_A", "extra": 1}"#;
        let sale = parse_sale(text.as_bytes()).unwrap();
        assert_eq!(sale.row.store, 7);
        assert_eq!((sale.row.sales, sale.row.customers), (5263, 555));
        assert!(sale.row.open && !sale.row.promo && sale.row.school_holiday);
    }

    #[test]
    fn every_rejection_names_the_field_and_value() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not JSON"),
            (b"[1, 2]".to_vec(), "not a JSON object but an array"),
            (without("sales"), "field `sales` is missing"),
            (
                with("sales", Value::from(-3)),
                "field `sales` must not be negative (value -3)",
            ),
            (
                with("sales", Value::from("lots")),
                "field `sales` must be a whole number (value \"lots\")",
            ),
            (
                with("sales", Value::from(12.5)),
                "field `sales` must be a whole number (value 12.5)",
            ),
            (
                with("store", Value::from(0)),
                "field `store` must be at least 1 (value 0)",
            ),
            (
                with("date", Value::from("2015-02-30")),
                "field `date` is not a real YYYY-MM-DD date (value \"2015-02-30\")",
            ),
            (
                with("date", Value::from(20150731)),
                "field `date` must be a YYYY-MM-DD string",
            ),
            (
                with("dayofweek", Value::from(3)),
                "dayofweek 3 does not match date 2015-07-31 (a Fri, 5)",
            ),
            (
                with("open", Value::from(2)),
                "field `open` must be 0 or 1 (value 2)",
            ),
            (
                with("stateholiday", Value::from("x")),
                "field `stateholiday` must be 0, a, b or c (value \"x\")",
            ),
            (
                with("productname", Value::from("")),
                "productname must have 1 to 100 characters",
            ),
            (
                with("productname", Value::Null),
                "field `productname` must be a string (value null)",
            ),
            // PostgreSQL's `integer` and `text` columns refuse these.
            (
                with("sales", Value::from(3_000_000_000u64)),
                "field `sales` must be at most 2147483647 (value 3000000000)",
            ),
            (
                with("customers", Value::from("2147483648")),
                "field `customers` must be at most 2147483647",
            ),
            (
                with("store", Value::from(u64::from(u32::MAX))),
                "field `store` must be at most 2147483647",
            ),
            (
                with("productname", Value::from("product_A\u{0}")),
                "field `productname` must not contain control characters",
            ),
        ];
        for (payload, reason) in cases {
            let error = parse_sale(&payload).unwrap_err();
            assert!(
                error.contains(reason),
                "{error:?} should contain {reason:?}"
            );
        }
    }

    fn sale() -> impl Strategy<Value = Sale> {
        (
            1u32..=1115,
            0i64..4000,
            0u32..40_000,
            0u32..5_000,
            any::<(bool, bool, bool)>(),
            0usize..4,
            "[a-zA-Z_][a-zA-Z0-9_ -]{0,20}",
        )
            .prop_map(
                |(store, day, sales, customers, (open, promo, school), holiday, product)| {
                    let date = NaiveDate::from_ymd_opt(2013, 1, 1).unwrap()
                        + chrono::Days::new(day as u64);
                    Sale {
                        product,
                        row: SalesRow {
                            store,
                            day_of_week: date.weekday().number_from_monday() as u8,
                            date,
                            sales,
                            customers,
                            open,
                            promo,
                            state_holiday: [
                                StateHoliday::None,
                                StateHoliday::Public,
                                StateHoliday::Easter,
                                StateHoliday::Christmas,
                            ][holiday],
                            school_holiday: school,
                        },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn what_the_producer_writes_parses_back(sale in sale()) {
            prop_assert_eq!(parse_sale(to_json(&sale).as_bytes()), Ok(sale));
        }

        #[test]
        fn no_bytes_make_the_parser_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_sale(&bytes);
        }
    }
}
