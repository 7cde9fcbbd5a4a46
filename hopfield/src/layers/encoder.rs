//! `HopfieldEncoderLayer` (and the configuration and MLP block it shares with `HopfieldDecoderLayer`,
//! [`super::decoder`]): hflayers' transformer drop-ins (a Hopfield
//! association in place of multi-head attention, then a two-layer MLP), post-norm as hflayers or pre-norm as
//! CLIP/ViT. Parameter names follow hflayers (`hopfield_association.*`, `linear_residual`, `linear_output`,
//! `norm_residual`, `norm_output`); in pre-norm, `norm_residual` normalises the association's input and
//! `norm_output` the MLP's input.

use super::decoder::{DecoderParams, HopfieldDecoderLayer};
use super::hopfield::{HopfieldCache, HopfieldConfig, HopfieldInput, HopfieldParams, HopfieldSpec, Mask};
use super::linear::{linear_backward, linear_forward, Linear, LinearParams};
use super::norm::{layer_norm_backward, layer_norm_forward, LayerNormCache, LayerNormParams};
use crate::activation::Activation;
use crate::backend::Backend;
use crate::error::{HopfieldError, Result};
use crate::layers::{Layer, Mode};
use crate::params::Parameters;
use num_traits::One;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Configuration shared by the encoder and decoder layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HopfieldEncoderLayerConfig {
    /// The association (its `input_size` is the model width).
    pub hopfield: HopfieldConfig,
    /// Hidden size of the MLP.
    pub dim_feedforward: usize,
    /// Dropout after the association, inside and after the MLP (train mode only).
    pub dropout: f64,
    /// MLP activation by name.
    pub activation: String,
    /// Pre-norm (normalise before each block, CLIP/ViT) instead of hflayers' post-norm.
    pub norm_first: bool,
    /// ε of the layer's own norms.
    pub layer_norm_eps: f64,
}

impl Default for HopfieldEncoderLayerConfig {
    fn default() -> Self {
        HopfieldEncoderLayerConfig {
            hopfield: HopfieldConfig::default(),
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: "relu".into(),
            norm_first: false,
            layer_norm_eps: 1e-5,
        }
    }
}

impl HopfieldEncoderLayerConfig {
    /// hflayers' defaults around the given association.
    pub fn new(hopfield: HopfieldConfig) -> Self {
        HopfieldEncoderLayerConfig { hopfield, ..Default::default() }
    }
    /// Set the MLP hidden size.
    pub fn dim_feedforward(mut self, n: usize) -> Self {
        self.dim_feedforward = n;
        self
    }
    /// Set the dropout probability.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }
    /// Set the MLP activation by name.
    pub fn activation(mut self, name: &str) -> Self {
        self.activation = name.into();
        self
    }
    /// Pre-norm instead of post-norm.
    pub fn norm_first(mut self, on: bool) -> Self {
        self.norm_first = on;
        self
    }

