//! Modern Hopfield layers (Ramsauer et al., "Hopfield Networks is All You Need", 2020) with explicit
//! forward/backward passes, written once against a small [`Backend`] trait.
//!
//! The crate mirrors every option of the PyTorch reference `hflayers` 1.0.2 and matches its numbers
//! (golden fixtures in the repository's tests), fixing its known bugs (listed in [`layers::hopfield`]).
//! Beyond hflayers, every layer takes a [`Retrieval`](layers::Retrieval): softmax (default), sparsemax,
//! α-entmax (fixed or learnable α) or softmax₁, each with its energy ([`energy::energy_of`]).
//!
//! - [`layers`]: [`Hopfield`](layers::Hopfield), [`HopfieldPooling`](layers::HopfieldPooling),
//!   [`HopfieldLayer`](layers::HopfieldLayer), encoder/decoder layers, `Linear`, `LayerNorm`.
//! - [`backend`]: the [`Backend`] trait and the ndarray [`Cpu`] backend (f32/f64), the oracle; the CubeCL
//!   `Cube` backend with the `wgpu` or `cuda` feature.
//! - [`optim`], [`loss`]: optimisers, schedules, clipping and losses with explicit gradients.
//! - [`io`]: safetensors files and hflayers state_dict names; [`energy`]: the paper's energy and the
//!   retrieval variants'.
//!
//! Every module follows config → `init` → [`Layer::forward`](layers::Layer) (output + cache) →
//! `backward` (cache + upstream gradient → input gradients, parameter gradients accumulated into a struct of
//! the parameters' type), and derives its parameter naming with `#[derive(Parameters)]`:
//!
//! ```
//! use hopfield_layers::layers::{HopfieldConfig, HopfieldInput, Layer, Mode};
//! use hopfield_layers::{seeded_rng, Backend, Cpu};
//!
//! let backend = Cpu::<f32>::new();
//! let mut rng = seeded_rng(0);
//! let layer = HopfieldConfig::new(8).num_heads(2).init(&backend, &mut rng)?;
//! let x = backend.from_vec(vec![0.1; 2 * 5 * 8], &[2, 5, 8]); // [batch, sequence, features]
//! let (out, cache) = layer.forward(&backend, &layer.params, &HopfieldInput::single(x), Mode::Eval)?;
//! assert_eq!(backend.shape(&out.output), [2, 5, 8]);
//! let mut grads = layer.zero_grads(&backend);
//! let d_input = layer.backward(&backend, &layer.params, &cache, &backend.full(&[2, 5, 8], 1.0), &mut grads)?;
//! assert_eq!(backend.shape(&d_input.single(&backend)), [2, 5, 8]);
//! # Ok::<(), hopfield_layers::HopfieldError>(())
//! ```
//!
//! # Random numbers
//!
//! Initialisation (`init`, [`Linear::new`](layers::Linear::new), [`init`]) takes an RNG of the `rand` version
//! this crate is built with, re-exported as [`rand`](mod@rand) (0.8). A crate that uses another `rand` passes
//! [`seeded_rng`] (or any `hopfield_layers::rand` generator) and keeps its own `rand` for everything else.
//!
//! # Your own model from these layers
//!
//! A model is a struct of modules with `#[derive(Parameters)]` (names `embed.weight`, `pool.…`,
//! `head.bias`, …), its forward and backward chain the modules' passes, and an optimiser updates it from a
//! gradient struct of the same type. Here a bag classifier, Linear → ReLU → [`HopfieldPooling`] → Linear,
//! trained a few AdamW steps:
//!
//! [`HopfieldPooling`]: layers::HopfieldPooling
//!
//! ```
//! use hopfield_layers::layers::{HopfieldPooling, HopfieldPoolingConfig, Layer, Linear, Mode, PoolingInput};
//! use hopfield_layers::optim::{AdamConfig, AdamW, Optimizer};
//! use hopfield_layers::{loss, seeded_rng, Activation, Backend, Cpu, Parameters, Result};
//! use hopfield_layers::rand::Rng;
//!
//! /// Instances `[bags, instances, 4]` → one logit per bag `[bags, 1]`.
//! #[derive(Clone, Parameters)]
//! struct BagClassifier<B: Backend> {
//!     embed: Linear<B>,
//!     pool: HopfieldPooling<B>,
//!     head: Linear<B>,
//! }
//!
//! impl<B: Backend> BagClassifier<B> {
//!     /// The loss on `(x, y)`, gradients accumulated into `grads`.
//!     fn loss_and_grads(&self, cpu: &B, x: &B::Tensor, y: &B::Tensor, grads: &mut Self) -> Result<f64> {
//!         let (h, embed_cache) = self.embed.forward(cpu, &self.embed.params, x, Mode::Eval)?;
//!         let r = cpu.activation(&h, Activation::Relu);
//!         let input = PoolingInput::single(r);
//!         let (pooled, pool_cache) = self.pool.forward(cpu, &self.pool.params, &input, Mode::Eval)?;
//!         let (logits, head_cache) = self.head.forward(cpu, &self.head.params, &pooled, Mode::Eval)?;
//!         let (loss, d_logits) = loss::bce_with_logits(cpu, &logits, y, None)?;
//!         let d_pooled = self.head.backward(cpu, &self.head.params, &head_cache, &d_logits, &mut grads.head.params)?;
//!         let d_input = self.pool.backward(cpu, &self.pool.params, &pool_cache, &d_pooled, &mut grads.pool.params)?;
//!         let d_h = cpu.activation_backward(&h, &d_input.single(cpu), Activation::Relu);
//!         self.embed.backward(cpu, &self.embed.params, &embed_cache, &d_h, &mut grads.embed.params)?;
//!         Ok(loss)
//!     }
//! }
//!
//! let cpu = Cpu::<f32>::new();
//! let mut rng = seeded_rng(0);
//! let mut model = BagClassifier {
//!     embed: Linear::new(&cpu, 4, 16, true, &mut rng)?,
//!     pool: HopfieldPoolingConfig::new(16).init(&cpu, &mut rng)?,
//!     head: Linear::new(&cpu, 16, 1, true, &mut rng)?,
//! };
//! assert_eq!(model.names()[..2], ["embed.weight", "embed.bias"]);
//! // 8 bags of 5 instances; a bag is positive when one of its instances has a large first feature.
//! let x: Vec<f32> = (0..8 * 5 * 4).map(|_| rng.gen_range(-1.0..1.0)).collect();
//! let y: Vec<f32> = x.chunks(5 * 4).map(|bag| bag.chunks(4).any(|i| i[0] > 0.8) as u8 as f32).collect();
//! let (x, y) = (cpu.from_vec(x, &[8, 5, 4]), cpu.from_vec(y, &[8, 1]));
//! let mut opt = AdamW::new(AdamConfig::default())?;
//! let mut losses = Vec::new();
//! for _ in 0..5 {
//!     let mut grads = model.zeros_like(&cpu);
//!     losses.push(model.loss_and_grads(&cpu, &x, &y, &mut grads)?);
//!     opt.step(&cpu, &mut model, &grads, 1e-2)?;
//! }
//! assert!(losses[4] < losses[0], "{losses:?}");
//! # Ok::<(), hopfield_layers::HopfieldError>(())
//! ```
// `#[derive(Parameters)]` names this crate `::hopfield_layers` (or the key of a renamed dependency), also
// inside it.
extern crate self as hopfield_layers;

pub mod activation;
pub mod backend;
pub mod element;
pub mod energy;
pub mod error;
pub mod init;
pub mod io;
pub mod layers;
pub mod loss;
pub mod optim;
pub mod params;
pub mod testing;

pub use activation::Activation;
pub use backend::{Backend, Cpu};
pub use element::Element;
pub use error::{HopfieldError, Result};
pub use layers::{Layer, Mode};
pub use params::Parameters;

// The README's example (the crates.io page) runs with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
/// The `rand` whose RNGs `init` and the other initialisers take (0.8): use it, or [`seeded_rng`], when your
/// crate depends on another version of `rand`.
pub use rand;

/// A seeded [`StdRng`](rand::rngs::StdRng) of this crate's `rand`, for `init`: the same seed gives the same
/// parameters with this crate's `rand` version.
pub fn seeded_rng(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}
