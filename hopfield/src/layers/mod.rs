//! Modules built on the [`Backend`](crate::Backend) trait, each with a forward returning its output and a
//! cache, and a backward taking that cache.
pub mod linear;
pub mod norm;

pub use linear::{Linear, LinearParams};
pub use norm::{LayerNorm, LayerNormCache, LayerNormParams};
