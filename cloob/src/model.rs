//! The two-tower model: L2-normalised image and text embeddings (through [`crate::loss::l2_normalize`])
//! and the inverse temperature τ⁻¹, stored as its logarithm `logit_scale` (open_clip's name; cloob calls it
//! `logit_inv_tau`), fixed by default.
//!
//! Parameter names are open_clip's `CLIP` state-dict keys: `visual.*` for the image tower, the text tower
//! at the root (`token_embedding.weight`, `transformer.resblocks.*`, `ln_final.*`, `text_projection`), and
//! `logit_scale`.

use crate::image_tower::{ImageTower, ImageTowerCache, ImageTowerConfig, TowerStats};
use crate::lock::{LockableTower, ModelLock};
use crate::loss::{l2_normalize, l2_normalize_backward, L2NormCache};
use crate::resnet::ResNetConfig;
use crate::text::{TextCache, TextConfig, TextTransformer};
use crate::tokenizer::TokenBatch;
use crate::vit::VisionConfig;
use hopfield::layers::{Layer, Mode};
use hopfield::{Backend, Element, HopfieldError, Parameters, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The largest `logit_scale`, ln 100 (τ⁻¹ ≤ 100), as open_clip clamps it.
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_092;

/// Both towers and the temperature. Plain data with serde; presets by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// Size of the shared embedding space (both towers' `output_dim`).
    pub embed_dim: usize,
    /// The image tower: a vision transformer or a ResNet (`vision.kind`; files without it hold a vision
    /// transformer).
    pub vision: ImageTowerConfig,
    /// The text tower.
    pub text: TextConfig,
    /// Initial τ⁻¹ (CLIP's 1/0.07 ≈ 14.3; cloob's default 14.3).
    pub init_inv_tau: f64,
    /// Whether τ⁻¹ is trained (cloob's `--learnable-inv-tau`); fixed by default.
    pub learnable_inv_tau: bool,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self::tiny()
    }
}

impl ClipConfig {
    /// Both towers' `tiny` presets, 64-dimensional embeddings.
    pub fn tiny() -> Self {
        ClipConfig {
            embed_dim: 64,
            vision: VisionConfig::tiny().into(),
            text: TextConfig::tiny(),
            init_inv_tau: 14.3,
            learnable_inv_tau: false,
        }
    }
    /// Both towers' `small` presets, 256-dimensional embeddings.
    pub fn small() -> Self {
        ClipConfig { embed_dim: 256, vision: VisionConfig::small().into(), text: TextConfig::small(), ..Self::tiny() }
    }
    /// The paper's ViT-B/32 with the 512-wide, 8-head, 12-block text transformer, 512-dim embeddings.
    pub fn vit_b32() -> Self {
        ClipConfig { embed_dim: 512, vision: VisionConfig::vit_b32().into(), text: TextConfig::paper(), ..Self::tiny() }
    }
    /// CLIP's RN50: the ResNet-50 image tower (224×224, attention pool of 32 heads) and the 512-wide,
    /// 8-head, 12-block text transformer, 1024-dim embeddings.
    pub fn rn50() -> Self {
        let text = TextConfig { output_dim: 1024, ..TextConfig::paper() };
        ClipConfig { embed_dim: 1024, vision: ResNetConfig::rn50().into(), text, ..Self::tiny() }
    }
    /// CLIP's RN101: the ResNet-101 image tower and the paper's text transformer, 512-dim embeddings.
    pub fn rn101() -> Self {
        ClipConfig { embed_dim: 512, vision: ResNetConfig::rn101().into(), text: TextConfig::paper(), ..Self::tiny() }
    }
    /// A test-sized ResNet CLIP: [`ResNetConfig::tiny`] (32×32 images) and the tiny text tower, 64-dim
    /// embeddings.
    pub fn rn_tiny() -> Self {
        ClipConfig { vision: ResNetConfig::tiny().into(), ..Self::tiny() }
    }
    /// With a learnable τ⁻¹.
    pub fn learnable_inv_tau(self, on: bool) -> Self {
        ClipConfig { learnable_inv_tau: on, ..self }
    }

