//! Evaluation of trained embeddings: zero-shot classification, image↔text retrieval, the linear probe and
//! the embedding analysis of the CLOOB paper.
//!
//! Everything here works on host matrices (`ndarray` views of `f32` or `f64`, computed in `f64`):
//! evaluation runs once per epoch on features already gathered from the model, and the probe's solver and
//! the eigen-solver are sequential algorithms with no use for a device. [`host_matrix`] downloads a
//! backend tensor.
//!
//! - [`zeroshot`]: class weights from class-name × template prompts, top-1/top-5 accuracy.
//! - [`retrieval`]: R@1/5/10, mean and median rank, both directions, several captions per image allowed.
//! - [`probe`]: L2-regularised multinomial logistic regression (L-BFGS), `C` chosen on a validation split.
//! - [`spectrum`]: covariance eigenvalues (Householder + QL) and how many reach 99 % of the variance.
//! - [`geometry`]: Ajne's uniformity statistic on the sphere, Wang–Isola alignment and uniformity.

pub mod geometry;
pub mod probe;
pub mod retrieval;
pub mod spectrum;
pub mod zeroshot;

pub use geometry::{ajne_statistic, alignment, uniformity};
pub use probe::{linear_probe, log_grid, LinearProbe, LogisticConfig, LogisticRegression, ProbeConfig};
pub use retrieval::{retrieval_from_similarity, retrieval_metrics, RetrievalMetrics, RetrievalReport};
pub use spectrum::{covariance, explained_variance_count, symmetric_eigenvalues};
pub use zeroshot::{top_k_accuracy, zero_shot_accuracy, zero_shot_classifier, ZeroShotAccuracy};

use hopfield::{Backend, Element, HopfieldError, Result};
use ndarray::{Array2, ArrayView2, Axis};

/// Download a rank-2 backend tensor to an `f64` host matrix.
///
/// # Shapes
/// `t: [N, d]` → `[N, d]`.
pub fn host_matrix<B: Backend>(backend: &B, t: &B::Tensor) -> Result<Array2<f64>> {
    let shape = backend.shape(t);
    if shape.len() != 2 {
        return Err(HopfieldError::shape("host_matrix", "[N, d]", &shape));
    }
    let values = backend.to_vec(t).iter().map(|v| v.f64()).collect();
    Ok(Array2::from_shape_vec((shape[0], shape[1]), values).expect("sizes agree"))
}

/// `x` in `f64` with unit rows; a zero or non-finite row is an error naming `op`.
pub(crate) fn unit_rows<E: Element>(op: &'static str, x: ArrayView2<'_, E>) -> Result<Array2<f64>> {
    let mut out = x.mapv(|v| v.f64());
    for (i, mut row) in out.axis_iter_mut(Axis(0)).enumerate() {
        let norm = row.dot(&row).sqrt();
        if !(norm > 0.0 && norm.is_finite()) {
            return Err(HopfieldError::NonFinite { op, detail: format!("row {i} has norm {norm}") });
        }
        row /= norm;
    }
    Ok(out)
}

/// 1-based rank of entry `target` in `scores` sorted descending, ties broken by index (a stable sort):
/// `1 + #{j : s_j > s_t} + #{j < t : s_j = s_t}`.
pub(crate) fn rank_of(scores: impl IntoIterator<Item = f64>, target: usize, target_score: f64) -> usize {
    1 + scores.into_iter().enumerate().filter(|&(j, s)| s > target_score || (s == target_score && j < target)).count()
}
