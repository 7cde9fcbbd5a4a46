//! `HopfieldDecoderLayer`: hflayers' transformer decoder drop-in: Hopfield self-association on the target,
//! Hopfield association with the memory, then the MLP block of [`super::encoder`], post- or pre-norm.
//! Parameter names follow hflayers (`hopfield_association_self.*`, `hopfield_association_cross.*`,
//! `linear_residual`, `linear_output`, `norm_residual_self`, `norm_residual_cross`, `norm_output`).

use super::encoder::{dropout, hidden_shape, masked, mlp_backward, mlp_forward, HopfieldEncoderLayerConfig, MlpCache};
use super::hopfield::{HopfieldCache, HopfieldInput, HopfieldParams, HopfieldSpec, Mask};
use super::linear::LinearParams;
use super::norm::{layer_norm_backward, layer_norm_forward, LayerNormCache, LayerNormParams};
use crate::activation::Activation;
use crate::backend::Backend;
use crate::error::Result;
use crate::layers::{Layer, Mode};
use crate::params::Parameters;
use num_traits::One;

/// Parameters (and gradients) of a [`HopfieldDecoderLayer`], named as hflayers.
#[derive(Clone, Debug, Parameters)]
pub struct DecoderParams<B: Backend> {
    /// `hopfield_association_self.*`.
    pub hopfield_association_self: HopfieldParams<B>,
    /// `hopfield_association_cross.*`.
    pub hopfield_association_cross: HopfieldParams<B>,
    /// `linear_residual.*`.
    pub linear_residual: LinearParams<B>,
    /// `linear_output.*`.
    pub linear_output: LinearParams<B>,
    /// `norm_residual_self.*`.
    pub norm_residual_self: LayerNormParams<B>,
    /// `norm_residual_cross.*`.
    pub norm_residual_cross: LayerNormParams<B>,
    /// `norm_output.*`.
    pub norm_output: LayerNormParams<B>,
}

/// Masks of a decoder call.
#[derive(Clone, Debug, Default)]
pub struct DecoderMasks {
    /// `[T, T]` or `[B·H, T, T]`.
    pub tgt_mask: Option<Mask>,
    /// `[T, S]` or `[B·H, T, S]`.
    pub memory_mask: Option<Mask>,
    /// `[B, T]`.
    pub tgt_key_padding_mask: Option<Mask>,
    /// `[B, S]`.
    pub memory_key_padding_mask: Option<Mask>,
}

/// A transformer decoder layer: Hopfield self-association on the target, Hopfield association with the
/// memory (stored patterns and projections = memory, state = target), then the MLP.
///
/// # Shapes
/// `tgt`: `[B, T, width]`, `memory`: `[B, S, width]` → `[B, T, width]` (sequence-first when `batch_first`
/// is off); masks as in [`DecoderMasks`].
///
/// ```
/// use hopfield_layers::layers::{DecoderInput, HopfieldConfig, HopfieldEncoderLayerConfig, Layer, Mode};
/// use hopfield_layers::{seeded_rng, Backend, Cpu};
///
/// let cpu = Cpu::<f32>::new();
/// let config = HopfieldEncoderLayerConfig::new(HopfieldConfig::new(16).num_heads(4)).dim_feedforward(32);
/// // The second association (target → memory) has its own options.
/// let decoder = config.init_decoder(&HopfieldConfig::new(16).num_heads(2), &cpu, &mut seeded_rng(0))?;
/// let (tgt, memory) = (cpu.full(&[2, 3, 16], 0.1), cpu.full(&[2, 6, 16], 0.2));
/// let (y, cache) = decoder.forward(&cpu, &decoder.params, &DecoderInput::new(tgt, memory), Mode::Eval)?;
/// assert_eq!(cpu.shape(&y), [2, 3, 16]);
/// let mut grads = decoder.zero_grads(&cpu);
/// let d = decoder.backward(&cpu, &decoder.params, &cache, &cpu.full(&[2, 3, 16], 1.0), &mut grads)?;
/// assert_eq!((cpu.shape(&d.tgt), cpu.shape(&d.memory)), (vec![2, 3, 16], vec![2, 6, 16]));
/// # Ok::<(), hopfield_layers::HopfieldError>(())
/// ```
#[derive(Clone, Debug, Parameters)]
pub struct HopfieldDecoderLayer<B: Backend> {
    /// Its configuration (the self-association's and the block's).
    #[param(skip)]
    pub config: HopfieldEncoderLayerConfig,
    /// Self-association sizes.
    #[param(skip)]
    pub self_spec: HopfieldSpec,
    /// Cross-association sizes.
    #[param(skip)]
    pub cross_spec: HopfieldSpec,
    /// The MLP activation.
    #[param(skip)]
    pub activation: Activation,
    /// All learned tensors.
    #[param(flatten)]
    pub params: DecoderParams<B>,
}