    fn check(&self) -> Result<(HopfieldSpec, Activation, usize)> {
        let spec = self.hopfield.spec()?;
        let act: Activation =
            self.activation.parse().map_err(|e: HopfieldError| HopfieldError::config("activation", e.to_string()))?;
        if self.dim_feedforward == 0 {
            return Err(HopfieldError::config("dim_feedforward", "must be positive"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(HopfieldError::config("dropout", format!("must lie in [0, 1), got {}", self.dropout)));
        }
        let width = spec.dims.input;
        if spec.dims.output != width {
            return Err(HopfieldError::config(
                "hopfield.output_size",
                format!(
                    "the residual needs the association's output size {} to equal its input size {width}",
                    spec.dims.output
                ),
            ));
        }
        Ok((spec, act, width))
    }

    /// Validate and initialise an encoder layer.
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<HopfieldEncoderLayer<B>> {
        let (spec, act, width) = self.check()?;
        let hopfield_association = HopfieldParams::init(backend, &self.hopfield, &spec.dims, rng);
        let (linear_residual, linear_output) = mlp_init(backend, width, self.dim_feedforward, rng)?;
        Ok(HopfieldEncoderLayer {
            config: self.clone(),
            spec,
            activation: act,
            params: EncoderParams {
                hopfield_association,
                linear_residual,
                linear_output,
                norm_residual: LayerNormParams::new(backend, width),
                norm_output: LayerNormParams::new(backend, width),
            },
        })
    }

    /// Validate and initialise a decoder layer; `cross` configures the association with the memory.
    pub fn init_decoder<B: Backend>(
        &self,
        cross: &HopfieldConfig,
        backend: &B,
        rng: &mut impl Rng,
    ) -> Result<HopfieldDecoderLayer<B>> {
        let (spec, act, width) = self.check()?;
        let cross_spec = cross.spec()?;
        if cross_spec.dims.input != width || cross_spec.dims.output != width {
            return Err(HopfieldError::config(
                "cross.input_size",
                format!(
                    "the cross association must map width {width} to {width}, got {} → {}",
                    cross_spec.dims.input, cross_spec.dims.output
                ),
            ));
        }
        let hopfield_association_self = HopfieldParams::init(backend, &self.hopfield, &spec.dims, rng);
        let hopfield_association_cross = HopfieldParams::init(backend, cross, &cross_spec.dims, rng);
        let (linear_residual, linear_output) = mlp_init(backend, width, self.dim_feedforward, rng)?;
        let ln = || LayerNormParams::new(backend, width);
        Ok(HopfieldDecoderLayer {
            config: self.clone(),
            self_spec: spec,
            cross_spec,
            activation: act,
            params: DecoderParams {
                hopfield_association_self,
                hopfield_association_cross,
                linear_residual,
                linear_output,
                norm_residual_self: ln(),
                norm_residual_cross: ln(),
                norm_output: ln(),
            },
        })
    }
}

fn mlp_init<B: Backend>(
    backend: &B,
    width: usize,
    hidden: usize,
    rng: &mut impl Rng,
) -> Result<(LinearParams<B>, LinearParams<B>)> {
    Ok((Linear::new(backend, width, hidden, true, rng)?.params, Linear::new(backend, hidden, width, true, rng)?.params))
}

/// What the MLP block's backward needs.
#[derive(Clone, Debug)]
pub(super) struct MlpCache<B: Backend> {
    x: B::Tensor,
    pre: B::Tensor,
    hidden: B::Tensor,
    drop: Option<B::Tensor>,
}

/// `linear_output(drop(act(linear_residual(x))))`.
pub(super) fn mlp_forward<B: Backend>(
    backend: &B,
    act: Activation,
    res: &LinearParams<B>,
    out: &LinearParams<B>,
    x: &B::Tensor,
    drop: Option<B::Tensor>,
) -> (B::Tensor, MlpCache<B>) {
    let (pre, a) = backend.linear_activation(x, &res.weight, res.bias.as_ref(), act);
    let hidden = match &drop {
        Some(m) => backend.mul(&a, m),
        None => a,
    };
    let y = linear_forward(backend, &hidden, &out.weight, out.bias.as_ref());
    (y, MlpCache { x: x.clone(), pre, hidden, drop })
}

pub(super) fn mlp_backward<B: Backend>(
    backend: &B,
    act: Activation,
    res: &LinearParams<B>,
    out: &LinearParams<B>,
    c: &MlpCache<B>,
    dy: &B::Tensor,
    g_res: &mut LinearParams<B>,
    g_out: &mut LinearParams<B>,
) -> B::Tensor {
    let mut dh = linear_backward(backend, &c.hidden, &out.weight, dy, &mut g_out.weight, g_out.bias.as_mut());
    if let Some(m) = &c.drop {
        dh = backend.mul(&dh, m);
    }
    let dpre = backend.activation_backward(&c.pre, &dh, act);
    linear_backward(backend, &c.x, &res.weight, &dpre, &mut g_res.weight, g_res.bias.as_mut())
}

/// Dropout masks of one call: `Some` only in train mode with a positive probability.
pub(super) fn dropout<B: Backend>(
    backend: &B,
    p: f64,
    seed: Option<u64>,
    i: u64,
    shape: &[usize],
) -> Option<B::Tensor> {
    match seed {
        Some(s) if p > 0.0 => Some(backend.dropout_mask(shape, p, s.wrapping_add(i))),
        _ => None,
    }
}

pub(super) fn masked<B: Backend>(backend: &B, x: &B::Tensor, m: &Option<B::Tensor>) -> B::Tensor {
    match m {
        Some(m) => backend.mul(x, m),
        None => x.clone(),
    }
}

pub(super) fn hidden_shape(shape: &[usize], hidden: usize) -> Vec<usize> {
    shape[..shape.len() - 1].iter().copied().chain([hidden]).collect()
}

/// Parameters (and gradients) of a [`HopfieldEncoderLayer`], named as hflayers.
#[derive(Clone, Debug, Parameters)]
pub struct EncoderParams<B: Backend> {
    /// `hopfield_association.*`.
    pub hopfield_association: HopfieldParams<B>,
    /// `linear_residual.*`: width → dim_feedforward.
    pub linear_residual: LinearParams<B>,
    /// `linear_output.*`: dim_feedforward → width.
    pub linear_output: LinearParams<B>,
    /// `norm_residual.*`.
    pub norm_residual: LayerNormParams<B>,
    /// `norm_output.*`.
    pub norm_output: LayerNormParams<B>,
}

/// A transformer encoder layer with a Hopfield self-association.
///
/// # Shapes
/// `src`: `[B, L, width]` (sequence-first when the association's `batch_first` is off) → same shape;
/// `src_mask`: `[L, L]` or `[B·H, L, L]`; `src_key_padding_mask`: `[B, L]`.
///
/// ```
/// use hopfield_layers::layers::{EncoderInput, HopfieldConfig, HopfieldEncoderLayerConfig, Layer, Mode};
/// use hopfield_layers::{seeded_rng, Backend, Cpu};
///
/// let cpu = Cpu::<f32>::new();
/// let config = HopfieldEncoderLayerConfig::new(HopfieldConfig::new(16).num_heads(4)).dim_feedforward(32);
/// let encoder = config.init(&cpu, &mut seeded_rng(0))?;
/// let src = cpu.full(&[2, 6, 16], 0.1); // [B, L, width]
/// let (y, cache) = encoder.forward(&cpu, &encoder.params, &EncoderInput::new(src), Mode::Eval)?;
/// assert_eq!(cpu.shape(&y), [2, 6, 16]);
/// let mut grads = encoder.zero_grads(&cpu);
/// let d_src = encoder.backward(&cpu, &encoder.params, &cache, &cpu.full(&[2, 6, 16], 1.0), &mut grads)?;
/// assert_eq!(cpu.shape(&d_src), [2, 6, 16]);
/// # Ok::<(), hopfield_layers::HopfieldError>(())
/// ```
#[derive(Clone, Debug, Parameters)]
pub struct HopfieldEncoderLayer<B: Backend> {
    /// Its configuration.
    #[param(skip)]
    pub config: HopfieldEncoderLayerConfig,
    /// The association's sizes.
    #[param(skip)]
    pub spec: HopfieldSpec,
    /// The MLP activation.
    #[param(skip)]
    pub activation: Activation,
    /// All learned tensors.
    #[param(flatten)]
    pub params: EncoderParams<B>,
}

/// Input of a [`HopfieldEncoderLayer`]: the sequence and its optional masks.
///
/// # Shapes
/// `src`: `[B, L, width]`; `src_mask`: `[L, L]` or `[B·H, L, L]`; `src_key_padding_mask`: `[B, L]`.
#[derive(Clone, Debug)]
pub struct EncoderInput<B: Backend> {
    /// The sequence.
    pub src: B::Tensor,
    /// Association mask (e.g. causal).
    pub src_mask: Option<Mask>,
    /// Hides padded positions per sample.
    pub src_key_padding_mask: Option<Mask>,
}

impl<B: Backend> EncoderInput<B> {
    /// A sequence without masks.
    pub fn new(src: B::Tensor) -> Self {
        EncoderInput { src, src_mask: None, src_key_padding_mask: None }
    }
    /// Add an association mask.
    pub fn mask(mut self, mask: Mask) -> Self {
        self.src_mask = Some(mask);
        self
    }
    /// Add a key padding mask `[B, L]`.
    pub fn padding_mask(mut self, mask: Mask) -> Self {
        self.src_key_padding_mask = Some(mask);
        self
    }
}

/// What [`HopfieldEncoderLayer`]'s backward needs.
#[derive(Clone, Debug)]
pub struct EncoderCache<B: Backend> {
    hopfield: HopfieldCache<B>,
    ln1: LayerNormCache<B>,
    ln2: LayerNormCache<B>,
    mlp: MlpCache<B>,
    drops: [Option<B::Tensor>; 2],
}

impl<B: Backend> Layer<B> for HopfieldEncoderLayer<B> {
    type Params = EncoderParams<B>;
    type Input = EncoderInput<B>;
    type Output = B::Tensor;
    type Cache = EncoderCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = B::Tensor;

    fn params(&self) -> &EncoderParams<B> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut EncoderParams<B> {
        &mut self.params
    }

    /// Forward; training switches on dropout.
    fn forward(
        &self,
        backend: &B,
        p: &EncoderParams<B>,
        input: &EncoderInput<B>,
        mode: Mode,
    ) -> Result<(B::Tensor, EncoderCache<B>)> {
        let (c, seed, src) = (&self.config, mode.seed(), &input.src);
        let (src_mask, src_key_padding_mask) = (&input.src_mask, &input.src_key_padding_mask);
        let shape = backend.shape(src);
        if shape.len() != 3 || shape[2] != self.spec.dims.input {
            return Err(HopfieldError::shape(
                "hopfield_encoder_layer.forward(src)",
                format!("[.., .., {}]", self.spec.dims.input),
                &shape,
            ));
        }
        let assoc = |x: &B::Tensor| {
            let mut input = HopfieldInput::single(x.clone());
            input.association_mask = src_mask.clone();
            input.stored_pattern_padding_mask = src_key_padding_mask.clone();
            self.spec.forward(backend, &p.hopfield_association, &input, seed.map(|s| s.wrapping_add(3)))
        };
        let drops = [dropout(backend, c.dropout, seed, 0, &shape), dropout(backend, c.dropout, seed, 2, &shape)];
        let mlp_drop = dropout(backend, c.dropout, seed, 1, &hidden_shape(&shape, c.dim_feedforward));
        let eps = c.layer_norm_eps;
        let (y, hopfield, ln1, ln2, mlp) = if c.norm_first {
            let (n1, ln1) = layer_norm_forward(backend, &p.norm_residual, eps, src);
            let (a, hc) = assoc(&n1)?;
            let x = backend.add(src, &masked(backend, &a.output, &drops[0]));
            let (n2, ln2) = layer_norm_forward(backend, &p.norm_output, eps, &x);
            let (m, mc) = mlp_forward(backend, self.activation, &p.linear_residual, &p.linear_output, &n2, mlp_drop);
            (backend.add(&x, &masked(backend, &m, &drops[1])), hc, ln1, ln2, mc)
        } else {
            let (a, hc) = assoc(src)?;
            let (n1, ln1) = layer_norm_forward(
                backend,
                &p.norm_residual,
                eps,
                &backend.add(src, &masked(backend, &a.output, &drops[0])),
            );
            let (m, mc) = mlp_forward(backend, self.activation, &p.linear_residual, &p.linear_output, &n1, mlp_drop);
            let (y, ln2) =
                layer_norm_forward(backend, &p.norm_output, eps, &backend.add(&n1, &masked(backend, &m, &drops[1])));
            (y, hc, ln1, ln2, mc)
        };
        Ok((y, EncoderCache { hopfield, ln1, ln2, mlp, drops }))
    }

    /// Backward: accumulates into `grads`, returns d loss / d src.
    fn backward(
        &self,
        backend: &B,
        p: &EncoderParams<B>,
        cache: &EncoderCache<B>,
        dy: &B::Tensor,
        grads: &mut EncoderParams<B>,
    ) -> Result<B::Tensor> {
        let one = B::Elem::one();
        let assoc_bwd = |d: &B::Tensor, g: &mut HopfieldParams<B>| -> Result<B::Tensor> {
            Ok(self.spec.backward(backend, &p.hopfield_association, &cache.hopfield, d, g)?.single(backend))
        };
        let mlp_bwd = |d: &B::Tensor, g_res: &mut LinearParams<B>, g_out: &mut LinearParams<B>| {
            mlp_backward(backend, self.activation, &p.linear_residual, &p.linear_output, &cache.mlp, d, g_res, g_out)
        };
        if self.config.norm_first {
            // y = x + drop(mlp(ln2(x)));  x = src + drop(assoc(ln1(src)))
            let dn2 =
                mlp_bwd(&masked(backend, dy, &cache.drops[1]), &mut grads.linear_residual, &mut grads.linear_output);
            let mut dx = dy.clone();
            backend.axpy(
                &mut dx,
                one,
                &layer_norm_backward(backend, &p.norm_output, &cache.ln2, &dn2, &mut grads.norm_output),
            );
            let dn1 = assoc_bwd(&masked(backend, &dx, &cache.drops[0]), &mut grads.hopfield_association)?;
            backend.axpy(
                &mut dx,
                one,
                &layer_norm_backward(backend, &p.norm_residual, &cache.ln1, &dn1, &mut grads.norm_residual),
            );
            Ok(dx)
        } else {
            // y = ln2(n1 + drop(mlp(n1)));  n1 = ln1(src + drop(assoc(src)))
            let dx2 = layer_norm_backward(backend, &p.norm_output, &cache.ln2, dy, &mut grads.norm_output);
            let mut dn1 = dx2.clone();
            backend.axpy(
                &mut dn1,
                one,
                &mlp_bwd(&masked(backend, &dx2, &cache.drops[1]), &mut grads.linear_residual, &mut grads.linear_output),
            );
            let dx = layer_norm_backward(backend, &p.norm_residual, &cache.ln1, &dn1, &mut grads.norm_residual);
            let mut dsrc = dx.clone();
            backend.axpy(
                &mut dsrc,
                one,
                &assoc_bwd(&masked(backend, &dx, &cache.drops[0]), &mut grads.hopfield_association)?,
            );
            Ok(dsrc)
        }
    }
}
