//! The two contrastive objectives on one anchor/candidate pair of embedding sets, `k = s·a bᵀ`:
//! InfoNCE (cross-entropy with the matching candidate as the class) and InfoLOOB (the same without the
//! positive in the normaliser).

use hopfield::loss::cross_entropy;
use hopfield::{Backend, Element, HopfieldError, Result};

/// InfoLOOB on logits, `mean_i(−k_ii + lse_{j≠i} k_ij)`, with its gradient `(P − I)/N` where `P` is the
/// row softmax over the off-diagonal entries (zero on the diagonal).
///
/// The diagonal is excluded exactly (cloob's methods.py puts −1000 there, which is the same in f64 for
/// logits above −200). The value is reduced in f64 on the host from the downloaded logits, as
/// [`hopfield::loss::cross_entropy`] does; the gradient is computed on the device.
///
/// # Shapes
/// `logits: [N, N]` with `N ≥ 2` → `(loss, [N, N])`.
pub fn info_loob_logits<B: Backend>(backend: &B, logits: &B::Tensor) -> Result<(f64, B::Tensor)> {
    let shape = backend.shape(logits);
    if shape.len() != 2 || shape[0] != shape[1] || shape[0] < 2 {
        return Err(HopfieldError::shape("info_loob", "[N, N] with N ≥ 2 (a negative per row)", &shape));
    }
    let n = shape[0];
    let host = backend.to_vec(logits);
    let mut loss = 0.0;
    for (i, row) in host.chunks(n).enumerate() {
        let off = || row.iter().enumerate().filter(move |&(j, _)| j != i).map(|(_, v)| v.f64());
        let max = off().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + off().map(|v| (v - max).exp()).sum::<f64>().ln();
        loss += lse - row[i].f64();
    }
    let (mut diag_bias, mut eye) = (vec![B::Elem::of(0.0); n * n], vec![B::Elem::of(0.0); n * n]);
    for i in 0..n {
        diag_bias[i * n + i] = B::Elem::of(f64::NEG_INFINITY);
        eye[i * n + i] = B::Elem::of(1.0);
    }
    let bias = backend.from_vec(diag_bias, &[1, 1, n, n]);
    let scores = backend.reshape(logits, &[1, 1, n, n]);
    let probs = backend.masked_softmax(
        &scores,
        &[B::Elem::of(1.0)],
        &hopfield::backend::ScoreBias { padding: None, association: Some(&bias) },
    );
    let diff = backend.sub(&backend.reshape(&probs, &[n, n]), &backend.from_vec(eye, &[n, n]));
    Ok((loss / n as f64, backend.scale(&diff, B::Elem::of(1.0 / n as f64))))
}

/// Which objective scores the logits of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Objective {
    /// `CE(k, arange(N))`.
    InfoNce,
    /// [`info_loob_logits`].
    InfoLoob,
}

/// One pair's objective and its gradients w.r.t. `a`, `b` and `s`.
pub(crate) struct PairGrad<B: Backend> {
    pub value: f64,
    pub da: B::Tensor,
    pub db: B::Tensor,
    pub ds: f64,
}

/// `objective(s·a bᵀ)` with `a` the anchors (rows) and `b` the candidates.
pub(crate) fn pair<B: Backend>(
    backend: &B,
    objective: Objective,
    a: &B::Tensor,
    b: &B::Tensor,
    s: f64,
) -> Result<PairGrad<B>> {
    let n = backend.shape(a)[0];
    let g = backend.matmul(a, b, false, true);
    let k = backend.scale(&g, B::Elem::of(s));
    let (value, dk) = match objective {
        Objective::InfoNce => cross_entropy(backend, &k, &(0..n).collect::<Vec<_>>())?,
        Objective::InfoLoob => info_loob_logits(backend, &k)?,
    };
    // k = s·a bᵀ
    let da = backend.scale(&backend.matmul(&dk, b, false, false), B::Elem::of(s));
    let db = backend.scale(&backend.matmul(&dk, a, true, false), B::Elem::of(s));
    let ds = backend.sum(&backend.mul(&dk, &g)).f64();
    Ok(PairGrad { value, da, db, ds })
}
