//! The image tower: a vision transformer (Dosovitskiy et al.) as in CLIP, with Hopfield encoder layers.
//!
//! images → patches (a Linear over flattened patches, i.e. `conv1` with stride = kernel) → class token
//! prepended → + positional embedding → `ln_pre` → pre-LN blocks → `ln_post` of the class token → `@ proj`.
//! Names and shapes follow open_clip's `VisionTransformer` (`conv1.weight [width, C, p, p]`,
//! `class_embedding [width]`, `positional_embedding [1 + grid², width]`, `proj [width, output_dim]`).

use crate::blocks::{broadcast_batch, one, project, project_backward, BlockInit, StackShape, Transformer};
use crate::lock::{first_kept_block, transformer_group, LockableTower, TowerLock};
use hopfield::init;
use hopfield::layers::encoder::EncoderCache;
use hopfield::layers::norm::{layer_norm_backward, layer_norm_forward};
use hopfield::layers::{EncoderInput, Layer, LayerNormCache, LayerNormParams, Mode};
use hopfield::{Backend, HopfieldError, Parameters, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Shape of the image tower. Plain data with serde; presets by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    /// Square input side in pixels.
    pub image_size: usize,
    /// Square patch side; divides `image_size`.
    pub patch_size: usize,
    /// Input channels.
    pub channels: usize,
    /// Transformer width.
    pub width: usize,
    /// Number of blocks.
    pub layers: usize,
    /// Attention heads; divide `width`.
    pub heads: usize,
    /// MLP hidden size / width.
    pub mlp_ratio: f64,
    /// MLP activation: `quick_gelu` (OpenAI CLIP, cloob) or `gelu` (open_clip's other models).
    pub activation: String,
    /// Embedding size after `proj`.
    pub output_dim: usize,
    /// ε of every layer norm.
    pub layer_norm_eps: f64,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self::tiny()
    }
}

impl VisionConfig {
    /// Trains on two CPU cores in minutes: 32×32 images, 8×8 patches (16 tokens + class), width 64,
    /// 2 blocks of 4 heads, 64-dimensional embeddings.
    pub fn tiny() -> Self {
        VisionConfig {
            image_size: 32,
            patch_size: 8,
            channels: 3,
            width: 64,
            layers: 2,
            heads: 4,
            mlp_ratio: 4.0,
            activation: "quick_gelu".into(),
            output_dim: 64,
            layer_norm_eps: 1e-5,
        }
    }
    /// A laptop-GPU model: 64×64 images, 8×8 patches, width 256, 6 blocks of 8 heads, 256-dim embeddings.
    pub fn small() -> Self {
        VisionConfig { image_size: 64, patch_size: 8, width: 256, layers: 6, heads: 8, output_dim: 256, ..Self::tiny() }
    }
    /// The paper's ViT-B/32: 224×224 images, 32×32 patches, width 768, 12 blocks of 12 heads, 512-dim
    /// embeddings.
    pub fn vit_b32() -> Self {
        VisionConfig {
            image_size: 224,
            patch_size: 32,
            width: 768,
            layers: 12,
            heads: 12,
            output_dim: 512,
            ..Self::tiny()
        }
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    fn stack(&self) -> StackShape<'_> {
        StackShape {
            width: self.width,
            layers: self.layers,
            heads: self.heads,
            mlp_ratio: self.mlp_ratio,
            activation: &self.activation,
            layer_norm_eps: self.layer_norm_eps,
        }
    }

