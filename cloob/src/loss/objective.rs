//! The two contrastive objectives on one anchor/candidate pair of embedding sets, `k = s·a bᵀ`:
//! InfoNCE (cross-entropy with the matching candidate as the class) and InfoLOOB (the same without the
//! positive in the normaliser).
//!
//! Everything stays on the device: the values and `∂/∂s` are `[1, 1]` device tensors, which
//! [`contrastive_loss_normalized`](super::contrastive_loss_normalized) reads back together, once.

use hopfield::backend::{ScoreBias, Unary};
use hopfield::{Backend, Element, HopfieldError, Result};

/// InfoLOOB on logits, `mean_i(−k_ii + lse_{j≠i} k_ij)`, with its gradient `(P − I)/N` where `P` is the
/// row softmax over the off-diagonal entries (zero on the diagonal).
///
/// The diagonal is excluded exactly (cloob's methods.py puts −1000 there, which is the same in f64 for
/// logits above −200). The value is reduced on the device and read back (one transfer).
///
/// # Shapes
/// `logits: [N, N]` with `N ≥ 2` → `(loss, [N, N])`.
pub fn info_loob_logits<B: Backend>(backend: &B, logits: &B::Tensor) -> Result<(f64, B::Tensor)> {
    let shape = backend.shape(logits);
    if shape.len() != 2 || shape[0] != shape[1] || shape[0] < 2 {
        return Err(HopfieldError::shape("info_loob", "[N, N] with N ≥ 2 (a negative per row)", &shape));
    }
    let (value, grad) = objective(backend, Objective::InfoLoob, logits);
    Ok((backend.to_vec(&value)[0].f64(), grad))
}

/// Which objective scores the logits of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Objective {
    /// `CE(k, arange(N))`.
    InfoNce,
    /// [`info_loob_logits`].
    InfoLoob,
}

/// `Σ` of every entry of `t` as a `[1, 1]` tensor, on the device.
pub(crate) fn total<B: Backend>(backend: &B, t: &B::Tensor) -> B::Tensor {
    let n = backend.shape(t).iter().product();
    backend.sum_axis(&backend.sum_axis(&backend.reshape(t, &[1, n]), 1), 0)
}

/// The objective's value (`[1, 1]`) and gradient w.r.t. the logits `k: [N, N]` (`N ≥ 2`):
/// `mean_i(lse_j k̃_ij − k_ii)` and `(softmax(k̃) − I)/N`, where `k̃ = k` (InfoNCE) or `k` with `-inf` on
/// the diagonal (InfoLOOB).
fn objective<B: Backend>(backend: &B, objective: Objective, k: &B::Tensor) -> (B::Tensor, B::Tensor) {
    let n = backend.shape(k)[0];
    let one = B::Elem::of(1.0);
    let mut eye = vec![B::Elem::of(0.0); n * n];
    (0..n).for_each(|i| eye[i * n + i] = one);
    let eye = backend.from_vec(eye, &[n, n]);
    let diag_bias = (objective == Objective::InfoLoob).then(|| {
        let mut b = vec![B::Elem::of(0.0); n * n];
        (0..n).for_each(|i| b[i * n + i] = B::Elem::of(f64::NEG_INFINITY));
        backend.from_vec(b, &[1, 1, n, n])
    });
    // lse_i over the kept entries: m_i + ln Σ_j exp(k̃_ij − m_i).
    let kept = match &diag_bias {
        Some(b) => backend.add(k, &backend.reshape(b, &[n, n])),
        None => k.clone(),
    };
    let max = backend.max_axis(&kept, 1);
    let shifted = backend.unary(&backend.sub(&kept, &backend.expand(&max, 1, n)), Unary::Exp);
    let lse = backend.add(&max, &backend.unary(&backend.sum_axis(&shifted, 1), Unary::Ln));
    let positive = backend.sum_axis(&backend.mul(k, &eye), 1);
    let value = backend.scale(&total(backend, &backend.sub(&lse, &positive)), B::Elem::of(1.0 / n as f64));
    let bias = ScoreBias { padding: None, association: diag_bias.as_ref() };
    let probs = backend.masked_softmax(&backend.reshape(k, &[1, 1, n, n]), &[one], &bias);
    let diff = backend.sub(&backend.reshape(&probs, &[n, n]), &eye);
    (value, backend.scale(&diff, B::Elem::of(1.0 / n as f64)))
}

/// One pair's objective and its gradients w.r.t. `a`, `b` and `s` (the scalars as `[1, 1]` device
/// tensors).
pub(crate) struct PairGrad<B: Backend> {
    pub value: B::Tensor,
    pub da: B::Tensor,
    pub db: B::Tensor,
    pub ds: B::Tensor,
}

/// `objective(s·a bᵀ)` with `a` the anchors (rows) and `b` the candidates.
pub(crate) fn pair<B: Backend>(backend: &B, which: Objective, a: &B::Tensor, b: &B::Tensor, s: f64) -> PairGrad<B> {
    let g = backend.matmul(a, b, false, true);
    let k = backend.scale(&g, B::Elem::of(s));
    let (value, dk) = objective(backend, which, &k);
    // k = s·a bᵀ
    let da = backend.scale(&backend.matmul(&dk, b, false, false), B::Elem::of(s));
    let db = backend.scale(&backend.matmul(&dk, a, true, false), B::Elem::of(s));
    let ds = total(backend, &backend.mul(&dk, &g));
    PairGrad { value, da, db, ds }
}
