//! A port of Stan's L-BFGS minimiser (`stan::optimization::BFGSMinimizer` with
//! `LBFGSUpdate` and `WolfeLineSearch`), so that fits land where Stan's land.
//!
//! Kept as in Stan, including its quirks: the first step and every step after a Hessian
//! reset start from `init_alpha`; later steps start from a cubic interpolation of the previous
//! one; the sufficient-decrease test of the line search compares against the *initial* step
//! size; a failed line search resets the Hessian approximation once before giving up; the
//! convergence tests run in Stan's order (absolute objective change, gradient norm, step
//! norm, iteration limit, relative objective change, relative gradient).

use std::collections::VecDeque;

/// A function to minimise, with its gradient.
pub trait Objective {
    /// Number of parameters.
    fn dimension(&self) -> usize;
    /// The value at `x`, writing the gradient into `gradient`; `None` when either is not
    /// finite (Stan treats that as a failed evaluation and backs off).
    fn evaluate(&mut self, x: &[f64], gradient: &mut [f64]) -> Option<f64>;
}

/// Stan's optimizer settings, with CmdStan's defaults (as Prophet runs it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsOptions {
    pub max_iterations: usize,
    /// First step size of the first line search and after a reset.
    pub init_alpha: f64,
    /// Convergence when the objective changes by less than this.
    pub tol_obj: f64,
    /// ... or by less than this many machine epsilons, relatively.
    pub tol_rel_obj: f64,
    /// Convergence when the gradient norm is below this.
    pub tol_grad: f64,
    /// ... or the relative gradient is below this many machine epsilons.
    pub tol_rel_grad: f64,
    /// Convergence when a step moves the parameters by less than this.
    pub tol_param: f64,
    /// Number of updates the inverse Hessian approximation remembers.
    pub history_size: usize,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        Self {
            // Prophet asks for 10,000 iterations.
            max_iterations: 10_000,
            init_alpha: 1e-3,
            tol_obj: 1e-12,
            tol_rel_obj: 1e4,
            tol_grad: 1e-8,
            tol_rel_grad: 1e7,
            tol_param: 1e-8,
            history_size: 5,
        }
    }
}

/// Line-search constants, fixed in Stan (`LSOptions`).
const C1: f64 = 1e-4;
const C2: f64 = 0.9;
const MIN_ALPHA: f64 = 1e-12;
const MAX_LINE_SEARCH_ITERATIONS: usize = 20;
const MAX_LINE_SEARCH_RESTARTS: usize = 10;
const ZOOM_MIN_RANGE: f64 = 1e-16;

/// Why the minimiser stopped (Stan's `TerminationCondition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    AbsoluteObjective,
    RelativeObjective,
    AbsoluteGradient,
    RelativeGradient,
    AbsoluteParameter,
    MaxIterations,
    /// No step satisfying the Wolfe conditions was found, even after a Hessian reset.
    LineSearchFailed,
}

impl Termination {
    /// Stan reports success for every condition except a failed line search.
    pub fn is_success(self) -> bool {
        self != Termination::LineSearchFailed
    }
}

/// Where the minimiser stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    pub evaluations: usize,
    pub termination: Termination,
}

/// Why minimisation could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LbfgsError {
    #[error("the objective is not finite at the initial point")]
    BadInitialPoint,
}

/// Minimises `objective` from `x0`.
pub fn minimize(
    objective: &mut impl Objective,
    x0: &[f64],
    options: &LbfgsOptions,
) -> Result<Minimum, LbfgsError> {
    minimize_observed(objective, x0, options, |_| {})
}

/// As [`minimize`], calling `after_iteration` with the objective value after each iteration
/// (to compare a run step by step with Stan's).
pub fn minimize_observed(
    objective: &mut impl Objective,
    x0: &[f64],
    options: &LbfgsOptions,
    mut after_iteration: impl FnMut(f64),
) -> Result<Minimum, LbfgsError> {
    let mut counted = Counted {
        objective,
        evaluations: 0,
    };
    let mut state = State::new(&mut counted, x0, options)?;
    let termination = loop {
        let stop = state.step(&mut counted);
        if stop != Some(Termination::LineSearchFailed) {
            after_iteration(state.fk);
        }
        if let Some(termination) = stop {
            break termination;
        }
    };
    Ok(Minimum {
        value: state.fk,
        x: state.xk,
        iterations: state.iteration,
        evaluations: counted.evaluations,
        termination,
    })
}

/// Counts evaluations, as Stan's `ModelAdaptor` does.
struct Counted<'a, O: Objective> {
    objective: &'a mut O,
    evaluations: usize,
}

