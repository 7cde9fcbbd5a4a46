//! The transformer both towers share: a stack of pre-LN [`HopfieldEncoderLayer`]s whose association is
//! plain multi-head attention (no pattern norms, β = 1/√head_dim, no further update step), visited under
//! open_clip's names (`resblocks.{i}.attn.in_proj_weight`, `.ln_1`, `.mlp.c_fc`, …) so that open_clip
//! state dicts load by name.

use hopfield::init;
use hopfield::layers::encoder::EncoderCache;
use hopfield::layers::{EncoderInput, HopfieldConfig, HopfieldEncoderLayer, HopfieldEncoderLayerConfig, Layer, Mode};
use hopfield::{Backend, HopfieldError, Parameters, Result};
use rand::Rng;

/// How the blocks' weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockInit {
    /// PyTorch's defaults, as open_clip's (and OpenAI's) vision transformer keeps them: `in_proj_weight`
    /// Xavier-uniform, `out_proj` and the MLP `nn.Linear`'s U(±1/√fan_in), attention biases zero.
    TorchDefault,
    /// CLIP's text transformer: `in_proj_weight` N(0, width⁻¹ᐟ²), `out_proj.weight` and `c_proj.weight`
    /// N(0, width⁻¹ᐟ²·(2·layers)⁻¹ᐟ²), `c_fc.weight` N(0, (2·width)⁻¹ᐟ²);
    /// MLP biases keep `nn.Linear`'s U(±1/√fan_in), attention biases zero.
    WidthDepth,
}

/// Shape of one stack.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StackShape<'a> {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_ratio: f64,
    pub activation: &'a str,
    pub layer_norm_eps: f64,
}

impl StackShape<'_> {
    pub fn validate(&self, tower: &'static str) -> Result<usize> {
        if self.width == 0 || self.layers == 0 || self.heads == 0 {
            return Err(HopfieldError::config(
                tower,
                format!("width {}, layers {} and heads {} must be positive", self.width, self.layers, self.heads),
            ));
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(HopfieldError::config(
                tower,
                format!("width {} is not divisible by heads {}", self.width, self.heads),
            ));
        }
        let hidden = (self.width as f64 * self.mlp_ratio).round() as usize;
        if !(self.mlp_ratio > 0.0) || hidden == 0 {
            return Err(HopfieldError::config(tower, format!("mlp_ratio {} gives no hidden units", self.mlp_ratio)));
        }
        Ok(hidden)
    }

    fn layer_config(&self, hidden: usize) -> HopfieldEncoderLayerConfig {
        let attention =
            HopfieldConfig::new(self.width).num_heads(self.heads).normalize_all(false).update_steps_max(Some(0));
        let mut c = HopfieldEncoderLayerConfig::new(attention)
            .dim_feedforward(hidden)
            .dropout(0.0)
            .activation(self.activation)
            .norm_first(true);
        c.layer_norm_eps = self.layer_norm_eps;
        c
    }
}

/// `layers` residual attention blocks.
///
/// # Shapes
/// `[B, L, width]` → `[B, L, width]`.
#[derive(Clone, Debug, Parameters)]
pub struct Transformer<B: Backend> {
    /// The blocks, `resblocks.{i}.*` (open_clip's names).
    #[param(map_names = open_clip_name)]
    pub resblocks: Vec<HopfieldEncoderLayer<B>>,
}

impl<B: Backend> Transformer<B> {
    pub(crate) fn init(
        backend: &B,
        shape: &StackShape<'_>,
        tower: &'static str,
        how: BlockInit,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let hidden = shape.validate(tower)?;
        let config = shape.layer_config(hidden);
        let w = shape.width;
        let mut resblocks = Vec::with_capacity(shape.layers);
        for _ in 0..shape.layers {
            let mut layer = config.init(backend, rng)?;
            let p = &mut layer.params;
            let attn = &mut p.hopfield_association;
            let in_proj = attn.in_proj_weight.as_mut().expect("self-attention packs q, k, v into in_proj_weight");
            let out_proj = attn.out_proj_weight.as_mut().expect("attention has an output projection");
            match how {
                BlockInit::TorchDefault => {
                    *in_proj = init::uniform(backend, &[3 * w, w], (6.0 / (4 * w) as f64).sqrt(), rng);
                    *out_proj = init::uniform(backend, &[w, w], 1.0 / (w as f64).sqrt(), rng);
                }
                BlockInit::WidthDepth => {
                    let attn_std = (w as f64).powf(-0.5);
                    let proj_std = attn_std * ((2 * shape.layers) as f64).powf(-0.5);
                    let fc_std = ((2 * w) as f64).powf(-0.5);
                    *in_proj = init::normal(backend, &[3 * w, w], attn_std, rng);
                    *out_proj = init::normal(backend, &[w, w], proj_std, rng);
                    p.linear_residual.weight = init::normal(backend, &[hidden, w], fc_std, rng);
                    p.linear_output.weight = init::normal(backend, &[w, hidden], proj_std, rng);
                }
            }
            resblocks.push(layer);
        }
        Ok(Transformer { resblocks })
    }
}

