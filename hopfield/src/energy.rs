//! The energy of the modern Hopfield network (paper eq. 2) for the static retrieval case.

use crate::backend::Backend;
use crate::element::Element;
use crate::error::{HopfieldError, Result};

/// `E(ξ) = −lse(β, Xᵀξ) + ½ξᵀξ + β⁻¹ log N + ½M²` with
/// `lse(β, z) = β⁻¹ log Σᵢ exp(β zᵢ)` and `M = maxᵢ ‖xᵢ‖`, for every state pattern.
/// The update `ξ ← X softmax(β Xᵀ ξ)` never increases it.
///
/// # Shapes
/// `stored`: `[B, N, d]` (the patterns X of each sample), `state`: `[B, L, d]` → `B·L` energies, row-major.
pub fn energy<B: Backend>(backend: &B, stored: &B::Tensor, state: &B::Tensor, beta: f64) -> Result<Vec<f64>> {
    let (xs, qs) = (backend.shape(stored), backend.shape(state));
    if xs.len() != 3 || qs.len() != 3 || xs[0] != qs[0] || xs[2] != qs[2] || xs[1] == 0 {
        return Err(HopfieldError::shape(
            "energy",
            format!("stored [B, N, d] and state [B, L, d] (state {qs:?})"),
            &xs,
        ));
    }
    if !(beta > 0.0 && beta.is_finite()) {
        return Err(HopfieldError::config("beta", format!("must be positive and finite, got {beta}")));
    }
    let (b, n, d, l) = (xs[0], xs[1], xs[2], qs[1]);
    let x: Vec<f64> = backend.to_vec(stored).iter().map(|v| v.f64()).collect();
    let q: Vec<f64> = backend.to_vec(state).iter().map(|v| v.f64()).collect();
    let mut out = Vec::with_capacity(b * l);
    for bi in 0..b {
        let xb = &x[bi * n * d..(bi + 1) * n * d];
        let m2 = xb.chunks(d).map(|r| r.iter().map(|v| v * v).sum::<f64>()).fold(0.0, f64::max);
        for li in 0..l {
            let xi = &q[(bi * l + li) * d..(bi * l + li + 1) * d];
            let z: Vec<f64> = xb.chunks(d).map(|r| beta * r.iter().zip(xi).map(|(a, b)| a * b).sum::<f64>()).collect();
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = (max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln()) / beta;
            let half_sq = 0.5 * xi.iter().map(|v| v * v).sum::<f64>();
            out.push(-lse + half_sq + (n as f64).ln() / beta + 0.5 * m2);
        }
    }
    Ok(out)
}
