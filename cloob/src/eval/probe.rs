//! Linear probe: L2-regularised multinomial logistic regression on frozen features, with the inverse
//! regularisation strength `C` chosen on a validation split (CLIP's protocol, scikit-learn's objective).
//!
//! The objective is scikit-learn's `LogisticRegression(C)` with the lbfgs solver,
//! `½‖W‖² + C Σ_i CE(W x_i + b, y_i)` (intercept not penalised), divided by `C·N` for conditioning:
//! `f = mean_i CE_i + ‖W‖²/(2CN)`. It is minimised by L-BFGS with an Armijo backtracking line search
//! from zero weights, so a fit is deterministic.

use super::zeroshot::top_k_accuracy;
use hopfield::{Element, HopfieldError, Result};
use ndarray::{Array1, Array2, ArrayView2, Axis};

/// Solver settings of [`LogisticRegression::fit`].
#[derive(Clone, Debug, PartialEq)]
pub struct LogisticConfig {
    /// Inverse regularisation strength (scikit-learn's `C`).
    pub c: f64,
    /// L-BFGS iterations at most (scikit-learn's `max_iter`).
    pub max_iter: usize,
    /// Stop when the largest gradient entry falls below this.
    pub tol: f64,
    /// Correction pairs kept by L-BFGS.
    pub history: usize,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        LogisticConfig { c: 1.0, max_iter: 1000, tol: 1e-6, history: 10 }
    }
}

/// A fitted multinomial logistic regression.
///
/// # Shapes
/// `weights: [C, d]`, `bias: [C]`.
#[derive(Clone, Debug)]
pub struct LogisticRegression {
    /// Class weights.
    pub weights: Array2<f64>,
    /// Class intercepts.
    pub bias: Array1<f64>,
    /// Iterations the solver ran.
    pub iterations: usize,
}

/// Objective and gradient at the packed parameters `θ = [W (row-major), b]`.
fn objective(x: &Array2<f64>, labels: &[usize], classes: usize, c: f64, theta: &[f64]) -> (f64, Vec<f64>) {
    let (n, d) = x.dim();
    let w = ArrayView2::from_shape((classes, d), &theta[..classes * d]).expect("packed weights");
    let b = &theta[classes * d..];
    let mut p = x.dot(&w.t());
    let mut loss = 0.0;
    for (mut row, &y) in p.axis_iter_mut(Axis(0)).zip(labels) {
        row += &ndarray::aview1(b);
        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        loss += sum.ln() + max - (row[y].ln() + max);
        row /= sum;
        row[y] -= 1.0;
    }
    let reg = 1.0 / (c * n as f64);
    let dw = p.t().dot(x) / n as f64 + &w * reg;
    let db = p.sum_axis(Axis(0)) / n as f64;
    let value = loss / n as f64 + 0.5 * reg * w.iter().map(|v| v * v).sum::<f64>();
    (value, dw.iter().chain(db.iter()).copied().collect())
}

impl LogisticRegression {
    /// Fit on `features` with `labels` below `classes`.
    ///
    /// # Shapes
    /// `features: [N, d]`, `labels`: `N` indices below `classes`.
    pub fn fit<E: Element>(
        features: ArrayView2<'_, E>,
        labels: &[usize],
        classes: usize,
        config: &LogisticConfig,
    ) -> Result<Self> {
        let (n, d) = features.dim();
        if n == 0 || d == 0 || n != labels.len() || classes == 0 {
            return Err(HopfieldError::shape(
                "logistic_regression",
                format!("[N = {} labels, d > 0]", labels.len()),
                &[n, d],
            ));
        }
        if let Some(&l) = labels.iter().find(|&&l| l >= classes) {
            return Err(HopfieldError::input("logistic_regression", format!("label {l} is not below {classes}")));
        }
        if !(config.c > 0.0 && config.c.is_finite()) {
            return Err(HopfieldError::config("c", format!("logistic_regression: C = {} must be positive", config.c)));
        }
        if config.history == 0 {
            return Err(HopfieldError::config("history", "logistic_regression: L-BFGS needs at least one pair"));
        }
        let x = features.mapv(|v| v.f64());
        let f = |theta: &[f64]| objective(&x, labels, classes, config.c, theta);
        let (theta, iterations) = lbfgs::minimize(f, vec![0.0; classes * (d + 1)], config);
        let weights = Array2::from_shape_vec((classes, d), theta[..classes * d].to_vec()).expect("packed weights");
        Ok(LogisticRegression { weights, bias: Array1::from(theta[classes * d..].to_vec()), iterations })
    }

