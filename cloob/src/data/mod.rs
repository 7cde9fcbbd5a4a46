//! Image–caption data for pretraining and evaluation.
//!
//! - [`scenes`]: the embedded default, a deterministic generator of captioned scenes with several
//!   independent attributes (shape, colour, size, position, background) and held-out combinations.
//! - [`fashion`]: Fashion-MNIST from Debian's `dataset-fashion-mnist` IDX files, captioned from templates.
//! - [`csv`]: open_clip's CSV format (image path + caption), rows indexed at open, decoded on demand.
//! - [`wds`]: WebDataset tar shards as img2dataset writes them (`key.jpg` + `key.txt` [+ `key.json`]).
//! - [`labels`]: zero-shot tasks on the user's own classes (class and template files, ImageNet templates).
//! - [`decode`]: reading and decoding image files with limits; [`transform`]: RandomResizedCrop / resize +
//!   centre crop and CLIP's normalisation.
//! - [`loader`]: batches on a pool of decoding workers, prefetched through a bounded channel.
//!
//! Two kinds of training source. An [`IndexedSource`] (scenes, Fashion-MNIST, CSV) has a known epoch
//! length and decodes any position of an epoch's permutation on its own: batch `k` is positions
//! `k·B .. (k+1)·B` of the concatenated epochs, a pure function of `(seed, step)`. A [`StreamedSource`]
//! (WebDataset) is read in order; where it stands is a [`StreamCursor`] that checkpoints store. Either
//! way a resumed run sees exactly the batches of the uninterrupted run, and decodes nothing to get there.

pub mod csv;
pub mod decode;
pub mod fashion;
pub mod imagefolder;
pub mod labels;
pub mod loader;
pub mod rng;
pub mod scenes;
pub mod transform;
pub mod wds;

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The pixels of one image or a batch of them, channel-major (`[3, S, S]` per image).
#[derive(Clone, Debug, PartialEq)]
pub enum Pixels {
    /// CLIP-normalised values (generated sources).
    Normalized(Vec<f32>),
    /// RGB bytes before normalisation (decoded files: a quarter of the memory until the step).
    Rgb8(Vec<u8>),
}

impl Pixels {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Pixels::Normalized(v) => v.len(),
            Pixels::Rgb8(v) => v.len(),
        }
    }
    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// CLIP-normalised `f32` values of `[n, 3, size, size]` pixels.
    pub fn into_normalized(self, size: usize) -> Vec<f32> {
        match self {
            Pixels::Normalized(v) => v,
            Pixels::Rgb8(v) => transform::normalize_rgb8(&v, size),
        }
    }
    /// Append `other`; appending one kind to the other converts both to normalised values.
    pub fn extend(&mut self, other: Pixels, size: usize) {
        match (&mut *self, other) {
            (Pixels::Normalized(a), Pixels::Normalized(b)) => a.extend_from_slice(&b),
            (Pixels::Rgb8(a), Pixels::Rgb8(b)) => a.extend_from_slice(&b),
            (Pixels::Normalized(a), b) => a.extend(b.into_normalized(size)),
            (Pixels::Rgb8(_), b) => {
                let mut a = std::mem::replace(self, Pixels::Normalized(Vec::new())).into_normalized(size);
                a.extend(b.into_normalized(size));
                *self = Pixels::Normalized(a);
            }
        }
    }
}

/// One training pair: an image `[3, size, size]` and its caption.
#[derive(Clone, Debug)]
pub struct Example {
    /// Pixels, channel-major.
    pub pixels: Pixels,
    /// The caption.
    pub caption: String,
    /// Where it came from, for logs and tests: `line N` of a CSV, `shard.tar/key` of a shard, an index.
    pub id: String,
}

/// What every training source tells about itself.
pub trait SourceInfo: Send + Sync {
    /// Side of the square images it yields.
    fn image_size(&self) -> usize;
    /// A one-line description for logs.
    fn describe(&self) -> String;
    /// Examples per epoch when known up front (a WebDataset's is `--train-num-samples`).
    fn epoch_len(&self) -> Option<usize>;
    /// At most this many usable examples per epoch, when a bound is known before decoding. By default
    /// [`SourceInfo::epoch_len`].
    fn pairs_at_most(&self) -> Option<usize> {
        self.epoch_len()
    }
    /// Rows, members or images skipped so far, with reasons (empty for generated data).
    fn issues(&self) -> DataIssues {
        DataIssues::default()
    }
    /// Training images decoded so far by this process (0 for generated data).
    fn decoded(&self) -> u64 {
        0
    }
}

