//! [`ModifiedResNet`]: the stem, the four stages and the attention pool, as one [`Layer`].

use super::attnpool::{AttentionPool2d, AttentionPoolCache};
use super::block::{
    bn_cache, conv_bn, conv_bn_backward, conv_weight, Bottleneck, BottleneckCache, ConvBnCache, EXPANSION,
};
use super::conv::{avg_pool, avg_pool_backward, Conv2d};
use super::norm::{BatchNorm2d, BatchNormMode, BatchStats};
use super::ResNetConfig;
use hopfield::layers::{Layer, Mode};
use hopfield::{Backend, HopfieldError, Parameters, Result};
use rand::Rng;

/// The ResNet image tower and its tensors (a zeroed copy holds its gradients, see [`Layer::zero_grads`]).
///
/// # Shapes
/// images `[B, channels, image_size, image_size]` (NCHW, as PyTorch) → features `[B, output_dim]` (not
/// normalised); the input gradient has the images' shape.
#[derive(Clone, Debug, Parameters)]
pub struct ModifiedResNet<B: Backend> {
    /// Its shape.
    #[param(skip)]
    pub config: ResNetConfig,
    /// `conv1.weight`, `[width/2, channels, 3, 3]` (stride 2).
    #[param(rename = "conv1.weight")]
    pub conv1: B::Tensor,
    /// `bn1.*`.
    pub bn1: BatchNorm2d<B>,
    /// `conv2.weight`, `[width/2, width/2, 3, 3]`.
    #[param(rename = "conv2.weight")]
    pub conv2: B::Tensor,
    /// `bn2.*`.
    pub bn2: BatchNorm2d<B>,
    /// `conv3.weight`, `[width, width/2, 3, 3]`.
    #[param(rename = "conv3.weight")]
    pub conv3: B::Tensor,
    /// `bn3.*`.
    pub bn3: BatchNorm2d<B>,
    /// `layer1.*`: bottlenecks of width `width`, stride 1.
    pub layer1: Vec<Bottleneck<B>>,
    /// `layer2.*`: width `2·width`, the first of stride 2.
    pub layer2: Vec<Bottleneck<B>>,
    /// `layer3.*`: width `4·width`, the first of stride 2.
    pub layer3: Vec<Bottleneck<B>>,
    /// `layer4.*`: width `8·width`, the first of stride 2.
    pub layer4: Vec<Bottleneck<B>>,
    /// `attnpool.*`.
    pub attnpool: AttentionPool2d<B>,
}

/// What [`ModifiedResNet`]'s backward needs, and in training the batch statistics that
/// [`ModifiedResNet::update_running_stats`] folds in.
#[derive(Clone, Debug)]
pub struct ResNetCache<B: Backend> {
    stem: [ConvBnCache<B>; 3],
    blocks: [Vec<BottleneckCache<B>>; 4],
    /// The last stage's output `[B, g, g, C]`'s shape.
    map_shape: Vec<usize>,
    attnpool: AttentionPoolCache<B>,
}

impl<B: Backend> ModifiedResNet<B> {
    /// Draw a tower as open_clip's `ModifiedResNet.__init__` + `init_parameters` (no validation; see
    /// [`ResNetConfig::init`]): convolutions U(±1/√fan_in), fresh batch norms, every `bn3.weight` of a
    /// bottleneck zero, the attention pool's weights N(0, 1/C).
    pub fn init(backend: &B, config: &ResNetConfig, rng: &mut impl Rng) -> Self {
        let [s1, s2, s3] = Self::stem_convs(config);
        let half = config.width / 2;
        let conv1 = conv_weight(backend, &s1, rng);
        let conv2 = conv_weight(backend, &s2, rng);
        let conv3 = conv_weight(backend, &s3, rng);
        let mut inplanes = config.width;
        let mut stage = |planes: usize, blocks: usize, stride: usize, rng: &mut _| {
            let mut out = vec![Bottleneck::init(backend, inplanes, planes, stride, rng)];
            inplanes = planes * EXPANSION;
            out.extend((1..blocks).map(|_| Bottleneck::init(backend, inplanes, planes, 1, rng)));
            out
        };
        let (w, l) = (config.width, config.layers);
        let layer1 = stage(w, l[0], 1, rng);
        let layer2 = stage(2 * w, l[1], 2, rng);
        let layer3 = stage(4 * w, l[2], 2, rng);
        let layer4 = stage(8 * w, l[3], 2, rng);
        let attnpool =
            AttentionPool2d::init(backend, config.grid(), config.embed_width(), config.heads, config.output_dim, rng);
        ModifiedResNet {
            config: config.clone(),
            conv1,
            bn1: BatchNorm2d::new(backend, half),
            conv2,
            bn2: BatchNorm2d::new(backend, half),
            conv3,
            bn3: BatchNorm2d::new(backend, config.width),
            layer1,
            layer2,
            layer3,
            layer4,
            attnpool,
        }
    }

