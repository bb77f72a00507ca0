//! storecast's own optimizer for Prophet: the MAP estimate of Prophet's Stan model, found by
//! a port of Stan's L-BFGS on an analytic gradient, as an `augurs_prophet` [`Optimizer`].
//!
//! Two things differ from handing the problem to Stan, both on purpose:
//! - columns of `X` (seasonalities, regressors, holidays) are put in a canonical order before
//!   optimizing and the coefficients mapped back afterwards. `augurs-prophet` keeps them in a
//!   `HashMap`, so their order, and with it the floating-point path of the fit, would change
//!   from one model instance to the next; in canonical order a fit is bit-for-bit repeatable;
//! - the objective never has the Jacobian term of `log(sigma_obs)`, as Python Prophet and
//!   `wasmstan` run it, whatever `OptimizeOpts::jacobian` says (`augurs-prophet` sets it for
//!   MAP estimation).
//!
//! Without multiplicative columns, the objective evaluates the squared residuals as a
//! quadratic form prepared once per fit (see [`objective`]), so an evaluation does not walk
//! the rows; with them, it walks the rows.
//!
//! Logistic growth is refused with a clear error until its trend is implemented.

pub mod lbfgs;
pub mod objective;

use std::cmp::Ordering;

use augurs_prophet::PositiveFloat;
use augurs_prophet::optimizer::{
    Data, Error, InitialParams, OptimizeOpts, OptimizedParams, Optimizer,
};

use lbfgs::{LbfgsOptions, Minimum, Objective};
use objective::ProphetObjective;

/// The native optimizer, with Stan's L-BFGS defaults unless [`OptimizeOpts`] say otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeOptimizer {
    pub options: LbfgsOptions,
}

impl NativeOptimizer {
    /// Settings for one run: ours, overridden by whatever the caller set.
    fn options_for(&self, opts: &OptimizeOpts) -> LbfgsOptions {
        let mut options = self.options;
        if let Some(iterations) = opts.iter {
            options.max_iterations = iterations as usize;
        }
        if let Some(alpha) = opts.init_alpha {
            options.init_alpha = alpha;
        }
        if let Some(tolerance) = opts.tol_obj {
            options.tol_obj = tolerance;
        }
        if let Some(tolerance) = opts.tol_rel_obj {
            options.tol_rel_obj = tolerance;
        }
        if let Some(tolerance) = opts.tol_grad {
            options.tol_grad = tolerance;
        }
        if let Some(tolerance) = opts.tol_rel_grad {
            options.tol_rel_grad = tolerance;
        }
        if let Some(tolerance) = opts.tol_param {
            options.tol_param = tolerance;
        }
        if let Some(size) = opts.history_size {
            options.history_size = size as usize;
        }
        options
    }

    /// Runs the optimizer and also returns how it stopped (for tests and benchmarks).
    pub fn optimize_with_report(
        &self,
        init: &InitialParams,
        data: &Data,
        opts: &OptimizeOpts,
    ) -> Result<(OptimizedParams, Minimum), Error> {
        let order = canonical_column_order(data);
        let canonical = permute_columns(data, &order);
        let mut objective = ProphetObjective::new(&canonical).map_err(Error::custom)?;
        let changepoints = canonical.t_change.len();
        if init.delta.len() != changepoints || init.beta.len() != order.len() {
            return Err(Error::static_str(
                "initial parameters do not match the data's S and K",
            ));
        }

        let mut x0 = Vec::with_capacity(objective.dimension());
        x0.extend([init.k, init.m]);
        x0.extend(&init.delta);
        x0.push(init.sigma_obs.ln());
        x0.extend(order.iter().map(|&column| init.beta[column]));

        let minimum = lbfgs::minimize(
            &mut ObjectiveAdapter(&mut objective),
            &x0,
            &self.options_for(opts),
        )
        .map_err(Error::custom)?;
        // A failed final line search (no further decrease possible) still leaves the best
        // point found, which is what we return; Stan would report an error instead.
        if !minimum.termination.is_success() {
            tracing::debug!(
                iterations = minimum.iterations,
                "line search failed; keeping the best point"
            );
        }

        let x = &minimum.x;
        let k = x[0];
        let m = x[1];
        let delta = x[2..2 + changepoints].to_vec();
        let sigma_obs = PositiveFloat::try_new(x[objective.sigma_index()].exp())
            .map_err(|_| Error::static_str("the fit ended with a non-positive sigma_obs"))?;
        let mut beta = vec![0.0; order.len()];
        for (canonical_index, &column) in order.iter().enumerate() {
            beta[column] = x[3 + changepoints + canonical_index];
        }
        let trend = objective.trend(k, m, &delta);
        Ok((
            OptimizedParams {
                k,
                m,
                sigma_obs,
                delta,
                beta,
                trend,
            },
            minimum,
        ))
    }
}

impl Optimizer for NativeOptimizer {
    fn optimize(
        &self,
        init: &InitialParams,
        data: &Data,
        opts: &OptimizeOpts,
    ) -> Result<OptimizedParams, Error> {
        self.optimize_with_report(init, data, opts)
            .map(|(params, _)| params)
    }
}

struct ObjectiveAdapter<'a>(&'a mut ProphetObjective);

impl Objective for ObjectiveAdapter<'_> {
    fn dimension(&self) -> usize {
        self.0.dimension()
    }

    fn evaluate(&mut self, x: &[f64], gradient: &mut [f64]) -> Option<f64> {
        self.0.value_and_gradient(x, gradient)
    }
}

