//! WebDataset shards as a training source: tar files of samples as img2dataset and webdataset write them,
//! read as a stream with a bounded shuffle buffer and resumed exactly from a [`StreamCursor`].
//!
//! **Format.** A shard is a tar file (`00000.tar`, `00001.tar`, … named by a brace pattern, see
//! [`expand_braces`]). Consecutive members with the same key form a sample, as in webdataset: the key is
//! the member path up to the first `.` of its basename (the directory part kept), the extension the rest,
//! lower-cased (`000000042.jpg` → key `000000042`, extension `jpg`). A sample is a training pair when it
//! has an image (`jpg`, `jpeg`, `png` or `webp`, the first of these present) and a caption: the trimmed,
//! non-empty UTF-8 text of its `txt` member, or a string field of its `json` member ([`CaptionField`]).
//! Other members (`.json` with `.txt` captions, `.cls`, …), directories and names whose basename starts
//! with `.` are passed over. A sample without its pair is counted as [`IssueKind::Unpaired`] (a sample of
//! other members only is not counted). An image or caption member of more than
//! [`MAX_FILE_BYTES`](super::decode::MAX_FILE_BYTES) is skipped unread ([`IssueKind::Undecodable`], its
//! sample with it). A shard that cannot be opened or ends inside a member counts once as
//! [`IssueKind::BadShard`] (its samples up to there are used, the one in progress is dropped) and reading
//! goes on with the next shard. Nothing in a shard's content is fatal. Images are decoded later, by
//! [`StreamedSource::decode`]: one that does not decode is counted then.
//!
//! **Order.** Epoch `e` visits the shards in the order `rng::permutation_u32(n, seed, tag::SHARDS, e)`;
//! part `p` of `P` (an MPI rank) takes `order[p], order[p + P], …` (there must be at least `P` shards). The
//! part's pairs of the epoch, those shards read in turn, are cut into consecutive windows of `W` =
//! `shuffle_buffer` candidates (a window may span shards; the last of an epoch may be shorter), and each
//! window is handed out in the order of a shuffle seeded by `(seed, tag::ORDER, e, p, window)`. Epochs
//! follow each other; the stream ends only when a whole epoch of the part holds no pair.
//!
//! **Cursor.** With each candidate comes the [`StreamCursor`] just after it: the epoch, the window's
//! number, where the window starts (`shard`: index in the part's order of the epoch, `offset`: byte offset
//! in that file of a member's first header, the tar header or the GNU long-name / PAX header before it)
//! and how many candidates of the window were handed out (`taken`). A window starts at the first member
//! after the previous window's last pair (a sample's members are grouped by the key of the member that
//! follows them, so that member is read by both windows). After a window's last candidate the cursor is
//! the start of the next window (`taken` 0), after the epoch's last the start of the next epoch: to tell
//! them apart, reading a full window goes on to the next pair, if any. Resuming opens that shard at that
//! offset, reads the window again (no decoding), shuffles it the same way and skips `taken`: the stream
//! goes on exactly as the uninterrupted one. The problems met in a window are recorded when the window is
//! first read (those met past its end by the window that reads them, or at once when the epoch ends
//! there), and not again when a resumed stream reads it again (`taken` > 0); the same problem met again in
//! a later epoch counts once ([`IssueLog::record_once`]).
//!
//! **Memory.** One window of encoded candidates, about `W ×` the mean size of a sample's image and
//! caption (`W` = 10 000 of 40 kB JPEGs: 400 MB), plus one more sample and a 64 kB read buffer of the one
//! shard open at a time. No shard is ever read whole into memory.

mod braces;
mod shard;
mod stream;
#[cfg(test)]
mod tests;

pub use braces::{expand_braces, MAX_NAMES};
pub use shard::IMAGE_EXTENSIONS;

use super::decode::decode_rgb8;
use super::{rng, transform};
use super::{
    Candidate, DataError, DataIssues, EvalSet, Example, IssueKind, IssueLog, Pixels, SourceInfo, StreamCursor,
    StreamedSource,
};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where a sample's caption comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptionField {
    /// The text of its `.txt` member (img2dataset's default).
    Txt,
    /// A string field of its `.json` member (`json:caption`).
    Json(String),
}

