//! The tensor functions the layers are built from, as burn ops (so burn's autodiff differentiates them):
//! layer norm, linear maps, head splitting, the masked row normalisers and the activations.

use burn::tensor::activation;
use burn::tensor::{Bool, Tensor, TensorData};
use hopfield::Activation;

/// Layer norm over the last axis (biased variance, as PyTorch), with optional affine parameters.
///
/// # Shapes
/// `x [.., n]`, `weight`, `bias [n]` → `[.., n]`.
pub fn layer_norm<const D: usize>(x: Tensor<D>, eps: f64, affine: Option<(Tensor<1>, Tensor<1>)>) -> Tensor<D> {
    let mean = x.clone().mean_dim(D - 1);
    let centred = x - mean;
    let var = centred.clone().square().mean_dim(D - 1);
    let y = centred / var.add_scalar(eps).sqrt();
    match affine {
        Some((w, b)) => y * w.unsqueeze::<D>() + b.unsqueeze::<D>(),
        None => y,
    }
}

/// `x·Wᵀ + b` with PyTorch's weight layout.
///
/// # Shapes
/// `x [B, N, in]`, `weight [out, in]`, `bias [out]` → `[B, N, out]`.
pub fn linear(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [b, n, i] = x.dims();
    let out = weight.dims()[0];
    let y = x.reshape([b * n, i]).matmul(weight.transpose());
    let y = match bias {
        Some(bias) => y + bias.unsqueeze::<2>(),
        None => y,
    };
    y.reshape([b, n, out])
}

/// `[B, N, H·d] → [B, H, N, d]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, n, f] = x.dims();
    x.reshape([b, n, heads, f / heads]).swap_dims(1, 2)
}

/// `[B, H, N, d] → [B, N, H·d]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, n, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, n, h * d])
}

/// `[B, N, d] → [B, H, N, d]`: the same pattern for every head of its own sample.
pub fn broadcast_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    x.unsqueeze_dim::<4>(1).repeat_dim(1, heads)
}

/// Per-head β as `[1, H, 1, 1]`.
pub fn beta_tensor(beta: &[f64], device: &burn::tensor::Device) -> Tensor<4> {
    let h = beta.len();
    let values: Vec<f32> = beta.iter().map(|&b| b as f32).collect();
    Tensor::<1>::from_floats(values.as_slice(), device).reshape([1, h, 1, 1])
}

/// A row maximum that is `-inf` (every entry masked) replaced by 0, detached: softmax is invariant to the
/// shift, so its gradient does not depend on it, and a fully masked row computes `exp(-inf) = 0` everywhere.
fn safe_row_max(z: &Tensor<4>) -> Tensor<4> {
    let m = z.clone().max_dim(3).detach();
    let hidden = m.clone().is_inf();
    m.mask_fill(hidden, 0.0)
}

/// `softmax(z)` per row; a fully masked row (all `-inf`) gives zeros, not NaN (hflayers gives NaN).
///
/// # Shapes
/// `z [B, H, L, S]` → the same.
pub fn masked_softmax(z: Tensor<4>) -> Tensor<4> {
    let e = (z.clone() - safe_row_max(&z)).exp();
    let sum = e.clone().sum_dim(3);
    // A fully masked row sums to 0: divide its zeros by 1, so that the backward (−e/sum²) is 0, not NaN.
    let empty = sum.clone().equal_elem(0.0);
    e / sum.mask_fill(empty, 1.0)
}

/// `softmax₁(z)ᵢ = exp(zᵢ) / (1 + Σⱼ exp(zⱼ))` per row (a query may retrieve almost nothing).
pub fn masked_softmax1(z: Tensor<4>) -> Tensor<4> {
    // Shift by max(m, 0) so that both exp(z − m') and the 1 = exp(0 − m') stay ≤ 1.
    let m = safe_row_max(&z).clamp_min(0.0);
    let e = (z - m.clone()).exp();
    let sum = e.clone().sum_dim(3) + m.neg().exp();
    e / sum
}