/// Input of a [`HopfieldDecoderLayer`]: target, memory and masks.
#[derive(Clone, Debug)]
pub struct DecoderInput<B: Backend> {
    /// `[B, T, width]`.
    pub tgt: B::Tensor,
    /// `[B, S, width]`.
    pub memory: B::Tensor,
    /// The four optional masks.
    pub masks: DecoderMasks,
}

impl<B: Backend> DecoderInput<B> {
    /// Target and memory without masks.
    pub fn new(tgt: B::Tensor, memory: B::Tensor) -> Self {
        DecoderInput { tgt, memory, masks: DecoderMasks::default() }
    }
    /// Set the masks.
    pub fn masks(mut self, masks: DecoderMasks) -> Self {
        self.masks = masks;
        self
    }
}

/// Gradients of a decoder's inputs.
#[derive(Clone, Debug)]
pub struct DecoderInputGrads<B: Backend> {
    /// d loss / d tgt.
    pub tgt: B::Tensor,
    /// d loss / d memory.
    pub memory: B::Tensor,
}

/// What [`HopfieldDecoderLayer`]'s backward needs.
#[derive(Clone, Debug)]
pub struct DecoderCache<B: Backend> {
    self_cache: HopfieldCache<B>,
    cross_cache: HopfieldCache<B>,
    lns: [LayerNormCache<B>; 3],
    mlp: MlpCache<B>,
    drops: [Option<B::Tensor>; 3],
}

impl<B: Backend> Layer<B> for HopfieldDecoderLayer<B> {
    type Params = DecoderParams<B>;
    type Input = DecoderInput<B>;
    type Output = B::Tensor;
    type Cache = DecoderCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = DecoderInputGrads<B>;

    fn params(&self) -> &DecoderParams<B> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut DecoderParams<B> {
        &mut self.params
    }

    /// Forward; training switches on dropout.
    fn forward(
        &self,
        backend: &B,
        p: &DecoderParams<B>,
        input: &DecoderInput<B>,
        mode: Mode,
    ) -> Result<(B::Tensor, DecoderCache<B>)> {
        let (c, seed) = (&self.config, mode.seed());
        let (tgt, memory, masks) = (&input.tgt, &input.memory, &input.masks);
        let shape = backend.shape(tgt);
        let drops = [0, 1, 3].map(|i| dropout(backend, c.dropout, seed, i, &shape));
        let mlp_drop = dropout(backend, c.dropout, seed, 2, &hidden_shape(&shape, c.dim_feedforward));
        let self_assoc = |x: &B::Tensor| {
            let mut i = HopfieldInput::single(x.clone());
            i.association_mask = masks.tgt_mask.clone();
            i.stored_pattern_padding_mask = masks.tgt_key_padding_mask.clone();
            self.self_spec.forward(backend, &p.hopfield_association_self, &i, seed.map(|s| s.wrapping_add(4)))
        };
        let cross_assoc = |x: &B::Tensor| {
            let mut i = HopfieldInput::new(memory.clone(), x.clone(), memory.clone());
            i.association_mask = masks.memory_mask.clone();
            i.stored_pattern_padding_mask = masks.memory_key_padding_mask.clone();
            self.cross_spec.forward(backend, &p.hopfield_association_cross, &i, seed.map(|s| s.wrapping_add(5)))
        };
        let eps = c.layer_norm_eps;
        let ln = |p: &LayerNormParams<B>, x: &B::Tensor| layer_norm_forward(backend, p, eps, x);
        let mlp = |x: &B::Tensor| {
            mlp_forward(backend, self.activation, &p.linear_residual, &p.linear_output, x, mlp_drop.clone())
        };
        if c.norm_first {
            let (a_in, l0) = ln(&p.norm_residual_self, tgt);
            let (a, sc) = self_assoc(&a_in)?;
            let x = backend.add(tgt, &masked(backend, &a.output, &drops[0]));
            let (c_in, l1) = ln(&p.norm_residual_cross, &x);
            let (cr, cc) = cross_assoc(&c_in)?;
            let x = backend.add(&x, &masked(backend, &cr.output, &drops[1]));
            let (m_in, l2) = ln(&p.norm_output, &x);
            let (m, mc) = mlp(&m_in);
            let y = backend.add(&x, &masked(backend, &m, &drops[2]));
            Ok((y, DecoderCache { self_cache: sc, cross_cache: cc, lns: [l0, l1, l2], mlp: mc, drops }))
        } else {
            let (a, sc) = self_assoc(tgt)?;
            let (x, l0) = ln(&p.norm_residual_self, &backend.add(tgt, &masked(backend, &a.output, &drops[0])));
            let (cr, cc) = cross_assoc(&x)?;
            let (x, l1) = ln(&p.norm_residual_cross, &backend.add(&x, &masked(backend, &cr.output, &drops[1])));
            let (m, mc) = mlp(&x);
            let (y, l2) = ln(&p.norm_output, &backend.add(&x, &masked(backend, &m, &drops[2])));
            Ok((y, DecoderCache { self_cache: sc, cross_cache: cc, lns: [l0, l1, l2], mlp: mc, drops }))
        }
    }