    /// Check both towers, that they project to `embed_dim`, and that τ⁻¹ lies in `[1, 100]`.
    pub fn validate(&self) -> Result<()> {
        self.vision.validate()?;
        self.text.validate()?;
        if self.vision.output_dim() != self.embed_dim || self.text.output_dim != self.embed_dim {
            return Err(HopfieldError::config(
                "embed_dim",
                format!(
                    "vision.output_dim {} and text.output_dim {} must equal embed_dim {}",
                    self.vision.output_dim(),
                    self.text.output_dim,
                    self.embed_dim
                ),
            ));
        }
        if !(1.0..=100.0).contains(&self.init_inv_tau) {
            return Err(HopfieldError::config(
                "init_inv_tau",
                format!("must lie in [1, 100], got {}", self.init_inv_tau),
            ));
        }
        Ok(())
    }

    /// Validate and draw both towers (each with its own initialisation), `logit_scale = ln init_inv_tau`.
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<ClipModel<B>> {
        self.validate()?;
        Ok(ClipModel {
            visual: self.vision.init(backend, rng)?,
            text: self.text.init(backend, rng)?,
            logit_scale: backend.full(&[], B::Elem::of(self.init_inv_tau.ln())),
            config: self.clone(),
        })
    }
}

/// The two-tower model (a zeroed copy holds its gradients, see [`Layer::zero_grads`]).
#[derive(Clone, Debug, Parameters)]
pub struct ClipModel<B: Backend> {
    /// Its shape.
    #[param(skip)]
    pub config: ClipConfig,
    /// `visual.*`.
    pub visual: ImageTower<B>,
    /// The text tower, at the root of the names.
    #[param(flatten)]
    pub text: TextTransformer<B>,
    /// `logit_scale = ln τ⁻¹`, a scalar (shape `[]`), in `[0, ln 100]`; trained when `learnable_inv_tau`.
    #[param(trainable = self.config.learnable_inv_tau)]
    pub logit_scale: B::Tensor,
}

/// A batch of image–text pairs.
///
/// # Shapes
/// images `[B, C, H, W]`, tokens `[B, L]`.
#[derive(Clone, Debug)]
pub struct ClipInput<B: Backend> {
    /// The images, NCHW.
    pub images: B::Tensor,
    /// Their captions' token ids.
    pub tokens: TokenBatch,
}

/// The upstream gradients of a [`ClipOutput`]: w.r.t. the normalised embeddings and τ⁻¹.
#[derive(Clone, Debug)]
pub struct ClipOutputGrads<B: Backend> {
    /// `[B, embed_dim]`.
    pub image: B::Tensor,
    /// `[B, embed_dim]`.
    pub text: B::Tensor,
    /// d loss / d τ⁻¹.
    pub inv_tau: f64,
}

/// Normalised embeddings of a batch of pairs.
#[derive(Clone, Debug)]
pub struct ClipOutput<B: Backend> {
    /// `[B, embed_dim]`, unit rows.
    pub image: B::Tensor,
    /// `[B, embed_dim]`, unit rows.
    pub text: B::Tensor,
    /// τ⁻¹ = exp(logit_scale).
    pub inv_tau: f64,
}

/// What [`ClipModel`]'s backward needs.
#[derive(Clone, Debug)]
pub struct ClipCache<B: Backend> {
    vision: ImageTowerCache<B>,
    text: TextCache<B>,
    image_norm: L2NormCache<B>,
    text_norm: L2NormCache<B>,
    /// τ⁻¹ of the forward pass (read from the device once).
    inv_tau: f64,
    /// Whether each tower has trainable groups (a fully locked one is not backpropagated).
    train_image: bool,
    train_text: bool,
}

impl<B: Backend> ClipCache<B> {
    /// The image tower's batch statistics of this pass (a ResNet's in training), without the activations.
    pub fn image_batch_stats(&self, backend: &B) -> TowerStats<B> {
        self.vision.batch_stats(backend)
    }
}

impl<B: Backend> ClipModel<B> {
    /// τ⁻¹ = exp(logit_scale).
    pub fn inv_tau(&self, backend: &B) -> f64 {
        backend.to_vec(&self.logit_scale)[0].f64().exp()
    }