impl FromStr for CaptionField {
    type Err = String;

    /// `txt`, or `json:FIELD`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "txt" => Ok(CaptionField::Txt),
            Some(("json", field)) if !field.is_empty() => Ok(CaptionField::Json(field.to_owned())),
            _ => Err(format!("caption field {s:?}: expected `txt` or `json:FIELD` (e.g. json:caption)")),
        }
    }
}

/// How to read a set of shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WdsConfig {
    /// Shard paths, with braces (`/data/{00000..00099}.tar`).
    pub pattern: String,
    /// Side of the square training images.
    pub image_size: usize,
    /// Where captions come from.
    pub caption: CaptionField,
    /// Candidates per shuffle window (0 counts as 1: no shuffling within the shards' order).
    pub shuffle_buffer: usize,
    /// Pairs per epoch, for schedules and logs (the stream itself does not need it).
    pub train_num_samples: Option<usize>,
}

/// What the clones of a source share.
#[derive(Debug)]
struct Inner {
    config: WdsConfig,
    shards: Vec<PathBuf>,
    total_bytes: u64,
    issues: IssueLog,
    decoded: AtomicU64,
}

/// WebDataset shards as a [`StreamedSource`] (see the [module documentation](self)).
#[derive(Clone, Debug)]
pub struct WdsSource {
    inner: Arc<Inner>,
}

/// The largest image side accepted.
const MAX_IMAGE_SIZE: usize = 1 << 14;

