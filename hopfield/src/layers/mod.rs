//! Modules built on the [`Backend`](crate::Backend) trait, each with a forward returning its output and a
//! cache, and a backward taking that cache.
pub mod linear;
pub mod encoder;
pub mod hopfield;
pub mod lookup;
pub mod norm;
pub mod pooling;

pub use hopfield::{Hopfield, HopfieldCache, HopfieldConfig, HopfieldInput, HopfieldInputGrads, HopfieldOutput, HopfieldParams, Mask};
pub use encoder::{DecoderMasks, DecoderParams, EncoderParams, HopfieldDecoderLayer, HopfieldEncoderLayer, HopfieldEncoderLayerConfig};
pub use hopfield::HopfieldSpec;
pub use linear::{Linear, LinearParams};
pub use lookup::{HopfieldLayer, HopfieldLayerConfig, HopfieldLayerParams, LookupCache};
pub use pooling::{HopfieldPooling, HopfieldPoolingConfig, HopfieldPoolingParams, PoolingCache, PoolingInput, PoolingInputGrads};
pub use norm::{LayerNorm, LayerNormCache, LayerNormParams};
