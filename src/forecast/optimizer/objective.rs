//! Prophet's MAP objective (the negative log density of its Stan model, constants dropped
//! and no Jacobian term, as Stan's optimizer evaluates it) with its analytic gradient.
//!
//! Parameters are unconstrained, in Stan's order: `k, m, delta[S], log(sigma_obs), beta[K]`.
//! With `r = y - mu`:
//!
//! ```text
//! f = k²/50 + m²/50 + Σ|δ|/τ + 2σ² + Σ β²/(2 s²) + T log σ + Σ r²/(2σ²)
//! mu_i = (X_i ⊙ s_a)·β + trend_i (1 + (X_i ⊙ s_m)·β)
//! trend_i = k t_i + m + Σ_j [t_i ≥ c_j] δ_j (t_i − c_j)      (linear)
//! trend_i = m                                                (flat)
//! ```
//!
//! Without multiplicative columns `mu` is linear in `(k, m, δ, β)`, and `Σ r²` is evaluated
//! as a quadratic form prepared once ([`LinearMean`]): O(P²) per evaluation instead of a
//! walk over the `T` rows, the same value to rounding.

use augurs_prophet::TrendIndicator;
use augurs_prophet::optimizer::Data;

/// Why the objective cannot be evaluated on some data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectiveError {
    #[error("logistic growth is not supported by the native optimizer yet; use linear or flat")]
    LogisticTrend,
    #[error("inconsistent model data: {0}")]
    Shape(String),
}

/// Prophet's data block, checked and prepared for fast repeated evaluation.
#[derive(Debug, Clone)]
pub struct ProphetObjective {
    y: Vec<f64>,
    t: Vec<f64>,
    t_change: Vec<f64>,
    /// Regressors, `T x K` row-major.
    x: Vec<f64>,
    additive: Vec<f64>,
    multiplicative: Vec<f64>,
    /// `1 / sigmas²`, the precision of each coefficient's prior.
    beta_precision: Vec<f64>,
    inverse_tau: f64,
    flat: bool,
    /// Whether any column is multiplicative; if not, half the work can be skipped.
    any_multiplicative: bool,
    /// For each changepoint, the first observation at or after it (`t` is ascending).
    changepoint_start: Vec<usize>,
    // Scratch space, reused across evaluations.
    trend: Vec<f64>,
    additive_part: Vec<f64>,
    multiplicative_part: Vec<f64>,
    weights: Vec<f64>,
    /// ∂f/∂trend_i.
    weights_trend: Vec<f64>,
    suffix_weight: Vec<f64>,
    suffix_weighted_time: Vec<f64>,
    /// The mean as a linear form, when no column is multiplicative: each evaluation then
    /// costs O(P²) instead of O(T·P).
    linear: Option<LinearMean>,
}

/// Without multiplicative columns, `mu = Z θ` is linear in `θ = (k, m, δ, β)` (log σ left
/// out), so `Σ r² = ‖r₀‖² − 2 c·d + d·G d` with `G = Z'Z`, `d = θ − θ₀`, `r₀ = y − Z θ₀` and
/// `c = Z' r₀`, all computed once. The anchor `θ₀` is a ridge solution near the optimum, so
/// the three terms stay small where the fit ends and subtracting them loses no precision.
#[derive(Debug, Clone)]
struct LinearMean {
    /// `Z'Z`, `P x P`, row-major.
    gram: Vec<f64>,
    /// `Z' r₀`.
    correlation: Vec<f64>,
    /// `‖r₀‖²`.
    anchor_rss: f64,
    anchor: Vec<f64>,
    // Scratch: `d` and `G d`.
    difference: Vec<f64>,
    product: Vec<f64>,
}

