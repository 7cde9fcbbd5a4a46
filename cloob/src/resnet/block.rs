//! The pieces of the ResNet: a convolution followed by a batch norm (and ReLU), and CLIP's anti-aliased
//! `Bottleneck` (the stride is an average pool after the 3×3 convolution, and before the 1×1 convolution
//! of the downsampling branch).

use super::conv::{avg_pool, avg_pool_backward, Conv2d};
use super::norm::{BatchNorm2d, BatchNormCache, BatchNormMode};
use hopfield::init;
use hopfield::{Activation, Backend, Element, Parameters, Result};
use rand::Rng;

/// A bias-free convolution's weight drawn as PyTorch's default, U(±1/√fan_in).
pub(crate) fn conv_weight<B: Backend>(backend: &B, conv: &Conv2d, rng: &mut impl Rng) -> B::Tensor {
    let fan_in = conv.in_channels * conv.kernel * conv.kernel;
    init::uniform(backend, &conv.weight_shape(), 1.0 / (fan_in as f64).sqrt(), rng)
}

/// What the backward of [`conv_bn`] needs: the convolution's input, the norm's cache, and the norm's
/// output when a ReLU followed.
#[derive(Clone, Debug)]
pub struct ConvBnCache<B: Backend> {
    x: B::Tensor,
    bn: BatchNormCache<B>,
    pre_relu: Option<B::Tensor>,
}

/// `relu?(bn(conv(x)))` on NHWC.
///
/// # Shapes
/// `x: [B, H, W, in]` → `[B, H', W', out]`.
pub fn conv_bn<B: Backend>(
    backend: &B,
    conv: &Conv2d,
    weight: &B::Tensor,
    bn: &BatchNorm2d<B>,
    mode: BatchNormMode,
    relu: bool,
    x: &B::Tensor,
) -> Result<(B::Tensor, ConvBnCache<B>)> {
    let y = conv.forward(backend, weight, x)?;
    let (y, bn_cache) = bn.forward(backend, &y, mode)?;
    let (out, pre_relu) = if relu { (backend.activation(&y, Activation::Relu), Some(y)) } else { (y, None) };
    Ok((out, ConvBnCache { x: x.clone(), bn: bn_cache, pre_relu }))
}

/// Backward of [`conv_bn`]: accumulates into `d_weight` and `d_bn`, returns `dx`.
#[allow(clippy::too_many_arguments)]
pub fn conv_bn_backward<B: Backend>(
    backend: &B,
    conv: &Conv2d,
    weight: &B::Tensor,
    bn: &BatchNorm2d<B>,
    cache: &ConvBnCache<B>,
    dy: &B::Tensor,
    d_weight: &mut B::Tensor,
    d_bn: &mut BatchNorm2d<B>,
) -> Result<B::Tensor> {
    let dy = match &cache.pre_relu {
        Some(pre) => backend.activation_backward(pre, dy, Activation::Relu),
        None => dy.clone(),
    };
    let dy = bn.backward(backend, &cache.bn, &dy, d_bn)?;
    conv.backward(backend, weight, &cache.x, &dy, d_weight)
}

/// `downsample.*`: `AvgPool2d(stride)` (`-1`, no tensors) → 1×1 convolution (`0`) → batch norm (`1`).
#[derive(Clone, Debug, Parameters)]
pub struct Downsample<B: Backend> {
    /// `downsample.0.weight`, `[4·planes, inplanes, 1, 1]`.
    #[param(rename = "0.weight")]
    pub conv: B::Tensor,
    /// `downsample.1.*`.
    #[param(rename = "1")]
    pub bn: BatchNorm2d<B>,
}

/// One anti-aliased bottleneck, `layerN.i.*`.
///
/// # Shapes
/// `[B, H, W, inplanes]` → `[B, H/stride, W/stride, 4·planes]`.
#[derive(Clone, Debug, Parameters)]
pub struct Bottleneck<B: Backend> {
    /// Input channels.
    #[param(skip)]
    pub inplanes: usize,
    /// Bottleneck width (the output has 4×).
    #[param(skip)]
    pub planes: usize,
    /// 1 or the side of the average pool that downsamples.
    #[param(skip)]
    pub stride: usize,
    /// `conv1.weight`, `[planes, inplanes, 1, 1]`.
    #[param(rename = "conv1.weight")]
    pub conv1: B::Tensor,
    /// `bn1.*`.
    pub bn1: BatchNorm2d<B>,
    /// `conv2.weight`, `[planes, planes, 3, 3]`.
    #[param(rename = "conv2.weight")]
    pub conv2: B::Tensor,
    /// `bn2.*`.
    pub bn2: BatchNorm2d<B>,
    /// `conv3.weight`, `[4·planes, planes, 1, 1]`.
    #[param(rename = "conv3.weight")]
    pub conv3: B::Tensor,
    /// `bn3.*` (γ initialised to zero, as open_clip).
    pub bn3: BatchNorm2d<B>,
    /// `downsample.*`, present when `stride > 1` or `inplanes ≠ 4·planes`.
    pub downsample: Option<Downsample<B>>,
}

/// What [`Bottleneck::backward`] needs.
#[derive(Clone, Debug)]
pub struct BottleneckCache<B: Backend> {
    unit1: ConvBnCache<B>,
    unit2: ConvBnCache<B>,
    unit3: ConvBnCache<B>,
    downsample: Option<ConvBnCache<B>>,
    /// `bn3 + identity`, before the last ReLU.
    sum: B::Tensor,
}

/// The output channels of a bottleneck of width `planes`.
pub const EXPANSION: usize = 4;