    /// Normalised image embeddings `[B, embed_dim]` (no cache kept).
    pub fn encode_image(&self, backend: &B, images: &B::Tensor) -> Result<B::Tensor> {
        Ok(l2_normalize(backend, &self.visual.infer(backend, images)?)?.0)
    }

    /// Normalised text embeddings `[B, embed_dim]` (no cache kept).
    pub fn encode_text(&self, backend: &B, tokens: &TokenBatch) -> Result<B::Tensor> {
        Ok(l2_normalize(backend, &self.text.infer(backend, tokens)?)?.0)
    }

    /// Fold a training pass's batch statistics (a ResNet tower's batch norms) into the running ones, as
    /// PyTorch does during the pass; nothing for a vision transformer or a pass in evaluation.
    pub fn update_running_stats(&mut self, backend: &B, cache: &ClipCache<B>) {
        self.visual.update_running_stats(backend, &cache.vision);
    }

    /// [`ClipModel::update_running_stats`] from statistics kept apart from their cache
    /// ([`ClipCache::image_batch_stats`]).
    pub fn fold_batch_stats(&mut self, backend: &B, stats: &TowerStats<B>) {
        self.visual.fold_batch_stats(backend, stats);
    }

    /// Clamp `logit_scale` to `[0, ln 100]` (after every optimiser step, as open_clip); returns τ⁻¹ after
    /// the clamp (one read from the device).
    pub fn clamp_logit_scale(&mut self, backend: &B) -> f64 {
        let v = backend.to_vec(&self.logit_scale)[0].f64();
        let c = v.clamp(0.0, MAX_LOGIT_SCALE);
        if c != v {
            self.logit_scale = backend.full(&[], B::Elem::of(c));
        }
        B::Elem::of(c).f64().exp()
    }
}

impl<B: Backend> Layer<B> for ClipModel<B> {
    type Params = ClipModel<B>;
    type Input = ClipInput<B>;
    type Output = ClipOutput<B>;
    type Cache = ClipCache<B>;
    type OutputGrad = ClipOutputGrads<B>;
    type InputGrad = ();

    fn params(&self) -> &Self {
        self
    }
    fn params_mut(&mut self) -> &mut Self {
        self
    }

    /// Normalised embeddings of `B` image–text pairs and the cache for backward.
    ///
    /// # Shapes
    /// images `[B, C, H, W]`, tokens `[B, L]` → `[B, embed_dim]` twice.
    fn forward(
        &self,
        backend: &B,
        p: &Self,
        input: &ClipInput<B>,
        mode: Mode,
    ) -> Result<(ClipOutput<B>, ClipCache<B>)> {
        self.forward_locked(backend, p, input, mode, &ModelLock::open())
    }

    /// Backward from the gradients w.r.t. the normalised embeddings and w.r.t. τ⁻¹: accumulates into `grads`
    /// (`logit_scale` gets `τ⁻¹ · d_inv_tau`, also when it is fixed).
    fn backward(
        &self,
        backend: &B,
        p: &Self,
        cache: &ClipCache<B>,
        d: &ClipOutputGrads<B>,
        grads: &mut Self,
    ) -> Result<()> {
        let (d_image, d_text, d_inv_tau) = (&d.image, &d.text, d.inv_tau);
        for (d, c, what) in [
            (d_image, &cache.image_norm, "clip.backward(d_image)"),
            (d_text, &cache.text_norm, "clip.backward(d_text)"),
        ] {
            let (s, e) = (backend.shape(d), backend.shape(&c.y));
            if s != e {
                return Err(HopfieldError::shape(what, format!("{e:?}"), &s));
            }
        }
        if cache.train_image {
            let d_img = l2_normalize_backward(backend, &cache.image_norm, d_image);
            self.visual.backward(backend, &p.visual, &cache.vision, &d_img, &mut grads.visual)?;
        }
        if cache.train_text {
            let d_txt = l2_normalize_backward(backend, &cache.text_norm, d_text);
            self.text.backward(backend, &p.text, &cache.text, &d_txt, &mut grads.text)?;
        }
        let d_logit = backend.full(&[], B::Elem::of(d_inv_tau * cache.inv_tau));
        backend.axpy(&mut grads.logit_scale, B::Elem::of(1.0), &d_logit);
        Ok(())
    }
}