impl<B: Backend> Transformer<B> {
    /// [`Layer::forward`] keeping the caches of blocks `keep_from..` only (the blocks before run as in
    /// inference: their caches are dropped as soon as the next block has its input), so that a backward
    /// from the returned caches stops at block `keep_from` (a locked tower's frozen blocks, see
    /// [`crate::lock`]).
    pub fn forward_keeping(
        &self,
        backend: &B,
        p: &Self,
        input: &EncoderInput<B>,
        mode: Mode,
        keep_from: usize,
    ) -> Result<(B::Tensor, Vec<EncoderCache<B>>)> {
        let mut x = input.src.clone();
        let mut caches = Vec::with_capacity(self.resblocks.len().saturating_sub(keep_from));
        for (i, (block, bp)) in self.resblocks.iter().zip(&p.resblocks).enumerate() {
            let block_input = EncoderInput { src: x, ..input.clone() };
            let (y, cache) = block.forward(backend, &bp.params, &block_input, mode)?;
            if i >= keep_from {
                caches.push(cache);
            }
            x = y;
        }
        Ok((x, caches))
    }
}

impl<B: Backend> Layer<B> for Transformer<B> {
    type Params = Transformer<B>;
    type Input = EncoderInput<B>;
    type Output = B::Tensor;
    type Cache = Vec<EncoderCache<B>>;
    type OutputGrad = B::Tensor;
    type InputGrad = B::Tensor;

    fn params(&self) -> &Self {
        self
    }
    fn params_mut(&mut self) -> &mut Self {
        self
    }

    /// Run every block; the input's `src_mask` is an association mask `[L, L]` (`true` = hidden).
    fn forward(
        &self,
        backend: &B,
        p: &Self,
        input: &EncoderInput<B>,
        mode: Mode,
    ) -> Result<(B::Tensor, Vec<EncoderCache<B>>)> {
        self.forward_keeping(backend, p, input, mode, 0)
    }

    /// Backward through the blocks whose caches are given (the last `caches.len()` blocks, see
    /// [`Transformer::forward_keeping`]): accumulates into their `grads` only, returns d loss / d input of
    /// the first of them.
    fn backward(
        &self,
        backend: &B,
        p: &Self,
        caches: &Vec<EncoderCache<B>>,
        dy: &B::Tensor,
        grads: &mut Self,
    ) -> Result<B::Tensor> {
        let skip = self.resblocks.len().checked_sub(caches.len()).ok_or_else(|| {
            HopfieldError::shape("transformer.backward", format!("≤ {} caches", self.resblocks.len()), &[caches.len()])
        })?;
        let mut d = dy.clone();
        let blocks = self.resblocks.iter().zip(&p.resblocks).zip(&mut grads.resblocks).skip(skip).zip(caches);
        for (((block, bp), g), cache) in blocks.rev() {
            d = block.backward(backend, &bp.params, cache, &d, &mut g.params)?;
        }
        Ok(d)
    }
}

/// hflayers' encoder-layer names → open_clip's `ResidualAttentionBlock` names.
fn open_clip_name(name: &str) -> String {
    const RENAMES: &[(&str, &str)] = &[
        ("hopfield_association.association_core.", "attn."),
        ("hopfield_association.", "attn."),
        ("linear_residual.", "mlp.c_fc."),
        ("linear_output.", "mlp.c_proj."),
        ("norm_residual.", "ln_1."),
        ("norm_output.", "ln_2."),
    ];
    RENAMES
        .iter()
        .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
        .unwrap_or_else(|| name.to_string())
}

