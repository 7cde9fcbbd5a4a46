//! CLOOB (Fürst et al., "CLOOB: Modern Hopfield Networks with InfoLOOB Outperform CLIP").
//!
//! This crate will hold the tokenizer, the image and text encoders built from [`hopfield`] layers,
//! the InfoLOOB loss with Hopfield retrieval, the training loop and the evaluation. It is empty
//! until those land; see the issue tracker.
//!
//! - [`data`]: the embedded captioned-scene generator, Fashion-MNIST, open_clip CSV files, the loader.
//! - `pretrain` (feature `pretrain`): the `cloob-pretrain` run, checkpoints, evaluation and plots.
pub mod data;
#[cfg(feature = "pretrain")]
pub mod pretrain;
