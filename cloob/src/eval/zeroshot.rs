//! Zero-shot classification (CLIP's protocol): a class's weight is the normalised mean of its normalised
//! prompt embeddings ("a photo of a {class}." over all templates); an image is assigned the class whose
//! weight has the largest cosine with it.

use super::{rank_of, unit_rows};
use hopfield::{Element, HopfieldError, Result};
use ndarray::{Array2, ArrayView2, ArrayView3, Axis};

/// Class weights from prompt embeddings: each prompt normalised, averaged over templates, normalised again.
///
/// # Shapes
/// `prompts: [C, T, d]` (class × template × feature) → `[C, d]`, unit rows.
pub fn zero_shot_classifier<E: Element>(prompts: ArrayView3<'_, E>) -> Result<Array2<f64>> {
    let (c, t, d) = prompts.dim();
    if c == 0 || t == 0 || d == 0 {
        return Err(HopfieldError::shape("zero_shot_classifier", "[C > 0, T > 0, d > 0]", &[c, t, d]));
    }
    let flat = prompts.to_shape((c * t, d)).expect("contiguous reshape");
    let unit = unit_rows("zero_shot_classifier(prompt)", flat.view())?;
    let means = unit.to_shape((c, t, d)).expect("sizes agree").mean_axis(Axis(1)).expect("T > 0");
    unit_rows("zero_shot_classifier(class mean)", means.view())
}

/// Fraction of rows whose label is among the `k` largest logits (ties broken by class index).
///
/// # Shapes
/// `logits: [N, C]`, `labels`: `N` indices below `C`.
pub fn top_k_accuracy(logits: ArrayView2<'_, f64>, labels: &[usize], k: usize) -> Result<f64> {
    let (n, c) = logits.dim();
    if n != labels.len() || n == 0 || c == 0 {
        return Err(HopfieldError::shape("top_k_accuracy", format!("[N = {} labels, C > 0]", labels.len()), &[n, c]));
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= c) {
        return Err(HopfieldError::input("top_k_accuracy", format!("label {l} is not below {c} classes")));
    }
    let hits = logits.outer_iter().zip(labels).filter(|(row, &l)| rank_of(row.iter().copied(), l, row[l]) <= k).count();
    Ok(hits as f64 / n as f64)
}

/// Top-1 and top-5 accuracy of a zero-shot classifier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZeroShotAccuracy {
    /// Fraction with the true class ranked first.
    pub top1: f64,
    /// Fraction with the true class among the first five (1 when there are at most five classes).
    pub top5: f64,
}

/// Classify `images` with the class weights of [`zero_shot_classifier`] and score against `labels`.
///
/// # Shapes
/// `classifier: [C, d]`, `images: [N, d]` (normalised here), `labels`: `N` indices below `C`.
pub fn zero_shot_accuracy<E: Element>(
    classifier: ArrayView2<'_, f64>,
    images: ArrayView2<'_, E>,
    labels: &[usize],
) -> Result<ZeroShotAccuracy> {
    if images.ncols() != classifier.ncols() {
        return Err(HopfieldError::shape(
            "zero_shot_accuracy(images)",
            format!("[N, {}] like the classifier", classifier.ncols()),
            images.shape(),
        ));
    }
    let logits = unit_rows("zero_shot_accuracy(image)", images)?.dot(&classifier.t());
    Ok(ZeroShotAccuracy {
        top1: top_k_accuracy(logits.view(), labels, 1)?,
        top5: top_k_accuracy(logits.view(), labels, 5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array3};

    #[test]
    fn prompts_are_normalised_before_and_after_the_mean() {
        // Class 0: a long and a short prompt; only their directions count: (e0 + e1)/√2.
        let mut p = Array3::<f64>::zeros((2, 2, 2));
        p[[0, 0, 0]] = 10.0;
        p[[0, 1, 1]] = 0.1;
        p[[1, 0, 1]] = 3.0;
        p[[1, 1, 1]] = 5.0;
        let w = zero_shot_classifier(p.view()).unwrap();
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!((&w - &array![[h, h], [0.0, 1.0]]).iter().all(|v| v.abs() < 1e-15), "{w}");
    }

    #[test]
    fn top_k_counts_the_true_class_within_the_first_k() {
        let logits = array![[0.1, 0.9, 0.5], [0.7, 0.2, 0.1], [0.3, 0.3, 0.3]];
        // Row 0 ranks class 2 second; row 1 ranks class 0 first; row 2 is a tie: class 2 comes third.
        assert_eq!(top_k_accuracy(logits.view(), &[2, 0, 2], 1).unwrap(), 1.0 / 3.0);
        assert_eq!(top_k_accuracy(logits.view(), &[2, 0, 2], 2).unwrap(), 2.0 / 3.0);
        assert_eq!(top_k_accuracy(logits.view(), &[2, 0, 2], 3).unwrap(), 1.0);
        assert!(top_k_accuracy(logits.view(), &[2, 0, 3], 1).is_err());
        assert!(top_k_accuracy(logits.view(), &[2, 0], 1).is_err());
    }

    #[test]
    fn zero_shot_accuracy_on_planted_classes() {
        let classifier = array![[1.0, 0.0], [0.0, 1.0]];
        let images = array![[2.0f32, 0.1], [0.3, 4.0], [1.0, 0.9]];
        let acc = zero_shot_accuracy(classifier.view(), images.view(), &[0, 1, 1]).unwrap();
        assert_eq!(acc, ZeroShotAccuracy { top1: 2.0 / 3.0, top5: 1.0 });
    }
}
