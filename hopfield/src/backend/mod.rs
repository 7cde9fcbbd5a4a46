//! The tensor operations the layers are written against.
//!
//! A [`Backend`] owns a device and a tensor type. Every layer of this crate is written once against this
//! trait; [`Cpu`] implements it with ndarray and is the readable reference and the oracle for every other
//! backend. Tensors are dense and row-major; shapes are given outermost first.
//!
//! Operations take shapes that the layer code has already validated: a backend checks them with
//! `debug_assert!` only. Public, user-facing functions validate and return
//! [`HopfieldError`](crate::HopfieldError).
//!
//! - [`cpu`]: the ndarray backend ([`Cpu`]) and its opt-in allocator tuning ([`cpu::tune_allocator`]).
//! - [`reference`](mod@reference): the materialised association, the default of [`Backend::association`]
//!   and the oracle (for backend implementations and tests).
//! - `cube` (features `wgpu`, `cuda`): the CubeCL backend, `Cube<R>` on the runtime `R`.
//! - [`device`]: a backend chosen at start-up ([`Device`], `--device cpu|wgpu|cuda[:N]`).

pub mod cpu;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod cube;
pub mod device;
pub mod reference;

pub use cpu::{Cpu, CpuTensor};
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub use cube::{Cube, CubeTensor};
pub use device::{Device, OnBackend};

use crate::activation::Activation;
use crate::element::Element;
use std::fmt::Debug;

/// Additive biases added to the association scores before the softmax.
///
/// `padding` is `[B, S]` and `association` is `[B or 1, H or 1, L, S]` (broadcast over the axes of size
/// one). Masked positions hold `-inf`; a row whose every entry is `-inf` yields an all-zero association row.
#[derive(Clone, Debug)]
pub struct ScoreBias<'a, T> {
    /// Per-sample stored-pattern padding, `[B, S]`.
    pub padding: Option<&'a T>,
    /// Association bias, `[B|1, H|1, L, S]`.
    pub association: Option<&'a T>,
}

impl<T> Default for ScoreBias<'_, T> {
    fn default() -> Self {
        ScoreBias { padding: None, association: None }
    }
}

/// An element-wise function of [`Backend::unary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    /// `eˣ` (`e^-inf = 0`).
    Exp,
    /// `ln x` (`ln 0 = -inf`).
    Ln,
    /// `1/√x` (`1/√0 = inf`).
    Rsqrt,
}

impl Unary {
    /// The function on one scalar (the CPU backend's, and the oracle of the others).
    pub fn apply<E: Element>(self, x: E) -> E {
        match self {
            Unary::Exp => x.exp(),
            Unary::Ln => x.ln(),
            // In f64, rounded once: correctly rounded for f32 (what the host computed before this op).
            Unary::Rsqrt => E::of(1.0 / x.f64().sqrt()),
        }
    }
}

/// Hyper-parameters of one fused Adam/AdamW update (see [`Backend::adam_step`]).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate of this step.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Denominator offset ε.
    pub eps: f64,
    /// L2 penalty added to the gradient (Adam's `weight_decay`).
    pub l2: f64,
    /// Decoupled decay: the parameter is multiplied by `1 − lr·decoupled` first (AdamW).
    pub decoupled: f64,
    /// 1-based step count, for the bias corrections.
    pub step: u64,
}