impl LinearMean {
    /// Builds the form for `objective`'s data (its `linear` still `None`).
    fn new(objective: &ProphetObjective) -> Self {
        let rows = objective.rows();
        let size = objective.dimension() - 1;
        let mut gram = vec![0.0; size * size];
        let mut moment = vec![0.0; size];
        let mut row = vec![0.0; size];
        for i in 0..rows {
            objective.design_row(i, &mut row);
            let y = objective.y[i];
            for a in 0..size {
                let za = row[a];
                if za == 0.0 {
                    continue;
                }
                moment[a] += za * y;
                let target = &mut gram[a * size..(a + 1) * size];
                for b in a..size {
                    target[b] += za * row[b];
                }
            }
        }
        for a in 0..size {
            for b in 0..a {
                gram[a * size + b] = gram[b * size + a];
            }
        }
        let anchor = objective.ridge_anchor(&gram, &moment);
        let mut correlation = vec![0.0; size];
        let mut anchor_rss = 0.0;
        for i in 0..rows {
            objective.design_row(i, &mut row);
            let fitted = dot(&row, &anchor);
            let residual = objective.y[i] - fitted;
            anchor_rss += residual * residual;
            for (slot, z) in correlation.iter_mut().zip(&row) {
                *slot += z * residual;
            }
        }
        Self {
            gram,
            correlation,
            anchor_rss,
            anchor,
            difference: vec![0.0; size],
            product: vec![0.0; size],
        }
    }
}

impl ProphetObjective {
    /// Checks `data` and prepares it; fails on logistic growth and inconsistent shapes.
    pub fn new(data: &Data) -> Result<Self, ObjectiveError> {
        let flat = match data.trend_indicator {
            TrendIndicator::Linear => false,
            TrendIndicator::Flat => true,
            TrendIndicator::Logistic => return Err(ObjectiveError::LogisticTrend),
        };
        let rows = usize::try_from(data.T).unwrap_or(0);
        let columns = usize::try_from(data.K).unwrap_or(0);
        let changepoints = usize::try_from(data.S).unwrap_or(0);
        let shape = |what: &str| ObjectiveError::Shape(what.to_string());
        if rows == 0 || data.y.len() != rows || data.t.len() != rows {
            return Err(shape("y and t must have T > 0 values"));
        }
        if data.X.len() != rows * columns {
            return Err(shape("X must have T x K values"));
        }
        if data.s_a.len() != columns || data.s_m.len() != columns || data.sigmas.len() != columns {
            return Err(shape("s_a, s_m and sigmas must have K values"));
        }
        if data.t_change.len() != changepoints {
            return Err(shape("t_change must have S values"));
        }
        if data.t.windows(2).any(|pair| pair[0] > pair[1]) {
            return Err(shape("t must be ascending"));
        }
        if data
            .y
            .iter()
            .chain(&data.t)
            .chain(&data.X)
            .any(|value| !value.is_finite())
        {
            return Err(shape("y, t and X must be finite"));
        }
        let changepoint_start = data
            .t_change
            .iter()
            .map(|&change| data.t.partition_point(|&time| time < change))
            .collect();
        let additive: Vec<f64> = data.s_a.iter().map(|&flag| f64::from(flag)).collect();
        let multiplicative: Vec<f64> = data.s_m.iter().map(|&flag| f64::from(flag)).collect();
        Ok(Self {
            y: data.y.clone(),
            t: data.t.clone(),
            t_change: data.t_change.clone(),
            x: data.X.clone(),
            any_multiplicative: multiplicative.iter().any(|&flag| flag != 0.0),
            additive,
            multiplicative,
            beta_precision: data
                .sigmas
                .iter()
                .map(|&sigma| 1.0 / (*sigma * *sigma))
                .collect(),
            inverse_tau: 1.0 / *data.tau,
            flat,
            changepoint_start,
            trend: vec![0.0; rows],
            additive_part: vec![0.0; rows],
            multiplicative_part: vec![0.0; rows],
            weights: vec![0.0; rows],
            weights_trend: vec![0.0; rows],
            suffix_weight: vec![0.0; rows + 1],
            suffix_weighted_time: vec![0.0; rows + 1],
            linear: None,
        })
        .map(|mut objective| {
            if !objective.any_multiplicative {
                objective.linear = Some(LinearMean::new(&objective));
            }
            objective
        })
    }

    /// Row `i` of the mean's design `Z` over `(k, m, δ, β)` (additive columns only).
    fn design_row(&self, i: usize, row: &mut [f64]) {
        let changepoints = self.t_change.len();
        let time = self.t[i];
        row[0] = if self.flat { 0.0 } else { time };
        row[1] = 1.0;
        for j in 0..changepoints {
            row[2 + j] = if !self.flat && self.changepoint_start[j] <= i {
                time - self.t_change[j]
            } else {
                0.0
            };
        }
        let columns = self.columns();
        for j in 0..columns {
            row[2 + changepoints + j] = self.x[i * columns + j] * self.additive[j];
        }
    }