    /// Backward: accumulates into `grads`, returns the gradients of target and memory.
    fn backward(
        &self,
        backend: &B,
        p: &DecoderParams<B>,
        cache: &DecoderCache<B>,
        dy: &B::Tensor,
        grads: &mut DecoderParams<B>,
    ) -> Result<DecoderInputGrads<B>> {
        let one = B::Elem::one();
        let g = grads;
        let self_bwd = |d: &B::Tensor, g: &mut HopfieldParams<B>| -> Result<B::Tensor> {
            Ok(self.self_spec.backward(backend, &p.hopfield_association_self, &cache.self_cache, d, g)?.single(backend))
        };
        let cross_bwd = |d: &B::Tensor, g: &mut HopfieldParams<B>| -> Result<(B::Tensor, B::Tensor)> {
            let gi = self.cross_spec.backward(backend, &p.hopfield_association_cross, &cache.cross_cache, d, g)?;
            Ok((gi.state, backend.add(&gi.stored, &gi.projection)))
        };
        let mlp_bwd = |d: &B::Tensor, g_res: &mut LinearParams<B>, g_out: &mut LinearParams<B>| {
            mlp_backward(backend, self.activation, &p.linear_residual, &p.linear_output, &cache.mlp, d, g_res, g_out)
        };
        let drops = &cache.drops;
        if self.config.norm_first {
            // y = x2 + drop(mlp(n2(x2))); x2 = x1 + drop(cross(n1(x1))); x1 = tgt + drop(self(n0(tgt)))
            let dm = mlp_bwd(&masked(backend, dy, &drops[2]), &mut g.linear_residual, &mut g.linear_output);
            let mut dx2 = dy.clone();
            backend.axpy(
                &mut dx2,
                one,
                &layer_norm_backward(backend, &p.norm_output, &cache.lns[2], &dm, &mut g.norm_output),
            );
            let (dc_in, dmem) = cross_bwd(&masked(backend, &dx2, &drops[1]), &mut g.hopfield_association_cross)?;
            let mut dx1 = dx2;
            backend.axpy(
                &mut dx1,
                one,
                &layer_norm_backward(
                    backend,
                    &p.norm_residual_cross,
                    &cache.lns[1],
                    &dc_in,
                    &mut g.norm_residual_cross,
                ),
            );
            let da_in = self_bwd(&masked(backend, &dx1, &drops[0]), &mut g.hopfield_association_self)?;
            let mut dtgt = dx1;
            backend.axpy(
                &mut dtgt,
                one,
                &layer_norm_backward(backend, &p.norm_residual_self, &cache.lns[0], &da_in, &mut g.norm_residual_self),
            );
            Ok(DecoderInputGrads { tgt: dtgt, memory: dmem })
        } else {
            // y = n2(x2 + drop(mlp(x2))); x2 = n1(x1 + drop(cross(x1))); x1 = n0(tgt + drop(self(tgt)))
            let d2 = layer_norm_backward(backend, &p.norm_output, &cache.lns[2], dy, &mut g.norm_output);
            let mut dx2 = d2.clone();
            backend.axpy(
                &mut dx2,
                one,
                &mlp_bwd(&masked(backend, &d2, &drops[2]), &mut g.linear_residual, &mut g.linear_output),
            );
            let d1 =
                layer_norm_backward(backend, &p.norm_residual_cross, &cache.lns[1], &dx2, &mut g.norm_residual_cross);
            let (dc, dmem) = cross_bwd(&masked(backend, &d1, &drops[1]), &mut g.hopfield_association_cross)?;
            let mut dx1 = d1;
            backend.axpy(&mut dx1, one, &dc);
            let d0 =
                layer_norm_backward(backend, &p.norm_residual_self, &cache.lns[0], &dx1, &mut g.norm_residual_self);
            let mut dtgt = d0.clone();
            backend.axpy(
                &mut dtgt,
                one,
                &self_bwd(&masked(backend, &d0, &drops[0]), &mut g.hopfield_association_self)?,
            );
            Ok(DecoderInputGrads { tgt: dtgt, memory: dmem })
        }
    }
}