/// Columns of `X` sorted by what they are (additive/multiplicative flags, prior scale, then
/// their values), independent of the order they arrived in.
pub fn canonical_column_order(data: &Data) -> Vec<usize> {
    let columns = data.s_a.len();
    let rows = data.y.len();
    let value =
        |row: usize, column: usize| data.X.get(row * columns + column).copied().unwrap_or(0.0);
    let mut order: Vec<usize> = (0..columns).collect();
    order.sort_by(|&a, &b| {
        data.s_a[a]
            .cmp(&data.s_a[b])
            .then(data.s_m[a].cmp(&data.s_m[b]))
            .then(data.sigmas[a].total_cmp(&data.sigmas[b]))
            .then_with(|| {
                (0..rows)
                    .map(|row| value(row, a).total_cmp(&value(row, b)))
                    .find(|ordering| *ordering != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
            })
    });
    order
}

/// A copy of `data` with its columns in `order`.
fn permute_columns(data: &Data, order: &[usize]) -> Data {
    let columns = order.len();
    let mut permuted = data.clone();
    for (row, target) in permuted.X.chunks_exact_mut(columns.max(1)).enumerate() {
        for (new_index, &old_index) in order.iter().enumerate() {
            target[new_index] = data.X[row * columns + old_index];
        }
    }
    permuted.s_a = order.iter().map(|&column| data.s_a[column]).collect();
    permuted.s_m = order.iter().map(|&column| data.s_m[column]).collect();
    permuted.sigmas = order.iter().map(|&column| data.sigmas[column]).collect();
    permuted
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use augurs_prophet::{Prophet, ProphetOptions, Regressor, TrainingData};

    use super::*;
    use crate::forecast::optimizer::objective::tests::problem;

    const DAY: i64 = 86_400;

    /// 120 days of a weekly pattern with a promo regressor and a gentle trend.
    fn series() -> (Vec<i64>, Vec<f64>, Vec<f64>) {
        let start = 1_420_070_400; // 2015-01-01
        let ds: Vec<i64> = (0..120).map(|day| start + day * DAY).collect();
        let promo: Vec<f64> = (0..120)
            .map(|day| f64::from(u8::from((day / 7) % 2 == 0)))
            .collect();
        let y = (0..120)
            .map(|day| {
                let weekly = [1.2, 1.05, 1.0, 1.0, 1.07, 0.85, 0.6][day % 7];
                let noise = ((day as f64) * 12.9898).sin() * 43758.5453 % 1.0 * 0.04;
                6000.0
                    * weekly
                    * (1.0 + 0.25 * promo[day])
                    * (1.0 + 0.001 * day as f64)
                    * (1.0 + noise)
            })
            .collect();
        (ds, y, promo)
    }

    fn fit_and_predict() -> Vec<f64> {
        let (ds, y, promo) = series();
        let options = ProphetOptions {
            yearly_seasonality: augurs_prophet::SeasonalityOption::Manual(false),
            uncertainty_samples: 0,
            ..ProphetOptions::default()
        };
        let mut prophet = Prophet::new(options, NativeOptimizer::default());
        prophet.add_regressor("promo".to_string(), Regressor::additive());
        prophet.add_regressor("promo_copy".to_string(), Regressor::additive());
        let regressors = HashMap::from([
            ("promo".to_string(), promo.clone()),
            ("promo_copy".to_string(), promo.clone()),
        ]);
        let data = TrainingData::new(ds, y)
            .unwrap()
            .with_regressors(regressors)
            .unwrap();
        prophet.fit(data, OptimizeOpts::default()).unwrap();
        prophet.predict(None).unwrap().yhat.point
    }

    #[test]
    fn fits_a_weekly_series_through_augurs() {
        let (_, y, _) = series();
        let fitted = fit_and_predict();
        let mape = fitted
            .iter()
            .zip(&y)
            .map(|(f, a)| ((f - a) / a).abs())
            .sum::<f64>()
            / y.len() as f64;
        assert!(mape < 0.05, "in-sample MAPE {mape}");
    }

    #[test]
    fn fits_agree_across_model_instances() {
        // Each Prophet instance orders its columns by its own HashMap; the fit must not care.
        let first = fit_and_predict();
        for _ in 0..5 {
            let again = fit_and_predict();
            for (a, b) in first.iter().zip(&again) {
                assert!((a - b).abs() <= 1e-9 * a.abs(), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn canonical_order_does_not_depend_on_input_order() {
        let data = problem(40, 3, 5, 2);
        let order = canonical_column_order(&data);
        let reversed: Vec<usize> = (0..5).rev().collect();
        let shuffled = permute_columns(&data, &reversed);
        let shuffled_order = canonical_column_order(&shuffled);
        let canonical = permute_columns(&data, &order);
        let canonical_again = permute_columns(&shuffled, &shuffled_order);
        assert_eq!(canonical, canonical_again);
    }

    #[test]
    fn optimum_is_the_same_whatever_the_column_order() {
        let data = problem(60, 5, 6, 2);
        let init = InitialParams {
            k: 0.1,
            m: 0.4,
            delta: vec![0.0; 5],
            beta: vec![0.0; 6],
            sigma_obs: PositiveFloat::one(),
        };
        let (params, minimum) = NativeOptimizer::default()
            .optimize_with_report(&init, &data, &OptimizeOpts::default())
            .unwrap();
        assert!(minimum.termination.is_success(), "{minimum:?}");
        let reversed: Vec<usize> = (0..6).rev().collect();
        let shuffled = permute_columns(&data, &reversed);
        let (shuffled_params, _) = NativeOptimizer::default()
            .optimize_with_report(&init, &shuffled, &OptimizeOpts::default())
            .unwrap();
        assert_eq!(params.k.to_bits(), shuffled_params.k.to_bits());
        for (original, &column) in reversed.iter().enumerate() {
            assert_eq!(
                params.beta[column].to_bits(),
                shuffled_params.beta[original].to_bits()
            );
        }
    }
}
