//! hflayers' two demo tasks (bit pattern multiple-instance learning, latch sequences): their data sets, the
//! notebooks' networks and training procedure, and the harness the `bit_pattern` and `latch_sequence`
//! examples share.
pub mod data;
pub mod harness;
pub mod model;
pub mod run;
pub mod torch_rng;
pub mod train;

pub use data::{BagDataset, BitPatternConfig, BitPatternSet, LatchSequenceSet, Split};
pub use model::{DemoNet, Variant};