/// A source with random access: epoch `e` visits its `len()` items in the order
/// `rng::permutation_u32(len, seed, tag::ORDER, e)`, and any position can be produced on its own (by any
/// worker, in any order).
pub trait IndexedSource: SourceInfo {
    /// Items per epoch.
    fn len(&self) -> usize;
    /// Whether an epoch is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The example at `position` of epoch `epoch`, whose order is `order`. `None` when none could be
    /// produced (a CSV whose image and every stand-in tried are unreadable: see [`csv`]).
    fn example(&self, seed: u64, epoch: u64, order: &[u32], position: usize) -> Option<Example>;
}

/// Every example of epoch `epoch` of `source`, in training order (tests and small sets).
pub fn epoch_examples(source: &dyn IndexedSource, seed: u64, epoch: u64) -> Vec<Example> {
    let order = rng::permutation_u32(source.len(), seed, rng::tag::ORDER, epoch);
    (0..order.len()).filter_map(|p| source.example(seed, epoch, &order, p)).collect()
}

/// Where a [`StreamedSource`] stands, as checkpoints store it: enough to continue exactly there by reading
/// at most one shuffle window again and decoding nothing that was already used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCursor {
    /// Epoch (one pass over this part's shards).
    pub epoch: u64,
    /// Index of the current window's first shard in this part's shard order of the epoch.
    pub shard: u64,
    /// Byte offset in that shard of the window's first member.
    pub offset: u64,
    /// Number of the window in the epoch (it seeds the window's shuffle).
    pub window: u64,
    /// Candidates of the window already handed out.
    pub taken: u64,
}

/// An encoded training pair read from a stream, not decoded yet.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Epoch it belongs to.
    pub epoch: u64,
    /// `shard.tar/key`.
    pub id: String,
    /// The caption.
    pub caption: String,
    /// The encoded image file.
    pub image: Vec<u8>,
}

/// A source read in order (WebDataset shards): the loader thread reads candidates, workers decode them.
pub trait StreamedSource: SourceInfo {
    /// The candidates of part `part` of `parts` (a rank's share of the shards), in training order from
    /// `from` on, each with the cursor just after it; epochs follow each other. The iterator ends only
    /// when an epoch of the part holds no candidate at all (the reason is then in [`SourceInfo::issues`]).
    fn candidates(
        &self,
        seed: u64,
        part: usize,
        parts: usize,
        from: StreamCursor,
    ) -> Result<Box<dyn Iterator<Item = (Candidate, StreamCursor)> + Send>, DataError>;
    /// Decode and transform one candidate; `None` (counted in the issues) when it is not a readable image.
    fn decode(&self, seed: u64, candidate: &Candidate) -> Option<Example>;
}

/// A training source of either kind.
#[derive(Clone)]
pub enum TrainData {
    /// Random access by position.
    Indexed(Arc<dyn IndexedSource>),
    /// Read in order, resumed from a cursor.
    Streamed(Arc<dyn StreamedSource>),
}

impl TrainData {
    /// What the source tells about itself.
    pub fn info(&self) -> &dyn SourceInfo {
        match self {
            TrainData::Indexed(s) => s.as_ref(),
            TrainData::Streamed(s) => s.as_ref(),
        }
    }
    /// [`SourceInfo::describe`].
    pub fn describe(&self) -> String {
        self.info().describe()
    }
    /// [`SourceInfo::epoch_len`].
    pub fn epoch_len(&self) -> Option<usize> {
        self.info().epoch_len()
    }
    /// [`SourceInfo::pairs_at_most`].
    pub fn pairs_at_most(&self) -> Option<usize> {
        self.info().pairs_at_most()
    }
    /// [`SourceInfo::issues`].
    pub fn issues(&self) -> DataIssues {
        self.info().issues()
    }
    /// [`SourceInfo::image_size`].
    pub fn image_size(&self) -> usize {
        self.info().image_size()
    }
}