impl<B: Backend> Bottleneck<B> {
    /// Draw a block as open_clip: convolutions PyTorch's default, batch norms fresh, `bn3.weight` zero.
    pub fn init(backend: &B, inplanes: usize, planes: usize, stride: usize, rng: &mut impl Rng) -> Self {
        let mut block = Bottleneck {
            inplanes,
            planes,
            stride,
            conv1: backend.zeros(&[1]),
            bn1: BatchNorm2d::new(backend, planes),
            conv2: backend.zeros(&[1]),
            bn2: BatchNorm2d::new(backend, planes),
            conv3: backend.zeros(&[1]),
            bn3: BatchNorm2d::new(backend, planes * EXPANSION),
            downsample: None,
        };
        let [c1, c2, c3, cd] = block.convs();
        block.conv1 = conv_weight(backend, &c1, rng);
        block.conv2 = conv_weight(backend, &c2, rng);
        block.conv3 = conv_weight(backend, &c3, rng);
        block.bn3.weight = backend.zeros(&[planes * EXPANSION]);
        if stride > 1 || inplanes != planes * EXPANSION {
            let conv = conv_weight(backend, &cd, rng);
            block.downsample = Some(Downsample { conv, bn: BatchNorm2d::new(backend, planes * EXPANSION) });
        }
        block
    }

    /// `conv1`, `conv2`, `conv3`, `downsample.0`.
    fn convs(&self) -> [Conv2d; 4] {
        let (i, p, o) = (self.inplanes, self.planes, self.planes * EXPANSION);
        [Conv2d::new(i, p, 1, 1, 0), Conv2d::new(p, p, 3, 1, 1), Conv2d::new(p, o, 1, 1, 0), Conv2d::new(i, o, 1, 1, 0)]
    }

    /// The block's output and cache.
    pub fn forward(
        &self,
        backend: &B,
        p: &Self,
        x: &B::Tensor,
        mode: BatchNormMode,
    ) -> Result<(B::Tensor, BottleneckCache<B>)> {
        let [c1, c2, c3, cd] = self.convs();
        let (h, unit1) = conv_bn(backend, &c1, &p.conv1, &p.bn1, mode, true, x)?;
        let (h, unit2) = conv_bn(backend, &c2, &p.conv2, &p.bn2, mode, true, &h)?;
        let h = avg_pool(backend, &h, self.stride)?;
        let (h, unit3) = conv_bn(backend, &c3, &p.conv3, &p.bn3, mode, false, &h)?;
        let (identity, downsample) = match &p.downsample {
            Some(d) => {
                let pooled = avg_pool(backend, x, self.stride)?;
                let (y, cache) = conv_bn(backend, &cd, &d.conv, &d.bn, mode, false, &pooled)?;
                (y, Some(cache))
            }
            None => (x.clone(), None),
        };
        let sum = backend.add(&h, &identity);
        let out = backend.activation(&sum, Activation::Relu);
        Ok((out, BottleneckCache { unit1, unit2, unit3, downsample, sum }))
    }

    /// Backward of [`Bottleneck::forward`]: accumulates into `grads`, returns `dx`.
    pub fn backward(
        &self,
        backend: &B,
        p: &Self,
        cache: &BottleneckCache<B>,
        dy: &B::Tensor,
        grads: &mut Self,
    ) -> Result<B::Tensor> {
        let [c1, c2, c3, cd] = self.convs();
        let d_sum = backend.activation_backward(&cache.sum, dy, Activation::Relu);
        let dh =
            conv_bn_backward(backend, &c3, &p.conv3, &p.bn3, &cache.unit3, &d_sum, &mut grads.conv3, &mut grads.bn3)?;
        let dh = avg_pool_backward(backend, &dh, self.stride);
        let dh = conv_bn_backward(backend, &c2, &p.conv2, &p.bn2, &cache.unit2, &dh, &mut grads.conv2, &mut grads.bn2)?;
        let mut dx =
            conv_bn_backward(backend, &c1, &p.conv1, &p.bn1, &cache.unit1, &dh, &mut grads.conv1, &mut grads.bn1)?;
        let d_identity = match (&p.downsample, &cache.downsample, &mut grads.downsample) {
            (Some(d), Some(c), Some(g)) => {
                let d_pooled = conv_bn_backward(backend, &cd, &d.conv, &d.bn, c, &d_sum, &mut g.conv, &mut g.bn)?;
                avg_pool_backward(backend, &d_pooled, self.stride)
            }
            _ => d_sum,
        };
        backend.axpy(&mut dx, B::Elem::of(1.0), &d_identity);
        Ok(dx)
    }

    /// Its batch norms, in the order of [`Bottleneck::norm_caches`].
    pub(crate) fn norms_mut(&mut self) -> Vec<&mut BatchNorm2d<B>> {
        let mut out = vec![&mut self.bn1, &mut self.bn2, &mut self.bn3];
        out.extend(self.downsample.as_mut().map(|d| &mut d.bn));
        out
    }
}

impl<B: Backend> BottleneckCache<B> {
    /// The batch norms' caches: `bn1`, `bn2`, `bn3`, then `downsample.1` when present.
    pub(crate) fn norm_caches(&self) -> Vec<&BatchNormCache<B>> {
        let mut out = vec![&self.unit1.bn, &self.unit2.bn, &self.unit3.bn];
        out.extend(self.downsample.as_ref().map(|d| &d.bn));
        out
    }
}

/// The batch norm's cache of a unit (for the stem's running-statistics update).
pub(crate) fn bn_cache<B: Backend>(cache: &ConvBnCache<B>) -> &BatchNormCache<B> {
    &cache.bn
}
