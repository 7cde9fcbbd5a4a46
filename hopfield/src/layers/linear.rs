//! Affine map `y = x Wᵀ + b` (PyTorch's `nn.Linear` layout: `weight [out, in]`).

use crate::backend::Backend;
use crate::error::{HopfieldError, Result};
use crate::init;
use crate::params::Parameters;
use rand::Rng;

/// Parameters (and gradients) of a [`Linear`]: `weight [out, in]`, optional `bias [out]`.
#[derive(Clone, Debug)]
pub struct LinearParams<B: Backend> {
    /// `[out, in]`.
    pub weight: B::Tensor,
    /// `[out]`.
    pub bias: Option<B::Tensor>,
}

impl<B: Backend> Parameters<B> for LinearParams<B> {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&str, &'a B::Tensor, bool)) {
        f("weight", &self.weight, true);
        if let Some(b) = &self.bias {
            f("bias", b, true);
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, &mut B::Tensor, bool)) {
        f("weight", &mut self.weight, true);
        if let Some(b) = &mut self.bias {
            f("bias", b, true);
        }
    }
}

/// A dense layer.
///
/// # Shapes
/// input `[.., in]` → output `[.., out]`.
#[derive(Clone, Debug)]
pub struct Linear<B: Backend> {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Weights.
    pub params: LinearParams<B>,
}

impl<B: Backend> Linear<B> {
    /// PyTorch's default initialisation: weight and bias uniform in ±1/√in.
    pub fn new(backend: &B, in_features: usize, out_features: usize, bias: bool, rng: &mut impl Rng) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(HopfieldError::config("linear", format!("sizes must be positive, got {in_features}→{out_features}")));
        }
        let bound = 1.0 / (in_features as f64).sqrt();
        let weight = init::uniform(backend, &[out_features, in_features], bound, rng);
        let bias = bias.then(|| init::uniform(backend, &[out_features], bound, rng));
        Ok(Linear { in_features, out_features, params: LinearParams { weight, bias } })
    }

    /// Weights drawn from N(0, std²), bias zero (hflayers' and CLIP's initialisation).
    pub fn new_normal(backend: &B, in_features: usize, out_features: usize, bias: bool, std: f64, rng: &mut impl Rng)
        -> Result<Self> {
        let mut l = Self::new(backend, in_features, out_features, bias, rng)?;
        l.params.weight = init::normal(backend, &[out_features, in_features], std, rng);
        l.params.bias = bias.then(|| backend.zeros(&[out_features]));
        Ok(l)
    }

    /// `x Wᵀ + b`. Checks the last axis of `x`.
    pub fn forward(&self, backend: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let shape = backend.shape(x);
        if shape.last() != Some(&self.in_features) || shape.len() < 2 {
            return Err(HopfieldError::shape("linear.forward", format!("[.., {}]", self.in_features), &shape));
        }
        Ok(linear_forward(backend, x, &self.params.weight, self.params.bias.as_ref()))
    }

    /// Backward of [`Linear::forward`] with the forward input `x`: accumulates into `grads`, returns `dx`.
    pub fn backward(&self, backend: &B, x: &B::Tensor, dy: &B::Tensor, grads: &mut LinearParams<B>) -> B::Tensor {
        linear_backward(backend, x, &self.params.weight, dy, &mut grads.weight, grads.bias.as_mut())
    }
}

/// `y = x Wᵀ + b`. `x: [.., in]`, `weight: [out, in]`, `bias: [out]`.
pub fn linear_forward<B: Backend>(backend: &B, x: &B::Tensor, weight: &B::Tensor, bias: Option<&B::Tensor>) -> B::Tensor {
    let y = backend.matmul(x, weight, false, true);
    match bias {
        Some(b) => backend.add_bias(&y, b),
        None => y,
    }
}

/// Backward of [`linear_forward`]: `dW += dyᵀ x`, `db += Σ dy`, returns `dx = dy W`.
pub fn linear_backward<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    weight: &B::Tensor,
    dy: &B::Tensor,
    d_weight: &mut B::Tensor,
    d_bias: Option<&mut B::Tensor>,
) -> B::Tensor {
    let (xs, ys) = (backend.shape(x), backend.shape(dy));
    let rows: usize = xs[..xs.len() - 1].iter().product();
    let x2 = backend.reshape(x, &[rows, xs[xs.len() - 1]]);
    let dy2 = backend.reshape(dy, &[rows, ys[ys.len() - 1]]);
    let dw = backend.matmul(&dy2, &x2, true, false);
    backend.axpy(d_weight, <B::Elem as num_traits::One>::one(), &dw);
    if let Some(db) = d_bias {
        backend.axpy(db, <B::Elem as num_traits::One>::one(), &backend.sum_rows(dy));
    }
    backend.matmul(dy, weight, false, false)
}
