//! The CLIP model's image tower: a vision transformer ([`VisionTransformer`]) or CLIP's ResNet
//! ([`ModifiedResNet`]), chosen by the configuration.
//!
//! In a `config.json` the tower is the `vision` object; its `kind` field (`"vit"` or `"resnet"`) says which.
//! An object without `kind` is a vision transformer's, as every file written before the ResNet existed.

use crate::resnet::norm::BatchStats;
use crate::resnet::{ModifiedResNet, ResNetCache, ResNetConfig};
use crate::vit::{VisionCache, VisionConfig, VisionTransformer};
use hopfield::layers::{Layer, Mode};
use hopfield::{Backend, Element, Parameters, Result};
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize};

/// Which image tower, and its shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum ImageTowerConfig {
    /// A vision transformer.
    #[serde(rename = "vit")]
    Vit(VisionConfig),
    /// CLIP's modified ResNet.
    #[serde(rename = "resnet")]
    ResNet(ResNetConfig),
}

impl<'de> Deserialize<'de> for ImageTowerConfig {
    /// `kind` picks the tower; without it the object is a [`VisionConfig`] (files written before `kind`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(d)?;
        let kind = match value.get("kind") {
            None => "vit".to_string(),
            Some(k) => k.as_str().ok_or_else(|| D::Error::custom("vision.kind must be a string"))?.to_string(),
        };
        match kind.as_str() {
            "vit" => serde_json::from_value(value).map(ImageTowerConfig::Vit).map_err(D::Error::custom),
            "resnet" => serde_json::from_value(value).map(ImageTowerConfig::ResNet).map_err(D::Error::custom),
            other => Err(D::Error::custom(format!("unknown vision.kind {other:?}: use \"vit\" or \"resnet\""))),
        }
    }
}

impl Default for ImageTowerConfig {
    fn default() -> Self {
        ImageTowerConfig::Vit(VisionConfig::default())
    }
}

impl From<VisionConfig> for ImageTowerConfig {
    fn from(c: VisionConfig) -> Self {
        ImageTowerConfig::Vit(c)
    }
}

impl From<ResNetConfig> for ImageTowerConfig {
    fn from(c: ResNetConfig) -> Self {
        ImageTowerConfig::ResNet(c)
    }
}

impl ImageTowerConfig {
    /// Square input side in pixels.
    pub fn image_size(&self) -> usize {
        match self {
            ImageTowerConfig::Vit(c) => c.image_size,
            ImageTowerConfig::ResNet(c) => c.image_size,
        }
    }
    /// Input channels.
    pub fn channels(&self) -> usize {
        match self {
            ImageTowerConfig::Vit(c) => c.channels,
            ImageTowerConfig::ResNet(c) => c.channels,
        }
    }
    /// Embedding size.
    pub fn output_dim(&self) -> usize {
        match self {
            ImageTowerConfig::Vit(c) => c.output_dim,
            ImageTowerConfig::ResNet(c) => c.output_dim,
        }
    }
    /// Check the sizes.
    pub fn validate(&self) -> Result<()> {
        match self {
            ImageTowerConfig::Vit(c) => c.validate(),
            ImageTowerConfig::ResNet(c) => c.validate(),
        }
    }
    /// Validate and draw the tower.
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<ImageTower<B>> {
        Ok(match self {
            ImageTowerConfig::Vit(c) => ImageTower::Vit(c.init(backend, rng)?),
            ImageTowerConfig::ResNet(c) => ImageTower::ResNet(c.init(backend, rng)?),
        })
    }
}

/// An image tower (a zeroed copy holds its gradients). Its tensors are named as the tower's own.
///
/// # Shapes
/// images `[B, channels, image_size, image_size]` (NCHW) → features `[B, output_dim]`.
#[derive(Clone, Debug)]
pub enum ImageTower<B: Backend> {
    /// A vision transformer.
    Vit(VisionTransformer<B>),
    /// CLIP's modified ResNet.
    ResNet(ModifiedResNet<B>),
}

/// What [`ImageTower`]'s backward needs.
#[derive(Clone, Debug)]
pub enum ImageTowerCache<B: Backend> {
    /// A vision transformer's.
    Vit(VisionCache<B>),
    /// A ResNet's (with a training pass's batch statistics).
    ResNet(ResNetCache<B>),
}

impl<B: Backend> Parameters<B> for ImageTower<B> {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&str, &'a B::Tensor, bool)) {
        match self {
            ImageTower::Vit(t) => t.visit(f),
            ImageTower::ResNet(t) => t.visit(f),
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, &mut B::Tensor, bool)) {
        match self {
            ImageTower::Vit(t) => t.visit_mut(f),
            ImageTower::ResNet(t) => t.visit_mut(f),
        }
    }
}

impl<B: Backend> ImageTower<B> {
    /// The tower's configuration.
    pub fn config(&self) -> ImageTowerConfig {
        match self {
            ImageTower::Vit(t) => ImageTowerConfig::Vit(t.config.clone()),
            ImageTower::ResNet(t) => ImageTowerConfig::ResNet(t.config.clone()),
        }
    }

    /// Fold a training pass's batch statistics into the running ones (a ResNet's batch norms; nothing for
    /// a vision transformer).
    pub fn update_running_stats(&mut self, backend: &B, cache: &ImageTowerCache<B>) {
        self.fold_batch_stats(backend, &cache.batch_stats(backend));
    }