    /// A ridge solution of the mean's parameters: `(G + s² Λ) θ = Z'y`, with `Λ` the priors'
    /// curvature (the Laplace prior of δ taken as a normal of the same scale) and `s²` the
    /// residual variance of a first solve. Zero where the system cannot be solved.
    fn ridge_anchor(&self, gram: &[f64], moment: &[f64]) -> Vec<f64> {
        let size = moment.len();
        let changepoints = self.t_change.len();
        let mut curvature = vec![1.0 / 25.0; size];
        for slot in &mut curvature[2..2 + changepoints] {
            *slot = 2.0 * self.inverse_tau * self.inverse_tau;
        }
        curvature[2 + changepoints..].copy_from_slice(&self.beta_precision);
        let solve = |variance: f64| {
            let mut matrix = gram.to_vec();
            for a in 0..size {
                matrix[a * size + a] += variance * curvature[a] + 1e-12;
            }
            cholesky_solve(&mut matrix, moment, size)
        };
        let Some(first) = solve(1e-2) else {
            return vec![0.0; size];
        };
        // Σ r² = y'y − 2 θ'b + θ'Gθ only sets the variance's scale here.
        let mut row = vec![0.0; size];
        let mut rss = 0.0;
        for i in 0..self.rows() {
            self.design_row(i, &mut row);
            let fitted = dot(&row, &first);
            rss += (self.y[i] - fitted).powi(2);
        }
        let variance = (rss / self.rows() as f64).max(1e-8);
        solve(variance).unwrap_or(first)
    }

    /// Number of unconstrained parameters: `2 + S + 1 + K`.
    pub fn dimension(&self) -> usize {
        3 + self.t_change.len() + self.beta_precision.len()
    }

    fn rows(&self) -> usize {
        self.y.len()
    }

    fn columns(&self) -> usize {
        self.beta_precision.len()
    }

    /// Index of `log(sigma_obs)` in the parameter vector.
    pub fn sigma_index(&self) -> usize {
        2 + self.t_change.len()
    }

    /// The trend at every observation for parameters `k, m, delta`.
    pub fn trend(&self, k: f64, m: f64, delta: &[f64]) -> Vec<f64> {
        let mut trend = vec![0.0; self.rows()];
        self.fill_trend(k, m, delta, &mut trend);
        trend
    }

    fn fill_trend(&self, k: f64, m: f64, delta: &[f64], trend: &mut [f64]) {
        if self.flat {
            trend.fill(m);
            return;
        }
        // Walk the ascending times, switching each changepoint on as it is passed:
        // trend_i = (k + Σ δ_j) t_i + (m − Σ δ_j c_j) over the changepoints passed.
        let mut slope = k;
        let mut offset = m;
        let mut next_change = 0;
        for (i, (value, &time)) in trend.iter_mut().zip(&self.t).enumerate() {
            while next_change < delta.len() && self.changepoint_start[next_change] <= i {
                slope += delta[next_change];
                offset -= delta[next_change] * self.t_change[next_change];
                next_change += 1;
            }
            *value = slope * time + offset;
        }
    }

    /// The model's fitted values `mu` (scaled, as `y`) at unconstrained parameters `params`.
    pub fn fitted_values(&self, params: &[f64]) -> Vec<f64> {
        let changepoints = self.t_change.len();
        let columns = self.columns();
        let beta = &params[3 + changepoints..];
        let trend = self.trend(params[0], params[1], &params[2..2 + changepoints]);
        self.x
            .chunks_exact(columns.max(1))
            .zip(&trend)
            .map(|(row, trend_value)| {
                let mut additive = 0.0;
                let mut multiplicative = 0.0;
                for (j, value) in row.iter().enumerate().take(columns) {
                    additive += value * self.additive[j] * beta[j];
                    multiplicative += value * self.multiplicative[j] * beta[j];
                }
                additive + trend_value * (1.0 + multiplicative)
            })
            .collect()
    }

