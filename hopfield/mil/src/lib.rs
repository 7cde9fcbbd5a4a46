//! Multiple-instance learning (MIL) with HopfieldPooling: the data sets, splits, model, training, metric
//! and reports of the paper's MIL benchmarks (Ramsauer et al. 2020, §4 and appendix A.5.2).
//!
//! A data set is a list of bags, each a label and a variable number of instances (feature vectors). The model
//! embeds every instance, pools each bag with [`hopfield::layers::HopfieldPooling`] (learned state patterns
//! retrieve from the bag's instances) and maps the pooled vector to one logit. Cross-validation follows the
//! paper: stratified K-fold repeated with seeds, the grid point chosen on a hold-out inside each training
//! fold, ROC-AUC mean ± standard deviation over the repetitions. The workspace's `examples/mil/` (any CSV
//! data set) and `examples/mnist_bags.rs` (bags of MNIST images) are command lines over this crate.
//!
//! # Example
//!
//! Cross-validate on a generated task (a bag is positive when it holds an instance of a hidden cluster):
//!
//! ```
//! use hopfield::Cpu;
//! use hopfield_mil::cv::{cross_validate, CvSettings};
//! use hopfield_mil::report::{table, Summary};
//! use hopfield_mil::synthetic::{planted_cluster, PlantedCluster};
//! use hopfield_mil::train::MilConfig;
//!
//! // 90 bags of 4–12 instances with 8 features; a CSV file loads with `MilDataset::read(path)?`.
//! let data = planted_cluster(&PlantedCluster { bags: 90, ..Default::default() }, 0);
//! let config = MilConfig { lr: 3e-3, embedding_layers: 1, width: 32, heads: 4, head_dim: 8, epochs: 10,
//!                          ..MilConfig::default() };
//! // 3 folds, 2 repetitions, one grid point (`cv::small_grid(&config)` would select on a hold-out).
//! let settings = CvSettings { folds: 3, repeats: 2, seed: 0, val_fraction: 0.25, inner_folds: 0,
//!                             grid: vec![config] };
//! let records = cross_validate(&Cpu::<f32>::new(), &data, &settings, &|fold| {
//!     println!("repeat {} fold {}: test AUC {:.3}", fold.repeat, fold.fold, fold.test_auc);
//! })?;
//! let summary = Summary::from_records(&data.name, data.bags.len(), &records, 0.0);
//! print!("{}", table(&[summary.clone()]));
//! assert_eq!(records.len(), 6);
//! assert!(summary.auc_mean > 0.8, "{summary:?}");
//! # Ok::<(), hopfield_mil::MilError>(())
//! ```
//!
//! # Modules
//!
//! - [`data`]: the `mil` package's CSV layout (plain or gzipped) → bags, read within caps; standardisation
//!   fitted on training bags only.
//! - [`folds`]: stratified K-fold repeated with seeds, stratified hold-out for model selection.
//! - [`model`]: instance embedding → HopfieldPooling → logit, with its backward.
//! - [`train`]: AdamW training of one model, prediction.
//! - [`cv`]: the grids, selection on a hold-out (or inner folds), the repeated cross-validation.
//! - [`metrics`]: ROC-AUC with ties.
//! - [`report`]: JSONL per fold, the summary table.
//! - [`resume`]: runs that survive preemption: each fold saved as it finishes, reused by a rerun.
//! - [`synthetic`], [`mnist_bags`]: generated MIL tasks (planted clusters; bags of MNIST-format images).
//! - [`error`]: [`MilError`], which names the file and line of bad input.
pub mod cv;
pub mod data;
pub mod error;
pub mod folds;
pub mod metrics;
pub mod mnist_bags;
pub mod model;
pub mod report;
pub mod resume;
pub mod synthetic;
pub mod train;

pub use data::{Bag, MilDataset, ReadLimits, Standardizer};
pub use error::{MilError, Result};
