//! L2 normalisation of embeddings along the feature axis, `y = x / ‖x‖`, and its backward.

use hopfield::backend::Backend;
use hopfield::backend::Unary;
use hopfield::{Element, HopfieldError, Result};

/// What [`l2_normalize_backward`] needs: the output and the inverse row norms.
#[derive(Clone, Debug)]
pub struct L2NormCache<B: Backend> {
    /// `y = x / ‖x‖`, `[N, d]`.
    pub y: B::Tensor,
    /// `1 / ‖x_i‖`, `[N, 1]`.
    pub inv_norm: B::Tensor,
}

/// Row sums `[N, 1]` as a matrix product with `ones [d, 1]`.
fn row_sum<B: Backend>(backend: &B, x: &B::Tensor) -> B::Tensor {
    let d = backend.shape(x)[1];
    backend.matmul(x, &backend.full(&[d, 1], B::Elem::of(1.0)), false, false)
}

/// `y_i = x_i / ‖x_i‖` (CLIP's and cloob's `x / x.norm(dim=-1, keepdim=True)`, no ε), on the device.
///
/// A zero row has no direction: it gives non-finite values (`0 · ∞`), which surface where values reach
/// the host — the training step's loss is then an error naming the step, the evaluation's embeddings an
/// error naming the row — rather than a per-call check that would read the norms back.
///
/// # Shapes
/// `x: [N, d]` → `y: [N, d]`.
pub fn l2_normalize<B: Backend>(backend: &B, x: &B::Tensor) -> Result<(B::Tensor, L2NormCache<B>)> {
    let shape = backend.shape(x);
    if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
        return Err(HopfieldError::shape("l2_normalize", "[N > 0, d > 0]", &shape));
    }
    let d = shape[1];
    let inv_norm = backend.unary(&row_sum(backend, &backend.mul(x, x)), Unary::Rsqrt);
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
