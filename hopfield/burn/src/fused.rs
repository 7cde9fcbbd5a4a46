//! The fused, streaming association `softmax(β·Q·Kᵀ + bias)·V` as a burn backend operation.
//!
//! Interface fixed here; implementation in progress.

use burn::tensor::{Device, Tensor};

/// Whether tensors on `device` can run [`association`]: burn's NdArray backend, a CubeCL device
/// (wgpu, CUDA), or autodiff over either. Elsewhere the layers use the materialised path.
pub fn supported(device: &Device) -> bool {
    let _ = device;
    false
}

/// `softmax(β_h·Q·Kᵀ + padding + association)·V` per head, without materialising the `[L, S]` matrix.
///
/// # Shapes
/// `q [B, H, L, d]`, `k [B, H, S, d]`, `v [B, H, S, dv]` → `[B, H, L, dv]`; `beta` one per head;
/// `padding` additive `[B, S]`, `association` additive `[B|1, H|1, L, S]` (`-inf` hides an entry; a fully
/// hidden row gives a zero row). Under autodiff, gradients flow to `q`, `k` and `v` (the masks are constants).
pub fn association(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    beta: &[f64],
    padding: Option<Tensor<2>>,
    association: Option<Tensor<4>>,
) -> Tensor<4> {
    let _ = (k, v, beta, padding, association);
    unimplemented!("fused association: in progress ({:?})", q.shape())
}
