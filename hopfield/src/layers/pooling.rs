//! `HopfieldPooling`: learned state patterns (queries) retrieve from the input set — attention pooling
//! for multiple-instance learning and set summaries (hflayers' `HopfieldPooling`).

use super::hopfield::{HopfieldCache, HopfieldConfig, HopfieldInput, HopfieldParams, HopfieldSpec, Mask};
use crate::backend::Backend;
use crate::error::{HopfieldError, Result};
use crate::init;
use crate::layers::{Layer, Mode};
use crate::params::Parameters;
use num_traits::One;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Configuration of a [`HopfieldPooling`]: the embedded Hopfield options plus the learned state patterns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HopfieldPoolingConfig {
    /// The association (input_size is the instance size).
    #[serde(flatten)]
    pub hopfield: HopfieldConfig,
    /// Number of learned state patterns.
    pub quantity: usize,
    /// Whether the state patterns are learned.
    pub trainable: bool,
}

impl Default for HopfieldPoolingConfig {
    fn default() -> Self {
        HopfieldPoolingConfig { hopfield: HopfieldConfig::default(), quantity: 1, trainable: true }
    }
}

impl HopfieldPoolingConfig {
    /// Pool `input_size`-sized instances with hflayers' defaults.
    pub fn new(input_size: usize) -> Self {
        HopfieldPoolingConfig { hopfield: HopfieldConfig::new(input_size), ..Default::default() }
    }
    /// Set the embedded Hopfield options.
    pub fn hopfield(mut self, hopfield: HopfieldConfig) -> Self {
        self.hopfield = hopfield;
        self
    }
    /// Set the number of state patterns.
    pub fn quantity(mut self, quantity: usize) -> Self {
        self.quantity = quantity;
        self
    }
    /// Freeze or learn the state patterns.
    pub fn trainable(mut self, trainable: bool) -> Self {
        self.trainable = trainable;
        self
    }

    /// Validate and initialise (state patterns N(0, 0.02²) as hflayers).
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<HopfieldPooling<B>> {
        if self.quantity == 0 {
            return Err(HopfieldError::config("quantity", "must be at least 1"));
        }
        let spec = self.hopfield.spec()?;
        let hopfield = HopfieldParams::init(backend, &self.hopfield, &spec.dims, rng);
        let size = spec.dims.input;
        let pooling_weights = init::normal(backend, &[1, self.quantity, size], 0.02, rng);
        Ok(HopfieldPooling {
            config: self.clone(),
            spec,
            params: HopfieldPoolingParams { pooling_weights, hopfield, trainable: self.trainable },
        })
    }
}

/// Parameters (and gradients) of a [`HopfieldPooling`].
#[derive(Clone, Debug, Parameters)]
pub struct HopfieldPoolingParams<B: Backend> {
    /// `pooling_weights`, `[1, quantity, input]`.
    #[param(trainable = self.trainable)]
    pub pooling_weights: B::Tensor,
    /// `hopfield.*`.
    pub hopfield: HopfieldParams<B>,
    /// Whether `pooling_weights` is trainable.
    #[param(skip)]
    pub trainable: bool,
}

/// Input of a [`HopfieldPooling`]: the set to pool (as stored patterns and pattern projections) and masks.
///
/// # Shapes
/// stored `[B, S, stored]`, projection `[B, S, projection]` (sequence-first when `batch_first` is off),
/// padding mask `[B, S]`, association mask `[quantity, S]` or `[B·H, quantity, S]`.
#[derive(Clone, Debug)]
pub struct PoolingInput<B: Backend> {
    /// Stored patterns.
    pub stored: B::Tensor,
    /// Pattern projections.
    pub projection: B::Tensor,
    /// Hides padded instances.
    pub stored_pattern_padding_mask: Option<Mask>,
    /// Hides single associations.
    pub association_mask: Option<Mask>,
}

