//! L-BFGS (Nocedal & Wright, Alg. 7.4/7.5) with an Armijo backtracking line search: deterministic, and
//! enough for the smooth, strongly convex objective of the probe.

use super::LogisticConfig;
use std::collections::VecDeque;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimise `f` (value and gradient) from `theta` until the largest gradient entry is below `config.tol`,
/// `config.max_iter` iterations, or no further decrease. Returns the point and the iterations run.
pub(super) fn minimize(
    f: impl Fn(&[f64]) -> (f64, Vec<f64>),
    mut theta: Vec<f64>,
    config: &LogisticConfig,
) -> (Vec<f64>, usize) {
    let (mut value, mut grad) = f(&theta);
    let mut pairs: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
    let mut iterations = 0;
    while iterations < config.max_iter && grad.iter().fold(0.0f64, |m, g| m.max(g.abs())) > config.tol {
        iterations += 1;
        // Two-loop recursion: direction = −H·grad.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = pairs.back().map_or(1.0 / dot(&grad, &grad).sqrt().max(1.0), |(s, y, _)| dot(s, y) / dot(y, y));
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - beta) * si);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&grad, &dir);
        if slope >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            pairs.clear();
            dir = grad.iter().map(|g| -g).collect();
            slope = -dot(&grad, &grad);
        }
        // Armijo backtracking from the full step.
        let mut step = 1.0;
        let (next, next_value, next_grad) = loop {
            let cand: Vec<f64> = theta.iter().zip(&dir).map(|(t, d)| t + step * d).collect();
            let (v, g) = f(&cand);
            if v <= value + 1e-4 * step * slope || step < 1e-12 {
                break (cand, v, g);
            }
            step *= 0.5;
        };
        let s: Vec<f64> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        let converged = value - next_value <= 1e-15 * value.abs().max(1.0);
        (theta, value, grad) = (next, next_value, next_grad);
        if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            if pairs.len() == config.history {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        if converged {
            break;
        }
    }
    (theta, iterations)
}