    /// [`ImageTower::update_running_stats`] from statistics kept apart from their cache.
    pub fn fold_batch_stats(&mut self, backend: &B, stats: &TowerStats<B>) {
        if let ImageTower::ResNet(t) = self {
            t.fold_batch_stats(backend, &stats.0);
        }
    }
}

/// A training pass's batch statistics of an image tower (a ResNet's batch norms; empty for a vision
/// transformer), kept to fold into the running statistics after the optimiser step.
#[derive(Clone, Debug)]
pub struct TowerStats<B: Backend>(Vec<Option<BatchStats<B>>>);

impl<B: Backend> ImageTowerCache<B> {
    /// The pass's batch statistics, without its activations.
    pub fn batch_stats(&self, backend: &B) -> TowerStats<B> {
        match self {
            ImageTowerCache::Vit(_) => TowerStats(Vec::new()),
            ImageTowerCache::ResNet(c) => TowerStats(c.batch_stats(backend)),
        }
    }
}

fn mismatch() -> hopfield::HopfieldError {
    hopfield::HopfieldError::config("vision", "the parameters, gradients or cache belong to another kind of tower")
}

impl<B: Backend> Layer<B> for ImageTower<B> {
    type Params = ImageTower<B>;
    type Input = B::Tensor;
    type Output = B::Tensor;
    type Cache = ImageTowerCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = ();

    fn params(&self) -> &Self {
        self
    }
    fn params_mut(&mut self) -> &mut Self {
        self
    }

    fn forward(
        &self,
        backend: &B,
        p: &Self,
        images: &B::Tensor,
        mode: Mode,
    ) -> Result<(B::Tensor, ImageTowerCache<B>)> {
        match (self, p) {
            (ImageTower::Vit(t), ImageTower::Vit(p)) => {
                t.forward(backend, p, images, mode).map(|(y, c)| (y, ImageTowerCache::Vit(c)))
            }
            (ImageTower::ResNet(t), ImageTower::ResNet(p)) => {
                t.forward(backend, p, images, mode).map(|(y, c)| (y, ImageTowerCache::ResNet(c)))
            }
            _ => Err(mismatch()),
        }
    }

    /// Accumulates every parameter gradient into `grads`; the images' gradient is dropped.
    fn backward(
        &self,
        backend: &B,
        p: &Self,
        cache: &ImageTowerCache<B>,
        dy: &B::Tensor,
        grads: &mut Self,
    ) -> Result<()> {
        match (self, p, cache, grads) {
            (ImageTower::Vit(t), ImageTower::Vit(p), ImageTowerCache::Vit(c), ImageTower::Vit(g)) => {
                t.backward(backend, p, c, dy, g)
            }
            (ImageTower::ResNet(t), ImageTower::ResNet(p), ImageTowerCache::ResNet(c), ImageTower::ResNet(g)) => {
                // A partly locked tower's frozen tensors have empty gradients (`crate::lock`): backpropagate
                // into a full accumulator and keep the trainable tensors' gradients.
                let mut partial = false;
                g.visit(&mut |_, t, _| partial |= backend.shape(t).iter().product::<usize>() == 0);
                if !partial {
                    return t.backward(backend, p, c, dy, g).map(|_| ());
                }
                let mut full = p.zeros_like(backend);
                t.backward(backend, p, c, dy, &mut full)?;
                let mut by_name = std::collections::HashMap::new();
                full.visit(&mut |n, t, _| {
                    by_name.insert(n.to_string(), t.clone());
                });
                g.visit_mut(&mut |n, t, _| {
                    if backend.shape(t).iter().product::<usize>() > 0 {
                        if let Some(d) = by_name.get(n) {
                            backend.axpy(t, B::Elem::of(1.0), d);
                        }
                    }
                });
                Ok(())
            }
            _ => Err(mismatch()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_vision_configs_read_as_vision_transformers_and_kind_picks_the_tower() {
        let old = serde_json::to_value(VisionConfig::small()).unwrap();
        assert!(old.get("kind").is_none());
        let read: ImageTowerConfig = serde_json::from_value(old).unwrap();
        assert_eq!(read, ImageTowerConfig::Vit(VisionConfig::small()));
        for c in [ImageTowerConfig::Vit(VisionConfig::tiny()), ImageTowerConfig::ResNet(ResNetConfig::rn50())] {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<ImageTowerConfig>(&json).unwrap(), c, "{json}");
        }
        let partial: ImageTowerConfig = serde_json::from_str(r#"{"kind": "resnet", "layers": [3, 4, 6, 3]}"#).unwrap();
        assert_eq!(partial, ImageTowerConfig::ResNet(ResNetConfig { layers: [3, 4, 6, 3], ..ResNetConfig::tiny() }));
        let err = serde_json::from_str::<ImageTowerConfig>(r#"{"kind": "convnext"}"#).unwrap_err();
        assert!(err.to_string().contains("convnext"), "{err}");
        let bad = serde_json::from_str::<ImageTowerConfig>(r#"{"kind": "resnet", "layers": "deep"}"#);
        assert!(bad.is_err(), "a malformed ResNet is an error, not a vision transformer");
    }
}