impl<B: Backend> PoolingInput<B> {
    /// Pool one tensor (stored pattern = pattern projection).
    pub fn single(x: B::Tensor) -> Self {
        PoolingInput { stored: x.clone(), projection: x, stored_pattern_padding_mask: None, association_mask: None }
    }
    /// Separate stored patterns and projections.
    pub fn new(stored: B::Tensor, projection: B::Tensor) -> Self {
        PoolingInput { stored, projection, stored_pattern_padding_mask: None, association_mask: None }
    }
    /// Add a padding mask `[B, S]` (`true` = padded).
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

/// Hopfield pooling with `quantity` learned state patterns.
///
/// # Shapes
/// input as [`PoolingInput`] → output `[B, quantity · output]` (both layouts; hflayers flattens the
/// sequence-first output `[quantity, B, out]` to `[quantity, B·out]` instead).
///
/// ```
/// use hopfield_layers::layers::{HopfieldPoolingConfig, Layer, Mode, PoolingInput};
/// use hopfield_layers::{seeded_rng, Backend, Cpu};
///
/// let cpu = Cpu::<f32>::new();
/// let pool = HopfieldPoolingConfig::new(8).quantity(2).init(&cpu, &mut seeded_rng(0))?;
/// let sets = cpu.full(&[3, 5, 8], 0.5); // 3 sets of 5 instances
/// let (pooled, cache) = pool.forward(&cpu, &pool.params, &PoolingInput::single(sets), Mode::Eval)?;
/// assert_eq!(cpu.shape(&pooled), [3, 2 * 8]); // [B, quantity · output]
/// let mut grads = pool.zero_grads(&cpu);
/// let d_sets = pool.backward(&cpu, &pool.params, &cache, &cpu.full(&[3, 16], 1.0), &mut grads)?;
/// assert_eq!(cpu.shape(&d_sets.single(&cpu)), [3, 5, 8]);
/// # Ok::<(), hopfield_layers::HopfieldError>(())
/// ```
#[derive(Clone, Debug, Parameters)]
pub struct HopfieldPooling<B: Backend> {
    /// Its configuration.
    #[param(skip)]
    pub config: HopfieldPoolingConfig,
    /// The association's sizes.
    #[param(skip)]
    pub spec: HopfieldSpec,
    /// Learned tensors.
    #[param(flatten)]
    pub params: HopfieldPoolingParams<B>,
}

/// What [`HopfieldPooling`]'s backward needs.
#[derive(Clone, Debug)]
pub struct PoolingCache<B: Backend> {
    /// The inner association's cache.
    pub hopfield: HopfieldCache<B>,
    batch: usize,
}

/// Gradients of a pooling input.
#[derive(Clone, Debug)]
pub struct PoolingInputGrads<B: Backend> {
    /// d loss / d stored.
    pub stored: B::Tensor,
    /// d loss / d projection.
    pub projection: B::Tensor,
}

impl<B: Backend> PoolingInputGrads<B> {
    /// The gradient of a single tensor used as both ([`PoolingInput::single`]).
    pub fn single(&self, backend: &B) -> B::Tensor {
        backend.add(&self.stored, &self.projection)
    }
}

impl<B: Backend> HopfieldPooling<B> {
    fn hopfield_input(
        &self,
        backend: &B,
        params: &HopfieldPoolingParams<B>,
        input: &PoolingInput<B>,
    ) -> Result<HopfieldInput<B>> {
        let shape = backend.shape(&input.stored);
        if shape.len() != 3 {
            return Err(HopfieldError::shape("hopfield_pooling.forward(stored)", "rank 3", &shape));
        }
        let bf = self.spec.config.batch_first;
        let batch = if bf { shape[0] } else { shape[1] };
        let q = self.config.quantity;
        let w = &params.pooling_weights;
        let state = if bf {
            backend.expand(w, 0, batch)
        } else {
            backend.expand(&backend.reshape(w, &[q, 1, self.spec.dims.input]), 1, batch)
        };
        Ok(HopfieldInput {
            stored: input.stored.clone(),
            state,
            projection: input.projection.clone(),
            stored_pattern_padding_mask: input.stored_pattern_padding_mask.clone(),
            association_mask: input.association_mask.clone(),
            return_association: false,
            return_projected_patterns: false,
        })
    }

    /// The association matrix `[B, H, quantity, S']`.
    pub fn association_matrix(&self, backend: &B, input: &PoolingInput<B>) -> Result<B::Tensor> {
        let mut materialised = self.clone();
        materialised.spec.config.fused_association = false;
        let (_, cache) = materialised.forward(backend, &self.params, input, Mode::Eval)?;
        Ok(cache.hopfield.association().expect("the materialised path keeps its association matrices").clone())
    }
}

impl<B: Backend> Layer<B> for HopfieldPooling<B> {
    type Params = HopfieldPoolingParams<B>;
    type Input = PoolingInput<B>;
    type Output = B::Tensor;
    type Cache = PoolingCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = PoolingInputGrads<B>;

    fn params(&self) -> &HopfieldPoolingParams<B> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut HopfieldPoolingParams<B> {
        &mut self.params
    }

    /// `[B, quantity · output]` and the cache; in training, association dropout drawn from the seed.
    fn forward(
        &self,
        backend: &B,
        params: &HopfieldPoolingParams<B>,
        input: &PoolingInput<B>,
        mode: Mode,
    ) -> Result<(B::Tensor, PoolingCache<B>)> {
        let hin = self.hopfield_input(backend, params, input)?;
        let (out, cache) = self.spec.forward(backend, &params.hopfield, &hin, mode.seed())?;
        let bf = self.spec.config.batch_first;
        let y = if bf { out.output } else { backend.permute(&out.output, &[1, 0, 2]) };
        let s = backend.shape(&y);
        Ok((backend.reshape(&y, &[s[0], s[1] * s[2]]), PoolingCache { hopfield: cache, batch: s[0] }))
    }

    /// Backward: accumulates into `grads` (the state patterns only when trainable) and returns the input grads.
    fn backward(
        &self,
        backend: &B,
        params: &HopfieldPoolingParams<B>,
        cache: &PoolingCache<B>,
        d_output: &B::Tensor,
        grads: &mut HopfieldPoolingParams<B>,
    ) -> Result<PoolingInputGrads<B>> {
        let (q, out) = (self.config.quantity, self.spec.dims.output);
        let got = backend.shape(d_output);
        if got != [cache.batch, q * out] {
            return Err(HopfieldError::shape(
                "hopfield_pooling.backward(d_output)",
                format!("[{}, {}]", cache.batch, q * out),
                &got,
            ));
        }
        let dy = backend.reshape(d_output, &[cache.batch, q, out]);
        let bf = self.spec.config.batch_first;
        let dy = if bf { dy } else { backend.permute(&dy, &[1, 0, 2]) };
        let g = self.spec.backward(backend, &params.hopfield, &cache.hopfield, &dy, &mut grads.hopfield)?;
        if params.trainable {
            let d_state = if bf { g.state } else { backend.permute(&g.state, &[1, 0, 2]) };
            backend.axpy(&mut grads.pooling_weights, B::Elem::one(), &backend.sum_axis(&d_state, 0));
        }
        Ok(PoolingInputGrads { stored: g.stored, projection: g.projection })
    }
}
