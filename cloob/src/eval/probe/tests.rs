//! The probe's objective against finite differences, a closed-form optimum, separable data and the grid.

use super::*;
use ndarray::array;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Three well separated blobs in 2-D: class k around `centres[k]`.
fn blobs(n_per: usize, seed: u64) -> (Array2<f64>, Vec<usize>) {
    let centres = [[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Array2::zeros((3 * n_per, 2));
    let mut labels = Vec::new();
    for (k, c) in centres.iter().enumerate() {
        for i in 0..n_per {
            let r = k * n_per + i;
            x[[r, 0]] = c[0] + rng.gen_range(-1.0..1.0);
            x[[r, 1]] = c[1] + rng.gen_range(-1.0..1.0);
            labels.push(k);
        }
    }
    (x, labels)
}

#[test]
fn objective_gradient_matches_finite_differences() {
    let (x, labels) = blobs(3, 1);
    let mut rng = StdRng::seed_from_u64(2);
    let theta: Vec<f64> = (0..9).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let (_, grad) = objective(&x, &labels, 3, 0.7, &theta);
    for i in 0..theta.len() {
        let at = |h: f64| {
            let mut t = theta.clone();
            t[i] += h;
            objective(&x, &labels, 3, 0.7, &t).0
        };
        let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
        assert!((fd - grad[i]).abs() < 1e-8, "θ[{i}]: {fd} vs {}", grad[i]);
    }
}

#[test]
fn symmetric_two_point_problem_has_its_closed_form_optimum() {
    // x = ±1 with classes 0/1: by symmetry W = [w, −w], b = 0, and scikit-learn's objective
    // w² + 2C ln(1 + e^{−2w}) is stationary at w = 2C σ(−2w).
    let x = array![[1.0], [-1.0]];
    for c in [0.1, 1.0, 10.0] {
        let m = LogisticRegression::fit(x.view(), &[0, 1], 2, &LogisticConfig { c, tol: 1e-12, ..Default::default() })
            .unwrap();
        let (mut lo, mut hi) = (0.0, 2.0 * c);
        for _ in 0..200 {
            let w = 0.5 * (lo + hi);
            if w < 2.0 * c / (1.0 + (2.0 * w).exp()) {
                lo = w
            } else {
                hi = w
            }
        }
        let w = m.weights[[0, 0]];
        assert!((w - lo).abs() < 1e-8 && (m.weights[[1, 0]] + lo).abs() < 1e-8, "C={c}: w={w}, expected {lo}");
        assert!(m.bias.iter().all(|b| b.abs() < 1e-8));
    }
}

#[test]
fn separable_blobs_are_classified_exactly_and_deterministically() {
    let (x, labels) = blobs(20, 3);
    let (xt, lt) = blobs(10, 4);
    let cfg = LogisticConfig::default();
    let m = LogisticRegression::fit(x.view(), &labels, 3, &cfg).unwrap();
    assert_eq!(m.accuracy(x.view(), &labels).unwrap(), 1.0);
    assert_eq!(m.accuracy(xt.view(), &lt).unwrap(), 1.0);
    assert!(m.iterations < cfg.max_iter, "converged in {} iterations", m.iterations);
    let again = LogisticRegression::fit(x.view(), &labels, 3, &cfg).unwrap();
    assert_eq!(again.weights, m.weights);
    // f32 features give the same model up to rounding of the inputs.
    let m32 = LogisticRegression::fit(x.mapv(|v| v as f32).view(), &labels, 3, &cfg).unwrap();
    assert!((&m32.weights - &m.weights).iter().all(|d| d.abs() < 1e-4));
}

#[test]
fn the_probe_picks_c_on_validation_and_stronger_regularisation_shrinks_weights() {
    let (tr, ltr) = blobs(15, 5);
    let (va, lva) = blobs(5, 6);
    let (te, lte) = blobs(10, 7);
    let cfg = ProbeConfig { grid: log_grid(-4, 2, 1), ..Default::default() };
    let p = linear_probe((tr.view(), &ltr), (va.view(), &lva), (te.view(), &lte), 3, &cfg).unwrap();
    assert_eq!(p.val_accuracy.len(), 7);
    let best = p.val_accuracy.iter().cloned().fold(0.0, f64::max);
    let first_best = cfg.grid[p.val_accuracy.iter().position(|&a| a == best).unwrap()];
    assert_eq!(p.c, first_best);
    assert_eq!(p.test_accuracy, 1.0);
    let norm = |c: f64| {
        let m = LogisticRegression::fit(tr.view(), &ltr, 3, &LogisticConfig { c, ..Default::default() }).unwrap();
        m.weights.iter().map(|w| w * w).sum::<f64>().sqrt()
    };
    assert!(norm(1e-3) < norm(1.0) && norm(1.0) < norm(100.0));
}

#[test]
fn log_grid_and_errors() {
    let g = log_grid(-2, 1, 2);
    assert_eq!(g.len(), 7);
    assert!((g[0] - 0.01).abs() < 1e-18 && (g[6] - 10.0).abs() < 1e-12 && (g[1] - 0.1f64.sqrt() / 10.0).abs() < 1e-15);
    let x = array![[1.0], [2.0]];
    assert!(LogisticRegression::fit(x.view(), &[0, 2], 2, &LogisticConfig::default()).is_err());
    assert!(LogisticRegression::fit(x.view(), &[0], 2, &LogisticConfig::default()).is_err());
    assert!(LogisticRegression::fit(x.view(), &[0, 1], 2, &LogisticConfig { c: 0.0, ..Default::default() }).is_err());
}
