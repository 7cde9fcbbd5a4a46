//! Modern Hopfield layers (Ramsauer et al., "Hopfield Networks is All You Need", 2020) with explicit
//! forward/backward passes, written once against a small [`Backend`] trait.
//!
//! The crate mirrors every option of the PyTorch reference `hflayers` 1.0.2 and matches its numbers
//! (golden fixtures in `tests/`), fixing its known bugs (listed in [`layers::hopfield`]).
//!
//! - [`layers`]: [`Hopfield`](layers::Hopfield), [`HopfieldPooling`](layers::HopfieldPooling),
//!   [`HopfieldLayer`](layers::HopfieldLayer), encoder/decoder layers, `Linear`, `LayerNorm`.
//! - [`backend`]: the [`Backend`] trait and the ndarray [`Cpu`] backend (f32/f64), the oracle.
//! - [`optim`], [`loss`]: optimisers, schedules, clipping and losses with explicit gradients.
//! - [`io`]: safetensors files and hflayers state_dict names; [`energy`]: the paper's energy.
//!
//! Every module follows config → `init` → `forward` (output + cache) → `backward` (cache + upstream
//! gradient → input gradients, parameter gradients accumulated into a struct mirroring the parameters):
//!
//! ```
//! use hopfield::layers::{HopfieldConfig, HopfieldInput};
//! use hopfield::{Backend, Cpu};
//! use rand::SeedableRng;
//!
//! let backend = Cpu::<f32>::new();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let layer = HopfieldConfig::new(8).num_heads(2).init(&backend, &mut rng)?;
//! let x = backend.from_vec(vec![0.1; 2 * 5 * 8], &[2, 5, 8]); // [batch, sequence, features]
//! let (out, cache) = layer.forward(&backend, &HopfieldInput::single(x))?;
//! assert_eq!(backend.shape(&out.output), [2, 5, 8]);
//! let mut grads = layer.zero_grads(&backend);
//! let d_input = layer.backward(&backend, &cache, &backend.full(&[2, 5, 8], 1.0), &mut grads)?;
//! assert_eq!(backend.shape(&d_input.single(&backend)), [2, 5, 8]);
//! # Ok::<(), hopfield::HopfieldError>(())
//! ```
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

pub use activation::Activation;
pub use backend::{Backend, Cpu};
pub use element::Element;
pub use error::{HopfieldError, Result};
pub use params::Parameters;