impl<O: Objective> Counted<'_, O> {
    fn evaluate(&mut self, x: &[f64], gradient: &mut [f64]) -> Option<f64> {
        self.evaluations += 1;
        self.objective.evaluate(x, gradient)
    }
}

/// Stan's `BFGSMinimizer` state; `_k` is the current iterate, `_k_1` the previous one.
struct State {
    options: LbfgsOptions,
    xk: Vec<f64>,
    fk: f64,
    gk: Vec<f64>,
    pk: Vec<f64>,
    xk_1: Vec<f64>,
    fk_1: f64,
    gk_1: Vec<f64>,
    pk_1: Vec<f64>,
    alphak_1: f64,
    iteration: usize,
    history: History,
}

impl State {
    fn new<O: Objective>(
        objective: &mut Counted<'_, O>,
        x0: &[f64],
        options: &LbfgsOptions,
    ) -> Result<Self, LbfgsError> {
        let dimension = x0.len();
        let mut gk = vec![0.0; dimension];
        let fk = objective
            .evaluate(x0, &mut gk)
            .ok_or(LbfgsError::BadInitialPoint)?;
        let pk = gk.iter().map(|g| -g).collect();
        Ok(Self {
            options: *options,
            xk: x0.to_vec(),
            fk,
            gk,
            pk,
            xk_1: vec![0.0; dimension],
            fk_1: 0.0,
            gk_1: vec![0.0; dimension],
            pk_1: vec![0.0; dimension],
            alphak_1: 0.0,
            iteration: 0,
            history: History::new(options.history_size.max(1)),
        })
    }

    /// One iteration; `Some` when the minimiser should stop.
    fn step<O: Objective>(&mut self, objective: &mut Counted<'_, O>) -> Option<Termination> {
        self.iteration += 1;
        // 0: keep the approximation; 1: first iteration; 2: reset after a failed search.
        let mut reset = u8::from(self.iteration == 1);
        let alpha = loop {
            if reset != 0 {
                for (direction, gradient) in self.pk.iter_mut().zip(&self.gk) {
                    *direction = -gradient;
                }
            }
            let mut alpha = if self.iteration > 1 && reset != 2 {
                (1.01
                    * cubic_interp(
                        dot(&self.gk_1, &self.pk_1),
                        self.alphak_1,
                        self.fk - self.fk_1,
                        dot(&self.gk, &self.pk_1),
                        MIN_ALPHA,
                        1.0,
                    ))
                .min(1.0)
            } else {
                self.options.init_alpha
            };
            // On success the new point lands in the `_k_1` slots, swapped in below.
            let found = wolfe_line_search(
                objective,
                &mut alpha,
                &mut self.xk_1,
                &mut self.fk_1,
                &mut self.gk_1,
                &self.pk,
                &self.xk,
                self.fk,
                &self.gk,
            );
            if found {
                break alpha;
            }
            if reset != 0 {
                return Some(Termination::LineSearchFailed);
            }
            reset = 2;
        };

        std::mem::swap(&mut self.fk, &mut self.fk_1);
        std::mem::swap(&mut self.xk, &mut self.xk_1);
        std::mem::swap(&mut self.gk, &mut self.gk_1);
        std::mem::swap(&mut self.pk, &mut self.pk_1);

        let sk: Vec<f64> = self.xk.iter().zip(&self.xk_1).map(|(a, b)| a - b).collect();
        let yk: Vec<f64> = self.gk.iter().zip(&self.gk_1).map(|(a, b)| a - b).collect();
        let gradient_norm = norm(&self.gk);
        let step_norm = norm(&sk);

        if reset != 0 {
            // A fresh approximation is scaled to the curvature just seen, and the previous
            // direction with it, so the next initial step size is predicted well.
            let scale = self.history.update(yk, sk, true);
            for direction in &mut self.pk_1 {
                *direction /= scale;
            }
            self.alphak_1 = alpha * scale;
        } else {
            self.history.update(yk, sk, false);
            self.alphak_1 = alpha;
        }
        self.history.search_direction(&mut self.pk, &self.gk);

        let options = &self.options;
        if (self.fk_1 - self.fk).abs() < options.tol_obj {
            Some(Termination::AbsoluteObjective)
        } else if gradient_norm < options.tol_grad {
            Some(Termination::AbsoluteGradient)
        } else if step_norm < options.tol_param {
            Some(Termination::AbsoluteParameter)
        } else if self.iteration >= options.max_iterations {
            Some(Termination::MaxIterations)
        } else if self.relative_objective_decrease() < options.tol_rel_obj * f64::EPSILON {
            Some(Termination::RelativeObjective)
        } else if self.relative_gradient_norm() < options.tol_rel_grad * f64::EPSILON {
            Some(Termination::RelativeGradient)
        } else {
            None
        }
    }