impl WdsSource {
    /// Expand the pattern and check that every shard is a regular file (nothing is read yet).
    pub fn open(config: WdsConfig) -> Result<Self, DataError> {
        if config.image_size == 0 || config.image_size > MAX_IMAGE_SIZE {
            return Err(DataError(format!("image size {}: expected 1 to {MAX_IMAGE_SIZE}", config.image_size)));
        }
        let shards: Vec<PathBuf> =
            expand_braces(&config.pattern).map_err(DataError)?.into_iter().map(PathBuf::from).collect();
        let mut total_bytes = 0u64;
        let mut missing: Vec<(&Path, String)> = Vec::new();
        for path in &shards {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => total_bytes += meta.len(),
                Ok(_) => missing.push((path, "not a regular file".into())),
                Err(e) => missing.push((path, e.to_string())),
            }
        }
        if let Some((first, why)) = missing.first() {
            return Err(DataError(format!(
                "{} of the {} shards of {:?} are missing or not regular files; the first: {}: {why}",
                missing.len(),
                shards.len(),
                config.pattern,
                first.display()
            )));
        }
        let inner = Inner { config, shards, total_bytes, issues: IssueLog::default(), decoded: AtomicU64::new(0) };
        Ok(WdsSource { inner: Arc::new(inner) })
    }

    /// The shard paths, in the pattern's order.
    pub fn shards(&self) -> &[PathBuf] {
        &self.inner.shards
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &WdsConfig {
        &self.inner.config
    }

    /// Candidates per shuffle window.
    fn window(&self) -> usize {
        self.inner.config.shuffle_buffer.max(1)
    }

    /// Part `part` of `parts`'s shards in epoch `epoch`'s order (`parts` ≤ the shard count, checked by
    /// [`StreamedSource::candidates`]).
    fn part_shards(&self, seed: u64, part: usize, parts: usize, epoch: u64) -> Vec<PathBuf> {
        let order = rng::permutation_u32(self.inner.shards.len(), seed, rng::tag::SHARDS, epoch);
        order.into_iter().skip(part).step_by(parts.max(1)).map(|i| self.inner.shards[i as usize].clone()).collect()
    }

    /// An evaluation set: the first `n` readable pairs in shard-file order (not shuffled), resized and
    /// centre-cropped, with no zero-shot task. Pairs passed over (unpaired, undecodable, bad shards) are
    /// counted in the set's own `skipped`, not in the source's issues. Fewer than `n` when the shards hold
    /// fewer.
    pub fn eval_set(&self, n: usize, name: &str) -> EvalSet {
        let size = self.inner.config.image_size;
        let caption = &self.inner.config.caption;
        let skipped = IssueLog::default();
        let (mut pixels, mut captions) = (Vec::new(), Vec::new());
        for path in self.shards() {
            if captions.len() >= n {
                break;
            }
            let file = stream::file_name(path);
            let _ = shard::scan(path, &file, 0, Some(0), caption, &mut |event| {
                let shard::Event::Group { mut group, .. } = event else {
                    if let shard::Event::Issue(kind, why) = event {
                        skipped.record(kind, why);
                    }
                    return ControlFlow::Continue(());
                };
                let key = std::mem::take(&mut group.key);
                match group.into_pair(caption) {
                    Err(None) => {}
                    Err(Some(why)) => skipped.record(IssueKind::Unpaired, format!("{file}/{key}: {why}")),
                    Ok((text, image)) => match decode_rgb8(&image) {
                        Ok(img) => {
                            pixels.extend(transform::normalize_rgb8(&transform::eval_rgb8(&img, size as u32), size));
                            captions.push(text);
                        }
                        Err(why) => skipped.record(IssueKind::Undecodable, format!("{file}/{key}: {why}")),
                    },
                }
                if captions.len() >= n {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
        }
        EvalSet { name: name.to_owned(), pixels, size, captions, tasks: Vec::new(), skipped: skipped.snapshot() }
    }
}

impl SourceInfo for WdsSource {
    fn image_size(&self) -> usize {
        self.inner.config.image_size
    }

    fn describe(&self) -> String {
        let c = &self.inner.config;
        let epoch = match c.train_num_samples {
            Some(n) => format!("{n} samples per epoch"),
            None => "epoch length unknown (set --train-num-samples)".into(),
        };
        format!(
            "WebDataset {}: {} shards, {:.1} MB, {epoch}, shuffle buffer {}",
            c.pattern,
            self.inner.shards.len(),
            self.inner.total_bytes as f64 / 1e6,
            self.window()
        )
    }

    fn epoch_len(&self) -> Option<usize> {
        self.inner.config.train_num_samples
    }

    fn pairs_at_most(&self) -> Option<usize> {
        None
    }

    fn issues(&self) -> DataIssues {
        self.inner.issues.snapshot()
    }

    fn decoded(&self) -> u64 {
        self.inner.decoded.load(Ordering::Relaxed)
    }
}

impl StreamedSource for WdsSource {
    fn candidates(
        &self,
        seed: u64,
        part: usize,
        parts: usize,
        from: StreamCursor,
    ) -> Result<Box<dyn Iterator<Item = (Candidate, StreamCursor)> + Send>, DataError> {
        let n = self.inner.shards.len();
        if parts == 0 || part >= parts {
            return Err(DataError(format!("part {part} of {parts}: expected a part below the number of parts")));
        }
        if n < parts {
            return Err(DataError(format!(
                "{n} shards for {parts} parts (ranks): every part needs at least one shard of {:?}",
                self.inner.config.pattern
            )));
        }
        Ok(Box::new(stream::Stream::new(self.clone(), seed, part, parts, from)))
    }

    fn decode(&self, seed: u64, candidate: &Candidate) -> Option<Example> {
        self.inner.decoded.fetch_add(1, Ordering::Relaxed);
        match decode_rgb8(&candidate.image) {
            Ok(img) => {
                let parts = [seed, rng::tag::AUGMENT, candidate.epoch, rng::hash_str(&candidate.id)];
                let size = self.inner.config.image_size as u32;
                let pixels = transform::train_rgb8(&img, size, &mut rng::rng_for(&parts));
                Some(Example {
                    pixels: Pixels::Rgb8(pixels),
                    caption: candidate.caption.clone(),
                    id: candidate.id.clone(),
                })
            }
            Err(why) => {
                self.inner.issues.record_once(IssueKind::Undecodable, format!("{}: {why}", candidate.id));
                None
            }
        }
    }
}
