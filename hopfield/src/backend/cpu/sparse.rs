//! Row normalisers other than softmax, on one row of biased scores `z` (masked entries `-inf`):
//! softmax₁, sparsemax and α-entmax, with their backward. Plain functions on slices, shared by the CPU
//! backend and by [`crate::energy`] (in f64).
//!
//! - softmax₁: `pᵢ = exp(zᵢ) / (1 + Σⱼ exp(zⱼ))` (Hu et al., ICML 2024). Its Jacobian is softmax's,
//!   `pᵢ(δᵢⱼ − pⱼ)`, so its backward is the softmax backward.
//! - α-entmax (Peters et al. 2019): `p = [(α−1)z − τ]₊^{1/(α−1)}` with τ such that `Σ p = 1`; α = 2 is
//!   sparsemax `[z − τ]₊` (Martins & Astudillo 2016); α = 2 and α = 1.5 are solved exactly by sorting, any
//!   other α by bisection on τ to the last bit, then normalised (the PyPI `entmax` package's `entmax_bisect`).
//!
//! A row whose every entry is masked gives zeros, and no gradient.

use super::rows;
use crate::element::Element;

/// softmax₁ of `z` in place: `exp(zᵢ − m) / (exp(−m) + Σ exp(zⱼ − m))` with `m = max(0, max z)`.
pub(crate) fn softmax1_row<E: Element>(z: &mut [E]) {
    let m = rows::max(z).max(E::zero());
    z.iter_mut().for_each(|v| *v -= m);
    E::exp_in_place(z);
    let inv = E::one() / ((-m).exp() + rows::sum(z));
    z.iter_mut().for_each(|v| *v *= inv);
}

/// α-entmax of `z` in place (`1 < α ≤ 2`); `scratch` is reused between rows.
pub(crate) fn entmax_row<E: Element>(z: &mut [E], alpha: E, scratch: &mut Vec<E>) {
    let max = rows::max(z);
    if max == E::neg_infinity() {
        z.fill(E::zero());
        return;
    }
    let one = E::one();
    if alpha == E::of(2.0) {
        // Sparsemax: sort the unmasked scores, the support is the longest prefix with 1 + k·z₍ₖ₎ > Σⱼ≤ₖ z₍ⱼ₎.
        scratch.clear();
        scratch.extend(z.iter().copied().filter(|v| *v > E::neg_infinity()));
        scratch.sort_unstable_by(|a, b| b.partial_cmp(a).expect("finite scores"));
        let (mut cum, mut tau_cum, mut k_sup) = (E::zero(), E::zero(), 0usize);
        for (k, &v) in scratch.iter().enumerate() {
            cum += v;
            if one + E::of((k + 1) as f64) * v > cum {
                (tau_cum, k_sup) = (cum, k + 1);
            }
        }
        let tau = (tau_cum - one) / E::of(k_sup as f64);
        z.iter_mut().for_each(|v| *v = (*v - tau).max(E::zero()));
        return;
    }
    if alpha == E::of(1.5) {
        entmax15_sorted(z, scratch);
        return;
    }
    entmax_bisect(z, alpha, max);
}

