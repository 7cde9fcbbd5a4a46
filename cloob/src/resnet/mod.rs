//! The image tower of CLIP's ResNet models: open_clip's `ModifiedResNet`.
//!
//! images (NCHW) → channels-last → a three-convolution stem (3×3 stride 2, 3×3, 3×3, each with batch
//! norm and ReLU) → `AvgPool2d(2)` → four stages of anti-aliased [`Bottleneck`]s (the later three
//! halving the resolution) → [`AttentionPool2d`] → features. Names and shapes are open_clip's
//! `visual.*` state-dict keys (`conv1.weight [width/2, 3, 3, 3]`, `bn1.running_mean`,
//! `layer1.0.downsample.0.weight`, `attnpool.q_proj.bias`, ...); running statistics and
//! `num_batches_tracked` are visited as not trainable.
//!
//! Batch norms use the batch's statistics in [`Mode::Train`](hopfield::Mode) (unless
//! [`ResNetConfig::freeze_bn_stats`], open_clip's `lock(freeze_bn_stats=True)`) and the running ones in
//! [`Mode::Eval`](hopfield::Mode). The forward pass leaves the module unchanged;
//! [`ModifiedResNet::update_running_stats`] folds a training pass's statistics in afterwards.
//!
//! - [`conv`] holds convolution (im2col over the backend's row gather) and average pooling, NHWC.
//! - [`norm`] holds [`BatchNorm2d`].
//! - [`block`] holds conv + norm units and the [`Bottleneck`].
//! - [`attnpool`] holds [`AttentionPool2d`].
//! - [`tower`] holds [`ModifiedResNet`].

pub mod attnpool;
pub mod block;
pub mod conv;
pub mod norm;
pub mod tower;

pub use attnpool::AttentionPool2d;
pub use block::Bottleneck;
pub use conv::Conv2d;
pub use norm::BatchNorm2d;
pub use tower::{ModifiedResNet, ResNetCache};

use hopfield::{Backend, HopfieldError, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Shape of a ResNet image tower. Plain data with serde; presets by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResNetConfig {
    /// Square input side in pixels; a multiple of 32 (the tower downsamples 32×).
    pub image_size: usize,
    /// Input channels.
    pub channels: usize,
    /// Bottlenecks per stage (four stages).
    pub layers: [usize; 4],
    /// Stem width; stage `i` has bottleneck width `width·2ⁱ`, the last stage's output `32·width` channels.
    pub width: usize,
    /// Heads of the attention pool; divide `32·width`.
    pub heads: usize,
    /// Embedding size after the attention pool's `c_proj`.
    pub output_dim: usize,
    /// ε of every batch norm.
    pub bn_eps: f64,
    /// Momentum of the running statistics.
    pub bn_momentum: f64,
    /// Normalise with the running statistics also in training (open_clip's `freeze_bn_stats`).
    pub freeze_bn_stats: bool,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self::tiny()
    }
}

impl ResNetConfig {
    /// A test-sized tower: 32×32 images, one bottleneck per stage, width 8 (256 channels into the pool),
    /// 2 heads, 64-dimensional embeddings.
    pub fn tiny() -> Self {
        ResNetConfig {
            image_size: 32,
            channels: 3,
            layers: [1, 1, 1, 1],
            width: 8,
            heads: 2,
            output_dim: 64,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
            freeze_bn_stats: false,
        }
    }
    /// CLIP's RN50: 224×224 images, stages [3, 4, 6, 3], width 64, 32 heads, 1024-dim embeddings.
    pub fn rn50() -> Self {
        ResNetConfig { image_size: 224, layers: [3, 4, 6, 3], width: 64, heads: 32, output_dim: 1024, ..Self::tiny() }
    }
    /// CLIP's RN101: 224×224 images, stages [3, 4, 23, 3], width 64, 32 heads, 512-dim embeddings.
    pub fn rn101() -> Self {
        ResNetConfig { layers: [3, 4, 23, 3], output_dim: 512, ..Self::rn50() }
    }

    /// Channels into the attention pool, `32·width`.
    pub fn embed_width(&self) -> usize {
        self.width * 32
    }

    /// Side of the final feature map, `image_size / 32`.
    pub fn grid(&self) -> usize {
        self.image_size / 32
    }

    /// Check the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.image_size == 0 || !self.image_size.is_multiple_of(32) {
            return Err(HopfieldError::config(
                "vision.image_size",
                format!("must be a positive multiple of 32, got {}", self.image_size),
            ));
        }
        if self.width < 2 || !self.width.is_multiple_of(2) {
            return Err(HopfieldError::config(
                "vision.width",
                format!("must be even and positive, got {}", self.width),
            ));
        }
        if self.layers.contains(&0) {
            return Err(HopfieldError::config(
                "vision.layers",
                format!("every stage needs a block, got {:?}", self.layers),
            ));
        }
        if self.heads == 0 || !self.embed_width().is_multiple_of(self.heads) {
            return Err(HopfieldError::config(
                "vision.heads",
                format!("must divide 32·width = {}, got {}", self.embed_width(), self.heads),
            ));
        }
        if self.channels == 0 || self.output_dim == 0 {
            return Err(HopfieldError::config("vision.output_dim", "channels and output_dim must be positive"));
        }
        if !(self.bn_eps > 0.0) || !(0.0..=1.0).contains(&self.bn_momentum) {
            return Err(HopfieldError::config("vision.bn_eps", "ε must be positive and the momentum in [0, 1]"));
        }
        Ok(())
    }

    /// Validate and draw a tower with open_clip's initialisation (see [`ModifiedResNet::init`]).
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<ModifiedResNet<B>> {
        self.validate()?;
        Ok(ModifiedResNet::init(backend, self, rng))
    }
}
