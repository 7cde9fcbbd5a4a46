//! The contract every module follows: a forward pass returning its output and a cache, and a backward pass
//! that takes the cache and the upstream gradient, accumulates parameter gradients into a struct of the
//! parameters' own type and returns the input gradients.

use crate::backend::Backend;
use crate::error::Result;
use crate::params::Parameters;

/// Whether a forward pass evaluates or trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No dropout.
    #[default]
    Eval,
    /// Dropout on, every mask drawn from `seed` (the same seed gives the same masks on every backend).
    Train {
        /// Seed of the pass's dropout masks.
        seed: u64,
    },
}

impl Mode {
    /// The dropout seed in training, `None` in evaluation.
    pub fn seed(self) -> Option<u64> {
        match self {
            Mode::Eval => None,
            Mode::Train { seed } => Some(seed),
        }
    }
    /// The mode of a sub-module: the same, with its seed offset by `k` so that sub-modules draw
    /// independent masks.
    pub fn offset(self, k: u64) -> Mode {
        match self {
            Mode::Eval => Mode::Eval,
            Mode::Train { seed } => Mode::Train { seed: seed.wrapping_add(k) },
        }
    }
    /// `Train { seed }` for `Some(seed)`, else `Eval`.
    pub fn from_seed(seed: Option<u64>) -> Mode {
        seed.map_or(Mode::Eval, |seed| Mode::Train { seed })
    }
}

/// A module with an explicit forward/backward pair.
///
/// The module holds its configuration and its parameters; both passes take the parameters explicitly, so a
/// model that nests modules passes each one its part of the model's parameters and of the gradients, and a
/// gradient check can evaluate a perturbed copy. Gradients have the parameters' type
/// ([`Layer::zero_grads`]) and are accumulated (`+=`), so several backward passes sum.
///
/// ```
/// use hopfield_layers::layers::{Layer, Linear, Mode};
/// use hopfield_layers::{Backend, Cpu};
///
/// let cpu = Cpu::<f64>::new();
/// let linear = Linear::new(&cpu, 3, 2, true, &mut rand::thread_rng())?;
/// let x = cpu.full(&[4, 3], 1.0);
/// let (y, cache) = linear.forward(&cpu, linear.params(), &x, Mode::Eval)?;
/// let mut grads = linear.zero_grads(&cpu);
/// let dx = linear.backward(&cpu, linear.params(), &cache, &cpu.full(&[4, 2], 1.0), &mut grads)?;
/// assert_eq!((cpu.shape(&y), cpu.shape(&dx)), (vec![4, 2], vec![4, 3]));
/// # Ok::<(), hopfield_layers::HopfieldError>(())
/// ```
pub trait Layer<B: Backend> {
    /// The learned tensors; also the type of their gradients.
    type Params: Parameters<B> + Clone;
    /// What the forward pass takes.
    type Input;
    /// What the forward pass returns.
    type Output;
    /// What the backward pass needs from the forward pass.
    type Cache;
    /// The upstream gradient: d loss / d output.
    type OutputGrad;
    /// d loss / d input (`()` where the input is not differentiable, e.g. token ids).
    type InputGrad;

    /// This module's own parameters.
    fn params(&self) -> &Self::Params;
    /// This module's own parameters, mutably (for optimisers and loading).
    fn params_mut(&mut self) -> &mut Self::Params;

    /// The forward pass with `params` (usually [`Layer::params`]).
    fn forward(
        &self,
        backend: &B,
        params: &Self::Params,
        input: &Self::Input,
        mode: Mode,
    ) -> Result<(Self::Output, Self::Cache)>;

    /// The backward pass of a [`Layer::forward`] with the same `params`: accumulates parameter gradients into
    /// `grads` and returns the input gradients.
    fn backward(
        &self,
        backend: &B,
        params: &Self::Params,
        cache: &Self::Cache,
        d_output: &Self::OutputGrad,
        grads: &mut Self::Params,
    ) -> Result<Self::InputGrad>;

    /// A gradient accumulator: the parameters with every tensor zero.
    fn zero_grads(&self, backend: &B) -> Self::Params {
        self.params().zeros_like(backend)
    }

    /// Evaluation output with this module's parameters, the cache dropped.
    fn infer(&self, backend: &B, input: &Self::Input) -> Result<Self::Output> {
        Ok(self.forward(backend, self.params(), input, Mode::Eval)?.0)
    }
}
