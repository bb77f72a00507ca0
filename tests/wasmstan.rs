//! The native optimizer against `augurs-prophet`'s `wasmstan` (Prophet's Stan model compiled
//! to WebAssembly) on the same problems. Only built with `--features wasmstan`, which adds
//! wasmtime to the build: `cargo test --features wasmstan --test wasmstan`.
#![cfg(feature = "wasmstan")]

use augurs_prophet::optimizer::{OptimizeOpts, OptimizedParams, Optimizer};
use augurs_prophet::wasmstan::WasmstanOptimizer;
use storecast::forecast::optimizer::NativeOptimizer;
use storecast::forecast::optimizer::objective::ProphetObjective;

#[path = "prophet_fixtures/shared.rs"]
mod shared;

/// Unconstrained parameter vector: k, m, delta, log sigma, beta.
fn vector(params: &OptimizedParams) -> Vec<f64> {
    let mut x = vec![params.k, params.m];
    x.extend(&params.delta);
    x.push(params.sigma_obs.ln());
    x.extend(&params.beta);
    x
}

#[test]
fn native_and_wasmstan_fits_agree_on_well_posed_problems() {
    let wasmstan = WasmstanOptimizer::new();
    // The multiplicative problem is badly conditioned: Stan's own builds stop 0.02 nats
    // apart on it (CmdStan at 395.656, wasmstan at 395.676), so it gets a looser tolerance.
    for (case, tolerance) in [
        ("linear_weekly_only", 1e-3),
        ("flat_weekly", 1e-3),
        ("linear_promo_regressor", 1e-3),
        ("multiplicative_weekly", 1e-2),
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
        let value = |params: &OptimizedParams, objective: &mut ProphetObjective| {
            let x = vector(params);
            let mut gradient = vec![0.0; x.len()];
            objective.value_and_gradient(&x, &mut gradient).unwrap()
        };
        let (ours, theirs) = (value(&native, &mut objective), value(&stan, &mut objective));
        assert!(
            (ours - theirs).abs() <= 1e-4 * theirs.abs().max(1.0),
            "{case}: native {ours} vs wasmstan {theirs}"
        );
        // Fitted values, not the weakly identified parameters, must agree.
        let (native_fit, stan_fit) = (
            objective.fitted_values(&vector(&native)),
            objective.fitted_values(&vector(&stan)),
        );
        for (a, b) in native_fit.iter().zip(&stan_fit) {
            assert!(
                (a - b).abs() < tolerance * b.abs().max(0.1),
                "{case}: fitted {a} vs {b}"
            );
        }
    }
}
