//! Geometry of embeddings on the unit sphere: Ajne's uniformity statistic (used by the CLOOB paper to
//! compare how uniformly CLIP and CLOOB spread their embeddings) and Wang & Isola's alignment and
//! uniformity losses (ICML 2020). Rows are L2-normalised first.
//!
//! **Ajne's statistic** on `S^{d−1}` (Ajne 1968; Prentice 1978 for the sphere, Mardia & Jupp,
//! *Directional Statistics*, §10.4/10.7): with `N(u)` the number of the `n` points in the hemisphere
//! centred at `u`,
//!
//! `A_n = (1/n) ∫ (N(u) − n/2)² dσ(u) = n/4 − (1/(π n)) Σ_{i<j} ψ_ij`,
//!
//! `σ` the uniform probability measure and `ψ_ij = arccos(x_i·x_j)` the angle between two points (the
//! closed form holds in every dimension, since two points fall in different halves of a random
//! hemisphere with probability `ψ_ij/π`). Under uniformity `E[A_n] = 1/4`; `n` identical points give
//! the maximum `n/4`; antipodally symmetric sets give `0` (every hemisphere holds exactly half).
//! Large values reject uniformity.

use super::unit_rows;
use hopfield::{Element, HopfieldError, Result};
use ndarray::ArrayView2;

/// Ajne's statistic `A_n = n/4 − (1/(π n)) Σ_{i<j} arccos(x_i·x_j)` of the normalised rows.
///
/// # Shapes
/// `x: [n ≥ 1, d]`.
pub fn ajne_statistic<E: Element>(x: ArrayView2<'_, E>) -> Result<f64> {
    let u = unit_rows("ajne_statistic", x)?;
    let n = u.nrows();
    let gram = u.dot(&u.t());
    let mut angles = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            angles += gram[[i, j]].clamp(-1.0, 1.0).acos();
        }
    }
    Ok(n as f64 / 4.0 - angles / (std::f64::consts::PI * n as f64))
}

/// Wang–Isola alignment `E‖x_i − y_i‖^α` over matching pairs of normalised rows (their default α = 2).
///
/// # Shapes
/// `x, y: [N ≥ 1, d]`.
pub fn alignment<E: Element>(x: ArrayView2<'_, E>, y: ArrayView2<'_, E>, alpha: f64) -> Result<f64> {
    if x.shape() != y.shape() {
        return Err(HopfieldError::shape("alignment(y)", format!("{:?} like x", x.shape()), y.shape()));
    }
    let (u, v) = (unit_rows("alignment(x)", x)?, unit_rows("alignment(y)", y)?);
    let sum: f64 =
        u.outer_iter().zip(v.outer_iter()).map(|(a, b)| (&a - &b).mapv(|d| d * d).sum().sqrt().powf(alpha)).sum();
    Ok(sum / u.nrows() as f64)
}

/// Wang–Isola uniformity `log mean_{i<j} exp(−t‖x_i − x_j‖²)` of the normalised rows (their default
/// t = 2; lower is more uniform).
///
/// # Shapes
/// `x: [N ≥ 2, d]`.
pub fn uniformity<E: Element>(x: ArrayView2<'_, E>, t: f64) -> Result<f64> {
    let u = unit_rows("uniformity", x)?;
    let n = u.nrows();
    if n < 2 {
        return Err(HopfieldError::shape("uniformity", "[N ≥ 2, d]", x.shape()));
    }
    let gram = u.dot(&u.t());
    // ‖x_i − x_j‖² = 2 − 2 x_i·x_j for unit rows; log-mean-exp shifted by the largest exponent.
    let exps: Vec<f64> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| -t * (2.0 - 2.0 * gram[[i, j]]).max(0.0))
        .collect();
    let max = exps.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    Ok(max + (exps.iter().map(|v| (v - max).exp()).sum::<f64>() / exps.len() as f64).ln())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn ajne_separates_antipodal_from_clustered_points() {
        // Antipodal pairs ±e_k (and ±(e_0+e_1)/√2): every hemisphere holds half, A = 0.
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let antipodal =
            array![[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, -1.0, 0.0], [h, h, 0.0], [-h, -h, 0.0]];
        assert!(ajne_statistic(antipodal.view()).unwrap().abs() < 1e-12);
        // Six copies of one direction: A = n/4.
        let clustered = Array2::from_shape_fn((6, 3), |(_, k)| if k == 2 { 3.0 } else { 0.0 });
        assert!((ajne_statistic(clustered.view()).unwrap() - 1.5).abs() < 1e-12);
        // Two orthogonal points: 2/4 − (π/2)/(2π) = 1/4.
        assert!((ajne_statistic(array![[1.0f32, 0.0], [0.0, 1.0]].view()).unwrap() - 0.25).abs() < 1e-7);
    }

    #[test]
    fn ajne_of_random_directions_is_near_its_expectation() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(0);
        // Uniform on S² via normalised Gaussians (Box–Muller); the mean of A over 200 sets is ≈ 1/4.
        let mut mean = 0.0;
        for _ in 0..200 {
            let x = Array2::from_shape_fn((20, 3), |_| {
                let (a, b): (f64, f64) = (rng.gen_range(1e-12..1.0), rng.gen_range(0.0..1.0));
                (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
            });
            mean += ajne_statistic(x.view()).unwrap() / 200.0;
        }
        assert!((mean - 0.25).abs() < 0.05, "{mean}");
    }

    #[test]
    fn wang_isola_on_hand_computed_sets() {
        let x = array![[1.0, 0.0], [0.0, 1.0]];
        let y = array![[0.0, 2.0], [0.0, 1.0]];
        // Pair 0: ‖e0 − e1‖² = 2, pair 1: 0.
        assert!((alignment(x.view(), y.view(), 2.0).unwrap() - 1.0).abs() < 1e-15);
        assert!((alignment(x.view(), y.view(), 1.0).unwrap() - f64::sqrt(2.0) / 2.0).abs() < 1e-15);
        // Antipodal pair: ‖·‖² = 4 → −2t; identical points: 0.
        assert!((uniformity(array![[1.0, 0.0], [-1.0, 0.0]].view(), 2.0).unwrap() + 8.0).abs() < 1e-12);
        assert!(uniformity(array![[1.0, 1.0], [2.0, 2.0]].view(), 2.0).unwrap().abs() < 1e-12);
        // Three points at 120°: every ‖·‖² = 3 → −3t.
        let s = f64::sqrt(3.0) / 2.0;
        assert!((uniformity(array![[1.0, 0.0], [-0.5, s], [-0.5, -s]].view(), 1.0).unwrap() + 3.0).abs() < 1e-12);
        assert!(uniformity(array![[1.0, 0.0]].view(), 2.0).is_err());
        assert!(alignment(x.view(), array![[1.0, 0.0]].view(), 2.0).is_err());
    }
}
