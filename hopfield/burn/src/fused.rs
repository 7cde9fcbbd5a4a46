//! The fused, streaming association `softmax(β·Q·Kᵀ + bias)·V` as a burn backend operation.
//!
//! burn's own attention, under `Autodiff`, falls back to the materialised `[L, S]` score matrix and keeps it
//! for the backward. Here the forward and the backward are `hopfield`'s streaming kernels (the
//! flash-attention scheme: blocks of keys with an online softmax, the backward recomputing each block's
//! probabilities from the per-row log-sum-exp), so memory is `O(L·d)`:
//!
//! - [`FusedAssociation`], a burn backend extension (`#[backend_extension]`), routes a `Tensor` call to the
//!   backend its tensors live on: burn's `NdArray` (feature `ndarray`; `hopfield`'s blocked CPU association
//!   in f32 or f64), burn's CubeCL backend on wgpu or CUDA (features `wgpu`, `cuda`; `hopfield`'s CubeCL
//!   kernels on burn's own buffers, no copy), and `Autodiff` over either, where the backward is registered as
//!   one node whose gradient calls the backward kernels ([`AssociationKernels`]).
//! - [`association`] is the `Tensor` front end the layers call when `fused_association` is on and
//!   [`supported`] says the device can; [`association_reference`] is the same function on plain burn ops
//!   (the oracle of the tests, and the path for other backends and element types).
//!
//! burn's `fusion` feature (lazy `Fusion<Cube>` tensors) is not supported by this operation: with it on,
//! this crate's `wgpu`/`cuda` features do not compile.

// burn 0.22 deprecates its NdArray backend (for Flex); the extension still routes to it (see
// `ndarray_kernels`), and the macro's expansion names it.
#![allow(deprecated)]

use crate::ops;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, DispatchDevice};
use burn::tensor::{DType, Device, Tensor, TensorData};

/// The kernels behind [`FusedAssociation`] on one concrete burn backend: `hopfield`'s streaming
/// association forward (with the per-row log-sum-exp its backward needs) and backward. The autodiff
/// implementation of [`FusedAssociation`] is written once over this trait.
///
/// # Shapes
/// `q [B, H, L, d]`, `k [B, H, S, d]`, `v [B, H, S, dv]`, `beta [H]`, `padding [B, S]`, `association
/// [B|1, H|1, L, S]` (additive; `-inf` hides) → `out [B, H, L, dv]`, `lse [B, H, L]`; the backward takes
/// `d_out [B, H, L, dv]` and returns `(dq, dk, dv)` shaped as `q`, `k`, `v`.
pub trait AssociationKernels: Backend {
    /// `(out, lse)` of the streaming association.
    fn association_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        beta: &[f64],
        padding: Option<FloatTensor<Self>>,
        association: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `(dq, dk, dv)` from the forward's inputs, `out`, `lse` and the output gradient.
    fn association_backward(saved: Saved<Self>, d_out: FloatTensor<Self>) -> [FloatTensor<Self>; 3];
}

/// What the backward of one fused association keeps: its inputs, output and log-sum-exp (all `O(L·d)`,
/// except an association bias given by the caller).
#[derive(Clone, Debug)]
pub struct Saved<B: Backend> {
    /// Queries (state patterns) `[B, H, L, d]`.
    pub q: FloatTensor<B>,
    /// Keys (stored patterns) `[B, H, S, d]`.
    pub k: FloatTensor<B>,
    /// Values (pattern projections) `[B, H, S, dv]`.
    pub v: FloatTensor<B>,
    /// β per head.
    pub beta: Vec<f64>,
    /// Additive padding bias `[B, S]`.
    pub padding: Option<FloatTensor<B>>,
    /// Additive association bias `[B|1, H|1, L, S]`.
    pub association: Option<FloatTensor<B>>,
    /// The forward's output `[B, H, L, dv]`.
    pub out: FloatTensor<B>,
    /// The forward's per-row log-sum-exp `[B, H, L]`.
    pub lse: FloatTensor<B>,
}

/// The fused association as a burn backend operation (see the [module docs](self)).
#[backend_extension(NdArray: cfg(feature = "ndarray"), Cube: cfg(any(feature = "wgpu", feature = "cuda")), Autodiff)]
pub trait FusedAssociation: Backend {
    /// `softmax(β_h·q·kᵀ + padding + association)·v` per head; shapes as in [`AssociationKernels`].
    /// `padding` and `association` take part only where `given` says so (`(padding, association)`); an
    /// absent one is any placeholder tensor on the same device (burn 0.22.1's extension macro does not route
    /// `Option` tensors).
    fn fused_association(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        beta: Vec<f64>,
        padding: FloatTensor<Self>,
        association: FloatTensor<Self>,
        given: (bool, bool),
    ) -> FloatTensor<Self>;
}