/// The tensor operations the Hopfield layers need, forward and backward.
///
/// # Shapes
/// Each method states its shapes. `[.., m, k]` means any number of leading batch axes.
///
/// # Fully masked rows
/// A score row whose every entry is masked (`-inf` in the [`ScoreBias`]) has no pattern to retrieve. On
/// every backend it yields a zero row, never NaN: zero probabilities from [`Backend::masked_softmax`], a
/// zero output row and `lse = -inf` from [`Backend::association`] (a streaming implementation; the
/// materialised default returns zeros for every `lse`), and no gradient from either backward. A layer
/// then outputs its output projection's bias for that row.
pub trait Backend: Clone + Debug + Send + Sync + 'static {
    /// Scalar type.
    type Elem: Element;
    /// A tensor living on this backend's device.
    type Tensor: Clone + Debug + Send + Sync;

    /// Short name (`cpu`, `wgpu`, `cuda`).
    fn name(&self) -> &'static str;

    // ---- host edge -------------------------------------------------------------------------------------

    /// Upload row-major `data` of `shape` (`data.len()` must equal the product of `shape`).
    #[allow(clippy::wrong_self_convention)] // the backend (device, allocator) does the upload
    fn from_vec(&self, data: Vec<Self::Elem>, shape: &[usize]) -> Self::Tensor;
    /// Download to row-major host memory.
    fn to_vec(&self, t: &Self::Tensor) -> Vec<Self::Elem>;
    /// The shape of `t`.
    fn shape(&self, t: &Self::Tensor) -> Vec<usize>;
    /// A tensor of `shape` filled with `value`.
    fn full(&self, shape: &[usize], value: Self::Elem) -> Self::Tensor;
    /// A tensor of zeros.
    fn zeros(&self, shape: &[usize]) -> Self::Tensor {
        self.full(shape, <Self::Elem as num_traits::Zero>::zero())
    }
    /// Zeros of the same shape as `t`.
    fn zeros_like(&self, t: &Self::Tensor) -> Self::Tensor {
        self.zeros(&self.shape(t))
    }

    // ---- layout ----------------------------------------------------------------------------------------

    /// Same elements, new shape of the same size.
    fn reshape(&self, t: &Self::Tensor, shape: &[usize]) -> Self::Tensor;
    /// Materialised permutation of the axes: output axis `i` is input axis `axes[i]`.
    fn permute(&self, t: &Self::Tensor, axes: &[usize]) -> Self::Tensor;
    /// Concatenate along `axis` (other axes equal).
    fn concat(&self, a: &Self::Tensor, b: &Self::Tensor, axis: usize) -> Self::Tensor;
    /// `len` entries of `axis` starting at `start`.
    fn slice(&self, t: &Self::Tensor, axis: usize, start: usize, len: usize) -> Self::Tensor;
    /// `dst[.., start..start+len, ..] += src` along `axis` (the backward of [`Backend::slice`]).
    fn slice_add(&self, dst: &mut Self::Tensor, axis: usize, start: usize, src: &Self::Tensor);
    /// Repeat an axis of size 1 `n` times.
    fn expand(&self, t: &Self::Tensor, axis: usize, n: usize) -> Self::Tensor;
    /// Sum over `axis`, keeping it with size 1 (the backward of [`Backend::expand`]).
    fn sum_axis(&self, t: &Self::Tensor, axis: usize) -> Self::Tensor;
    /// Maximum over `axis` (of size ≥ 1), keeping it with size 1; `-inf` entries take part as values.
    fn max_axis(&self, t: &Self::Tensor, axis: usize) -> Self::Tensor;

    /// Embedding lookup: row `ids[i]` of `table` becomes row `i` of the output.
    ///
    /// # Shapes
    /// `table: [V, n]`, every id below `V` → `[ids.len(), n]`.
    fn gather_rows(&self, table: &Self::Tensor, ids: &[usize]) -> Self::Tensor;
    /// `dst[ids[i], :] += src[i, :]` for every `i`; repeated ids accumulate (the backward of
    /// [`Backend::gather_rows`]).
    ///
    /// # Shapes
    /// `dst: [V, n]`, `src: [ids.len(), n]`.
    fn scatter_add_rows(&self, dst: &mut Self::Tensor, ids: &[usize], src: &Self::Tensor);

    // ---- element-wise ----------------------------------------------------------------------------------

    /// `a + b` (same shape).
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// `a − b` (same shape).
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// `a ⊙ b` (same shape).
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// `s · a`.
    fn scale(&self, a: &Self::Tensor, s: Self::Elem) -> Self::Tensor;
    /// `y += α x` in place.
    fn axpy(&self, y: &mut Self::Tensor, alpha: Self::Elem, x: &Self::Tensor);
    /// `act(x)`.
    fn activation(&self, x: &Self::Tensor, act: Activation) -> Self::Tensor;
    /// `dy ⊙ act'(x)`.
    fn activation_backward(&self, x: &Self::Tensor, dy: &Self::Tensor, act: Activation) -> Self::Tensor;
    /// `op(x)` element-wise ([`Unary`]: exp, ln, 1/√x), so that losses and normalisations stay on the
    /// device.
    fn unary(&self, x: &Self::Tensor, op: Unary) -> Self::Tensor;

    // ---- reductions ------------------------------------------------------------------------------------

    /// Sum of all elements.
    fn sum(&self, t: &Self::Tensor) -> Self::Elem;
    /// Sum of squares of all elements.
    fn sum_squares(&self, t: &Self::Tensor) -> Self::Elem;
    /// Whether every element is finite.
    fn all_finite(&self, t: &Self::Tensor) -> bool;
    /// `Σ_t Σ_i t_i²` over several tensors as one host value (a global norm in one device-to-host
    /// transfer). The default adds [`Backend::sum_squares`] of each in f64.
    fn sum_squares_all(&self, ts: &[&Self::Tensor]) -> f64 {
        ts.iter().map(|t| self.sum_squares(t).f64()).sum()
    }

    // ---- linear algebra --------------------------------------------------------------------------------

    /// Batched `op(a) · op(b)` with `op` an optional transpose of the last two axes.
    ///
    /// # Shapes
    /// `a: [.., m, k]` (or `[.., k, m]` with `ta`), `b: [.., k, n]` (or `[.., n, k]` with `tb`) with equal
    /// batch axes, or `b` of rank 2 shared by every batch entry. Output `[.., m, n]`.
    fn matmul(&self, a: &Self::Tensor, b: &Self::Tensor, ta: bool, tb: bool) -> Self::Tensor;
    /// The linear layer's forward `x · wᵀ + bias`. Backends may fuse the bias into the product; the
    /// default composes [`Backend::matmul`] and [`Backend::add_bias`].
    ///
    /// # Shapes
    /// `x: [.., k]`, `w: [n, k]`, `bias: [n]`. Output `[.., n]`.
    fn linear(&self, x: &Self::Tensor, w: &Self::Tensor, bias: Option<&Self::Tensor>) -> Self::Tensor {
        let y = self.matmul(x, w, false, true);
        match bias {
            Some(b) => self.add_bias(&y, b),
            None => y,
        }
    }
    /// [`Backend::linear`] followed by an activation: returns `(y, act(y))`, `y` being what the
    /// activation's backward needs. Backends may apply bias and activation to each block of the product
    /// while it is in cache; the default composes [`Backend::linear`] and [`Backend::activation`].
    ///
    /// # Shapes
    /// `x: [.., k]`, `w: [n, k]`, `bias: [n]`. Both outputs `[.., n]`.
    fn linear_activation(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        act: Activation,
    ) -> (Self::Tensor, Self::Tensor) {
        let y = self.linear(x, w, bias);
        let a = self.activation(&y, act);
        (y, a)
    }
    /// `x + bias` broadcast over all but the last axis. `x: [.., n]`, `bias: [n]`.
    fn add_bias(&self, x: &Self::Tensor, bias: &Self::Tensor) -> Self::Tensor;
    /// Sum over all but the last axis: `[.., n] → [n]` (the backward of [`Backend::add_bias`]).
    fn sum_rows(&self, x: &Self::Tensor) -> Self::Tensor;

    // ---- normalisation ---------------------------------------------------------------------------------

    /// Layer norm over the last axis, with optional affine weight and bias `[n]`.
    /// Returns the output and the per-row statistics `[rows, 2]` (mean, 1/σ) that backward needs.
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        weight: Option<&Self::Tensor>,
        bias: Option<&Self::Tensor>,
        eps: Self::Elem,
    ) -> (Self::Tensor, Self::Tensor);
    /// Backward of [`Backend::layer_norm`]: returns `dx`, and `(dweight, dbias)` when `weight` is given.
    fn layer_norm_backward(
        &self,
        x: &Self::Tensor,
        stats: &Self::Tensor,
        weight: Option<&Self::Tensor>,
        dy: &Self::Tensor,
    ) -> (Self::Tensor, Option<(Self::Tensor, Self::Tensor)>);

    // ---- association -----------------------------------------------------------------------------------

    /// `softmax(β_h · scores + bias)` over the last axis, per head `h`.
    ///
    /// # Shapes
    /// `scores: [B, H, L, S]`, `beta: [H]` (host), bias as in [`ScoreBias`]. A fully masked row gives
    /// zeros (see the trait doc).
    fn masked_softmax(
        &self,
        scores: &Self::Tensor,
        beta: &[Self::Elem],
        bias: &ScoreBias<'_, Self::Tensor>,
    ) -> Self::Tensor;
    /// Gradient w.r.t. the unscaled `scores` of [`Backend::masked_softmax`], from its output `probs` and
    /// the upstream `d_probs`: `β_h · probs ⊙ (d_probs − rowsum(d_probs ⊙ probs))`.
    fn masked_softmax_backward(
        &self,
        probs: &Self::Tensor,
        d_probs: &Self::Tensor,
        beta: &[Self::Elem],
    ) -> Self::Tensor;
    /// softmax₁ (outlier-efficient retrieval): `exp(zᵢ) / (1 + Σⱼ exp(zⱼ))` over the last axis with
    /// `z = β_h · scores + bias`, so that a row can retrieve (almost) nothing. Its Jacobian is softmax's:
    /// the backward is [`Backend::masked_softmax_backward`].
    ///
    /// # Shapes
    /// As [`Backend::masked_softmax`]. A fully masked row gives zeros.
    fn masked_softmax1(
        &self,
        scores: &Self::Tensor,
        beta: &[Self::Elem],
        bias: &ScoreBias<'_, Self::Tensor>,
    ) -> Self::Tensor;
    /// α-entmax over the last axis, per head `h`: `p = [(α_h − 1) z − τ]₊^{1/(α_h − 1)}` with
    /// `z = β_h · scores + bias` and τ such that each row sums to one. `α_h = 2` is sparsemax (solved
    /// exactly); `1 < α_h < 2` is solved by bisection on τ. Masked entries get exactly zero weight.
    ///
    /// # Shapes
    /// As [`Backend::masked_softmax`], with `alpha: [H]` (host). A fully masked row gives zeros.
    fn masked_entmax(
        &self,
        scores: &Self::Tensor,
        beta: &[Self::Elem],
        bias: &ScoreBias<'_, Self::Tensor>,
        alpha: &[Self::Elem],
    ) -> Self::Tensor;
    /// Backward of [`Backend::masked_entmax`] from its output `probs`: the gradient w.r.t. the unscaled
    /// `scores`, `β_h · (g ⊙ dp − g · Σ(g ⊙ dp) / Σ g)` with `g = p^{2−α_h}` on the support, and, when
    /// `with_alpha`, the derivative of `Σ d_probs ⊙ probs` w.r.t. `α_h` per row.
    ///
    /// # Shapes
    /// `probs, d_probs: [B, H, L, S]`, `beta, alpha: [H]` → `[B, H, L, S]` and, with `with_alpha`, `[B, H, L]`.
    fn masked_entmax_backward(
        &self,
        probs: &Self::Tensor,
        d_probs: &Self::Tensor,
        beta: &[Self::Elem],
        alpha: &[Self::Elem],
        with_alpha: bool,
    ) -> (Self::Tensor, Option<Self::Tensor>);
    /// Fused association per head `h`: `out = softmax(β_h · q kᵀ + bias) · v`, with the per-row
    /// log-sum-exp of the biased scores that [`Backend::association_backward`] recomputes the
    /// probabilities from. Backends override it with a streaming (flash-attention) version that never
    /// holds the whole `L × S` matrix; the default materialises it ([`reference::association`],
    /// whose `lse` is zeros: its backward recomputes everything).
    ///
    /// # Shapes
    /// `q: [B, H, L, d]`, `k: [B, H, S, d]`, `v: [B, H, S, dv]`, `beta: [H]`, bias as in [`ScoreBias`].
    /// Returns `out: [B, H, L, dv]` and `lse: [B, H, L]`, opaque outside this backend's
    /// [`Backend::association_backward`] (a fully masked row: output 0, `lse = -inf`; see the trait doc).
    fn association(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        beta: &[Self::Elem],
        bias: &ScoreBias<'_, Self::Tensor>,
    ) -> (Self::Tensor, Self::Tensor) {
        reference::association(self, q, k, v, beta, bias)
    }
    /// Backward of [`Backend::association`] from its `out` and `lse`: returns `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    fn association_backward(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        beta: &[Self::Elem],
        bias: &ScoreBias<'_, Self::Tensor>,
        out: &Self::Tensor,
        lse: &Self::Tensor,
        d_out: &Self::Tensor,
    ) -> (Self::Tensor, Self::Tensor, Self::Tensor) {
        let _ = (out, lse);
        reference::association_backward(self, q, k, v, beta, bias, d_out)
    }
    /// Per head `h`: `max_b ‖a[b,h] − b[b,h]‖_F` over the trailing axes. `a, b: [B, H, ..]`. Host result `[H]`.
    fn head_distance(&self, a: &Self::Tensor, b: &Self::Tensor) -> Vec<Self::Elem>;
    /// Per head: `new[:, h]` where `take_new[h]`, else `old[:, h]`. `new, old: [B, H, ..]`.
    fn select_heads(&self, new: &Self::Tensor, old: &Self::Tensor, take_new: &[bool]) -> Self::Tensor;
    /// An inverted-dropout multiplier: each element `1/(1−p)` with probability `1−p`, else 0, drawn from a
    /// generator seeded with `seed` (the same seed gives the same mask on every backend).
    fn dropout_mask(&self, shape: &[usize], p: f64, seed: u64) -> Self::Tensor;

    // ---- optimiser updates -----------------------------------------------------------------------------

    /// One fused Adam/AdamW update of `param` from `grad`, updating the moments `m` and `v` in place.
    fn adam_step(
        &self,
        param: &mut Self::Tensor,
        grad: &Self::Tensor,
        m: &mut Self::Tensor,
        v: &mut Self::Tensor,
        hp: AdamStep,
    );
}