/// α-entmax per row (`α = 2`: sparsemax): `p = [(α−1)z − τ]₊^{1/(α−1)}` with `Σp = 1`, `τ` found by
/// bisection; a fully masked row gives zeros. The gradient is entmax's own Jacobian
/// `diag(s) − s·sᵀ/Σs`, `s = p^{2−α}`, attached to the bisection's (constant) result as
/// `p + g(z) − g(z).detach()` with `g(z) = s⊙z − s·(s·z)/Σs` (s held constant), which is exact.
///
/// # Shapes
/// `z [B, H, L, S]`, `alpha [1, H, 1, 1]` (constants) → the same as `z`.
pub fn masked_entmax(z: Tensor<4>, alpha: &[f64]) -> Tensor<4> {
    let device = z.device();
    let h = alpha.len();
    let am1: Vec<f32> = alpha.iter().map(|&a| (a - 1.0) as f32).collect();
    let am1 = Tensor::<1>::from_floats(am1.as_slice(), &device).reshape([1, h, 1, 1]);
    let zd = z.clone().detach();
    let hidden_rows = zd.clone().max_dim(3).is_inf();
    let x = (zd - safe_row_max(&z)) * am1.clone();
    let inv = am1.clone().recip();
    let mass = |tau: &Tensor<4>| -> Tensor<4> { (x.clone() - tau.clone()).clamp_min(0.0).powf(inv.clone()) };
    // p(τ) sums to 1 at some τ ∈ [max − 1, max] = [−1, 0] after the shift (max x = 0).
    let mut lo = Tensor::<4>::full(hidden_rows.dims(), -1.0, &device);
    let mut hi = Tensor::<4>::zeros(hidden_rows.dims(), &device);
    for _ in 0..40 {
        let mid = (lo.clone() + hi.clone()).mul_scalar(0.5);
        let too_much = mass(&mid).sum_dim(3).greater_equal_elem(1.0);
        lo = lo.mask_where(too_much.clone(), mid.clone());
        hi = mid.mask_where(too_much, hi);
    }
    let p = mass(&lo);
    let p = (p.clone() / p.sum_dim(3).clamp_min(f32::MIN_POSITIVE)).mask_fill(hidden_rows.clone(), 0.0);
    // s = p^{2−α} on the support (0 elsewhere), held constant.
    let two_minus_alpha = am1.neg().add_scalar(1.0);
    let support = p.clone().greater_elem(0.0);
    let s = p.clone().clamp_min(f32::MIN_POSITIVE).powf(two_minus_alpha).mask_fill(support.bool_not(), 0.0);
    let s_sum = s.clone().sum_dim(3).clamp_min(f32::MIN_POSITIVE);
    let zs = z.mask_fill(hidden_rows.clone(), 0.0);
    let zs = zs.clone().mask_fill(zs.clone().is_inf(), 0.0);
    let g = s.clone() * zs.clone() - s.clone() * (s * zs).sum_dim(3) / s_sum;
    p + g.clone() - g.detach()
}

/// An additive score bias of `-inf` where `mask` is true.
pub fn additive<const D: usize>(mask: Tensor<D, Bool>) -> Tensor<D> {
    let zeros = Tensor::<D>::zeros(mask.dims(), &mask.device());
    zeros.mask_fill(mask, f32::NEG_INFINITY)
}

/// `max_b ‖a_b,h − b_b,h‖_F` per head, read to the host (convergence tests of the update steps).
///
/// # Shapes
/// `a`, `b [B, H, N, M]` → `H` values.
pub fn head_distance(a: Tensor<4>, b: Tensor<4>) -> Vec<f64> {
    let [bs, h, _, _] = a.dims();
    let d = (a - b).square().sum_dims(&[2, 3]).reshape([bs, h]).sqrt().max_dim(0);
    d.into_data().convert::<f64>().try_to_vec::<f64>().expect("f64 data")
}

/// `new` on the heads where `take_new` is true, else `old`.
pub fn select_heads(new: Tensor<4>, old: Tensor<4>, take_new: &[bool]) -> Tensor<4> {
    let device = new.device();
    let keep_old: Vec<bool> = take_new.iter().map(|t| !t).collect();
    let mask = Tensor::<1, Bool>::from_data(TensorData::new(keep_old, [take_new.len()]), &device).reshape([
        1,
        take_new.len(),
        1,
        1,
    ]);
    new.mask_where(mask.expand(old.dims()), old)
}

/// One of `hopfield`'s activations as burn ops (the same formulas).
pub fn activate<const D: usize>(x: Tensor<D>, act: Activation) -> Tensor<D> {
    const GELU_C: f64 = 0.797_884_560_802_865_4; // √(2/π)
    const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
    const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
    match act {
        Activation::Identity => x,
        Activation::Relu => activation::relu(x),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => activation::sigmoid(x),
        // Exact GELU from erf, not `burn::tensor::activation::gelu`: burn 0.22.1's gelu backward is the
        // derivative of the tanh approximation (up to ~1e-4 off the exact one its forward computes).
        Activation::Gelu => x.clone() * x.div_scalar(std::f64::consts::SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5),
        Activation::GeluTanh => {
            let u = (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044715)).mul_scalar(GELU_C);
            x.mul_scalar(0.5) * u.tanh().add_scalar(1.0)
        }
        Activation::QuickGelu => x.clone() * activation::sigmoid(x.mul_scalar(1.702)),
        Activation::Silu => activation::silu(x),
        Activation::Elu => {
            let neg = x.clone().lower_equal_elem(0.0);
            x.clone().mask_where(neg, x.clamp_max(0.0).exp().sub_scalar(1.0))
        }
        Activation::Selu => {
            let neg = x.clone().lower_equal_elem(0.0);
            let e = x.clone().clamp_max(0.0).exp().sub_scalar(1.0).mul_scalar(SELU_ALPHA);
            x.mask_where(neg, e).mul_scalar(SELU_SCALE)
        }
        Activation::Softplus => activation::softplus(x, 1.0),
    }
}