    /// Check the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.patch_size == 0 || self.image_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(HopfieldError::config(
                "vision.patch_size",
                format!("must divide image_size {}, got {}", self.image_size, self.patch_size),
            ));
        }
        if self.channels == 0 || self.output_dim == 0 {
            return Err(HopfieldError::config("vision.output_dim", "channels and output_dim must be positive"));
        }
        if !(self.layer_norm_eps > 0.0) {
            return Err(HopfieldError::config("vision.layer_norm_eps", "must be positive"));
        }
        self.stack().validate("vision").map(|_| ())
    }

    /// Validate and draw a tower with open_clip's initialisation: class and positional embeddings and
    /// `proj` N(0, width⁻¹), `conv1` U(±1/√(C·p²)), blocks as PyTorch's defaults, norms one/zero.
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<VisionTransformer<B>> {
        self.validate()?;
        let (w, p, c) = (self.width, self.patch_size, self.channels);
        let scale = (w as f64).powf(-0.5);
        let conv_bound = 1.0 / ((c * p * p) as f64).sqrt();
        let tokens = self.grid() * self.grid() + 1;
        Ok(VisionTransformer {
            conv1_weight: init::uniform(backend, &[w, c, p, p], conv_bound, rng),
            class_embedding: init::normal(backend, &[w], scale, rng),
            positional_embedding: init::normal(backend, &[tokens, w], scale, rng),
            ln_pre: LayerNormParams::new(backend, w),
            transformer: Transformer::init(backend, &self.stack(), "vision", BlockInit::TorchDefault, rng)?,
            ln_post: LayerNormParams::new(backend, w),
            proj: init::normal(backend, &[w, self.output_dim], scale, rng),
            config: self.clone(),
        })
    }
}

/// The image tower and its tensors (a zeroed copy holds its gradients, see [`Layer::zero_grads`]).
///
/// # Shapes
/// images `[B, channels, image_size, image_size]` (NCHW, as PyTorch) → features `[B, output_dim]`
/// (not normalised).
#[derive(Clone, Debug, Parameters)]
pub struct VisionTransformer<B: Backend> {
    /// Its shape.
    #[param(skip)]
    pub config: VisionConfig,
    /// `conv1.weight`, `[width, C, p, p]`.
    #[param(rename = "conv1.weight")]
    pub conv1_weight: B::Tensor,
    /// `class_embedding`, `[width]`.
    pub class_embedding: B::Tensor,
    /// `positional_embedding`, `[1 + grid², width]`.
    pub positional_embedding: B::Tensor,
    /// `ln_pre.*`.
    pub ln_pre: LayerNormParams<B>,
    /// `transformer.resblocks.*`.
    pub transformer: Transformer<B>,
    /// `ln_post.*`.
    pub ln_post: LayerNormParams<B>,
    /// `proj`, `[width, output_dim]`, no bias.
    pub proj: B::Tensor,
}

/// What [`VisionTransformer`]'s backward needs: of the groups from `first_trainable` on only (see
/// [`LockableTower::forward_locked`]).
#[derive(Clone, Debug)]
pub struct VisionCache<B: Backend> {
    first_trainable: usize,
    patches: Option<B::Tensor>,
    ln_pre: Option<LayerNormCache<B>>,
    blocks: Vec<EncoderCache<B>>,
    ln_post: Option<LayerNormCache<B>>,
    pooled: B::Tensor,
}

/// `[B, C, H, W]` → `[B, grid², C·p·p]`: patch `(i, j)` is row `i·grid + j`, flattened channel-major like
/// the `[C, p, p]` kernel of `conv1`.
pub fn patchify<B: Backend>(backend: &B, images: &B::Tensor, patch: usize) -> B::Tensor {
    let s = backend.shape(images);
    let (b, c, gh, gw) = (s[0], s[1], s[2] / patch, s[3] / patch);
    let x = backend.reshape(images, &[b, c, gh, patch, gw, patch]);
    let x = backend.permute(&x, &[0, 2, 4, 1, 3, 5]);
    backend.reshape(&x, &[b, gh * gw, c * patch * patch])
}

impl<B: Backend> VisionTransformer<B> {
    fn check(&self, backend: &B, images: &B::Tensor) -> Result<usize> {
        let c = &self.config;
        let s = backend.shape(images);
        if s.len() != 4 || s[0] == 0 || s[1] != c.channels || s[2] != c.image_size || s[3] != c.image_size {
            return Err(HopfieldError::shape(
                "vision.forward(images)",
                format!("[B > 0, {}, {}, {}]", c.channels, c.image_size, c.image_size),
                &s,
            ));
        }
        Ok(s[0])
    }
}

