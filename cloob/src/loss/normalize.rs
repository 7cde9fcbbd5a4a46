//! L2 normalisation of embeddings along the feature axis, `y = x / ‖x‖`, and its backward.

use hopfield::backend::Backend;
use hopfield::{Element, HopfieldError, Result};

/// What [`l2_normalize_backward`] needs: the output and the inverse row norms.
#[derive(Clone, Debug)]
pub struct L2NormCache<B: Backend> {
    /// `y = x / ‖x‖`, `[N, d]`.
    pub y: B::Tensor,
    /// `1 / ‖x_i‖`, `[N, 1]`.
    pub inv_norm: B::Tensor,
}

/// `ones [d, 1]`: row sums as a matrix product (the trait has no row reduction).
fn row_sum<B: Backend>(backend: &B, x: &B::Tensor) -> B::Tensor {
    let d = backend.shape(x)[1];
    backend.matmul(x, &backend.full(&[d, 1], B::Elem::of(1.0)), false, false)
}

/// `y_i = x_i / ‖x_i‖` (CLIP's and cloob's `x / x.norm(dim=-1, keepdim=True)`, no ε: a zero row is an
/// error rather than a silent NaN).
///
/// The `N` row norms make one round trip through the host for the reciprocal square root, which the
/// [`Backend`] trait lacks; everything else stays on the device.
///
/// # Shapes
/// `x: [N, d]` → `y: [N, d]`.
pub fn l2_normalize<B: Backend>(backend: &B, x: &B::Tensor) -> Result<(B::Tensor, L2NormCache<B>)> {
    let shape = backend.shape(x);
    if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
        return Err(HopfieldError::shape("l2_normalize", "[N > 0, d > 0]", &shape));
    }
    let (n, d) = (shape[0], shape[1]);
    let sq = backend.to_vec(&row_sum(backend, &backend.mul(x, x)));
    if let Some(i) = sq.iter().position(|v| !(v.f64() > 0.0 && v.f64().is_finite())) {
        return Err(HopfieldError::NonFinite { op: "l2_normalize", detail: format!("row {i} has norm² {}", sq[i]) });
    }
    let inv: Vec<B::Elem> = sq.iter().map(|v| B::Elem::of(1.0 / v.f64().sqrt())).collect();
    let inv_norm = backend.from_vec(inv, &[n, 1]);
    let y = backend.mul(x, &backend.expand(&inv_norm, 1, d));
    Ok((y.clone(), L2NormCache { y, inv_norm }))
}

/// Backward of [`l2_normalize`]: `dx_i = (dy_i − y_i ⟨y_i, dy_i⟩) / ‖x_i‖`.
///
/// # Shapes
/// `dy: [N, d]` → `dx: [N, d]`.
pub fn l2_normalize_backward<B: Backend>(backend: &B, cache: &L2NormCache<B>, dy: &B::Tensor) -> B::Tensor {
    let d = backend.shape(dy)[1];
    let dot = backend.expand(&row_sum(backend, &backend.mul(&cache.y, dy)), 1, d);
    let tangent = backend.sub(dy, &backend.mul(&cache.y, &dot));
    backend.mul(&tangent, &backend.expand(&cache.inv_norm, 1, d))
}