    fn relative_gradient_norm(&self) -> f64 {
        -dot(&self.pk, &self.gk) / self.fk.abs().max(1.0)
    }

    fn relative_objective_decrease(&self) -> f64 {
        (self.fk_1 - self.fk).abs() / self.fk_1.abs().max(self.fk.abs()).max(1.0)
    }
}

/// The limited-memory inverse Hessian approximation (Stan's `LBFGSUpdate`).
struct History {
    capacity: usize,
    /// `(1 / yᵀs, y, s)`, oldest first.
    updates: VecDeque<(f64, Vec<f64>, Vec<f64>)>,
    gamma: f64,
}

impl History {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            updates: VecDeque::with_capacity(capacity),
            gamma: 1.0,
        }
    }

    /// Adds an update; on `reset`, forgets the others and returns the initial scaling.
    fn update(&mut self, yk: Vec<f64>, sk: Vec<f64>, reset: bool) -> f64 {
        let skyk = dot(&yk, &sk);
        let yk_squared = dot(&yk, &yk);
        let scale = if reset {
            self.updates.clear();
            yk_squared / skyk
        } else {
            1.0
        };
        self.gamma = skyk / yk_squared;
        if self.updates.len() == self.capacity {
            self.updates.pop_front();
        }
        self.updates.push_back((1.0 / skyk, yk, sk));
        scale
    }

    /// `pk = −H gk` by the two-loop recursion.
    fn search_direction(&self, pk: &mut [f64], gk: &[f64]) {
        for (direction, gradient) in pk.iter_mut().zip(gk) {
            *direction = -gradient;
        }
        let mut alphas = vec![0.0; self.updates.len()];
        for (index, (rho, y, s)) in self.updates.iter().enumerate().rev() {
            let alpha = rho * dot(s, pk);
            axpy(-alpha, y, pk);
            alphas[index] = alpha;
        }
        for direction in pk.iter_mut() {
            *direction *= self.gamma;
        }
        for ((rho, y, s), alpha) in self.updates.iter().zip(&alphas) {
            let beta = rho * dot(y, pk);
            axpy(alpha - beta, s, pk);
        }
    }
}

/// Minimum on `[low, high]` of the cubic through `(0, 0)` with slope `df0` and `(x1, f1)`
/// with slope `df1` (Stan's `CubicInterp`).
fn cubic_interp(df0: f64, x1: f64, f1: f64, df1: f64, low: f64, high: f64) -> f64 {
    let c3 = (-12.0 * f1 + 6.0 * x1 * (df0 + df1)) / (x1 * x1 * x1);
    let c2 = -(4.0 * df0 + 2.0 * df1) / x1 + 6.0 * f1 / (x1 * x1);
    let c1 = df0;
    let t_s = (c2 * c2 - 2.0 * c1 * c3).sqrt();
    let s1 = -(c2 + t_s) / c3;
    let s2 = -(c2 - t_s) / c3;
    let cubic = |x: f64| x * (x * (x * c3 / 3.0 + c2) / 2.0 + c1);

    let mut min_f = cubic(low);
    let mut min_x = low;
    let high_f = cubic(high);
    if high_f < min_f {
        min_f = high_f;
        min_x = high;
    }
    for root in [s1, s2] {
        if low < root && root < high {
            let root_f = cubic(root);
            if root_f < min_f {
                min_f = root_f;
                min_x = root;
            }
        }
    }
    min_x
}

