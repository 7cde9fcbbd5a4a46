//! Modern Hopfield layers (Ramsauer et al., "Hopfield Networks is All You Need", 2020) with explicit
//! forward/backward passes, written once against a small [`Backend`] trait.
//!
//! The crate mirrors every option of the PyTorch reference `hflayers` 1.0.2 and matches its numbers
//! (golden fixtures in `tests/`), fixing its known bugs (listed in [`layers::hopfield`]). Beyond hflayers,
//! every layer takes a [`Retrieval`](layers::Retrieval): softmax (default), sparsemax, α-entmax (fixed or
//! learnable α) or softmax₁, each with its energy ([`energy::energy_of`]).
//!
//! - [`layers`]: [`Hopfield`](layers::Hopfield), [`HopfieldPooling`](layers::HopfieldPooling),
//!   [`HopfieldLayer`](layers::HopfieldLayer), encoder/decoder layers, `Linear`, `LayerNorm`.
//! - [`backend`]: the [`Backend`] trait and the ndarray [`Cpu`] backend (f32/f64), the oracle.
//! - [`optim`], [`loss`]: optimisers, schedules, clipping and losses with explicit gradients.
//! - [`io`]: safetensors files and hflayers state_dict names; [`energy`]: the paper's energy and the
//!   retrieval variants'.
//!
//! Every module follows config → `init` → [`Layer::forward`](layers::Layer) (output + cache) →
//! `backward` (cache + upstream gradient → input gradients, parameter gradients accumulated into a struct of
//! the parameters' type), and derives its parameter naming with `#[derive(Parameters)]`:
//!
//! ```
//! use hopfield::layers::{HopfieldConfig, HopfieldInput, Layer, Mode};
//! use hopfield::{Backend, Cpu};
//! use rand::SeedableRng;
//!
//! let backend = Cpu::<f32>::new();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let layer = HopfieldConfig::new(8).num_heads(2).init(&backend, &mut rng)?;
//! let x = backend.from_vec(vec![0.1; 2 * 5 * 8], &[2, 5, 8]); // [batch, sequence, features]
//! let (out, cache) = layer.forward(&backend, &layer.params, &HopfieldInput::single(x), Mode::Eval)?;
//! assert_eq!(backend.shape(&out.output), [2, 5, 8]);
//! let mut grads = layer.zero_grads(&backend);
//! let d_input = layer.backward(&backend, &layer.params, &cache, &backend.full(&[2, 5, 8], 1.0), &mut grads)?;
//! assert_eq!(backend.shape(&d_input.single(&backend)), [2, 5, 8]);
//! # Ok::<(), hopfield::HopfieldError>(())
//! ```
// `#[derive(Parameters)]` names this crate `::hopfield`, also inside it.
extern crate self as hopfield;

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