    /// The objective at `params`, writing its gradient into `gradient`.
    /// Returns `None` when the value or gradient is not finite (Stan's evaluation failure).
    pub fn value_and_gradient(&mut self, params: &[f64], gradient: &mut [f64]) -> Option<f64> {
        debug_assert_eq!(params.len(), self.dimension());
        debug_assert_eq!(gradient.len(), self.dimension());
        let rows = self.rows();
        let columns = self.columns();
        let changepoints = self.t_change.len();
        let k = params[0];
        let m = params[1];
        let delta = &params[2..2 + changepoints];
        let log_sigma = params[2 + changepoints];
        let beta = &params[3 + changepoints..];
        let sigma = log_sigma.exp();
        if let Some(linear) = &mut self.linear {
            return linear_value_and_gradient(
                linear,
                params,
                gradient,
                LinearPriors {
                    rows,
                    changepoints,
                    inverse_tau: self.inverse_tau,
                    beta_precision: &self.beta_precision,
                },
            );
        }

        let mut trend = std::mem::take(&mut self.trend);
        self.fill_trend(k, m, delta, &mut trend);

        // Seasonal parts: X·(s_a ⊙ β) and X·(s_m ⊙ β).
        for (i, row) in self.x.chunks_exact(columns.max(1)).take(rows).enumerate() {
            let mut additive = 0.0;
            let mut multiplicative = 0.0;
            for (j, &value) in row.iter().enumerate().take(columns) {
                additive += value * self.additive[j] * beta[j];
                if self.any_multiplicative {
                    multiplicative += value * self.multiplicative[j] * beta[j];
                }
            }
            self.additive_part[i] = additive;
            self.multiplicative_part[i] = multiplicative;
        }

        // Likelihood; `weights` becomes ∂f/∂mu_i = −r_i / σ².
        let inverse_variance = 1.0 / (sigma * sigma);
        let mut squared_residuals = 0.0;
        for (i, &trend_value) in trend.iter().enumerate() {
            let mu = self.additive_part[i] + trend_value * (1.0 + self.multiplicative_part[i]);
            let residual = self.y[i] - mu;
            squared_residuals += residual * residual;
            self.weights[i] = -residual * inverse_variance;
        }

        let mut value = (k * k + m * m) / 50.0
            + 2.0 * sigma * sigma
            + rows as f64 * log_sigma
            + 0.5 * squared_residuals * inverse_variance;
        for &change in delta {
            value += change.abs() * self.inverse_tau;
        }
        for (coefficient, precision) in beta.iter().zip(&self.beta_precision) {
            value += 0.5 * coefficient * coefficient * precision;
        }

        // Trend parameters: ∂f/∂trend_i = weight_i (1 + multiplicative_i).
        let mut gradient_k = k / 25.0;
        let mut gradient_m = m / 25.0;
        for i in 0..rows {
            self.weights_trend[i] = self.weights[i] * (1.0 + self.multiplicative_part[i]);
        }
        if self.flat {
            gradient_m += self.weights_trend.iter().sum::<f64>();
            for (j, &change) in delta.iter().enumerate() {
                gradient[2 + j] = sign(change) * self.inverse_tau;
            }
        } else {
            // Suffix sums over observations: Σ_{i ≥ start_j} w_i (t_i − c_j) for each
            // changepoint j in O(T + S); index `rows` holds the empty sum.
            self.suffix_weight[rows] = 0.0;
            self.suffix_weighted_time[rows] = 0.0;
            for i in (0..rows).rev() {
                let weight = self.weights_trend[i];
                self.suffix_weight[i] = self.suffix_weight[i + 1] + weight;
                self.suffix_weighted_time[i] =
                    self.suffix_weighted_time[i + 1] + weight * self.t[i];
            }
            for (j, &change) in delta.iter().enumerate() {
                let start = self.changepoint_start[j];
                gradient[2 + j] = self.suffix_weighted_time[start]
                    - self.t_change[j] * self.suffix_weight[start]
                    + sign(change) * self.inverse_tau;
            }
            gradient_k += self.suffix_weighted_time[0];
            gradient_m += self.suffix_weight[0];
        }
        gradient[0] = gradient_k;
        gradient[1] = gradient_m;

        // log σ: d/du [T u + Σr²/2 e^{−2u} + 2 e^{2u}].
        gradient[2 + changepoints] =
            rows as f64 - squared_residuals * inverse_variance + 4.0 * sigma * sigma;

        // β: ∂f/∂β_j = β_j/s_j² + Σ_i w_i X_ij (s_a,j + trend_i s_m,j).
        let beta_gradient = &mut gradient[3 + changepoints..];
        for (j, slot) in beta_gradient.iter_mut().enumerate() {
            *slot = beta[j] * self.beta_precision[j];
        }
        for (i, row) in self.x.chunks_exact(columns.max(1)).take(rows).enumerate() {
            let weight = self.weights[i];
            let trend_weight = weight * trend[i];
            for (j, &value) in row.iter().enumerate().take(columns) {
                beta_gradient[j] +=
                    value * (weight * self.additive[j] + trend_weight * self.multiplicative[j]);
            }
        }
        self.trend = trend;

        (value.is_finite() && gradient.iter().all(|slot| slot.is_finite())).then_some(value)
    }
}