    fn stem_convs(c: &ResNetConfig) -> [Conv2d; 3] {
        let half = c.width / 2;
        [Conv2d::new(c.channels, half, 3, 2, 1), Conv2d::new(half, half, 3, 1, 1), Conv2d::new(half, c.width, 3, 1, 1)]
    }

    fn stages(&self) -> [&Vec<Bottleneck<B>>; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }

    /// The batch-norm mode of a pass in `mode`.
    pub fn bn_mode(&self, mode: Mode) -> BatchNormMode {
        let training = matches!(mode, Mode::Train { .. });
        BatchNormMode { batch_stats: training && !self.config.freeze_bn_stats, eps: self.config.bn_eps }
    }

    fn check(&self, backend: &B, images: &B::Tensor) -> Result<usize> {
        let c = &self.config;
        let s = backend.shape(images);
        if s.len() != 4 || s[0] == 0 || s[1] != c.channels || s[2] != c.image_size || s[3] != c.image_size {
            return Err(HopfieldError::shape(
                "resnet.forward(images)",
                format!("[B > 0, {}, {}, {}]", c.channels, c.image_size, c.image_size),
                &s,
            ));
        }
        Ok(s[0])
    }

    /// Every batch norm, in the order of [`ResNetCache::batch_stats`].
    fn norms_mut(&mut self) -> Vec<&mut BatchNorm2d<B>> {
        let mut out = vec![&mut self.bn1, &mut self.bn2, &mut self.bn3];
        for stage in [&mut self.layer1, &mut self.layer2, &mut self.layer3, &mut self.layer4] {
            out.extend(stage.iter_mut().flat_map(|b| b.norms_mut()));
        }
        out
    }

    /// Fold a training pass's batch statistics (its cache) into every batch norm's running statistics,
    /// as PyTorch does during that pass; a pass in evaluation (or with frozen statistics) changes nothing.
    pub fn update_running_stats(&mut self, backend: &B, cache: &ResNetCache<B>) {
        self.fold_batch_stats(backend, &cache.batch_stats(backend));
    }

    /// [`ModifiedResNet::update_running_stats`] from the statistics of [`ResNetCache::batch_stats`].
    pub fn fold_batch_stats(&mut self, backend: &B, stats: &[Option<BatchStats<B>>]) {
        let m = self.config.bn_momentum;
        for (bn, s) in self.norms_mut().into_iter().zip(stats) {
            if let Some(s) = s {
                bn.fold_batch_stats(backend, s, m);
            }
        }
    }
}

impl<B: Backend> ResNetCache<B> {
    /// Each batch norm's statistics of a training pass (`None` on running statistics), stem first, then
    /// each bottleneck's `bn1`, `bn2`, `bn3`, `downsample.1`: all that the running statistics need,
    /// without the activations.
    pub fn batch_stats(&self, backend: &B) -> Vec<Option<BatchStats<B>>> {
        let stem = self.stem.iter().map(bn_cache);
        let blocks = self.blocks.iter().flatten().flat_map(|c| c.norm_caches());
        stem.chain(blocks).map(|c| c.batch_stats(backend)).collect()
    }
}