impl<B: Backend> LockableTower<B> for VisionTransformer<B> {
    /// `layers + 2`: `[conv1, class_embedding, positional_embedding, ln_pre]`, blocks 0 … layers−2,
    /// `[the last block, ln_post]`, `[proj]` (open_clip's `VisionTransformer.lock`).
    fn lock_groups(&self) -> usize {
        self.config.layers + 2
    }
    fn lock_group_of(&self, name: &str) -> Option<usize> {
        let stem = ["conv1.weight", "class_embedding", "positional_embedding", "ln_pre"];
        transformer_group(name, self.config.layers, &stem, "ln_post", "proj")
    }
    fn forward_locked(
        &self,
        backend: &B,
        p: &Self,
        images: &B::Tensor,
        mode: Mode,
        lock: TowerLock,
    ) -> Result<(B::Tensor, VisionCache<B>)> {
        let b = self.check(backend, images)?;
        let first = lock.first_trainable;
        let c = &self.config;
        let (w, patch) = (c.width, c.patch_size);
        let patches = patchify(backend, images, patch);
        let kernel = backend.reshape(&p.conv1_weight, &[w, c.channels * patch * patch]);
        let x = backend.matmul(&patches, &kernel, false, true);
        let cls = backend.expand(&backend.reshape(&p.class_embedding, &[1, 1, w]), 0, b);
        let x = backend.concat(&cls, &x, 1);
        let x = backend.add(&x, &broadcast_batch(backend, &p.positional_embedding, b));
        let eps = c.layer_norm_eps;
        let (x, ln_pre) = layer_norm_forward(backend, &p.ln_pre, eps, &x);
        let keep_from = first_kept_block(first, c.layers);
        let input = EncoderInput::new(x);
        let (x, blocks) = self.transformer.forward_keeping(backend, &p.transformer, &input, mode, keep_from)?;
        let cls_out = backend.reshape(&backend.slice(&x, 1, 0, 1), &[b, w]);
        let (pooled, ln_post) = layer_norm_forward(backend, &p.ln_post, eps, &cls_out);
        let features = project(backend, &pooled, &p.proj);
        let (patches, ln_pre) = if first == 0 { (Some(patches), Some(ln_pre)) } else { (None, None) };
        let ln_post = (first <= c.layers).then_some(ln_post);
        Ok((features, VisionCache { first_trainable: first, patches, ln_pre, blocks, ln_post, pooled }))
    }
}

impl<B: Backend> Layer<B> for VisionTransformer<B> {
    type Params = VisionTransformer<B>;
    type Input = B::Tensor;
    type Output = B::Tensor;
    type Cache = VisionCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = ();

    fn params(&self) -> &Self {
        self
    }
    fn params_mut(&mut self) -> &mut Self {
        self
    }

    /// Image features `[B, output_dim]` and the cache for backward.
    fn forward(&self, backend: &B, p: &Self, images: &B::Tensor, mode: Mode) -> Result<(B::Tensor, VisionCache<B>)> {
        self.forward_locked(backend, p, images, mode, TowerLock::OPEN)
    }

