//! CLOOB (Fürst et al., "CLOOB: Modern Hopfield Networks with InfoLOOB Outperform CLIP").
//!
//! - [`tokenizer`]: CLIP's BPE tokenizer with open_clip's ids.
//! - [`vit`], [`text`]: the image and text towers, pre-LN transformers whose attention is a
//!   [`hopfield`] association (no further update step, β = 1/√head_dim: multi-head attention).
//! - [`blocks`]: the transformer stack both towers share, under open_clip's names.
//! - [`model`]: the two-tower model with L2-normalised embeddings and a fixed or learnable τ⁻¹.
//! - [`loss`]: CLOOB's InfoLOOB with Hopfield retrieval, CLIP's InfoNCE and the paper's ablations, with
//!   explicit gradients on the [`hopfield::Backend`] trait.
//! - [`train`]: one optimisation step (AdamW, schedules, gradient accumulation, clipping).
//! - [`eval`]: zero-shot classification, image↔text retrieval, linear probe and embedding analysis.
//! - [`shapes`]: a generated image–caption set (coloured shapes) for tests, benches and demos.
//! - [`data`]: the embedded captioned-scene generator, Fashion-MNIST, open_clip CSV files, the loader.
//! - `pretrain` (feature `pretrain`, on by default): the `cloob-pretrain` run, checkpoints, evaluation, plots.
//!
//! Every module is config → `init` → `forward` (output + cache) → `backward`; gradients accumulate into
//! a zeroed copy of the module (`zero_grads`), which [`hopfield::optim`] optimisers take by name.
pub mod blocks;
pub mod data;
pub mod eval;
pub mod loss;
pub mod model;
#[cfg(feature = "pretrain")]
pub mod pretrain;
pub mod shapes;
pub mod text;
pub mod tokenizer;
pub mod train;
pub mod vit;
