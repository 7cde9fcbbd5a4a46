//! CLIP's `AttentionPool2d`: the feature map's pixels become tokens, their mean is prepended as the
//! query token, a positional embedding is added, and multi-head attention with the mean token as the only
//! query (separate `q/k/v_proj` with biases, scores scaled by `1/√head_dim`) is projected by `c_proj`.
//!
//! This is not the Hopfield layer's packed `in_proj` self-attention (a single query, four separately named
//! projections), so it is written directly with [`Backend::association`].

use hopfield::backend::ScoreBias;
use hopfield::init;
use hopfield::layers::linear::{linear_backward, linear_forward};
use hopfield::layers::LinearParams;
use hopfield::{Backend, Element, HopfieldError, Parameters, Result};
use rand::Rng;

/// `attnpool.*`: its tensors (a zeroed copy holds the gradients).
///
/// # Shapes
/// `positional_embedding [1 + grid², C]`, `q/k/v_proj.weight [C, C]`, `c_proj.weight [out, C]`, biases
/// `[C]` / `[out]`.
#[derive(Clone, Debug, Parameters)]
pub struct AttentionPool2d<B: Backend> {
    /// Attention heads; divide `C`.
    #[param(skip)]
    pub heads: usize,
    /// `positional_embedding`, `[1 + grid², C]`.
    pub positional_embedding: B::Tensor,
    /// `k_proj.*`.
    pub k_proj: LinearParams<B>,
    /// `q_proj.*`.
    pub q_proj: LinearParams<B>,
    /// `v_proj.*`.
    pub v_proj: LinearParams<B>,
    /// `c_proj.*`.
    pub c_proj: LinearParams<B>,
}

/// What [`AttentionPool2d::backward`] needs.
#[derive(Clone, Debug)]
pub struct AttentionPoolCache<B: Backend> {
    tokens: B::Tensor,
    q: B::Tensor,
    k: B::Tensor,
    v: B::Tensor,
    out: B::Tensor,
    lse: B::Tensor,
    merged: B::Tensor,
}

fn linear_params<B: Backend>(backend: &B, out: usize, inp: usize, std: f64, rng: &mut impl Rng) -> LinearParams<B> {
    let bound = 1.0 / (inp as f64).sqrt();
    LinearParams {
        weight: init::normal(backend, &[out, inp], std, rng),
        bias: Some(init::uniform(backend, &[out], bound, rng)),
    }
}

impl<B: Backend> AttentionPool2d<B> {
    /// open_clip's initialisation: positional embedding N(0, 1/C), every projection weight N(0, 1/C),
    /// biases PyTorch's default U(±1/√C).
    pub fn init(backend: &B, grid: usize, width: usize, heads: usize, output_dim: usize, rng: &mut impl Rng) -> Self {
        let std = (width as f64).powf(-0.5);
        AttentionPool2d {
            heads,
            positional_embedding: init::normal(backend, &[grid * grid + 1, width], std, rng),
            k_proj: linear_params(backend, width, width, std, rng),
            q_proj: linear_params(backend, width, width, std, rng),
            v_proj: linear_params(backend, width, width, std, rng),
            c_proj: linear_params(backend, output_dim, width, std, rng),
        }
    }

    fn beta(&self, width: usize) -> Vec<B::Elem> {
        vec![B::Elem::of(((width / self.heads) as f64).powf(-0.5)); self.heads]
    }

    /// `[B, T, C]` → `[B, H, T, C/H]`.
    fn split(&self, backend: &B, x: &B::Tensor) -> B::Tensor {
        let s = backend.shape(x);
        let x = backend.reshape(x, &[s[0], s[1], self.heads, s[2] / self.heads]);
        backend.permute(&x, &[0, 2, 1, 3])
    }

    /// `[B, H, T, d]` → `[B, T, H·d]`.
    fn merge(&self, backend: &B, x: &B::Tensor) -> B::Tensor {
        let s = backend.shape(x);
        backend.reshape(&backend.permute(x, &[0, 2, 1, 3]), &[s[0], s[2], s[1] * s[3]])
    }