impl<B: Backend> ClipModel<B> {
    /// [`Layer::forward`] under `lock` (see [`crate::lock`]): the caches keep only what the backward of the
    /// trainable groups needs, and the backward from them runs only through those.
    pub fn forward_locked(
        &self,
        backend: &B,
        p: &Self,
        input: &ClipInput<B>,
        mode: Mode,
        lock: &ModelLock,
    ) -> Result<(ClipOutput<B>, ClipCache<B>)> {
        let (images, tokens) = (&input.images, &input.tokens);
        let n = backend.shape(images).first().copied().unwrap_or(0);
        if n != tokens.batch {
            return Err(HopfieldError::shape(
                "clip.forward",
                format!("as many texts as images ({n})"),
                &[tokens.batch],
            ));
        }
        let (image, vision) = self.visual.forward_locked(backend, &p.visual, images, mode, lock.image)?;
        let (text, text_cache) = self.text.forward_locked(backend, &p.text, tokens, mode, lock.text)?;
        let train_image = lock.image.first_trainable < self.visual.lock_groups();
        let train_text = lock.text.first_trainable < self.text.lock_groups();
        let (image, image_norm) = l2_normalize(backend, &image)?;
        let (text, text_norm) = l2_normalize(backend, &text)?;
        let inv_tau = p.inv_tau(backend);
        let out = ClipOutput { image, text, inv_tau };
        let cache = ClipCache { vision, text: text_cache, image_norm, text_norm, inv_tau, train_image, train_text };
        Ok((out, cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopfield::optim::DecayFilter;
    use hopfield::Cpu;
    use rand::SeedableRng;

    #[test]
    fn names_decay_groups_and_logit_scale() {
        let cpu = Cpu::<f32>::new();
        let mut model = ClipConfig::tiny().init(&cpu, &mut rand::rngs::StdRng::seed_from_u64(0)).unwrap();
        assert!((model.inv_tau(&cpu) - 14.3).abs() < 1e-4);
        let mut trainable = Vec::new();
        model.visit(&mut |n, t, tr| trainable.push((n.to_string(), cpu.shape(t), tr)));
        let find = |name: &str| trainable.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("{name}"));
        assert!(!find("logit_scale").2);
        assert_eq!(find("visual.conv1.weight").1, [64, 3, 8, 8]);
        assert_eq!(find("token_embedding.weight").1, [49408, 64]);
        // open_clip's groups: matrices and embeddings decay; norms, biases, the class token and τ do not.
        let f = DecayFilter::OpenClip;
        for name in [
            "visual.conv1.weight",
            "visual.proj",
            "text_projection",
            "token_embedding.weight",
            "visual.transformer.resblocks.0.attn.in_proj_weight",
            "transformer.resblocks.1.mlp.c_fc.weight",
        ] {
            assert!(f.decays(name, &find(name).1), "{name} decays");
        }
        for name in [
            "visual.class_embedding",
            "visual.ln_pre.weight",
            "ln_final.bias",
            "logit_scale",
            "transformer.resblocks.0.attn.in_proj_bias",
            "transformer.resblocks.0.ln_2.weight",
        ] {
            assert!(!f.decays(name, &find(name).1), "{name} does not decay");
        }
        assert!(ClipConfig::tiny()
            .learnable_inv_tau(true)
            .init(&cpu, &mut rand::rngs::StdRng::seed_from_u64(0))
            .unwrap()
            .names()
            .contains(&"logit_scale".to_string()));
        model.logit_scale = cpu.full(&[], 7.0);
        model.clamp_logit_scale(&cpu);
        assert!((model.inv_tau(&cpu) - 100.0).abs() < 1e-3);
        model.logit_scale = cpu.full(&[], -1.0);
        model.clamp_logit_scale(&cpu);
        assert_eq!(model.inv_tau(&cpu), 1.0);
        let bad = ClipConfig { embed_dim: 32, ..ClipConfig::tiny() };
        assert!(bad.validate().unwrap_err().to_string().contains("embed_dim"));
        for c in [ClipConfig::small(), ClipConfig::vit_b32()] {
            c.validate().unwrap();
        }
    }
}
