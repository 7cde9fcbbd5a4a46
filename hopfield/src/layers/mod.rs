//! Modules built on the [`Backend`](crate::Backend) trait. Each implements [`Layer`]: a forward returning its
//! output and a cache, and a backward taking that cache; each also implements
//! [`Parameters`](crate::Parameters), so models nest them and derive their own.
pub mod decoder;
pub mod encoder;
pub mod hopfield;
mod layer;
pub mod linear;
pub mod lookup;
pub mod norm;
pub mod pooling;

pub use decoder::{DecoderInput, DecoderInputGrads, DecoderMasks, DecoderParams, HopfieldDecoderLayer};
pub use encoder::{EncoderInput, EncoderParams, HopfieldEncoderLayer, HopfieldEncoderLayerConfig};
pub use hopfield::HopfieldSpec;
pub use hopfield::{
    Hopfield, HopfieldCache, HopfieldConfig, HopfieldInput, HopfieldInputGrads, HopfieldOutput, HopfieldParams, Mask,
    Retrieval,
};
pub use layer::{Layer, Mode};
pub use linear::{Linear, LinearCache, LinearParams};
pub use lookup::{HopfieldLayer, HopfieldLayerConfig, HopfieldLayerParams, LookupCache, LookupInput};
pub use norm::{LayerNorm, LayerNormCache, LayerNormParams};
pub use pooling::{
    HopfieldPooling, HopfieldPoolingConfig, HopfieldPoolingParams, PoolingCache, PoolingInput, PoolingInputGrads,
};
