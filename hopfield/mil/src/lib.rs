//! Multiple-instance learning (MIL) with HopfieldPooling: the data sets, splits, metric and reports of the
//! paper's MIL benchmarks (Ramsauer et al. 2020, §4 and appendix A.5.2), driven by the workspace's `examples/mil.rs`.
//!
//! - [`data`]: the `mil` package's CSV layout (plain or gzipped) → bags; standardisation fitted on
//!   training bags only.
//! - [`folds`]: stratified K-fold repeated with seeds, stratified hold-out for model selection.
//! - [`metrics`]: ROC-AUC with ties.
//! - [`report`]: JSONL per fold, the summary table.
//! - [`model`]: instance embedding → HopfieldPooling → logit, with its backward.
//! - [`train`], [`cv`]: AdamW training, grid selection on a hold-out, the repeated cross-validation.
//! - [`synthetic`], [`mnist_bags`]: generated MIL tasks.
pub mod cv;
pub mod data;
pub mod error;
pub mod folds;
pub mod metrics;
pub mod mnist_bags;
pub mod model;
pub mod report;
pub mod synthetic;
pub mod train;

pub use data::{Bag, MilDataset, Standardizer};
pub use error::{MilError, Result};
