//! Image↔text retrieval: for each query, the rank of its ground truth among all candidates by cosine
//! similarity; R@K is the fraction of queries ranked within K, with mean and median rank.
//!
//! An image may have several captions (COCO, Flickr30k): image→text takes the best-ranked of its
//! captions, text→image the rank of the one image of each caption. Ranks are 1-based, ties broken by
//! candidate index (a stable descending sort, like `argsort` in open_clip's evaluation).

use super::{rank_of, unit_rows};
use hopfield::{Element, HopfieldError, Result};
use ndarray::ArrayView2;

/// Metrics of one retrieval direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetrievalMetrics {
    /// Fraction of queries with the ground truth ranked first.
    pub r_at_1: f64,
    /// ... within the first 5.
    pub r_at_5: f64,
    /// ... within the first 10.
    pub r_at_10: f64,
    /// Mean 1-based rank.
    pub mean_rank: f64,
    /// Median 1-based rank (mean of the two middle ranks for an even count, as `numpy.median`).
    pub median_rank: f64,
}

impl RetrievalMetrics {
    /// Metrics from 1-based ranks (at least one).
    pub fn from_ranks(ranks: &[usize]) -> Self {
        let n = ranks.len() as f64;
        let within = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
        let mut sorted = ranks.to_vec();
        sorted.sort_unstable();
        let m = sorted.len() / 2;
        let median_rank =
            if sorted.len() % 2 == 1 { sorted[m] as f64 } else { (sorted[m - 1] + sorted[m]) as f64 / 2.0 };
        RetrievalMetrics {
            r_at_1: within(1),
            r_at_5: within(5),
            r_at_10: within(10),
            mean_rank: ranks.iter().sum::<usize>() as f64 / n,
            median_rank,
        }
    }
}

/// Both directions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetrievalReport {
    /// Images as queries, texts as candidates.
    pub image_to_text: RetrievalMetrics,
    /// Texts as queries, images as candidates.
    pub text_to_image: RetrievalMetrics,
}

/// Retrieval metrics from a similarity matrix, `text_image[t]` being the image of caption `t`.
///
/// # Shapes
/// `similarity: [N_images, N_texts]`, `text_image`: `N_texts` indices below `N_images`, every image
/// with at least one caption.
pub fn retrieval_from_similarity(similarity: ArrayView2<'_, f64>, text_image: &[usize]) -> Result<RetrievalReport> {
    let (ni, nt) = similarity.dim();
    if ni == 0 || nt != text_image.len() {
        return Err(HopfieldError::shape(
            "retrieval",
            format!("[N_images > 0, {} texts]", text_image.len()),
            &[ni, nt],
        ));
    }
    if let Some(&i) = text_image.iter().find(|&&i| i >= ni) {
        return Err(HopfieldError::input("retrieval", format!("text_image: image {i} is not below {ni} images")));
    }
    let text_to_image: Vec<usize> = text_image
        .iter()
        .enumerate()
        .map(|(t, &i)| rank_of(similarity.column(t).iter().copied(), i, similarity[[i, t]]))
        .collect();
    let mut best = vec![usize::MAX; ni];
    for (t, &i) in text_image.iter().enumerate() {
        let row = similarity.row(i);
        best[i] = best[i].min(rank_of(row.iter().copied(), t, row[t]));
    }
    if let Some(i) = best.iter().position(|&r| r == usize::MAX) {
        return Err(HopfieldError::input("retrieval", format!("text_image: image {i} has no caption")));
    }
    Ok(RetrievalReport {
        image_to_text: RetrievalMetrics::from_ranks(&best),
        text_to_image: RetrievalMetrics::from_ranks(&text_to_image),
    })
}

/// Retrieval metrics from embeddings (normalised here; similarity = cosine).
///
/// # Shapes
/// `images: [N_images, d]`, `texts: [N_texts, d]`, `text_image` as in [`retrieval_from_similarity`].
pub fn retrieval_metrics<E: Element>(
    images: ArrayView2<'_, E>,
    texts: ArrayView2<'_, E>,
    text_image: &[usize],
) -> Result<RetrievalReport> {
    if images.ncols() != texts.ncols() {
        return Err(HopfieldError::shape(
            "retrieval(texts)",
            format!("[N, {}] like the images", images.ncols()),
            texts.shape(),
        ));
    }
    let sim = unit_rows("retrieval(image)", images)?.dot(&unit_rows("retrieval(text)", texts)?.t());
    retrieval_from_similarity(sim.view(), text_image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn ranks_of_a_three_by_three_similarity() {
        // Rows: images, columns: texts, text t belongs to image t.
        let sim = array![[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.4, 0.6, 0.7]];
        let r = retrieval_from_similarity(sim.view(), &[0, 1, 2]).unwrap();
        // image→text: image 0 ranks text 0 first; image 1 ranks text 1 second (0.8 > 0.3); image 2: first.
        assert_eq!(
            r.image_to_text,
            RetrievalMetrics { r_at_1: 2.0 / 3.0, r_at_5: 1.0, r_at_10: 1.0, mean_rank: 4.0 / 3.0, median_rank: 1.0 }
        );
        // text→image: text 0 → image 0 first; text 1 (column .1,.3,.6) → image 1 second;
        // text 2 (.5,.8,.7) → image 2 second.
        assert_eq!(
            r.text_to_image,
            RetrievalMetrics { r_at_1: 1.0 / 3.0, r_at_5: 1.0, r_at_10: 1.0, mean_rank: 5.0 / 3.0, median_rank: 2.0 }
        );
    }

    #[test]
    fn several_captions_take_the_best_and_ties_go_by_index() {
        // Image 0 owns texts 0 and 2, image 1 owns text 1. Image 0 ranks text 2 (0.9) first.
        let sim = array![[0.1, 0.5, 0.9], [0.5, 0.5, 0.2]];
        let r = retrieval_from_similarity(sim.view(), &[0, 1, 0]).unwrap();
        // Image 1: text 0 ties with its text 1 at 0.5 and comes first → rank 2.
        assert_eq!((r.image_to_text.r_at_1, r.image_to_text.median_rank), (0.5, 1.5));
        // text 0: image 1 scores 0.5 > 0.1 → rank 2; text 1: tie with image 0 first → 2; text 2: rank 1.
        assert_eq!(r.text_to_image.mean_rank, 5.0 / 3.0);
        assert!(retrieval_from_similarity(sim.view(), &[0, 0, 0]).is_err(), "image 1 without a caption");
        assert!(retrieval_from_similarity(sim.view(), &[0, 1, 2]).is_err());
    }

    #[test]
    fn retrieval_of_embeddings_uses_cosine() {
        let images = array![[1.0f32, 0.0], [0.0, 1.0]];
        let texts = array![[5.0f32, 1.0], [1.0, 50.0]];
        let r = retrieval_metrics(images.view(), texts.view(), &[0, 1]).unwrap();
        assert_eq!(r.image_to_text.r_at_1, 1.0);
        assert_eq!(r.text_to_image.r_at_1, 1.0);
    }
}