impl<B: Backend> Layer<B> for ModifiedResNet<B> {
    type Params = ModifiedResNet<B>;
    type Input = B::Tensor;
    type Output = B::Tensor;
    type Cache = ResNetCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = B::Tensor;

    fn params(&self) -> &Self {
        self
    }
    fn params_mut(&mut self) -> &mut Self {
        self
    }

    /// Image features `[B, output_dim]` and the cache for backward.
    fn forward(&self, backend: &B, p: &Self, images: &B::Tensor, mode: Mode) -> Result<(B::Tensor, ResNetCache<B>)> {
        let b = self.check(backend, images)?;
        let bn = self.bn_mode(mode);
        let [s1, s2, s3] = Self::stem_convs(&self.config);
        let x = backend.permute(images, &[0, 2, 3, 1]);
        let (x, c1) = conv_bn(backend, &s1, &p.conv1, &p.bn1, bn, true, &x)?;
        let (x, c2) = conv_bn(backend, &s2, &p.conv2, &p.bn2, bn, true, &x)?;
        let (x, c3) = conv_bn(backend, &s3, &p.conv3, &p.bn3, bn, true, &x)?;
        let mut x = avg_pool(backend, &x, 2)?;
        let mut blocks: [Vec<BottleneckCache<B>>; 4] = Default::default();
        for ((stage, params), caches) in self.stages().into_iter().zip(p.stages()).zip(&mut blocks) {
            for (block, bp) in stage.iter().zip(params) {
                let (y, cache) = block.forward(backend, bp, &x, bn)?;
                caches.push(cache);
                x = y;
            }
        }
        let map_shape = backend.shape(&x);
        let tokens = backend.reshape(&x, &[b, map_shape[1] * map_shape[2], map_shape[3]]);
        let (features, attnpool) = self.attnpool.forward(backend, &p.attnpool, &tokens)?;
        Ok((features, ResNetCache { stem: [c1, c2, c3], blocks, map_shape, attnpool }))
    }