/// What the linear path needs besides the form.
struct LinearPriors<'a> {
    rows: usize,
    changepoints: usize,
    inverse_tau: f64,
    beta_precision: &'a [f64],
}

/// The objective and its gradient through the mean's linear form (same formula as
/// [`ProphetObjective::value_and_gradient`]'s general path).
fn linear_value_and_gradient(
    linear: &mut LinearMean,
    params: &[f64],
    gradient: &mut [f64],
    priors: LinearPriors<'_>,
) -> Option<f64> {
    let LinearPriors {
        rows,
        changepoints,
        inverse_tau,
        beta_precision,
    } = priors;
    let sigma_index = 2 + changepoints;
    let size = linear.anchor.len();
    // θ without log σ, minus the anchor.
    for a in 0..size {
        let param = if a < sigma_index {
            params[a]
        } else {
            params[a + 1]
        };
        linear.difference[a] = param - linear.anchor[a];
    }
    let mut cross = 0.0;
    let mut quadratic = 0.0;
    for a in 0..size {
        let row = &linear.gram[a * size..(a + 1) * size];
        let product = dot(row, &linear.difference);
        linear.product[a] = product;
        cross += linear.correlation[a] * linear.difference[a];
        quadratic += linear.difference[a] * product;
    }
    let squared_residuals = (linear.anchor_rss - 2.0 * cross + quadratic).max(0.0);

    let log_sigma = params[sigma_index];
    let sigma = log_sigma.exp();
    let inverse_variance = 1.0 / (sigma * sigma);
    let (k, m) = (params[0], params[1]);
    let delta = &params[2..sigma_index];
    let beta = &params[sigma_index + 1..];
    let mut value = (k * k + m * m) / 50.0
        + 2.0 * sigma * sigma
        + rows as f64 * log_sigma
        + 0.5 * squared_residuals * inverse_variance;
    for &change in delta {
        value += change.abs() * inverse_tau;
    }
    for (coefficient, precision) in beta.iter().zip(beta_precision) {
        value += 0.5 * coefficient * coefficient * precision;
    }
    // ∂(Σr²/2σ²)/∂θ = (G d − c) / σ².
    let likelihood = |a: usize| (linear.product[a] - linear.correlation[a]) * inverse_variance;
    gradient[0] = k / 25.0 + likelihood(0);
    gradient[1] = m / 25.0 + likelihood(1);
    for (j, &change) in delta.iter().enumerate() {
        gradient[2 + j] = likelihood(2 + j) + sign(change) * inverse_tau;
    }
    gradient[sigma_index] =
        rows as f64 - squared_residuals * inverse_variance + 4.0 * sigma * sigma;
    for (j, (&coefficient, &precision)) in beta.iter().zip(beta_precision).enumerate() {
        gradient[sigma_index + 1 + j] = coefficient * precision + likelihood(sigma_index + j);
    }
    (value.is_finite() && gradient.iter().all(|slot| slot.is_finite())).then_some(value)
}

