//! `Hopfield`: the modern Hopfield association of hflayers, `ξ ← softmax(β ξ Kᵀ) K` iterated per head,
//! then `softmax(β ξ Kᵀ) V` and an output projection.
//!
//! Differences from hflayers 1.0.2, each a fix of a bug there:
//! - `concat_bias_pattern` appends a learned bias pattern (hflayers never appends it);
//! - per-head β scales each head's block (hflayers interleaves the values across features);
//! - static patterns with batch > 1 and heads > 1 stay with their own sample (hflayers mixes samples);
//! - `u8` masks work ([`Mask::from_u8`]); a fully masked row yields a zero association row, not NaN;
//! - `bias_v` has `H·pattern_size` entries (hflayers sizes it `H·hidden_size`, which only works when equal).

mod backward;
mod config;
mod forward;
mod input;
mod params;
mod retrieval;

pub use config::{Convergence, Dims, HopfieldConfig, PerHead};
pub use input::{HopfieldInput, HopfieldInputGrads, HopfieldOutput, Mask};
pub use params::HopfieldParams;
pub use retrieval::Retrieval;

use crate::backend::Backend;
use crate::error::Result;
use crate::layers::norm::LayerNormCache;
use crate::layers::{Layer, Mode};
use crate::params::Parameters;
use params::ProjLayout;
use rand::Rng;

/// Safeguard for `update_steps_max = None` (until convergence): an iteration that has not converged after
/// this many further steps stops there.
pub const MAX_UNBOUNDED_STEPS: usize = 1000;

/// A modern Hopfield association module (hflayers' `Hopfield`).
///
/// # Shapes
/// See [`HopfieldInput`]: stored `[B, S, stored]`, state `[B, L, input]`, projection `[B, S, projection]`
/// → output `[B, L, output]` (sequence-first when `batch_first` is off).
///
/// ```
/// use hopfield_layers::layers::{HopfieldConfig, HopfieldInput, Layer, Mode};
/// use hopfield_layers::{seeded_rng, Backend, Cpu};
///
/// let cpu = Cpu::<f32>::new();
/// let hopfield = HopfieldConfig::new(8).num_heads(2).init(&cpu, &mut seeded_rng(0))?;
/// // 3 state patterns (queries) retrieve from 5 stored patterns, per batch entry.
/// let (stored, state) = (cpu.full(&[2, 5, 8], 0.5), cpu.full(&[2, 3, 8], 0.1));
/// let input = HopfieldInput::new(stored.clone(), state, stored).with_association();
/// let (out, _cache) = hopfield.forward(&cpu, &hopfield.params, &input, Mode::Eval)?;
/// assert_eq!(cpu.shape(&out.output), [2, 3, 8]);
/// assert_eq!(cpu.shape(out.association.as_ref().unwrap()), [2, 2, 3, 5]); // [B, H, L, S]
/// # Ok::<(), hopfield_layers::HopfieldError>(())
/// ```
#[derive(Clone, Debug, Parameters)]
pub struct Hopfield<B: Backend> {
    /// Configuration and derived sizes.
    #[param(skip)]
    pub spec: HopfieldSpec,
    /// Learned tensors (hflayers' state_dict layout).
    #[param(flatten)]
    pub params: HopfieldParams<B>,
}

/// A validated configuration with its derived sizes: the computation of a `Hopfield` without its tensors,
/// so that wrappers (`HopfieldPooling`, `HopfieldLayer`, encoder layers) own their parameters in one struct.
#[derive(Clone, Debug)]
pub struct HopfieldSpec {
    /// The configuration it was built from.
    pub config: HopfieldConfig,
    /// Sizes derived from the configuration.
    pub dims: Dims,
    layout: ProjLayout,
}

/// What [`Hopfield::backward`] needs from the forward pass.
#[derive(Clone, Debug)]
pub struct HopfieldCache<B: Backend> {
    pub(crate) sizes: (usize, usize, usize),
    pub(crate) ln_stored: Option<LayerNormCache<B>>,
    pub(crate) ln_state: Option<LayerNormCache<B>>,
    pub(crate) ln_projection: Option<LayerNormCache<B>>,
    pub(crate) stored_n: B::Tensor,
    pub(crate) state_n: B::Tensor,
    pub(crate) projection_n: B::Tensor,
    pub(crate) connected: Option<B::Tensor>,
    pub(crate) hs_q: Option<LayerNormCache<B>>,
    pub(crate) hs_k: Option<LayerNormCache<B>>,
    pub(crate) q: B::Tensor,
    pub(crate) k: B::Tensor,
    pub(crate) v: B::Tensor,
    pub(crate) assocs: Vec<B::Tensor>,
    pub(crate) states: Vec<B::Tensor>,
    pub(crate) active: Vec<Vec<bool>>,
    pub(crate) dropout: Option<B::Tensor>,
    pub(crate) fused: Option<FusedCache<B>>,
    pub(crate) merged: B::Tensor,
    pub(crate) pre_activation: Option<B::Tensor>,
}

/// What the fused path (`fused_association`) keeps for backward instead of association matrices.
#[derive(Clone, Debug)]
pub(crate) struct FusedCache<B: Backend> {
    pub(crate) padding: Option<B::Tensor>,
    pub(crate) association: Option<B::Tensor>,
    /// `u₀ = q, u₁, …, u_T`: the states each association was computed from.
    pub(crate) drivers: Vec<B::Tensor>,
    /// `(ξ_t, lse_t)` of every update step.
    pub(crate) steps: Vec<(B::Tensor, B::Tensor)>,
    /// The retrieval `assoc(u_T, K, V)` and its log-sum-exp.
    pub(crate) out: B::Tensor,
    pub(crate) lse: B::Tensor,
}

