//! The energy of the modern Hopfield network (paper eq. 2) for the static retrieval case, and of the
//! sparse and outlier-efficient retrievals ([`Retrieval`]).

use crate::backend::cpu::sparse;
use crate::backend::Backend;
use crate::element::Element;
use crate::error::{HopfieldError, Result};
use crate::layers::Retrieval;

/// `E(ξ) = −lse(β, Xᵀξ) + ½ξᵀξ + β⁻¹ log N + ½M²` with
/// `lse(β, z) = β⁻¹ log Σᵢ exp(β zᵢ)` and `M = maxᵢ ‖xᵢ‖`, for every state pattern.
/// The update `ξ ← X softmax(β Xᵀ ξ)` never increases it.
///
/// # Shapes
/// `stored`: `[B, N, d]` (the patterns X of each sample), `state`: `[B, L, d]` → `B·L` energies, row-major.
pub fn energy<B: Backend>(backend: &B, stored: &B::Tensor, state: &B::Tensor, beta: f64) -> Result<Vec<f64>> {
    energy_of(backend, stored, state, beta, Retrieval::Softmax)
}

/// The energy whose CCCP update is `ξ ← X p(β Xᵀ ξ)` for the retrieval `p`:
/// `E(ξ) = −β⁻¹ Ω*(β Xᵀ ξ) + ½ξᵀξ + ½M²`, with `Ω*` the convex conjugate of the retrieval's
/// regulariser, `Ω*(z) = max_p ⟨p, z⟩ + H(p)` over the simplex:
/// - softmax: `Ω* = log Σ exp zᵢ` (Shannon entropy), plus `β⁻¹ log N` as in [`energy`];
/// - α-entmax and sparsemax (α = 2): `Ω*(z) = ⟨p, z⟩ + (1 − Σ pᵢ^α) / (α(α − 1))` at `p = entmax_α(z)`
///   (Tsallis entropy; for α = 2 the Gini entropy of Hu et al. 2023);
/// - softmax₁: `Ω* = log(1 + Σ exp zᵢ)` (Hu et al. 2024).
///
/// Because `Ω*` is convex with gradient `p`, every update step of the static retrieval never raises `E`
/// (a learnable entmax α is evaluated at its initial α).
///
/// # Shapes
/// As [`energy`].
pub fn energy_of<B: Backend>(
    backend: &B,
    stored: &B::Tensor,
    state: &B::Tensor,
    beta: f64,
    retrieval: Retrieval,
) -> Result<Vec<f64>> {
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
    retrieval.validate()?;
    let (b, n, d, l) = (xs[0], xs[1], xs[2], qs[1]);
    let x: Vec<f64> = backend.to_vec(stored).iter().map(|v| v.f64()).collect();
    let q: Vec<f64> = backend.to_vec(state).iter().map(|v| v.f64()).collect();
    let mut out = Vec::with_capacity(b * l);
    let mut scratch = Vec::new();
    for bi in 0..b {
        let xb = &x[bi * n * d..(bi + 1) * n * d];
        let m2 = xb.chunks(d).map(|r| r.iter().map(|v| v * v).sum::<f64>()).fold(0.0, f64::max);
        for li in 0..l {
            let xi = &q[(bi * l + li) * d..(bi * l + li + 1) * d];
            let z: Vec<f64> = xb.chunks(d).map(|r| beta * r.iter().zip(xi).map(|(a, b)| a * b).sum::<f64>()).collect();
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let half_sq = 0.5 * xi.iter().map(|v| v * v).sum::<f64>();
            let e = match retrieval {
                Retrieval::Softmax => {
                    let lse = (max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln()) / beta;
                    -lse + half_sq + (n as f64).ln() / beta + 0.5 * m2
                }
                Retrieval::Softmax1 => {
                    let m = max.max(0.0);
                    let lse1 = m + ((-m).exp() + z.iter().map(|v| (v - m).exp()).sum::<f64>()).ln();
                    -lse1 / beta + half_sq + 0.5 * m2
                }
                Retrieval::Sparsemax | Retrieval::Entmax { .. } => {
                    let alpha = retrieval.entmax_alpha().expect("entmax family");
                    let mut p = z.clone();
                    sparse::entmax_row(&mut p, alpha, &mut scratch);
                    let tsallis = (1.0 - p.iter().map(|v| v.powf(alpha)).sum::<f64>()) / (alpha * (alpha - 1.0));
                    let conj = p.iter().zip(&z).map(|(p, z)| p * z).sum::<f64>() + tsallis;
                    -conj / beta + half_sq + 0.5 * m2
                }
            };
            out.push(e);
        }
    }
    Ok(out)
}
