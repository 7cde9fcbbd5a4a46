//! Affine map `y = x Wᵀ + b` (PyTorch's `nn.Linear` layout: `weight [out, in]`).

use crate::backend::Backend;
use crate::error::{HopfieldError, Result};
use crate::init;
use crate::layers::{Layer, Mode};
use crate::params::Parameters;
use rand::Rng;

/// Parameters (and gradients) of a [`Linear`]: `weight [out, in]`, optional `bias [out]`.
#[derive(Clone, Debug, Parameters)]
pub struct LinearParams<B: Backend> {
    /// `[out, in]`.
    pub weight: B::Tensor,
    /// `[out]`.
    pub bias: Option<B::Tensor>,
}

/// A dense layer.
///
/// # Shapes
/// input `[.., in]` → output `[.., out]`.
#[derive(Clone, Debug, Parameters)]
pub struct Linear<B: Backend> {
    /// Input features.
    #[param(skip)]
    pub in_features: usize,
    /// Output features.
    #[param(skip)]
    pub out_features: usize,
    /// Weights.
    #[param(flatten)]
    pub params: LinearParams<B>,
}

/// What [`Linear`]'s backward needs: the forward input.
#[derive(Clone, Debug)]
pub struct LinearCache<B: Backend> {
    /// `[.., in]`.
    pub x: B::Tensor,
}

impl<B: Backend> Linear<B> {
    /// PyTorch's default initialisation: weight and bias uniform in ±1/√in.
    pub fn new(backend: &B, in_features: usize, out_features: usize, bias: bool, rng: &mut impl Rng) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(HopfieldError::config(
                "linear",
                format!("sizes must be positive, got {in_features}→{out_features}"),
            ));
        }
        let bound = 1.0 / (in_features as f64).sqrt();
        let weight = init::uniform(backend, &[out_features, in_features], bound, rng);
        let bias = bias.then(|| init::uniform(backend, &[out_features], bound, rng));
        Ok(Linear { in_features, out_features, params: LinearParams { weight, bias } })
    }
}

impl<B: Backend> Layer<B> for Linear<B> {
    type Params = LinearParams<B>;
    type Input = B::Tensor;
    type Output = B::Tensor;
    type Cache = LinearCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = B::Tensor;

    fn params(&self) -> &LinearParams<B> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut LinearParams<B> {
        &mut self.params
    }

    /// `x Wᵀ + b`. Checks the last axis of `x`.
    fn forward(
        &self,
        backend: &B,
        params: &LinearParams<B>,
        x: &B::Tensor,
        _mode: Mode,
    ) -> Result<(B::Tensor, LinearCache<B>)> {
        let shape = backend.shape(x);
        if shape.last() != Some(&self.in_features) || shape.len() < 2 {
            return Err(HopfieldError::shape("linear.forward", format!("[.., {}]", self.in_features), &shape));
        }
        Ok((linear_forward(backend, x, &params.weight, params.bias.as_ref()), LinearCache { x: x.clone() }))
    }

    /// `dW += dyᵀ x`, `db += Σ dy`; returns `dx`.
    fn backward(
        &self,
        backend: &B,
        params: &LinearParams<B>,
        cache: &LinearCache<B>,
        dy: &B::Tensor,
        grads: &mut LinearParams<B>,
    ) -> Result<B::Tensor> {
        let (want, got) = (backend.shape(&cache.x), backend.shape(dy));
        if got.len() != want.len()
            || got[..got.len() - 1] != want[..want.len() - 1]
            || got.last() != Some(&self.out_features)
        {
            return Err(HopfieldError::shape("linear.backward(dy)", format!("[.., {}]", self.out_features), &got));
        }
        Ok(linear_backward(backend, &cache.x, &params.weight, dy, &mut grads.weight, grads.bias.as_mut()))
    }
}

/// `y = x Wᵀ + b`. `x: [.., in]`, `weight: [out, in]`, `bias: [out]`.
pub fn linear_forward<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    weight: &B::Tensor,
    bias: Option<&B::Tensor>,
) -> B::Tensor {
    backend.linear(x, weight, bias)
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
