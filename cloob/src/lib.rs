//! CLOOB (Fürst et al., "CLOOB: Modern Hopfield Networks with InfoLOOB Outperform CLIP").
//!
//! - [`loss`]: CLOOB's InfoLOOB with Hopfield retrieval, CLIP's InfoNCE and the paper's ablations, with
//!   explicit gradients on the [`hopfield::Backend`] trait.
//! - [`eval`]: zero-shot classification, image↔text retrieval, linear probe and embedding analysis.
pub mod eval;
pub mod loss;
