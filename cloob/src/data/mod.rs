//! Image–caption data for pretraining and evaluation.
//!
//! - [`scenes`]: the embedded default, a deterministic generator of captioned scenes with several
//!   independent attributes (shape, colour, size, position, background) and held-out combinations.
//! - [`fashion`]: Fashion-MNIST from Debian's `dataset-fashion-mnist` IDX files, captioned from templates.
//! - [`csv`]: open_clip's CSV format (image path + caption), decoded with the `image` crate.
//! - [`labels`]: zero-shot tasks on the user's own classes (class and template files, ImageNet templates).
//! - [`transform`]: RandomResizedCrop / resize + centre crop and CLIP's normalisation.
//! - [`loader`]: a prefetching thread with a bounded channel that turns a source into batches.
//!
//! Every training source is a pure function of `(seed, epoch)`: the same seed gives the same batches in
//! the same order, which is what makes a resumed run continue bit for bit.

pub mod csv;
pub mod fashion;
pub mod labels;
pub mod loader;
pub mod rng;
pub mod scenes;
pub mod transform;

use std::sync::{Arc, Mutex};

/// One training pair: a CLIP-normalised image `[3, size, size]` (row-major) and its caption.
#[derive(Clone, Debug)]
pub struct Example {
    /// Pixels, channel-major, CLIP-normalised.
    pub pixels: Vec<f32>,
    /// The caption.
    pub caption: String,
}

/// A source of training pairs, deterministic in `(seed, epoch)`.
pub trait TrainSource: Send + Sync {
    /// Side of the square images it yields.
    fn image_size(&self) -> usize;
    /// A one-line description for logs.
    fn describe(&self) -> String;
    /// Examples per epoch when known up front (`None` for streamed files).
    fn epoch_len(&self) -> Option<usize>;
    /// At most this many examples per epoch, when a bound is known before reading (a CSV's rows that
    /// parse; their images may still be missing). By default [`TrainSource::epoch_len`].
    fn pairs_at_most(&self) -> Option<usize> {
        self.epoch_len()
    }
    /// The examples of epoch `epoch` in training order, from the `skip`-th on. The iterator owns what it
    /// needs, so it can run on the loader's thread.
    fn epoch(&self, seed: u64, epoch: u64, skip: usize) -> Box<dyn Iterator<Item = Example> + Send>;
    /// Rows or images skipped so far, with reasons (empty for generated data).
    fn issues(&self) -> DataIssues {
        DataIssues::default()
    }
}

/// One zero-shot classification task over an [`EvalSet`]: prompts are `template.replace("{}", class)`.
#[derive(Clone, Debug)]
pub struct ZeroShotTask {
    /// Short name (`shape`, `colour`, `fashion`, …).
    pub name: String,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Prompt templates, each with one `{}`.
    pub templates: Vec<String>,
    /// The label of every image of the set (`None`: the image does not take part in this task).
    pub labels: Vec<Option<usize>>,
    /// Report top-1/top-5 per class too (the user's own classes; the built-in tasks report the mean).
    pub per_class: bool,
}

/// A fixed evaluation set: images, their captions (for retrieval) and zero-shot tasks.
#[derive(Clone, Debug, Default)]
pub struct EvalSet {
    /// Name for tables (`embedded-test`, `fashion-mnist-test`, …).
    pub name: String,
    /// `[n, 3, size, size]` row-major, CLIP-normalised.
    pub pixels: Vec<f32>,
    /// Image side.
    pub size: usize,
    /// One caption per image.
    pub captions: Vec<String>,
    /// Zero-shot tasks over these images.
    pub tasks: Vec<ZeroShotTask>,
    /// Rows and images of the source skipped while the set was read.
    pub skipped: DataIssues,
}

impl EvalSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.captions.len()
    }
    /// Whether it holds no image.
    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }
    /// Pixels of images `start..start + n`.
    pub fn pixels_of(&self, start: usize, n: usize) -> &[f32] {
        let per = 3 * self.size * self.size;
        &self.pixels[start * per..(start + n) * per]
    }
}

/// Everything a data source offers: a training stream and evaluation sets (zero-shot, retrieval), plus a
/// train/test pair of labelled sets for the linear probe when the source has labels.
pub struct DataBundle {
    /// Training pairs.
    pub train: Arc<dyn TrainSource>,
    /// Evaluation sets, scored zero-shot and by retrieval.
    pub eval: Vec<EvalSet>,
    /// Labelled (train, test) sets for the linear probe, with the task whose labels it fits.
    pub probe: Option<(EvalSet, EvalSet, String)>,
}

/// Skipped rows and images, counted by kind, with the first few reasons kept for the report.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataIssues {
    /// Rows that could not be parsed (wrong number of fields, missing column, empty path).
    pub bad_rows: u64,
    /// Images that were missing or could not be read.
    pub missing_images: u64,
    /// Files that exist but do not decode as an image.
    pub undecodable_images: u64,
    /// The first reasons, `line N: why`.
    pub examples: Vec<String>,
}

/// How many reasons [`DataIssues`] keeps.
const KEEP_EXAMPLES: usize = 20;

impl DataIssues {
    /// Total skipped.
    pub fn total(&self) -> u64 {
        self.bad_rows + self.missing_images + self.undecodable_images
    }
    /// One line: the counts and the first reason.
    pub fn summary(&self) -> String {
        let first = self.examples.first().map(|e| format!(" (first: {e})")).unwrap_or_default();
        format!(
            "{} bad rows, {} missing images, {} undecodable images skipped{first}",
            self.bad_rows, self.missing_images, self.undecodable_images
        )
    }
}

/// [`DataIssues`] shared between a source and the iterators it hands to the loader thread.
#[derive(Clone, Debug, Default)]
pub struct IssueLog(Arc<Mutex<DataIssues>>);

/// What went wrong with one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueKind {
    /// The row itself.
    BadRow,
    /// The image file could not be opened.
    MissingImage,
    /// The file is not an image the `image` crate decodes.
    Undecodable,
}

impl IssueLog {
    /// Count one issue and keep its reason if there is room.
    pub fn record(&self, kind: IssueKind, reason: String) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match kind {
            IssueKind::BadRow => g.bad_rows += 1,
            IssueKind::MissingImage => g.missing_images += 1,
            IssueKind::Undecodable => g.undecodable_images += 1,
        }
        if g.examples.len() < KEEP_EXAMPLES {
            g.examples.push(reason);
        }
    }
    /// A copy of the counts.
    pub fn snapshot(&self) -> DataIssues {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Errors of the data sources: a missing file names the path and how to get it.
#[derive(Debug)]
pub struct DataError(pub String);

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}
