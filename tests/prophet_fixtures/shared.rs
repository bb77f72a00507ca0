//! Reading the Stan fixtures in `tests/fixtures/prophet/` (shared by the fixture tests).
#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::PathBuf;

use augurs_prophet::optimizer::{Data, InitialParams};
use augurs_prophet::{PositiveFloat, TrendIndicator};
use serde_json::Value;

pub fn fixture(case: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/prophet/{case}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture file"))
        .expect("fixture JSON")
}

pub fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|item| item.as_f64().expect("number"))
        .collect()
}

pub fn positive(value: f64) -> PositiveFloat {
    PositiveFloat::try_new(value).expect("positive")
}

pub fn data(fixture: &Value) -> Data {
    let data = &fixture["data"];
    let integer = |key: &str| data[key].as_i64().expect("integer") as i32;
    let flags = |key: &str| {
        data[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect()
    };
    Data {
        T: integer("T"),
        y: floats(&data["y"]),
        t: floats(&data["t"]),
        cap: floats(&data["cap"]),
        S: integer("S"),
        t_change: floats(&data["t_change"]),
        trend_indicator: match integer("trend_indicator") {
            0 => TrendIndicator::Linear,
            1 => TrendIndicator::Logistic,
            _ => TrendIndicator::Flat,
        },
        K: integer("K"),
        s_a: flags("s_a"),
        s_m: flags("s_m"),
        X: data["X"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(floats)
            .collect(),
        sigmas: floats(&data["sigmas"]).into_iter().map(positive).collect(),
        tau: positive(data["tau"].as_f64().unwrap()),
    }
}

/// A fixture point as an unconstrained vector: k, m, delta, log sigma, beta.
pub fn unconstrained(point: &Value) -> Vec<f64> {
    let mut x = vec![point["k"].as_f64().unwrap(), point["m"].as_f64().unwrap()];
    x.extend(floats(&point["delta"]));
    x.push(point["sigma_obs"].as_f64().unwrap().ln());
    x.extend(floats(&point["beta"]));
    x
}

/// The fixture's parameter point called `label`.
pub fn point<'a>(fixture: &'a Value, label: &str) -> &'a Value {
    fixture["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|point| point["label"] == label)
        .unwrap_or_else(|| panic!("fixture has no point {label}"))
}

/// The fixture's `init` point (Prophet's initial parameters).
pub fn init(fixture: &Value) -> InitialParams {
    let init = point(fixture, "init");
    InitialParams {
        k: init["k"].as_f64().unwrap(),
        m: init["m"].as_f64().unwrap(),
        delta: floats(&init["delta"]),
        beta: floats(&init["beta"]),
        sigma_obs: positive(init["sigma_obs"].as_f64().unwrap()),
    }
}