    /// Class scores `x Wᵀ + b`.
    ///
    /// # Shapes
    /// `features: [N, d]` → `[N, C]`.
    pub fn logits<E: Element>(&self, features: ArrayView2<'_, E>) -> Array2<f64> {
        features.mapv(|v| v.f64()).dot(&self.weights.t()) + &self.bias
    }

    /// Top-1 accuracy on `features` with `labels`.
    pub fn accuracy<E: Element>(&self, features: ArrayView2<'_, E>, labels: &[usize]) -> Result<f64> {
        if features.ncols() != self.weights.ncols() {
            return Err(HopfieldError::shape(
                "logistic_regression.accuracy",
                format!("[N, {}]", self.weights.ncols()),
                features.shape(),
            ));
        }
        top_k_accuracy(self.logits(features).view(), labels, 1)
    }
}

/// `10^e` for `e` from `lo` to `hi` in `per_decade` steps per decade (CLIP sweeps `10^-6 … 10^6`).
pub fn log_grid(lo: i32, hi: i32, per_decade: usize) -> Vec<f64> {
    let steps = ((hi - lo).max(0) as usize) * per_decade.max(1);
    (0..=steps).map(|i| 10f64.powf(lo as f64 + i as f64 / per_decade.max(1) as f64)).collect()
}

/// Settings of [`linear_probe`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Candidate values of `C`, tried in order; the first with the best validation accuracy wins.
    pub grid: Vec<f64>,
    /// Refit on train ∪ validation with the chosen `C` before scoring the test set.
    pub refit_on_train_and_val: bool,
    /// Solver settings (its `c` is overridden by the grid).
    pub solver: LogisticConfig,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig { grid: log_grid(-6, 6, 1), refit_on_train_and_val: true, solver: LogisticConfig::default() }
    }
}

/// The result of [`linear_probe`].
#[derive(Clone, Debug)]
pub struct LinearProbe {
    /// The chosen `C`.
    pub c: f64,
    /// Validation accuracy of each grid value, in grid order.
    pub val_accuracy: Vec<f64>,
    /// Test accuracy of the final model.
    pub test_accuracy: f64,
    /// The final model.
    pub model: LogisticRegression,
}

/// A labelled split of frozen features.
pub type Split<'a, E> = (ArrayView2<'a, E>, &'a [usize]);

/// Linear probe: fit on `train` for each `C` of the grid, keep the best on `val`, (optionally refit on
/// train ∪ val,) and score `test`.
///
/// # Shapes
/// Each split: features `[N_split, d]` with `N_split` labels below `classes`.
pub fn linear_probe<E: Element>(
    train: Split<'_, E>,
    val: Split<'_, E>,
    test: Split<'_, E>,
    classes: usize,
    config: &ProbeConfig,
) -> Result<LinearProbe> {
    if config.grid.is_empty() {
        return Err(HopfieldError::config("grid", "linear_probe: no value of C to try"));
    }
    let fit = |split: Split<'_, E>, c: f64| {
        LogisticRegression::fit(split.0, split.1, classes, &LogisticConfig { c, ..config.solver.clone() })
    };
    let mut val_accuracy = Vec::with_capacity(config.grid.len());
    for &c in &config.grid {
        val_accuracy.push(fit(train, c)?.accuracy(val.0, val.1)?);
    }
    let best = val_accuracy.iter().enumerate().fold(0, |b, (i, &a)| if a > val_accuracy[b] { i } else { b });
    let c = config.grid[best];
    let model = if config.refit_on_train_and_val {
        let features = ndarray::concatenate(Axis(0), &[train.0.view(), val.0.view()]).map_err(|_| {
            HopfieldError::shape("linear_probe(val)", format!("[N, {}] like train", train.0.ncols()), val.0.shape())
        })?;
        let labels: Vec<usize> = train.1.iter().chain(val.1).copied().collect();
        fit((features.view(), &labels), c)?
    } else {
        fit(train, c)?
    };
    let test_accuracy = model.accuracy(test.0, test.1)?;
    Ok(LinearProbe { c, val_accuracy, test_accuracy, model })
}

mod lbfgs;
#[cfg(test)]
mod tests;
