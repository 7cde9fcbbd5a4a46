//! Modern Hopfield layers (Ramsauer et al., "Hopfield Networks is All You Need", 2020) with explicit
//! forward/backward passes, written once against a small [`Backend`] trait.
//!
//! The crate mirrors every option of the PyTorch reference `hflayers` 1.0.2 and matches its numbers
//! (golden fixtures in `tests/`), fixing its known bugs (see the README).
pub mod activation;
pub mod backend;
pub mod element;
pub mod error;
pub mod params;

pub use activation::Activation;
pub use backend::{Backend, Cpu};
pub use element::Element;
pub use error::{HopfieldError, Result};
pub use params::Parameters;
pub mod init;
pub mod layers;
pub mod io;
pub mod energy;
pub mod loss;
pub mod optim;
