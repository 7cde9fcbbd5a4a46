//! `HopfieldLayer`: the input (state patterns) retrieves from learned stored patterns and targets — a
//! learned associative memory / lookup table (hflayers' `HopfieldLayer`).

use super::hopfield::{HopfieldCache, HopfieldConfig, HopfieldInput, HopfieldParams, HopfieldSpec, Mask};
use crate::backend::Backend;
use crate::error::{HopfieldError, Result};
use crate::init;
use crate::layers::{Layer, Mode};
use crate::params::Parameters;
use num_traits::One;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Configuration of a [`HopfieldLayer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HopfieldLayerConfig {
    /// The association.
    #[serde(flatten)]
    pub hopfield: HopfieldConfig,
    /// Number of learned stored patterns.
    pub quantity: usize,
    /// Learn separate targets (pattern projections) instead of reusing the stored patterns.
    pub lookup_weights_as_separated: bool,
    /// Whether the separate targets are learned.
    pub lookup_targets_as_trainable: bool,
    /// Whether the stored patterns are learned.
    pub trainable: bool,
}

impl Default for HopfieldLayerConfig {
    fn default() -> Self {
        HopfieldLayerConfig {
            hopfield: HopfieldConfig::default(),
            quantity: 1,
            lookup_weights_as_separated: false,
            lookup_targets_as_trainable: true,
            trainable: true,
        }
    }
}

impl HopfieldLayerConfig {
    /// A lookup for `input_size`-sized queries with hflayers' defaults.
    pub fn new(input_size: usize) -> Self {
        HopfieldLayerConfig { hopfield: HopfieldConfig::new(input_size), ..Default::default() }
    }
    /// Set the embedded Hopfield options.
    pub fn hopfield(mut self, hopfield: HopfieldConfig) -> Self {
        self.hopfield = hopfield;
        self
    }
    /// Set the number of stored patterns.
    pub fn quantity(mut self, quantity: usize) -> Self {
        self.quantity = quantity;
        self
    }
    /// Learn separate targets.
    pub fn lookup_weights_as_separated(mut self, on: bool) -> Self {
        self.lookup_weights_as_separated = on;
        self
    }
    /// Learn or freeze the separate targets.
    pub fn lookup_targets_as_trainable(mut self, on: bool) -> Self {
        self.lookup_targets_as_trainable = on;
        self
    }
    /// Learn or freeze the stored patterns.
    pub fn trainable(mut self, on: bool) -> Self {
        self.trainable = on;
        self
    }

    /// Validate and initialise (stored patterns and targets N(0, 0.02²) as hflayers).
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<HopfieldLayer<B>> {
        if self.quantity == 0 {
            return Err(HopfieldError::config("quantity", "must be at least 1"));
        }
        let spec = self.hopfield.spec()?;
        if !self.lookup_weights_as_separated && spec.dims.stored != spec.dims.projection {
            return Err(HopfieldError::config(
                "lookup_weights_as_separated",
                format!(
                    "shared lookup weights need stored_pattern_size {} = pattern_projection_size {}",
                    spec.dims.stored, spec.dims.projection
                ),
            ));
        }
        let hopfield = HopfieldParams::init(backend, &self.hopfield, &spec.dims, rng);
        let lookup_weights = init::normal(backend, &[1, self.quantity, spec.dims.stored], 0.02, rng);
        let target_weights = self
            .lookup_weights_as_separated
            .then(|| init::normal(backend, &[1, self.quantity, spec.dims.projection], 0.02, rng));
        Ok(HopfieldLayer {
            config: self.clone(),
            spec,
            params: HopfieldLayerParams {
                lookup_weights,
                target_weights,
                hopfield,
                trainable: self.trainable,
                targets_trainable: self.lookup_targets_as_trainable,
            },
        })
    }
}

/// Parameters (and gradients) of a [`HopfieldLayer`].
#[derive(Clone, Debug, Parameters)]
pub struct HopfieldLayerParams<B: Backend> {
    /// `lookup_weights`, `[1, quantity, stored]`.
    #[param(trainable = self.trainable)]
    pub lookup_weights: B::Tensor,
    /// `target_weights`, `[1, quantity, projection]` when separated.
    #[param(trainable = self.targets_trainable)]
    pub target_weights: Option<B::Tensor>,
    /// `hopfield.*`.
    pub hopfield: HopfieldParams<B>,
    /// Whether `lookup_weights` is trainable.
    #[param(skip)]
    pub trainable: bool,
    /// Whether `target_weights` is trainable.
    #[param(skip)]
    pub targets_trainable: bool,
}

/// A learned associative memory queried by the input.
///
/// # Shapes
/// input `[B, L, input]` (sequence-first when `batch_first` is off) → output `[B, L, output]`; padding mask
/// `[B, quantity]`, association mask `[L, quantity]` or `[B·H, L, quantity]`.
///
/// ```
/// use hopfield_layers::layers::{HopfieldLayerConfig, Layer, LookupInput, Mode};
/// use hopfield_layers::{seeded_rng, Backend, Cpu};
///
/// let cpu = Cpu::<f32>::new();
/// // 10 learned stored patterns with separate learned targets.
/// let config = HopfieldLayerConfig::new(8).quantity(10).lookup_weights_as_separated(true);
/// let lookup = config.init(&cpu, &mut seeded_rng(0))?;
/// let queries = cpu.full(&[2, 4, 8], 0.1);
/// let (out, cache) = lookup.forward(&cpu, &lookup.params, &LookupInput::new(queries), Mode::Eval)?;
/// assert_eq!(cpu.shape(&out), [2, 4, 8]);
/// let mut grads = lookup.zero_grads(&cpu);
/// let d_queries = lookup.backward(&cpu, &lookup.params, &cache, &cpu.full(&[2, 4, 8], 1.0), &mut grads)?;
/// assert_eq!(cpu.shape(&d_queries), [2, 4, 8]);
/// # Ok::<(), hopfield_layers::HopfieldError>(())
/// ```
#[derive(Clone, Debug, Parameters)]
pub struct HopfieldLayer<B: Backend> {
    /// Its configuration.
    #[param(skip)]
    pub config: HopfieldLayerConfig,
    /// The association's sizes.
    #[param(skip)]
    pub spec: HopfieldSpec,
    /// Learned tensors.
    #[param(flatten)]
    pub params: HopfieldLayerParams<B>,
}

/// Input of a [`HopfieldLayer`]: the queries (state patterns) and optional masks over the learned memory.
///
/// # Shapes
/// input `[B, L, input]` (sequence-first when `batch_first` is off), padding mask `[B, quantity]`,
/// association mask `[L, quantity]` or `[B·H, L, quantity]`.
#[derive(Clone, Debug)]
pub struct LookupInput<B: Backend> {
    /// State patterns (queries).
    pub input: B::Tensor,
    /// Hides stored patterns per sample.
    pub stored_pattern_padding_mask: Option<Mask>,
    /// Hides single associations.
    pub association_mask: Option<Mask>,
}

impl<B: Backend> LookupInput<B> {
    /// Queries without masks.
    pub fn new(input: B::Tensor) -> Self {
        LookupInput { input, stored_pattern_padding_mask: None, association_mask: None }
    }
    /// Add a padding mask `[B, quantity]` (`true` = hidden).
    pub fn padding_mask(mut self, mask: Mask) -> Self {
        self.stored_pattern_padding_mask = Some(mask);
        self
    }
    /// Add an association mask.
    pub fn association_mask(mut self, mask: Mask) -> Self {
        self.association_mask = Some(mask);
        self
    }
}

/// What [`HopfieldLayer`]'s backward needs.
#[derive(Clone, Debug)]
pub struct LookupCache<B: Backend> {
    /// The inner association's cache.
    pub hopfield: HopfieldCache<B>,
}

impl<B: Backend> HopfieldLayer<B> {
    /// The association matrix `[B, H, L, quantity']`.
    pub fn association_matrix(&self, backend: &B, input: &LookupInput<B>) -> Result<B::Tensor> {
        let mut materialised = self.clone();
        materialised.spec.config.fused_association = false;
        let (_, cache) = materialised.forward(backend, &self.params, input, Mode::Eval)?;
        Ok(cache.hopfield.association().expect("the materialised path keeps its association matrices").clone())
    }
}

impl<B: Backend> Layer<B> for HopfieldLayer<B> {
    type Params = HopfieldLayerParams<B>;
    type Input = LookupInput<B>;
    type Output = B::Tensor;
    type Cache = LookupCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = B::Tensor;

    fn params(&self) -> &HopfieldLayerParams<B> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut HopfieldLayerParams<B> {
        &mut self.params
    }

    /// The retrieval `[B, L, output]`; in training, association dropout drawn from the seed.
    fn forward(
        &self,
        backend: &B,
        params: &HopfieldLayerParams<B>,
        input: &LookupInput<B>,
        mode: Mode,
    ) -> Result<(B::Tensor, LookupCache<B>)> {
        let x = &input.input;
        let shape = backend.shape(x);
        if shape.len() != 3 {
            return Err(HopfieldError::shape("hopfield_layer.forward(input)", "rank 3", &shape));
        }
        let bf = self.spec.config.batch_first;
        let batch = if bf { shape[0] } else { shape[1] };
        let expand = |w: &B::Tensor| {
            if bf {
                backend.expand(w, 0, batch)
            } else {
                let s = backend.shape(w);
                backend.expand(&backend.reshape(w, &[s[1], 1, s[2]]), 1, batch)
            }
        };
        let stored = expand(&params.lookup_weights);
        let projection = params.target_weights.as_ref().map_or_else(|| stored.clone(), expand);
        let mut hin = HopfieldInput::new(stored, x.clone(), projection);
        hin.stored_pattern_padding_mask = input.stored_pattern_padding_mask.clone();
        hin.association_mask = input.association_mask.clone();
        let (out, cache) = self.spec.forward(backend, &params.hopfield, &hin, mode.seed())?;
        Ok((out.output, LookupCache { hopfield: cache }))
    }

    /// Backward: accumulates into `grads` (trainable tensors only) and returns d loss / d input.
    fn backward(
        &self,
        backend: &B,
        params: &HopfieldLayerParams<B>,
        cache: &LookupCache<B>,
        d_output: &B::Tensor,
        grads: &mut HopfieldLayerParams<B>,
    ) -> Result<B::Tensor> {
        let g = self.spec.backward(backend, &params.hopfield, &cache.hopfield, d_output, &mut grads.hopfield)?;
        let bf = self.spec.config.batch_first;
        let batch_sum = |t: &B::Tensor| {
            let t = if bf { t.clone() } else { backend.permute(t, &[1, 0, 2]) };
            backend.sum_axis(&t, 0)
        };
        let one = B::Elem::one();
        match grads.target_weights.as_mut() {
            Some(gt) => {
                if params.targets_trainable {
                    backend.axpy(gt, one, &batch_sum(&g.projection));
                }
                if params.trainable {
                    backend.axpy(&mut grads.lookup_weights, one, &batch_sum(&g.stored));
                }
            }
            None if params.trainable => {
                backend.axpy(&mut grads.lookup_weights, one, &batch_sum(&backend.add(&g.stored, &g.projection)));
            }
            None => {}
        }
        Ok(g.state)
    }
}
