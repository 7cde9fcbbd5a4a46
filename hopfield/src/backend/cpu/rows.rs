//! Row reductions for the CPU backend's hot loops.
//!
//! A plain `iter().sum()` over floats is one dependent chain of additions (the compiler may not reorder
//! them), so it runs at one add per FP-latency. These helpers keep eight independent partial results,
//! which the compiler turns into vector registers; the order of additions is fixed, so results stay
//! deterministic (they differ from the sequential sum only by rounding).

use crate::element::Element;

const LANES: usize = 8;

/// Σ xᵢ.
#[inline]
pub(super) fn sum<E: Element>(xs: &[E]) -> E {
    let mut acc = [E::zero(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    chunks.remainder().iter().fold(fold_lanes(acc), |s, &v| s + v)
}

/// Σ xᵢ·yᵢ.
#[inline]
pub(super) fn dot<E: Element>(xs: &[E], ys: &[E]) -> E {
    debug_assert_eq!(xs.len(), ys.len());
    let mut acc = [E::zero(); LANES];
    let (mut cx, mut cy) = (xs.chunks_exact(LANES), ys.chunks_exact(LANES));
    for (a, b) in (&mut cx).zip(&mut cy) {
        for l in 0..LANES {
            acc[l] += a[l] * b[l];
        }
    }
    cx.remainder().iter().zip(cy.remainder()).fold(fold_lanes(acc), |s, (&a, &b)| s + a * b)
}

/// Σ (xᵢ − c)².
#[inline]
pub(super) fn sum_sq_dev<E: Element>(xs: &[E], c: E) -> E {
    let mut acc = [E::zero(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for ch in &mut chunks {
        for l in 0..LANES {
            let d = ch[l] - c;
            acc[l] += d * d;
        }
    }
    chunks.remainder().iter().fold(fold_lanes(acc), |s, &v| s + (v - c) * (v - c))
}

/// max xᵢ (−∞ for an empty row; a NaN anywhere may or may not propagate, callers check the result).
#[inline]
pub(super) fn max<E: Element>(xs: &[E]) -> E {
    let mut acc = [E::neg_infinity(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let m = acc.iter().fold(E::neg_infinity(), |m, &v| if v > m { v } else { m });
    chunks.remainder().iter().fold(m, |m, &v| if v > m { v } else { m })
}

#[inline]
fn fold_lanes<E: Element>(acc: [E; LANES]) -> E {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_sequential_loops() {
        for n in [0usize, 1, 7, 8, 9, 31, 64, 517] {
            let xs: Vec<f64> = (0..n).map(|i| ((i * 37 % 101) as f64 - 50.0) * 0.37).collect();
            let ys: Vec<f64> = (0..n).map(|i| ((i * 11 % 29) as f64 - 14.0) * 0.11).collect();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * (1.0 + b.abs());
            assert!(close(sum(&xs), xs.iter().sum()), "sum n={n}");
            assert!(close(dot(&xs, &ys), xs.iter().zip(&ys).map(|(a, b)| a * b).sum()), "dot n={n}");
            assert!(close(sum_sq_dev(&xs, 1.5), xs.iter().map(|v| (v - 1.5) * (v - 1.5)).sum()), "dev n={n}");
            let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(max(&xs), m, "max n={n}");
        }
    }
}