impl<B: Backend> HopfieldCache<B> {
    /// The final association matrix `[B, H, L, S']` (before dropout); `None` on the fused path
    /// (`fused_association`), which never materialises it (see [`Hopfield::association_matrix`]).
    pub fn association(&self) -> Option<&B::Tensor> {
        self.assocs.last()
    }
    /// The state patterns of every update step, `[B, H, L, hd]` each (ξ₀ is the projected query, unscaled).
    pub fn states(&self) -> impl Iterator<Item = &B::Tensor> {
        std::iter::once(&self.q).chain(self.states.iter())
    }
}

impl HopfieldConfig {
    /// Validate and build a module with hflayers' initialisation drawn from `rng`.
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<Hopfield<B>> {
        let spec = self.spec()?;
        let params = HopfieldParams::init(backend, self, &spec.dims, rng);
        Ok(Hopfield { spec, params })
    }

    /// Validate into a [`HopfieldSpec`] (no tensors).
    pub fn spec(&self) -> Result<HopfieldSpec> {
        let dims = self.validate()?;
        let layout = ProjLayout::new(self, &dims);
        Ok(HopfieldSpec { config: self.clone(), dims, layout })
    }
}

impl HopfieldSpec {
    /// Where the query, key and value projections sit in `in_proj_weight` (when packed) and in
    /// `in_proj_bias`: `(first row, rows)` each, `None` for a static input (no projection). The value's
    /// bias block starts after the query's and key's rows even when the value is static (as in hflayers).
    /// For other front ends of the same parameters (`hopfield-burn`).
    pub fn projection_slots(&self) -> [Option<(usize, usize)>; 3] {
        [self.layout.q, self.layout.k, self.layout.v].map(|s| s.map(|s| (s.offset, s.rows)))
    }
}

impl<B: Backend> Layer<B> for Hopfield<B> {
    type Params = HopfieldParams<B>;
    type Input = HopfieldInput<B>;
    type Output = HopfieldOutput<B>;
    type Cache = HopfieldCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = HopfieldInputGrads<B>;

    fn params(&self) -> &HopfieldParams<B> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut HopfieldParams<B> {
        &mut self.params
    }

    /// The association; in training, dropout on the association matrix drawn from the seed.
    fn forward(
        &self,
        backend: &B,
        params: &HopfieldParams<B>,
        input: &HopfieldInput<B>,
        mode: Mode,
    ) -> Result<(HopfieldOutput<B>, HopfieldCache<B>)> {
        self.spec.forward(backend, params, input, mode.seed())
    }

    /// Accumulates parameter gradients into `grads` and returns the gradients of the three inputs (in the
    /// caller's layout).
    ///
    /// # Shapes
    /// `d_output` has the output's shape.
    fn backward(
        &self,
        backend: &B,
        params: &HopfieldParams<B>,
        cache: &HopfieldCache<B>,
        d_output: &B::Tensor,
        grads: &mut HopfieldParams<B>,
    ) -> Result<HopfieldInputGrads<B>> {
        self.spec.backward(backend, params, cache, d_output, grads)
    }
}

impl<B: Backend> Hopfield<B> {
    /// The association matrix `[B, H, L, S']` for `input` (hflayers' `get_association_matrix`).
    pub fn association_matrix(&self, backend: &B, input: &HopfieldInput<B>) -> Result<B::Tensor> {
        let mut spec = self.spec.clone();
        spec.config.fused_association = false;
        let (_, cache) = spec.forward(backend, &self.params, input, None)?;
        Ok(cache.association().expect("the materialised path keeps its association matrices").clone())
    }
}

/// `[B, N, H·d] → [B, H, N, d]`.
pub(crate) fn split_heads<B: Backend>(backend: &B, x: &B::Tensor, heads: usize) -> B::Tensor {
    let s = backend.shape(x);
    let x = backend.reshape(x, &[s[0], s[1], heads, s[2] / heads]);
    backend.permute(&x, &[0, 2, 1, 3])
}

/// `[B, H, N, d] → [B, N, H·d]`.
pub(crate) fn merge_heads<B: Backend>(backend: &B, x: &B::Tensor) -> B::Tensor {
    let s = backend.shape(x);
    let x = backend.permute(x, &[0, 2, 1, 3]);
    backend.reshape(&x, &[s[0], s[2], s[1] * s[3]])
}

/// `[B, N, d] → [B, H, N, d]`, the same pattern for every head of its own sample.
pub(crate) fn broadcast_heads<B: Backend>(backend: &B, x: &B::Tensor, heads: usize) -> B::Tensor {
    let s = backend.shape(x);
    backend.expand(&backend.reshape(x, &[s[0], 1, s[1], s[2]]), 1, heads)
}

/// Backward of [`broadcast_heads`]: `[B, H, N, d] → [B, N, d]`.
pub(crate) fn sum_heads<B: Backend>(backend: &B, dx: &B::Tensor) -> B::Tensor {
    let s = backend.shape(dx);
    backend.reshape(&backend.sum_axis(dx, 1), &[s[0], s[2], s[3]])
}
