//! The native optimizer against Stan itself: values, gradients and whole L-BFGS runs recorded
//! from Prophet's compiled Stan model (`tests/fixtures/prophet/*.json`, made by
//! `bench/python/make_fixtures.py` with Python Prophet 1.5.0 and CmdStan 2.37).

use augurs_prophet::optimizer::OptimizeOpts;
use storecast::forecast::optimizer::NativeOptimizer;
use storecast::forecast::optimizer::lbfgs::{LbfgsOptions, Objective, minimize_observed};
use storecast::forecast::optimizer::objective::ProphetObjective;

const CASES: [&str; 5] = [
    "linear_yearly_weekly",
    "linear_weekly_only",
    "flat_weekly",
    "linear_promo_regressor",
    "multiplicative_weekly",
];

#[path = "prophet_fixtures/shared.rs"]
mod shared;

use shared::{data, fixture, floats, init, point, unconstrained};

struct Adapter(ProphetObjective);

impl Objective for Adapter {
    fn dimension(&self) -> usize {
        self.0.dimension()
    }
    fn evaluate(&mut self, x: &[f64], gradient: &mut [f64]) -> Option<f64> {
        self.0.value_and_gradient(x, gradient)
    }
}

#[test]
fn objective_and_gradient_match_stans_log_prob() {
    for case in CASES {
        let fixture = fixture(case);
        let mut objective = ProphetObjective::new(&data(&fixture)).unwrap();
        for point in fixture["points"].as_array().unwrap() {
            let label = point["label"].as_str().unwrap();
            let x = unconstrained(point);
            let mut gradient = vec![0.0; x.len()];
            let value = objective.value_and_gradient(&x, &mut gradient).unwrap();
            let log_prob = point["log_prob"].as_f64().unwrap();
            // We minimise −log p.
            assert!(
                (-value - log_prob).abs() <= 1e-9 * (1.0 + log_prob.abs()),
                "{case}/{label}: value {} vs Stan {log_prob}",
                -value
            );
            for (index, (ours, stans)) in
                gradient.iter().zip(floats(&point["gradient"])).enumerate()
            {
                assert!(
                    (-ours - stans).abs() <= 1e-7 * (1.0 + stans.abs()),
                    "{case}/{label}: gradient[{index}] {} vs Stan {stans}",
                    -ours
                );
            }
        }
    }
}

#[test]
fn logistic_growth_is_a_clear_error_not_a_wrong_answer() {
    let fixture = fixture("logistic_weekly");
    let error = ProphetObjective::new(&data(&fixture))
        .unwrap_err()
        .to_string();
    assert!(error.contains("logistic"), "{error}");
}

/// In Stan's own column order, the port takes Stan's steps: the same objective after every
/// iteration (to rounding) and the same stopping point.
#[test]
fn lbfgs_retraces_stans_run_step_by_step() {
    for case in CASES {
        let fixture = fixture(case);
        let stan = &fixture["stan_optimize"];
        let stan_trajectory = floats(&stan["lp_trajectory"]);
        let init = point(&fixture, "init");
        let mut objective = Adapter(ProphetObjective::new(&data(&fixture)).unwrap());
        let mut trajectory = Vec::new();
        let minimum = minimize_observed(
            &mut objective,
            &unconstrained(init),
            &LbfgsOptions::default(),
            |value| trajectory.push(-value),
        )
        .unwrap();

        // Stan's trajectory starts with the initial point.
        let stan_steps = &stan_trajectory[1..];
        let compared = stan_steps.len().min(trajectory.len()).min(40);
        for step in 0..compared {
            let (ours, stans) = (trajectory[step], stan_steps[step]);
            assert!(
                (ours - stans).abs() <= 1e-6 * (1.0 + stans.abs()),
                "{case}: after iteration {} ours {ours} vs Stan {stans}",
                step + 1
            );
        }
        let stan_log_prob = stan["log_prob"].as_f64().unwrap();
        eprintln!(
            "{case}: final {} vs Stan {stan_log_prob} ({} vs {} iterations)",
            -minimum.value, minimum.iterations, stan["iterations"]
        );
        assert!(
            (-minimum.value - stan_log_prob).abs() <= 1e-4 * (1.0 + stan_log_prob.abs()),
            "{case}: final {} vs Stan {stan_log_prob} ({} vs {} iterations)",
            -minimum.value,
            minimum.iterations,
            stan["iterations"]
        );
    }
}

/// Through the canonical column order (a different floating-point path), well-posed fits still
/// land where Stan lands.
#[test]
fn native_optimizer_lands_where_stan_lands() {
    for case in [
        "linear_weekly_only",
        "flat_weekly",
        "linear_promo_regressor",
        "multiplicative_weekly",
    ] {
        let fixture = fixture(case);
        let data = data(&fixture);
        let init = init(&fixture);
        let (params, minimum) = NativeOptimizer::default()
            .optimize_with_report(&init, &data, &OptimizeOpts::default())
            .unwrap();
        assert!(minimum.termination.is_success(), "{case}: {minimum:?}");
        let stan = &fixture["stan_optimize"];
        let stan_log_prob = stan["log_prob"].as_f64().unwrap();
        eprintln!(
            "{case}: canonical order {} vs Stan {stan_log_prob} ({} iterations)",
            -minimum.value, minimum.iterations
        );
        assert!(
            (-minimum.value - stan_log_prob).abs() <= 1e-4 * (1.0 + stan_log_prob.abs()),
            "{case}: {} vs Stan {stan_log_prob}",
            -minimum.value
        );
        // The fitted values, not the (weakly identified) parameters, are what must agree.
        let stan_objective = ProphetObjective::new(&data).unwrap();
        let stan_params = &stan["params"];
        let stan_trend = stan_objective.trend(
            stan_params["k"].as_f64().unwrap(),
            stan_params["m"].as_f64().unwrap(),
            &floats(&stan_params["delta"]),
        );
        let our_trend = stan_objective.trend(params.k, params.m, &params.delta);
        for (ours, stans) in our_trend.iter().zip(&stan_trend) {
            assert!(
                (ours - stans).abs() < 1e-3 * stans.abs().max(0.1),
                "{case}: trend {ours} vs {stans}"
            );
        }
        for (ours, stans) in params.beta.iter().zip(floats(&stan_params["beta"])) {
            assert!(
                (ours - stans).abs() < 1e-3,
                "{case}: beta {ours} vs {stans}"
            );
        }
    }
}