/// `[N, D]`-or-more tensor times a `[D, E]` matrix stored as a parameter (open_clip's `x @ proj`).
pub(crate) fn project<B: Backend>(backend: &B, x: &B::Tensor, proj: &B::Tensor) -> B::Tensor {
    backend.matmul(x, proj, false, false)
}

/// Backward of [`project`] for `x: [N, D]`: `d_proj += xᵀ dy`, returns `dy projᵀ`.
pub(crate) fn project_backward<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    proj: &B::Tensor,
    dy: &B::Tensor,
    d_proj: &mut B::Tensor,
) -> B::Tensor {
    backend.axpy(d_proj, one::<B>(), &backend.matmul(x, dy, true, false));
    backend.matmul(dy, proj, false, true)
}

pub(crate) fn one<B: Backend>() -> B::Elem {
    <B::Elem as num_traits::One>::one()
}

/// `[n, W]` → `[B, n, W]`, the same rows for every sample (a positional embedding).
pub(crate) fn broadcast_batch<B: Backend>(backend: &B, t: &B::Tensor, batch: usize) -> B::Tensor {
    let s = backend.shape(t);
    backend.expand(&backend.reshape(t, &[1, s[0], s[1]]), 0, batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopfield::Cpu;
    use rand::SeedableRng;

    #[test]
    fn names_follow_open_clip_and_init_stds_follow_clip() {
        let cpu = Cpu::<f64>::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let shape = StackShape {
            width: 64,
            layers: 4,
            heads: 4,
            mlp_ratio: 4.0,
            activation: "quick_gelu",
            layer_norm_eps: 1e-5,
        };
        let t = Transformer::init(&cpu, &shape, "text", BlockInit::WidthDepth, &mut rng).unwrap();
        let names = t.names();
        let expected = [
            "resblocks.0.attn.in_proj_weight",
            "resblocks.0.attn.in_proj_bias",
            "resblocks.0.attn.out_proj.weight",
            "resblocks.0.attn.out_proj.bias",
            "resblocks.0.mlp.c_fc.weight",
            "resblocks.0.mlp.c_fc.bias",
            "resblocks.0.mlp.c_proj.weight",
            "resblocks.0.mlp.c_proj.bias",
            "resblocks.0.ln_1.weight",
            "resblocks.0.ln_1.bias",
            "resblocks.0.ln_2.weight",
            "resblocks.0.ln_2.bias",
        ];
        assert_eq!(&names[..12], &expected);
        assert_eq!(names.len(), 48);
        let std = |name: &str| {
            let mut v = Vec::new();
            t.visit(&mut |n, x, _| {
                if n == name {
                    v = x.iter().copied().collect()
                }
            });
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let close = |a: f64, b: f64| assert!((a / b - 1.0).abs() < 0.05, "std {a} vs {b}");
        close(std("resblocks.1.attn.in_proj_weight"), 64f64.powf(-0.5));
        close(std("resblocks.1.attn.out_proj.weight"), 64f64.powf(-0.5) * 8f64.powf(-0.5));
        close(std("resblocks.1.mlp.c_fc.weight"), 128f64.powf(-0.5));
        close(std("resblocks.1.mlp.c_proj.weight"), 64f64.powf(-0.5) * 8f64.powf(-0.5));
        assert_eq!(std("resblocks.1.attn.in_proj_bias"), 0.0);
        // Xavier-uniform in_proj for the vision tower: std = bound/√3 with bound = √(6/(w + 3w)).
        let v = Transformer::init(&cpu, &shape, "vision", BlockInit::TorchDefault, &mut rng).unwrap();
        let mut w = Vec::new();
        v.visit(&mut |n, x, _| {
            if n == "resblocks.2.attn.in_proj_weight" {
                w = x.iter().copied().collect()
            }
        });
        let s = (w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64).sqrt();
        close(s, (6.0f64 / 256.0).sqrt() / 3f64.sqrt());
        assert!(Transformer::<Cpu<f64>>::init(
            &cpu,
            &StackShape { heads: 5, ..shape },
            "text",
            BlockInit::WidthDepth,
            &mut rng
        )
        .is_err());
    }
}
