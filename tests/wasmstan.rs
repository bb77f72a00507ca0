//! The native optimizer against `augurs-prophet`'s `wasmstan` (Prophet's Stan model compiled
//! to WebAssembly) on the same problems. Only built with `--features wasmstan`, which adds
//! wasmtime to the build: `cargo test --features wasmstan --test wasmstan`.
#![cfg(feature = "wasmstan")]

use augurs_prophet::optimizer::{OptimizeOpts, Optimizer};
use augurs_prophet::wasmstan::WasmstanOptimizer;
use storecast::forecast::optimizer::NativeOptimizer;
use storecast::forecast::optimizer::objective::ProphetObjective;

#[path = "prophet_fixtures/shared.rs"]
mod shared;

#[test]
fn native_and_wasmstan_fits_agree_on_well_posed_problems() {
    let wasmstan = WasmstanOptimizer::new();
    for case in [
        "linear_weekly_only",
        "flat_weekly",
        "linear_promo_regressor",
        "multiplicative_weekly",
    ] {
        let fixture = shared::fixture(case);
        let data = shared::data(&fixture);
        let init = shared::init(&fixture);
        let opts = OptimizeOpts {
            iter: Some(10_000),
            ..OptimizeOpts::default()
        };
        let native = NativeOptimizer::default()
            .optimize(&init, &data, &opts)
            .unwrap();
        let stan = wasmstan.optimize(&init, &data, &opts).unwrap();
        let mut objective = ProphetObjective::new(&data).unwrap();
        let value = |params: &augurs_prophet::optimizer::OptimizedParams,
                     objective: &mut ProphetObjective| {
            let mut x = vec![params.k, params.m];
            x.extend(&params.delta);
            x.push(params.sigma_obs.ln());
            x.extend(&params.beta);
            let mut gradient = vec![0.0; x.len()];
            objective.value_and_gradient(&x, &mut gradient).unwrap()
        };
        let (ours, theirs) = (value(&native, &mut objective), value(&stan, &mut objective));
        assert!(
            (ours - theirs).abs() <= 1e-4 * theirs.abs().max(1.0),
            "{case}: native {ours} vs wasmstan {theirs}"
        );
        let native_trend = objective.trend(native.k, native.m, &native.delta);
        let stan_trend = objective.trend(stan.k, stan.m, &stan.delta);
        for (a, b) in native_trend.iter().zip(&stan_trend) {
            assert!(
                (a - b).abs() < 1e-3 * b.abs().max(0.1),
                "{case}: trend {a} vs {b}"
            );
        }
    }
}
