//! hflayers' two demo tasks (bit pattern multiple-instance learning, latch sequences): their data sets and
//! the training harness the `bit_pattern` and `latch_sequence` examples share.
pub mod data;
pub mod harness;

pub use data::{BagDataset, BitPatternConfig, BitPatternSet, LatchSequenceSet, Split};