/// α-entmax of a row with at least one unmasked entry (maximum `max`) by bisection on τ.
fn entmax_bisect<E: Element>(z: &mut [E], alpha: E, max: E) {
    let one = E::one();
    let am1 = alpha - one;
    let inv = one / am1;
    let n = z.iter().filter(|v| **v > E::neg_infinity()).count();
    z.iter_mut().for_each(|v| *v *= am1);
    let xmax = max * am1;
    let power = |x: E| if inv == E::of(2.0) { x * x } else { x.powf(inv) };
    let mass = |z: &[E], tau: E| z.iter().map(|&x| if x > tau { power(x - tau) } else { E::zero() }).sum::<E>();
    // f(τ) = Σ [x − τ]₊^{1/(α−1)} − 1 is decreasing, ≥ 0 at max − 1 and ≤ 0 at max − n^{1−α}.
    let (mut lo, mut hi) = (xmax - one, xmax - E::of(n as f64).powf(-am1));
    for _ in 0..200 {
        let mid = (lo + hi) * E::of(0.5);
        if mid <= lo || mid >= hi {
            break;
        }
        if mass(z, mid) >= one {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    z.iter_mut().for_each(|v| *v = if *v > lo { power(*v - lo) } else { E::zero() });
    let total = rows::sum(z);
    let inv_total = E::one() / total;
    z.iter_mut().for_each(|v| *v *= inv_total);
}

/// entmax-1.5 exactly (Peters et al. 2019, Algorithm 2): with `x = z/2` sorted descending, the support is
/// the longest prefix `k` whose `τ_k = mean_k − √((1 − k·var_k)/k)` stays ≤ `x₍ₖ₎`; then `p = [x − τ]₊²`.
fn entmax15_sorted<E: Element>(z: &mut [E], scratch: &mut Vec<E>) {
    let (one, half) = (E::one(), E::of(0.5));
    scratch.clear();
    scratch.extend(z.iter().copied().filter(|v| *v > E::neg_infinity()).map(|v| v * half));
    scratch.sort_unstable_by(|a, b| b.partial_cmp(a).expect("finite scores"));
    // Running mean and sum of squared deviations (Welford): no cancellation in f32.
    let (mut mean, mut m2, mut tau) = (E::zero(), E::zero(), scratch[0] - one);
    for (k, &x) in scratch.iter().enumerate() {
        let n = E::of((k + 1) as f64);
        let delta = x - mean;
        mean += delta / n;
        m2 += delta * (x - mean);
        let t = mean - ((one - m2) / n).max(E::zero()).sqrt();
        if t <= x {
            tau = t;
        }
    }
    z.iter_mut().for_each(|v| {
        let d = *v * half - tau;
        *v = if d > E::zero() { d * d } else { E::zero() };
    });
}

/// Backward of [`entmax_row`] from its output `p`: writes `dz = β·(g ⊙ dp − g·(Σ g dp / Σ g))` with
/// `g = p^{2−α}` on the support, and returns `∂/∂α` of `Σ dp ⊙ p` (the entmax package's formula).
pub(crate) fn entmax_row_backward<E: Element>(p: &[E], dp: &[E], alpha: E, beta: E, dz: &mut [E]) -> E {
    let (one, zero) = (E::one(), E::zero());
    let sparse = alpha == E::of(2.0);
    let mut sg = zero;
    let mut sgd = zero;
    for ((o, &pi), &di) in dz.iter_mut().zip(p).zip(dp) {
        let g = if pi <= zero {
            zero
        } else if sparse {
            one
        } else {
            pi.powf(E::of(2.0) - alpha)
        };
        *o = g;
        sg += g;
        sgd += g * di;
    }
    if sg == zero {
        dz.fill(zero);
        return zero;
    }
    let q = sgd / sg;
    let (mut sdp, mut sds, mut ent) = (zero, zero, zero);
    for ((o, &pi), &di) in dz.iter_mut().zip(p).zip(dp) {
        let g = *o;
        *o = beta * g * (di - q);
        if pi > zero {
            let s = pi * pi.ln();
            sdp += di * pi;
            sds += di * s;
            ent += s;
        }
    }
    let am1 = alpha - one;
    (sdp - q) / (am1 * am1) - (sds - q * ent) / am1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entmax(z: &[f64], alpha: f64) -> Vec<f64> {
        let mut v = z.to_vec();
        entmax_row(&mut v, alpha, &mut Vec::new());
        v
    }

    #[test]
    fn sparsemax_and_entmax_sum_to_one_and_zero_masked_entries() {
        let ninf = f64::NEG_INFINITY;
        let z = [0.3, -1.2, 2.0, ninf, 1.9, 0.0];
        for alpha in [1.1, 1.3, 1.5, 1.8, 2.0] {
            let p = entmax(&z, alpha);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "α={alpha}: {p:?}");
            assert_eq!(p[3], 0.0);
            assert!(p.iter().all(|v| *v >= 0.0));
        }
        // sparsemax by hand: top two 2.0, 1.9 → τ = (3.9 − 1)/2 = 1.45; 0.3 < τ.
        let p = entmax(&z, 2.0);
        assert!((p[2] - 0.55).abs() < 1e-12 && (p[4] - 0.45).abs() < 1e-12 && p[0] == 0.0, "{p:?}");
        // a fully masked row gives zeros; softmax₁ of it too
        assert_eq!(entmax(&[ninf, ninf], 1.5), vec![0.0, 0.0]);
        let mut r = [ninf, ninf];
        softmax1_row(&mut r);
        assert_eq!(r, [0.0, 0.0]);
    }

    #[test]
    fn the_sorted_solutions_match_bisection() {
        let ninf = f64::NEG_INFINITY;
        for z in [vec![0.7, -0.4, 1.3, 0.2, 1.1], vec![3.0, -2.0, 0.1, ninf, 2.9, 0.0, 1.4], vec![0.5, 0.5, 0.5]] {
            for alpha in [1.5, 2.0] {
                let sorted = entmax(&z, alpha);
                let mut bisected = z.clone();
                let max = z.iter().cloned().fold(ninf, f64::max);
                entmax_bisect(&mut bisected, alpha, max);
                for (a, b) in sorted.iter().zip(&bisected) {
                    assert!((a - b).abs() < 1e-14, "α={alpha} {z:?}: {sorted:?} vs {bisected:?}");
                }
            }
        }
    }

    #[test]
    fn entmax_backward_matches_finite_differences_in_z_and_alpha() {
        let z = [0.75, -0.4, 1.3, 0.2, 1.1, f64::NEG_INFINITY]; // no score on a support edge
        let dp = [0.3, -1.0, 0.5, 2.0, -0.7, 1.0];
        let loss = |z: &[f64], a: f64| entmax(z, a).iter().zip(&dp).map(|(p, d)| p * d).sum::<f64>();
        for alpha in [1.25, 1.5, 1.7, 2.0] {
            let p = entmax(&z, alpha);
            let mut dz = vec![0.0; z.len()];
            let d_alpha = entmax_row_backward(&p, &dp, alpha, 1.0, &mut dz);
            let h = 1e-6;
            for i in 0..5 {
                let (mut zp, mut zm) = (z, z);
                zp[i] += h;
                zm[i] -= h;
                let fd = (loss(&zp, alpha) - loss(&zm, alpha)) / (2.0 * h);
                assert!((fd - dz[i]).abs() < 1e-6, "α={alpha} z[{i}]: fd {fd} vs {}", dz[i]);
            }
            assert_eq!(dz[5], 0.0);
            if alpha < 2.0 {
                let fd = (loss(&z, alpha + h) - loss(&z, alpha - h)) / (2.0 * h);
                assert!((fd - d_alpha).abs() < 1e-6, "α={alpha}: fd {fd} vs {d_alpha}");
            }
        }
    }
}