/// Stan's `WolfeLineSearch`: finds `alpha` with the strong Wolfe conditions along `p` from
/// `x0`, writing the new point into `x1, f1, gradient1`. Returns whether it succeeded.
#[allow(clippy::too_many_arguments)] // Mirrors Stan's signature, argument for argument.
fn wolfe_line_search<O: Objective>(
    objective: &mut Counted<'_, O>,
    alpha: &mut f64,
    x1: &mut [f64],
    f1: &mut f64,
    gradient1: &mut [f64],
    p: &[f64],
    x0: &[f64],
    f0: f64,
    gradient0: &[f64],
) -> bool {
    let dfp = dot(gradient0, p);
    let c1dfp = C1 * dfp;
    let c2dfp = C2 * dfp;

    let mut alpha0 = MIN_ALPHA;
    let mut alpha1 = *alpha;
    let mut previous_f = f0;
    let mut previous_dfp = dfp;
    let mut iterations = 0;
    let mut restarts = 0;

    loop {
        if iterations >= MAX_LINE_SEARCH_ITERATIONS {
            return false;
        }
        set_point(x1, x0, alpha1, p);
        let Some(value) = objective.evaluate(x1, gradient1) else {
            if restarts >= MAX_LINE_SEARCH_RESTARTS {
                return false;
            }
            alpha1 = 0.5 * (alpha0 + alpha1);
            restarts += 1;
            continue;
        };
        *f1 = value;
        restarts = 0;

        let new_dfp = dot(gradient1, p);
        // Stan tests sufficient decrease against the initial `alpha`, not `alpha1`.
        if *f1 > f0 + *alpha * c1dfp || (*f1 >= previous_f && iterations > 0) {
            let bracket = Bracket {
                low: (alpha0, previous_f, previous_dfp),
                high: (alpha1, *f1, new_dfp),
            };
            return zoom(
                objective, alpha, x1, f1, gradient1, x0, f0, c1dfp, c2dfp, p, bracket,
            );
        }
        if new_dfp.abs() <= -c2dfp {
            *alpha = alpha1;
            return true;
        }
        if new_dfp >= 0.0 {
            let bracket = Bracket {
                low: (alpha1, *f1, new_dfp),
                high: (alpha0, previous_f, previous_dfp),
            };
            return zoom(
                objective, alpha, x1, f1, gradient1, x0, f0, c1dfp, c2dfp, p, bracket,
            );
        }
        alpha0 = alpha1;
        previous_f = *f1;
        previous_dfp = new_dfp;
        alpha1 *= 10.0;
        iterations += 1;
    }
}

/// Step sizes with their objective values and directional derivatives.
struct Bracket {
    low: (f64, f64, f64),
    high: (f64, f64, f64),
}

/// Stan's `WolfLSZoom`: narrows a bracket until the strong Wolfe conditions hold.
#[allow(clippy::too_many_arguments)] // Mirrors Stan's signature.
fn zoom<O: Objective>(
    objective: &mut Counted<'_, O>,
    alpha: &mut f64,
    new_x: &mut [f64],
    new_f: &mut f64,
    new_gradient: &mut [f64],
    x: &[f64],
    f: f64,
    c1dfp: f64,
    c2dfp: f64,
    p: &[f64],
    bracket: Bracket,
) -> bool {
    let (mut alo, mut alo_f, mut alo_dfp) = bracket.low;
    let (mut ahi, mut ahi_f, mut ahi_dfp) = bracket.high;
    let mut iteration = 0usize;
    loop {
        iteration += 1;
        if (alo - ahi).abs() < ZOOM_MIN_RANGE {
            return false;
        }
        if iteration.is_multiple_of(5) {
            *alpha = 0.5 * (alo + ahi);
        } else {
            // Cubic interpolation between the bracket's ends.
            let d1 = alo_dfp + ahi_dfp - 3.0 * (alo_f - ahi_f) / (alo - ahi);
            let mut d2 = (d1 * d1 - alo_dfp * ahi_dfp).sqrt();
            if ahi < alo {
                d2 = -d2;
            }
            *alpha = ahi - (ahi - alo) * (ahi_dfp + d2 - d1) / (ahi_dfp - alo_dfp + 2.0 * d2);
            let span = (alo - ahi).abs();
            if !alpha.is_finite()
                || *alpha < alo.min(ahi) + 0.01 * span
                || *alpha > alo.max(ahi) - 0.01 * span
            {
                *alpha = 0.5 * (alo + ahi);
            }
        }

        set_point(new_x, x, *alpha, p);
        let value = loop {
            match objective.evaluate(new_x, new_gradient) {
                Some(value) => break value,
                None => {
                    *alpha = 0.5 * (*alpha + alo.min(ahi));
                    if (alo.min(ahi) - *alpha).abs() < ZOOM_MIN_RANGE {
                        return false;
                    }
                    set_point(new_x, x, *alpha, p);
                }
            }
        };
        *new_f = value;
        let new_dfp = dot(new_gradient, p);
        if *new_f > f + *alpha * c1dfp || *new_f >= alo_f {
            ahi = *alpha;
            ahi_f = *new_f;
            ahi_dfp = new_dfp;
        } else {
            if new_dfp.abs() <= -c2dfp {
                return true;
            }
            if new_dfp * (ahi - alo) >= 0.0 {
                ahi = alo;
                ahi_f = alo_f;
                ahi_dfp = alo_dfp;
            }
            alo = *alpha;
            alo_f = *new_f;
            alo_dfp = new_dfp;
        }
    }
}