impl std::fmt::Debug for TrainData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
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
    pub train: TrainData,
    /// Evaluation sets, scored zero-shot and by retrieval.
    pub eval: Vec<EvalSet>,
    /// Labelled (train, test) sets for the linear probe, with the task whose labels it fits.
    pub probe: Option<(EvalSet, EvalSet, String)>,
}

/// Skipped rows, members and images, counted by kind, with the first few reasons kept for the report.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataIssues {
    /// Rows that could not be parsed (wrong number of fields, missing column, empty path).
    pub bad_rows: u64,
    /// Images that were missing or could not be read.
    pub missing_images: u64,
    /// Files that exist but do not decode as an image (or exceed the decoding limits).
    pub undecodable_images: u64,
    /// Shard members without their pair (an image without a caption or the other way round), and
    /// members of unknown kinds are not counted.
    #[serde(default)]
    pub unpaired_members: u64,
    /// Shards that could not be opened or end in the middle of a member (read up to there).
    #[serde(default)]
    pub bad_shards: u64,
    /// The first reasons, `line N: why` / `shard.tar/key: why`.
    pub examples: Vec<String>,
}

/// How many reasons [`DataIssues`] keeps.
const KEEP_EXAMPLES: usize = 20;

impl DataIssues {
    /// Total skipped.
    pub fn total(&self) -> u64 {
        self.bad_rows + self.missing_images + self.undecodable_images + self.unpaired_members + self.bad_shards
    }
    /// Add `other`'s counts, and its reasons while there is room.
    pub fn merge(&mut self, other: DataIssues) {
        self.bad_rows += other.bad_rows;
        self.missing_images += other.missing_images;
        self.undecodable_images += other.undecodable_images;
        self.unpaired_members += other.unpaired_members;
        self.bad_shards += other.bad_shards;
        let room = KEEP_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
    /// One line: the counts and the first reason.
    pub fn summary(&self) -> String {
        let first = self.examples.first().map(|e| format!(" (first: {e})")).unwrap_or_default();
        let shards = match self.unpaired_members + self.bad_shards {
            0 => String::new(),
            _ => format!(", {} unpaired members, {} bad shards", self.unpaired_members, self.bad_shards),
        };
        format!(
            "{} bad rows, {} missing images, {} undecodable images{shards} skipped{first}",
            self.bad_rows, self.missing_images, self.undecodable_images
        )
    }
}

/// [`DataIssues`] shared between a source and the threads that read and decode for it, with the hashes
/// of the reasons recorded once ([`IssueLog::record_once`]).
#[derive(Clone, Debug, Default)]
pub struct IssueLog(Arc<Mutex<(DataIssues, std::collections::HashSet<u64>)>>);

/// What went wrong with one row or member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueKind {
    /// The row itself.
    BadRow,
    /// The image file could not be opened.
    MissingImage,
    /// The file is not an image the `image` crate decodes within the limits.
    Undecodable,
    /// A shard member without its pair.
    Unpaired,
    /// A shard that cannot be opened or is truncated.
    BadShard,
}

impl IssueLog {
    /// Count one issue and keep its reason if there is room.
    pub fn record(&self, kind: IssueKind, reason: String) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let g = &mut guard.0;
        match kind {
            IssueKind::BadRow => g.bad_rows += 1,
            IssueKind::MissingImage => g.missing_images += 1,
            IssueKind::Undecodable => g.undecodable_images += 1,
            IssueKind::Unpaired => g.unpaired_members += 1,
            IssueKind::BadShard => g.bad_shards += 1,
        }
        if g.examples.len() < KEEP_EXAMPLES {
            g.examples.push(reason);
        }
    }
    /// [`IssueLog::record`] unless the same reason was recorded once already: a bad sample met again in a
    /// later epoch counts once.
    pub fn record_once(&self, kind: IssueKind, reason: String) {
        let new = self.0.lock().unwrap_or_else(|p| p.into_inner()).1.insert(rng::hash_str(&reason));
        if new {
            self.record(kind, reason);
        }
    }
    /// A copy of the counts.
    pub fn snapshot(&self) -> DataIssues {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0.clone()
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
