//! Layer normalisation over the last axis (PyTorch's `nn.LayerNorm`).

use crate::backend::Backend;
use crate::element::Element;
use crate::error::{HopfieldError, Result};
use crate::params::Parameters;
use num_traits::One;

/// Affine parameters (and gradients) of a [`LayerNorm`]: `weight [n]`, `bias [n]`.
#[derive(Clone, Debug)]
pub struct LayerNormParams<B: Backend> {
    /// `[n]`, initialised to one.
    pub weight: B::Tensor,
    /// `[n]`, initialised to zero.
    pub bias: B::Tensor,
}

impl<B: Backend> Parameters<B> for LayerNormParams<B> {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&str, &'a B::Tensor, bool)) {
        f("weight", &self.weight, true);
        f("bias", &self.bias, true);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, &mut B::Tensor, bool)) {
        f("weight", &mut self.weight, true);
        f("bias", &mut self.bias, true);
    }
}

/// Layer norm with optional elementwise affine parameters.
///
/// # Shapes
/// input `[.., n]` → output `[.., n]`.
#[derive(Clone, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Normalised size.
    pub size: usize,
    /// Denominator offset.
    pub eps: f64,
    /// `None` without elementwise affine.
    pub params: Option<LayerNormParams<B>>,
}

/// What [`LayerNorm::backward`] needs: the input and the per-row statistics.
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
        let params = affine.then(|| LayerNormParams {
            weight: backend.full(&[size], B::Elem::one()),
            bias: backend.zeros(&[size]),
        });
        Ok(LayerNorm { size, eps, params })
    }

    /// Normalise the last axis.
    pub fn forward(&self, backend: &B, x: &B::Tensor) -> Result<(B::Tensor, LayerNormCache<B>)> {
        let shape = backend.shape(x);
        if shape.last() != Some(&self.size) {
            return Err(HopfieldError::shape("layer_norm.forward", format!("[.., {}]", self.size), &shape));
        }
        let (w, b) = match &self.params {
            Some(p) => (Some(&p.weight), Some(&p.bias)),
            None => (None, None),
        };
        let (y, stats) = backend.layer_norm(x, w, b, B::Elem::of(self.eps));
        Ok((y, LayerNormCache { x: x.clone(), stats }))
    }

    /// Accumulates the affine gradients into `grads` (when affine) and returns `dx`.
    pub fn backward(&self, backend: &B, cache: &LayerNormCache<B>, dy: &B::Tensor, grads: Option<&mut LayerNormParams<B>>)
        -> B::Tensor {
        let (dx, affine) = backend.layer_norm_backward(&cache.x, &cache.stats, self.params.as_ref().map(|p| &p.weight), dy);
        if let (Some((dw, db)), Some(g)) = (affine, grads) {
            backend.axpy(&mut g.weight, B::Elem::one(), &dw);
            backend.axpy(&mut g.bias, B::Elem::one(), &db);
        }
        dx
    }
}

/// Affine layer norm with explicit parameters: returns the output and the cache.
pub fn layer_norm_forward<B: Backend>(backend: &B, p: &LayerNormParams<B>, eps: f64, x: &B::Tensor) -> (B::Tensor, LayerNormCache<B>) {
    let (y, stats) = backend.layer_norm(x, Some(&p.weight), Some(&p.bias), B::Elem::of(eps));
    (y, LayerNormCache { x: x.clone(), stats })
}

/// Backward of [`layer_norm_forward`]: accumulates into `grads`, returns `dx`.
pub fn layer_norm_backward<B: Backend>(backend: &B, p: &LayerNormParams<B>, cache: &LayerNormCache<B>, dy: &B::Tensor,
                                       grads: &mut LayerNormParams<B>) -> B::Tensor {
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