/// Solves `A x = b` for a symmetric positive definite `A` (`size x size`, row-major,
/// overwritten by its Cholesky factor); `None` if `A` is not positive definite.
fn cholesky_solve(matrix: &mut [f64], rhs: &[f64], size: usize) -> Option<Vec<f64>> {
    for j in 0..size {
        let mut diagonal = matrix[j * size + j];
        for k in 0..j {
            diagonal -= matrix[j * size + k] * matrix[j * size + k];
        }
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return None;
        }
        let diagonal = diagonal.sqrt();
        matrix[j * size + j] = diagonal;
        for i in j + 1..size {
            let mut value = matrix[i * size + j];
            for k in 0..j {
                value -= matrix[i * size + k] * matrix[j * size + k];
            }
            matrix[i * size + j] = value / diagonal;
        }
    }
    let mut x = rhs.to_vec();
    for i in 0..size {
        for k in 0..i {
            x[i] -= matrix[i * size + k] * x[k];
        }
        x[i] /= matrix[i * size + i];
    }
    for i in (0..size).rev() {
        for k in i + 1..size {
            x[i] -= matrix[k * size + i] * x[k];
        }
        x[i] /= matrix[i * size + i];
    }
    Some(x)
}

/// Stan's `sign`: 0 at 0, as its double-exponential density differentiates `|δ|`.
fn sign(value: f64) -> f64 {
    if value > 0.0 {
        1.0
    } else if value < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The dot product of `a` and `b` (the shorter's length), summed in eight lanes: a single
/// running sum is a chain of dependent additions the compiler may not reorder, so it neither
/// vectorizes nor pipelines; eight independent ones do both (an evaluation's `G d`). L-BFGS
/// keeps its own sequential `dot`: Stan's fixtures pin its rounding (BENCHMARKS.md).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 8;
    let length = a.len().min(b.len());
    let (a, b) = (&a[..length], &b[..length]);
    let mut lanes = [0.0; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f64>() + tail
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use augurs_prophet::PositiveFloat;

    /// A small deterministic problem: T rows, S changepoints, K columns (the last ones
    /// multiplicative when `multiplicative` is set).
    pub(crate) fn problem(
        rows: usize,
        changepoints: usize,
        columns: usize,
        multiplicative: usize,
    ) -> Data {
        let mut state = 12345u64;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let t: Vec<f64> = (0..rows).map(|i| i as f64 / (rows - 1) as f64).collect();
        let x: Vec<f64> = (0..rows * columns).map(|_| uniform() * 2.0 - 1.0).collect();
        let y: Vec<f64> = t
            .iter()
            .map(|time| 0.4 + 0.2 * time + 0.1 * uniform())
            .collect();
        let positive = |value: f64| PositiveFloat::try_new(value).unwrap();
        Data {
            T: rows as i32,
            y,
            t,
            cap: vec![0.0; rows],
            S: changepoints as i32,
            t_change: (0..changepoints)
                .map(|j| (j as f64 + 0.5) / (changepoints as f64 + 1.0) * 0.8)
                .collect(),
            trend_indicator: TrendIndicator::Linear,
            K: columns as i32,
            s_a: (0..columns)
                .map(|j| i32::from(j < columns - multiplicative))
                .collect(),
            s_m: (0..columns)
                .map(|j| i32::from(j >= columns - multiplicative))
                .collect(),
            X: x,
            sigmas: (0..columns).map(|j| positive(1.0 + j as f64)).collect(),
            tau: positive(0.05),
        }
    }

    fn point(objective: &ProphetObjective) -> Vec<f64> {
        (0..objective.dimension())
            .map(|i| 0.1 * ((i as f64 * 1.7).sin() + 0.3))
            .collect()
    }

    fn check_gradient(data: &Data) {
        let mut objective = ProphetObjective::new(data).unwrap();
        let x = point(&objective);
        let mut gradient = vec![0.0; x.len()];
        objective.value_and_gradient(&x, &mut gradient).unwrap();
        let mut scratch = vec![0.0; x.len()];
        for i in 0..x.len() {
            let step = 1e-6;
            let mut plus = x.clone();
            plus[i] += step;
            let mut minus = x.clone();
            minus[i] -= step;
            let numeric = (objective.value_and_gradient(&plus, &mut scratch).unwrap()
                - objective.value_and_gradient(&minus, &mut scratch).unwrap())
                / (2.0 * step);
            let tolerance = 1e-5 * (1.0 + numeric.abs());
            assert!(
                (numeric - gradient[i]).abs() < tolerance,
                "parameter {i}: analytic {} numeric {numeric}",
                gradient[i]
            );
        }
    }

    #[test]
    fn gradient_matches_finite_differences_additive() {
        check_gradient(&problem(60, 8, 6, 0));
    }

    /// The quadratic form and the walk over the rows give the same value and gradient, for
    /// linear and flat trends, at points near and far from the anchor.
    #[test]
    fn the_linear_form_agrees_with_the_walk_over_the_rows() {
        for trend in [TrendIndicator::Linear, TrendIndicator::Flat] {
            let mut data = problem(200, 10, 8, 0);
            data.trend_indicator = trend;
            let mut linear = ProphetObjective::new(&data).unwrap();
            assert!(linear.linear.is_some());
            let mut walking = linear.clone();
            walking.linear = None;
            let dimension = linear.dimension();
            for scale in [0.0, 0.01, 0.3, 3.0] {
                let point: Vec<f64> = (0..dimension)
                    .map(|index| scale * ((index as f64 * 0.7).sin() + 0.2))
                    .collect();
                let (mut fast, mut slow) = (vec![0.0; dimension], vec![0.0; dimension]);
                let a = linear.value_and_gradient(&point, &mut fast).unwrap();
                let b = walking.value_and_gradient(&point, &mut slow).unwrap();
                assert!(
                    (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
                    "{trend:?} {scale}: {a} vs {b}"
                );
                for (index, (x, y)) in fast.iter().zip(&slow).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-7 * (1.0 + y.abs()),
                        "{trend:?} {scale}: gradient[{index}] {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences_with_multiplicative_columns() {
        check_gradient(&problem(50, 5, 7, 3));
    }

    #[test]
    fn gradient_matches_finite_differences_flat_trend() {
        let mut data = problem(40, 4, 5, 1);
        data.trend_indicator = TrendIndicator::Flat;
        check_gradient(&data);
    }

    #[test]
    fn trend_matches_the_direct_formula() {
        let data = problem(30, 6, 2, 0);
        let objective = ProphetObjective::new(&data).unwrap();
        let delta: Vec<f64> = (0..6).map(|j| 0.1 * j as f64 - 0.2).collect();
        let trend = objective.trend(0.3, 0.7, &delta);
        for (i, &time) in data.t.iter().enumerate() {
            let direct: f64 = 0.3 * time
                + 0.7
                + data
                    .t_change
                    .iter()
                    .zip(&delta)
                    .filter(|(change, _)| time >= **change)
                    .map(|(change, d)| d * (time - change))
                    .sum::<f64>();
            assert!((trend[i] - direct).abs() < 1e-12, "row {i}");
        }
    }

    #[test]
    fn value_is_the_documented_formula() {
        // One row, no changepoints, one additive column: every term by hand.
        let positive = |value: f64| PositiveFloat::try_new(value).unwrap();
        let data = Data {
            T: 1,
            y: vec![2.0],
            t: vec![0.5],
            cap: vec![0.0],
            S: 0,
            t_change: vec![],
            trend_indicator: TrendIndicator::Linear,
            K: 1,
            s_a: vec![1],
            s_m: vec![0],
            X: vec![3.0],
            sigmas: vec![positive(2.0)],
            tau: positive(0.5),
        };
        let mut objective = ProphetObjective::new(&data).unwrap();
        let (k, m, sigma, beta) = (1.0f64, 0.5f64, 0.8f64, 0.25f64);
        let mut gradient = vec![0.0; 4];
        let value = objective
            .value_and_gradient(&[k, m, sigma.ln(), beta], &mut gradient)
            .unwrap();
        let mu = 3.0 * beta + (k * 0.5 + m);
        let expected = k * k / 50.0
            + m * m / 50.0
            + 2.0 * sigma * sigma
            + beta * beta / 8.0
            + sigma.ln()
            + (2.0 - mu).powi(2) / (2.0 * sigma * sigma);
        assert!((value - expected).abs() < 1e-12, "{value} vs {expected}");
    }

    #[test]
    fn logistic_growth_is_refused_clearly() {
        let mut data = problem(10, 1, 1, 0);
        data.trend_indicator = TrendIndicator::Logistic;
        let error = ProphetObjective::new(&data).unwrap_err().to_string();
        assert!(error.contains("logistic"), "{error}");
    }

    #[test]
    fn inconsistent_shapes_are_refused() {
        let mut data = problem(10, 1, 2, 0);
        data.X.pop();
        assert!(ProphetObjective::new(&data).is_err());
    }
}