    /// Backward from d loss / d features `[B, output_dim]`: accumulates every trainable tensor's gradient
    /// into `grads` and returns d loss / d images `[B, channels, image_size, image_size]`.
    fn backward(
        &self,
        backend: &B,
        p: &Self,
        cache: &ResNetCache<B>,
        d_features: &B::Tensor,
        grads: &mut Self,
    ) -> Result<B::Tensor> {
        let b = cache.map_shape[0];
        let got = backend.shape(d_features);
        if got != [b, self.config.output_dim] {
            return Err(HopfieldError::shape(
                "resnet.backward(d_features)",
                format!("[{b}, {}]", self.config.output_dim),
                &got,
            ));
        }
        let d_tokens =
            self.attnpool.backward(backend, &p.attnpool, &cache.attnpool, d_features, &mut grads.attnpool)?;
        let mut dx = backend.reshape(&d_tokens, &cache.map_shape);
        let g = &mut *grads;
        let grad_stages = [&mut g.layer1, &mut g.layer2, &mut g.layer3, &mut g.layer4];
        let stages = self.stages().into_iter().zip(p.stages()).zip(&cache.blocks).zip(grad_stages);
        for (((stage, params), caches), stage_grads) in stages.rev() {
            for (((block, bp), c), bg) in stage.iter().zip(params).zip(caches).zip(stage_grads.iter_mut()).rev() {
                dx = block.backward(backend, bp, c, &dx, bg)?;
            }
        }
        let [s1, s2, s3] = Self::stem_convs(&self.config);
        let dx = avg_pool_backward(backend, &dx, 2);
        let dx = conv_bn_backward(backend, &s3, &p.conv3, &p.bn3, &cache.stem[2], &dx, &mut g.conv3, &mut g.bn3)?;
        let dx = conv_bn_backward(backend, &s2, &p.conv2, &p.bn2, &cache.stem[1], &dx, &mut g.conv2, &mut g.bn2)?;
        let dx = conv_bn_backward(backend, &s1, &p.conv1, &p.bn1, &cache.stem[0], &dx, &mut g.conv1, &mut g.bn1)?;
        Ok(backend.permute(&dx, &[0, 3, 1, 2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopfield::Cpu;
    use rand::SeedableRng;

    #[test]
    fn names_and_shapes_are_open_clips_and_running_stats_are_not_trainable() {
        let cpu = Cpu::<f32>::new();
        let config = ResNetConfig { layers: [1, 2, 1, 1], ..ResNetConfig::tiny() };
        let net = config.init(&cpu, &mut rand::rngs::StdRng::seed_from_u64(0)).unwrap();
        let mut seen = Vec::new();
        net.visit(&mut |n, t, tr| seen.push((n.to_string(), cpu.shape(t), tr)));
        let find = |name: &str| seen.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("no {name}")).clone();
        assert_eq!(find("conv1.weight").1, [4, 3, 3, 3]);
        assert_eq!(find("conv3.weight").1, [8, 4, 3, 3]);
        assert_eq!(find("layer1.0.downsample.0.weight").1, [32, 8, 1, 1]);
        assert_eq!(find("layer2.1.conv2.weight").1, [16, 16, 3, 3]);
        assert_eq!(find("layer4.0.bn3.running_var").1, [256]);
        assert_eq!(find("attnpool.positional_embedding").1, [2, 256]);
        assert_eq!(find("attnpool.c_proj.weight").1, [64, 256]);
        assert!(find("attnpool.q_proj.bias").2);
        assert!(!find("bn1.running_mean").2 && !find("layer3.0.downsample.1.num_batches_tracked").2);
        assert!(seen.iter().all(|(n, _, _)| !n.starts_with("layer2.1.downsample")));
        assert!(cpu.to_vec(&net.layer2[1].bn3.weight).iter().all(|&v| v == 0.0));
        for bad in [
            ResNetConfig { image_size: 48, ..ResNetConfig::tiny() },
            ResNetConfig { heads: 3, ..ResNetConfig::tiny() },
            ResNetConfig { layers: [1, 0, 1, 1], ..ResNetConfig::tiny() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let err = net.infer(&cpu, &cpu.zeros(&[2, 3, 64, 64])).unwrap_err();
        assert!(err.to_string().contains("[B > 0, 3, 32, 32]"), "{err}");
        for c in [ResNetConfig::rn50(), ResNetConfig::rn101()] {
            c.validate().unwrap();
        }
    }

    #[test]
    fn training_passes_update_the_running_stats_and_evaluation_uses_them() {
        let cpu = Cpu::<f64>::new();
        let mut net = ResNetConfig::tiny().init(&cpu, &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
        let images =
            cpu.from_vec((0..2 * 3 * 32 * 32).map(|k| ((k * 7) % 13) as f64 / 6.0 - 1.0).collect(), &[2, 3, 32, 32]);
        let eval_before = net.infer(&cpu, &images).unwrap();
        let (train_out, cache) = net.forward(&cpu, &net, &images, Mode::Train { seed: 0 }).unwrap();
        assert_ne!(cpu.to_vec(&train_out), cpu.to_vec(&eval_before));
        net.update_running_stats(&cpu, &cache);
        assert_eq!(cpu.to_vec(&net.layer3[0].bn2.num_batches_tracked), [1.0]);
        assert_ne!(cpu.to_vec(&net.infer(&cpu, &images).unwrap()), cpu.to_vec(&eval_before));
        let frozen =
            ModifiedResNet { config: ResNetConfig { freeze_bn_stats: true, ..net.config.clone() }, ..net.clone() };
        let (out, cache) = frozen.forward(&cpu, &frozen, &images, Mode::Train { seed: 0 }).unwrap();
        assert_eq!(cpu.to_vec(&out), cpu.to_vec(&net.infer(&cpu, &images).unwrap()));
        let mut after = frozen.clone();
        after.update_running_stats(&cpu, &cache);
        assert_eq!(cpu.to_vec(&after.bn1.running_mean), cpu.to_vec(&frozen.bn1.running_mean));
    }
}