fn set_point(target: &mut [f64], origin: &[f64], step: f64, direction: &[f64]) {
    for ((value, start), change) in target.iter_mut().zip(origin).zip(direction) {
        *value = start + step * change;
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn axpy(scale: f64, x: &[f64], y: &mut [f64]) {
    for (target, value) in y.iter_mut().zip(x) {
        *target += scale * value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rosenbrock function, a classic hard valley.
    struct Rosenbrock;

    impl Objective for Rosenbrock {
        fn dimension(&self) -> usize {
            2
        }
        fn evaluate(&mut self, x: &[f64], gradient: &mut [f64]) -> Option<f64> {
            let (a, b) = (x[0], x[1]);
            gradient[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            gradient[1] = 200.0 * (b - a * a);
            Some((1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2))
        }
    }

    /// A convex quadratic with very different curvatures.
    struct Quadratic(Vec<f64>);

    impl Objective for Quadratic {
        fn dimension(&self) -> usize {
            self.0.len()
        }
        fn evaluate(&mut self, x: &[f64], gradient: &mut [f64]) -> Option<f64> {
            let mut value = 0.0;
            for ((g, &xi), &curvature) in gradient.iter_mut().zip(x).zip(&self.0) {
                *g = curvature * (xi - 1.0);
                value += 0.5 * curvature * (xi - 1.0).powi(2);
            }
            Some(value)
        }
    }

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let minimum = minimize(&mut Rosenbrock, &[-1.2, 1.0], &LbfgsOptions::default()).unwrap();
        assert!(minimum.termination.is_success(), "{minimum:?}");
        assert!((minimum.x[0] - 1.0).abs() < 1e-4, "{minimum:?}");
        assert!((minimum.x[1] - 1.0).abs() < 1e-4, "{minimum:?}");
        assert!(minimum.iterations < 200);
    }

    #[test]
    fn finds_an_ill_conditioned_quadratic_minimum() {
        let curvatures: Vec<f64> = (0..30).map(|i| 10f64.powf(f64::from(i) / 10.0)).collect();
        let mut quadratic = Quadratic(curvatures);
        let minimum = minimize(&mut quadratic, &[0.0; 30], &LbfgsOptions::default()).unwrap();
        // Stan's relative-gradient test stops once gᵀH⁻¹g is ~1e-9: close, not exact.
        assert!(minimum.termination.is_success(), "{minimum:?}");
        assert!(minimum.value < 1e-6, "{minimum:?}");
        assert!(
            minimum.x.iter().all(|x| (x - 1.0).abs() < 1e-3),
            "{minimum:?}"
        );
    }

    #[test]
    fn is_deterministic() {
        let first = minimize(&mut Rosenbrock, &[-1.2, 1.0], &LbfgsOptions::default()).unwrap();
        let second = minimize(&mut Rosenbrock, &[-1.2, 1.0], &LbfgsOptions::default()).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn stops_at_the_iteration_limit() {
        let options = LbfgsOptions {
            max_iterations: 3,
            ..LbfgsOptions::default()
        };
        let minimum = minimize(&mut Rosenbrock, &[-1.2, 1.0], &options).unwrap();
        assert_eq!(minimum.termination, Termination::MaxIterations);
        assert_eq!(minimum.iterations, 3);
    }

    #[test]
    fn a_bad_start_is_an_error() {
        struct Nan;
        impl Objective for Nan {
            fn dimension(&self) -> usize {
                1
            }
            fn evaluate(&mut self, _: &[f64], _: &mut [f64]) -> Option<f64> {
                None
            }
        }
        assert_eq!(
            minimize(&mut Nan, &[0.0], &LbfgsOptions::default()).unwrap_err(),
            LbfgsError::BadInitialPoint
        );
    }

    #[test]
    fn cubic_interpolation_finds_the_parabola_minimum() {
        // g(x) = x³/3 − x: g(0) = 0, g'(0) = −1, g(2) = 2/3, g'(2) = 3; minimum at x = 1.
        let x = cubic_interp(-1.0, 2.0, 2.0 / 3.0, 3.0, 0.0, 2.0);
        assert!((x - 1.0).abs() < 1e-12, "{x}");
        // Restricted to [0, 0.5], the best is the upper end.
        assert_eq!(cubic_interp(-1.0, 2.0, 2.0 / 3.0, 3.0, 0.0, 0.5), 0.5);
    }
}