    /// Backward from d loss / d features `[B, output_dim]`: accumulates every parameter gradient into
    /// `grads` (images get none).
    fn backward(
        &self,
        backend: &B,
        p: &Self,
        cache: &VisionCache<B>,
        d_features: &B::Tensor,
        grads: &mut Self,
    ) -> Result<()> {
        let c = &self.config;
        let (w, patch) = (c.width, c.patch_size);
        let shape = backend.shape(d_features);
        let b = backend.shape(&cache.pooled)[0];
        if shape != [b, c.output_dim] {
            return Err(HopfieldError::shape(
                "vision.backward(d_features)",
                format!("[{b}, {}]", c.output_dim),
                &shape,
            ));
        }
        let first = cache.first_trainable;
        if first > c.layers {
            // Only `proj` trains (or nothing): its gradient is all that is needed.
            if first == c.layers + 1 {
                backend.axpy(&mut grads.proj, one::<B>(), &backend.matmul(&cache.pooled, d_features, true, false));
            }
            return Ok(());
        }
        let missing = |name: &str| HopfieldError::Missing { op: "vision.backward", name: format!("{name} cache") };
        let ln_post = cache.ln_post.as_ref().ok_or_else(|| missing("ln_post"))?;
        let d_pooled = project_backward(backend, &cache.pooled, &p.proj, d_features, &mut grads.proj);
        let d_cls = layer_norm_backward(backend, &p.ln_post, ln_post, &d_pooled, &mut grads.ln_post);
        let tokens = c.grid() * c.grid() + 1;
        let mut dx = backend.zeros(&[b, tokens, w]);
        backend.slice_add(&mut dx, 1, 0, &backend.reshape(&d_cls, &[b, 1, w]));
        let dx = self.transformer.backward(backend, &p.transformer, &cache.blocks, &dx, &mut grads.transformer)?;
        let (Some(patches), Some(ln_pre)) = (&cache.patches, &cache.ln_pre) else {
            return Ok(()); // the stem is frozen
        };
        let dx = layer_norm_backward(backend, &p.ln_pre, ln_pre, &dx, &mut grads.ln_pre);
        // x = concat(cls, patches·kernelᵀ) + pos
        let d_pos = backend.sum_axis(&dx, 0);
        backend.axpy(&mut grads.positional_embedding, one::<B>(), &backend.reshape(&d_pos, &[tokens, w]));
        let d_cls_emb = backend.sum_axis(&backend.slice(&dx, 1, 0, 1), 0);
        backend.axpy(&mut grads.class_embedding, one::<B>(), &backend.reshape(&d_cls_emb, &[w]));
        let d_emb = backend.reshape(&backend.slice(&dx, 1, 1, tokens - 1), &[b * (tokens - 1), w]);
        let patches = backend.reshape(patches, &[b * (tokens - 1), c.channels * patch * patch]);
        let d_kernel = backend.matmul(&d_emb, &patches, true, false);
        backend.axpy(&mut grads.conv1_weight, one::<B>(), &backend.reshape(&d_kernel, &[w, c.channels, patch, patch]));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopfield::Cpu;
    use rand::SeedableRng;

    #[test]
    fn patchify_is_conv1_with_stride_equal_to_kernel() {
        let cpu = Cpu::<f64>::new();
        let (b, c, h, p, w) = (2, 3, 6, 3, 4);
        // Values k/4 keep sums exact.
        let images = cpu.from_vec((0..b * c * h * h).map(|k| (k % 13) as f64 / 4.0).collect(), &[b, c, h, h]);
        let kernel = cpu.from_vec((0..w * c * p * p).map(|k| (k % 7) as f64 / 4.0 - 0.5).collect(), &[w, c, p, p]);
        let out = cpu.matmul(&patchify(&cpu, &images, p), &cpu.reshape(&kernel, &[w, c * p * p]), false, true);
        let g = h / p;
        assert_eq!(out.shape(), [b, g * g, w]);
        for bi in 0..b {
            for (i, j, o) in (0..g).flat_map(|i| (0..g).flat_map(move |j| (0..w).map(move |o| (i, j, o)))) {
                let mut conv = 0.0;
                for (ci, u, v) in (0..c).flat_map(|ci| (0..p).flat_map(move |u| (0..p).map(move |v| (ci, u, v)))) {
                    conv += kernel[[o, ci, u, v]] * images[[bi, ci, i * p + u, j * p + v]];
                }
                assert_eq!(out[[bi, i * g + j, o]], conv, "sample {bi}, patch ({i}, {j}), channel {o}");
            }
        }
    }

    #[test]
    fn presets_validate_and_names_follow_open_clip() {
        for c in [VisionConfig::tiny(), VisionConfig::small(), VisionConfig::vit_b32()] {
            c.validate().unwrap();
        }
        let bad = VisionConfig { patch_size: 5, ..VisionConfig::tiny() };
        assert!(bad.validate().unwrap_err().to_string().contains("patch_size"));
        let cpu = Cpu::<f32>::new();
        let vit = VisionConfig::tiny().init(&cpu, &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
        let names = vit.names();
        assert_eq!(
            &names[..5],
            &["conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_pre.bias"]
        );
        assert!(names.contains(&"transformer.resblocks.1.attn.in_proj_weight".to_string()));
        assert_eq!(names.last().unwrap(), "proj");
        assert_eq!(cpu.shape(&vit.positional_embedding), [17, 64]);
        let err = vit.infer(&cpu, &cpu.zeros(&[2, 3, 16, 16])).unwrap_err();
        assert!(err.to_string().contains("[B > 0, 3, 32, 32]"), "{err}");
    }
}