/// The optional biases from the placeholders of [`FusedAssociation::fused_association`].
fn given<T>(padding: T, association: T, given: (bool, bool)) -> (Option<T>, Option<T>) {
    (given.0.then_some(padding), given.1.then_some(association))
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube_kernels;
#[cfg(feature = "ndarray")]
mod ndarray_kernels;

/// The gradient node of a fused association: parents `q`, `k`, `v`; the masks are constants.
#[derive(Debug)]
struct AssociationBackward;

impl<B: AssociationKernels> Backward<B, 3> for AssociationBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = grads.consume::<B>(&ops.node);
        let [dq, dk, dv] = B::association_backward(ops.state, d_out);
        for (parent, grad) in ops.parents.into_iter().zip([dq, dk, dv]) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: AssociationKernels, C: CheckpointStrategy> FusedAssociation for Autodiff<B, C> {
    fn fused_association(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        beta: Vec<f64>,
        padding: FloatTensor<Self>,
        association: FloatTensor<Self>,
        given_biases: (bool, bool),
    ) -> FloatTensor<Self> {
        let (padding, association) = given(padding, association, given_biases);
        // Guards first, then the primitives (burn-autodiff's order).
        let prep = AssociationBackward.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful();
        let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
        let padding = padding.map(|p| p.into_primitive());
        let association = association.map(|a| a.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let (out, lse) = B::association_forward(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    &beta,
                    padding.clone(),
                    association.clone(),
                );
                let saved = Saved { q, k, v, beta, padding, association, out: out.clone(), lse };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::association_forward(q, k, v, &beta, padding, association).0),
        }
    }
}

/// Whether tensors on `device` run [`association`] on `hopfield`'s kernels: burn's NdArray (feature
/// `ndarray`), burn's CubeCL backend on a wgpu or CUDA device (features `wgpu`, `cuda`), or autodiff over
/// either. Elsewhere the layers keep the materialised path.
pub fn supported(device: &Device) -> bool {
    match device.as_dispatch().clone().inner() {
        #[cfg(feature = "ndarray")]
        DispatchDevice::NdArray(_) => true,
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        DispatchDevice::Cube(d) => cube_kernels::runs_on(&d),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// `softmax(β_h·Q·Kᵀ + padding + association)·V` per head, without materialising the `[L, S]` matrix
/// where [`supported`] (and the element type is f32, or f64 on NdArray); elsewhere
/// [`association_reference`]. Under autodiff, gradients flow to `q`, `k` and `v` (the masks are constants).
///
/// # Shapes
/// `q [B, H, L, d]`, `k [B, H, S, d]`, `v [B, H, S, dv]` → `[B, H, L, dv]`; `beta` one per head;
/// `padding` additive `[B, S]`, `association` additive `[B|1, H|1, L, S]` (`-inf` hides an entry; a fully
/// hidden row gives a zero row).
pub fn association(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    beta: &[f64],
    padding: Option<Tensor<2>>,
    association: Option<Tensor<4>>,
) -> Tensor<4> {
    let device = q.device();
    let dtype_ok = match q.dtype() {
        DType::F32 => true,
        DType::F64 => {
            cfg!(feature = "ndarray") && matches!(device.as_dispatch().clone().inner(), DispatchDevice::NdArray(_))
        }
        _ => false,
    };
    if !supported(&device) || !dtype_ok || [&k, &v].iter().any(|t| t.dtype() != q.dtype()) {
        return association_reference(q, k, v, beta, padding, association);
    }
    let [b, h, l, _] = q.dims();
    let s = k.dims()[2];
    assert_eq!(beta.len(), h, "association: β has {} entries for {h} heads", beta.len());
    if let Some(p) = &padding {
        assert_eq!(p.dims(), [b, s], "association: padding {:?}, expected [{b}, {s}]", p.dims());
    }
    if let Some(a) = &association {
        let [ab, ah, al, as_] = a.dims();
        assert!(
            (ab == 1 || ab == b) && (ah == 1 || ah == h) && al == l && as_ == s,
            "association: bias {:?}",
            a.dims()
        );
    }
    let given = (padding.is_some(), association.is_some());
    let placeholder = || Tensor::<1>::zeros([1], &device).into_dispatch();
    let out = <Dispatch as FusedAssociation>::fused_association(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        beta.to_vec(),
        padding.map_or_else(placeholder, |p| p.into_dispatch()),
        association.map_or_else(placeholder, |a| a.into_dispatch()),
        given,
    );
    Tensor::from_dispatch(out)
}

/// [`association`] on plain burn ops, materialising `[B, H, L, S]`: the oracle of the fused path and its
/// fallback. A fully hidden row gives a zero row.
pub fn association_reference(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    beta: &[f64],
    padding: Option<Tensor<2>>,
    association: Option<Tensor<4>>,
) -> Tensor<4> {
    let [b, _, _, _] = q.dims();
    let s = k.dims()[2];
    let h = beta.len();
    // β in the inputs' element type (f64 stays f64).
    let beta = Tensor::<4>::from_data(TensorData::new(beta.to_vec(), [1, h, 1, 1]), (&q.device(), q.dtype()));
    let mut z = q.matmul(k.swap_dims(2, 3)) * beta;
    if let Some(p) = padding {
        z = z + p.reshape([b, 1, 1, s]);
    }
    if let Some(a) = association {
        z = z + a;
    }
    ops::masked_softmax(z).matmul(v)
}
