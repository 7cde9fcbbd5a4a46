//! Layer normalisation over the last axis (PyTorch's `nn.LayerNorm`).

use crate::backend::Backend;
use crate::element::Element;
use crate::error::{HopfieldError, Result};
use crate::layers::{Layer, Mode};
use crate::params::Parameters;
use num_traits::One;

/// Affine parameters (and gradients) of a [`LayerNorm`]: `weight [n]`, `bias [n]`.
#[derive(Clone, Debug, Parameters)]
pub struct LayerNormParams<B: Backend> {
    /// `[n]`, initialised to one.
    pub weight: B::Tensor,
    /// `[n]`, initialised to zero.
    pub bias: B::Tensor,
}

/// Layer norm with optional elementwise affine parameters.
///
/// # Shapes
/// input `[.., n]` → output `[.., n]`.
#[derive(Clone, Debug, Parameters)]
pub struct LayerNorm<B: Backend> {
    /// Normalised size.
    #[param(skip)]
    pub size: usize,
    /// Denominator offset.
    #[param(skip)]
    pub eps: f64,
    /// `None` without elementwise affine.
    #[param(flatten)]
    pub params: Option<LayerNormParams<B>>,
}

/// What [`LayerNorm`]'s backward needs: the input and the per-row statistics.
#[derive(Clone, Debug)]
pub struct LayerNormCache<B: Backend> {
    /// Forward input.
    pub x: B::Tensor,
    /// `[rows, 2]` (mean, 1/σ).
    pub stats: B::Tensor,
}

impl<B: Backend> LayerNorm<B> {
    /// Weight one, bias zero (when `affine`).
    pub fn new(backend: &B, size: usize, eps: f64, affine: bool) -> Result<Self> {
        if size == 0 {
            return Err(HopfieldError::config("layer_norm", "size must be positive"));
        }
        if !(eps > 0.0) {
            return Err(HopfieldError::config("layer_norm", format!("eps must be positive, got {eps}")));
        }
        let params = affine.then(|| LayerNormParams::new(backend, size));
        Ok(LayerNorm { size, eps, params })
    }
}

impl<B: Backend> Layer<B> for LayerNorm<B> {
    type Params = Option<LayerNormParams<B>>;
    type Input = B::Tensor;
    type Output = B::Tensor;
    type Cache = LayerNormCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = B::Tensor;

    fn params(&self) -> &Option<LayerNormParams<B>> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Option<LayerNormParams<B>> {
        &mut self.params
    }

    /// Normalise the last axis.
    fn forward(
        &self,
        backend: &B,
        params: &Option<LayerNormParams<B>>,
        x: &B::Tensor,
        _mode: Mode,
    ) -> Result<(B::Tensor, LayerNormCache<B>)> {
        let shape = backend.shape(x);
        if shape.last() != Some(&self.size) {
            return Err(HopfieldError::shape("layer_norm.forward", format!("[.., {}]", self.size), &shape));
        }
        let (w, b) = match params {
            Some(p) => (Some(&p.weight), Some(&p.bias)),
            None => (None, None),
        };
        let (y, stats) = backend.layer_norm(x, w, b, B::Elem::of(self.eps));
        Ok((y, LayerNormCache { x: x.clone(), stats }))
    }

    /// Accumulates the affine gradients into `grads` (when affine) and returns `dx`.
    fn backward(
        &self,
        backend: &B,
        params: &Option<LayerNormParams<B>>,
        cache: &LayerNormCache<B>,
        dy: &B::Tensor,
        grads: &mut Option<LayerNormParams<B>>,
    ) -> Result<B::Tensor> {
        let (want, got) = (backend.shape(&cache.x), backend.shape(dy));
        if want != got {
            return Err(HopfieldError::shape("layer_norm.backward(dy)", format!("{want:?}"), &got));
        }
        let (dx, affine) = backend.layer_norm_backward(&cache.x, &cache.stats, params.as_ref().map(|p| &p.weight), dy);
        if let (Some((dw, db)), Some(g)) = (affine, grads.as_mut()) {
            backend.axpy(&mut g.weight, B::Elem::one(), &dw);
            backend.axpy(&mut g.bias, B::Elem::one(), &db);
        }
        Ok(dx)
    }
}

/// Affine layer norm with explicit parameters: returns the output and the cache.
pub fn layer_norm_forward<B: Backend>(
    backend: &B,
    p: &LayerNormParams<B>,
    eps: f64,
    x: &B::Tensor,
) -> (B::Tensor, LayerNormCache<B>) {
    let (y, stats) = backend.layer_norm(x, Some(&p.weight), Some(&p.bias), B::Elem::of(eps));
    (y, LayerNormCache { x: x.clone(), stats })
}

/// Backward of [`layer_norm_forward`]: accumulates into `grads`, returns `dx`.
pub fn layer_norm_backward<B: Backend>(
    backend: &B,
    p: &LayerNormParams<B>,
    cache: &LayerNormCache<B>,
    dy: &B::Tensor,
    grads: &mut LayerNormParams<B>,
) -> B::Tensor {
    let (dx, affine) = backend.layer_norm_backward(&cache.x, &cache.stats, Some(&p.weight), dy);
    let (dw, db) = affine.expect("affine norm returns parameter gradients");
    backend.axpy(&mut grads.weight, B::Elem::one(), &dw);
    backend.axpy(&mut grads.bias, B::Elem::one(), &db);
    dx
}

impl<B: Backend> LayerNormParams<B> {
    /// Weight one, bias zero.
    pub fn new(backend: &B, size: usize) -> Self {
        LayerNormParams { weight: backend.full(&[size], B::Elem::one()), bias: backend.zeros(&[size]) }
    }
}