    /// The pooled features of a feature map.
    ///
    /// # Shapes
    /// `x: [B, HW, C]` (pixels row-major) with `1 + HW` rows of the positional embedding → `[B, out]`.
    pub fn forward(&self, backend: &B, p: &Self, x: &B::Tensor) -> Result<(B::Tensor, AttentionPoolCache<B>)> {
        let s = backend.shape(x);
        let pos = backend.shape(&p.positional_embedding);
        if s.len() != 3 || s[0] == 0 || s[1] + 1 != pos[0] || s[2] != pos[1] {
            return Err(HopfieldError::shape("attnpool.forward", format!("[B, {}, {}]", pos[0] - 1, pos[1]), &s));
        }
        let (b, hw, c) = (s[0], s[1], s[2]);
        let mean = backend.scale(&backend.sum_axis(x, 1), B::Elem::of(1.0 / hw as f64));
        let tokens = backend.concat(&mean, x, 1);
        let pos = backend.expand(&backend.reshape(&p.positional_embedding, &[1, hw + 1, c]), 0, b);
        let tokens = backend.add(&tokens, &pos);
        let query = backend.slice(&tokens, 1, 0, 1);
        let q = self.split(backend, &linear_forward(backend, &query, &p.q_proj.weight, p.q_proj.bias.as_ref()));
        let k = self.split(backend, &linear_forward(backend, &tokens, &p.k_proj.weight, p.k_proj.bias.as_ref()));
        let v = self.split(backend, &linear_forward(backend, &tokens, &p.v_proj.weight, p.v_proj.bias.as_ref()));
        let (out, lse) = backend.association(&q, &k, &v, &self.beta(c), &ScoreBias::default());
        let merged = backend.reshape(&self.merge(backend, &out), &[b, c]);
        let y = linear_forward(backend, &merged, &p.c_proj.weight, p.c_proj.bias.as_ref());
        Ok((y, AttentionPoolCache { tokens, q, k, v, out, lse, merged }))
    }

    /// Backward of [`AttentionPool2d::forward`]: accumulates into `grads`, returns `dx`.
    ///
    /// # Shapes
    /// `dy: [B, out]` → `[B, HW, C]`.
    pub fn backward(
        &self,
        backend: &B,
        p: &Self,
        cache: &AttentionPoolCache<B>,
        dy: &B::Tensor,
        grads: &mut Self,
    ) -> Result<B::Tensor> {
        let ts = backend.shape(&cache.tokens);
        let (b, t, c) = (ts[0], ts[1], ts[2]);
        let out_dim = backend.shape(&p.c_proj.weight)[0];
        if backend.shape(dy) != [b, out_dim] {
            return Err(HopfieldError::shape("attnpool.backward(dy)", format!("[{b}, {out_dim}]"), &backend.shape(dy)));
        }
        let one = B::Elem::of(1.0);
        let g = &mut *grads;
        let d_merged =
            linear_backward(backend, &cache.merged, &p.c_proj.weight, dy, &mut g.c_proj.weight, g.c_proj.bias.as_mut());
        let d_out = self.split(backend, &backend.reshape(&d_merged, &[b, 1, c]));
        let (dq, dk, dv) = backend.association_backward(
            &cache.q,
            &cache.k,
            &cache.v,
            &self.beta(c),
            &ScoreBias::default(),
            &cache.out,
            &cache.lse,
            &d_out,
        );
        let (dq, dk, dv) = (self.merge(backend, &dq), self.merge(backend, &dk), self.merge(backend, &dv));
        let query = backend.slice(&cache.tokens, 1, 0, 1);
        let d_query =
            linear_backward(backend, &query, &p.q_proj.weight, &dq, &mut g.q_proj.weight, g.q_proj.bias.as_mut());
        let mut d_tokens = linear_backward(
            backend,
            &cache.tokens,
            &p.k_proj.weight,
            &dk,
            &mut g.k_proj.weight,
            g.k_proj.bias.as_mut(),
        );
        let d_v = linear_backward(
            backend,
            &cache.tokens,
            &p.v_proj.weight,
            &dv,
            &mut g.v_proj.weight,
            g.v_proj.bias.as_mut(),
        );
        backend.axpy(&mut d_tokens, one, &d_v);
        backend.slice_add(&mut d_tokens, 1, 0, &d_query);
        // tokens = concat(mean(x), x) + pos
        let d_pos = backend.reshape(&backend.sum_axis(&d_tokens, 0), &[t, c]);
        backend.axpy(&mut g.positional_embedding, one, &d_pos);
        let d_mean = backend.scale(&backend.slice(&d_tokens, 1, 0, 1), B::Elem::of(1.0 / (t - 1) as f64));
        let dx = backend.slice(&d_tokens, 1, 1, t - 1);
        Ok(backend.add(&dx, &backend.expand(&d_mean, 1, t - 1)))
    }
}
