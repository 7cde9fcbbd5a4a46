//! open_clip's CSV format: one row per pair, an image path column and a caption column (names and
//! separator configurable; open_clip's defaults are `filepath`, `title` and a tab). Relative paths are
//! taken from the CSV file's directory.
//!
//! Opening the file reads it once, checks that each row's image file exists (a `stat`, no decoding) and
//! keeps the byte offset and line number of every usable row (12 bytes a row: 40 MB for CC3M's 3.3 M
//! rows), nothing else. An epoch is a seeded permutation of those
//! rows ([`crate::data::IndexedSource`]); a position is produced by reading its line again at its offset,
//! decoding its image and cropping it, on whichever loader worker gets it. Starting at any step decodes
//! nothing before it.
//!
//! Bad rows and missing images are counted when the file is opened and are not part of the epoch. An image
//! that cannot be read or decoded later is counted and named once, and its position takes a stand-in: another row drawn from `(seed, epoch, position)`,
//! the same one whichever worker or rank asks, so the batch stays a function of the step. The stand-in
//! repeats a pair of the epoch; the report says how many images were replaced. One line is one row: a
//! quote left open is a bad row, never a caption running into the next lines ([`parse`]).

use super::decode::{decode_rgb8, read_image_file};
use super::rng::{hash, rng_for, tag};
use super::transform::{eval_rgb8, normalize_rgb8, train_rgb8};
use super::{DataError, DataIssues, EvalSet, Example, IndexedSource, IssueKind, IssueLog, Pixels, SourceInfo};
use rayon::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub mod parse;
pub use parse::{rows, Columns, Layout, Line, Pair, Rows, MAX_LINE_BYTES};

/// Stand-ins tried for an unreadable row before the position is given up.
pub const STAND_IN_TRIES: u64 = 16;

/// Where the pairs are and how they are laid out.
#[derive(Clone, Debug)]
pub struct CsvConfig {
    /// The CSV file.
    pub path: PathBuf,
    /// Column with the image path (open_clip's `--csv-img-key`).
    pub img_key: String,
    /// Column with the caption (`--csv-caption-key`).
    pub caption_key: String,
    /// Field separator (`--csv-separator`).
    pub separator: u8,
    /// Side of the square images produced.
    pub image_size: usize,
}

impl CsvConfig {
    /// open_clip's defaults (`filepath`, `title`, tab) for `path`.
    pub fn new(path: impl Into<PathBuf>, image_size: usize) -> Self {
        CsvConfig {
            path: path.into(),
            img_key: "filepath".into(),
            caption_key: "title".into(),
            separator: b'\t',
            image_size,
        }
    }
}

/// A usable row read again: its line, the resolved image path as written and resolved, and the caption.
#[derive(Clone, Debug)]
struct Row {
    line: u64,
    written: String,
    image: PathBuf,
    caption: String,
}

/// The usable rows of a file: byte offsets and line numbers.
#[derive(Debug, Default)]
struct RowIndex {
    offsets: Vec<u64>,
    lines: Vec<u32>,
}

/// The CSV training source (and, through [`CsvSource::eval_set`], evaluation sets for retrieval).
#[derive(Clone, Debug)]
pub struct CsvSource {
    config: CsvConfig,
    dir: PathBuf,
    file: Arc<std::fs::File>,
    columns: Columns,
    rows: usize,
    index: Arc<RowIndex>,
    issues: IssueLog,
    reported: Arc<Mutex<HashSet<u64>>>,
    decoded: Arc<AtomicU64>,
}

impl CsvSource {
    /// Open `config.path`, check the header names both columns and index the usable rows: those that
    /// parse and whose image path is a regular file (checked with one `stat` per row, in parallel; no image
    /// is decoded). Bad rows and missing images are counted in [`SourceInfo::issues`].
    pub fn open(config: CsvConfig) -> Result<Self, DataError> {
        let mut lines = lines(&config)?;
        let columns = lines.columns();
        let dir = config.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let (issues, mut rows, mut index) = (IssueLog::default(), 0, RowIndex::default());
        // Rows are checked in chunks: the paths of one chunk at a time are held, whatever the file's size.
        let mut chunk: Vec<(u64, u64, PathBuf)> = Vec::new();
        let flush = |chunk: &mut Vec<(u64, u64, PathBuf)>, index: &mut RowIndex| {
            let present: Vec<Result<(), String>> = chunk
                .par_iter()
                .map(|(_, _, path)| match std::fs::metadata(path) {
                    Ok(m) if m.is_file() => Ok(()),
                    Ok(_) => Err(format!("{}: not a regular file", path.display())),
                    Err(e) => Err(format!("{}: {e}", path.display())),
                })
                .collect();
            for ((line, offset, _), ok) in chunk.drain(..).zip(present) {
                match ok {
                    Ok(()) => {
                        index.offsets.push(offset);
                        index.lines.push(u32::try_from(line).unwrap_or(u32::MAX));
                    }
                    Err(why) => issues.record(IssueKind::MissingImage, format!("line {line}: {why}")),
                }
            }
        };
        for line in lines.by_ref() {
            rows += 1;
            match line.row {
                Ok(pair) => chunk.push((line.line, line.offset, dir.join(pair.image))),
                Err(reason) => issues.record(IssueKind::BadRow, format!("line {}: {reason}", line.line)),
            }
            if chunk.len() == 1 << 14 {
                flush(&mut chunk, &mut index);
            }
        }
        flush(&mut chunk, &mut index);
        let file = std::fs::File::open(&config.path)
            .map_err(|e| DataError(format!("cannot open CSV {}: {e}", config.path.display())))?;
        Ok(CsvSource {
            dir,
            config,
            file: Arc::new(file),
            columns,
            rows,
            index: Arc::new(index),
            issues,
            reported: Default::default(),
            decoded: Default::default(),
        })
    }

    /// Data rows in the file (its non-blank lines after the header, usable or not).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows that parse (an image path and a non-empty caption) and whose image file exists; the images are
    /// not decoded yet.
    pub fn usable_rows(&self) -> usize {
        self.index.offsets.len()
    }

    /// Count an issue of a line once, into `log` (this source's own when `None`: then once per run).
    fn record(&self, log: Option<&IssueLog>, line: u64, kind: IssueKind, reason: String) {
        match log {
            Some(log) => log.record(kind, format!("line {line}: {reason}")),
            None => {
                if self.reported.lock().unwrap_or_else(|p| p.into_inner()).insert(line) {
                    self.issues.record(kind, format!("line {line}: {reason}"));
                }
            }
        }
    }

    /// Usable row `i`, read again from the file.
    fn row(&self, i: usize) -> Result<Row, String> {
        let line = u64::from(self.index.lines[i]);
        let text = read_line_at(&self.file, self.index.offsets[i]).map_err(|e| format!("cannot read it again: {e}"))?;
        let pair = self.columns.pair(&text).map_err(|e| format!("changed since the file was opened: {e}"))?;
        Ok(Row { line, image: self.dir.join(&pair.image), written: pair.image, caption: pair.caption })
    }

    /// Usable row `i` with its decoded image, or the issue recorded (into `log`, see [`Self::record`]).
    fn decoded_row(&self, i: usize, log: Option<&IssueLog>) -> Option<(Row, image::RgbImage)> {
        let row = match self.row(i) {
            Ok(r) => r,
            Err(e) => {
                self.record(log, u64::from(self.index.lines[i]), IssueKind::BadRow, e);
                return None;
            }
        };
        let bytes = match read_image_file(&row.image) {
            Ok(b) => b,
            Err((kind, why)) => {
                self.record(log, row.line, kind, why);
                return None;
            }
        };
        match decode_rgb8(&bytes) {
            Ok(img) => Some((row, img)),
            Err(e) => {
                self.record(log, row.line, IssueKind::Undecodable, format!("{}: {e}", row.image.display()));
                None
            }
        }
    }

    /// The first `n` readable pairs in file order, resized and centre-cropped, as an evaluation set for
    /// retrieval and embedding analysis (no zero-shot task: see [`crate::data::labels`] for class-labelled
    /// CSVs). Decoded in parallel on rayon's pool; [`EvalSet::skipped`] counts the rows and images the
    /// file's opening skipped and those the set's decoding skipped.
    pub fn eval_set(&self, n: usize, name: &str) -> EvalSet {
        let size = self.config.image_size;
        let mut set = EvalSet { name: name.into(), size, ..Default::default() };
        let log = IssueLog::default();
        let mut next = 0;
        while set.len() < n && next < self.usable_rows() {
            let chunk = next..(next + (n - set.len()).max(16)).min(self.usable_rows());
            next = chunk.end;
            let got: Vec<Option<(Row, Vec<u8>)>> = chunk
                .into_par_iter()
                .map(|i| self.decoded_row(i, Some(&log)).map(|(row, img)| (row, eval_rgb8(&img, size as u32))))
                .collect();
            for (row, pixels) in got.into_iter().flatten().take(n - set.len()) {
                set.pixels.extend(normalize_rgb8(&pixels, size));
                set.captions.push(row.caption);
            }
        }
        // What opening the file skipped (bad rows, missing images) and what decoding the set skipped.
        set.skipped = self.issues.snapshot();
        set.skipped.merge(log.snapshot());
        set
    }
}

/// The line that starts at byte `offset` of `file`, without its line end (at most [`MAX_LINE_BYTES`]).
fn read_line_at(file: &std::fs::File, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read_at(&mut chunk, offset + out.len() as u64)?;
        match chunk[..n].iter().position(|&b| b == b'\n') {
            Some(p) => {
                out.extend_from_slice(&chunk[..p]);
                break;
            }
            None => out.extend_from_slice(&chunk[..n]),
        }
        if n == 0 || out.len() > MAX_LINE_BYTES {
            break;
        }
    }
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    Ok(out)
}

/// The data lines of the configured file.
fn lines(config: &CsvConfig) -> Result<Rows<std::io::BufReader<std::fs::File>>, DataError> {
    let file = std::fs::File::open(&config.path)
        .map_err(|e| DataError(format!("cannot open CSV {}: {e}", config.path.display())))?;
    let layout = Layout {
        img_key: config.img_key.clone(),
        caption_key: config.caption_key.clone(),
        separator: config.separator,
    };
    rows(std::io::BufReader::new(file), &layout, &config.path.display().to_string())
}

impl SourceInfo for CsvSource {
    fn image_size(&self) -> usize {
        self.config.image_size
    }
    fn describe(&self) -> String {
        format!(
            "CSV {} ({} rows, {} usable before decoding; image column {:?}, caption column {:?})",
            self.config.path.display(),
            self.rows,
            self.usable_rows(),
            self.config.img_key,
            self.config.caption_key
        )
    }
    fn epoch_len(&self) -> Option<usize> {
        Some(self.usable_rows())
    }
    fn issues(&self) -> DataIssues {
        self.issues.snapshot()
    }
    fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }
}

impl IndexedSource for CsvSource {
    fn len(&self) -> usize {
        self.usable_rows()
    }
    /// The row at `position`, or a stand-in when its image is unreadable; RandomResizedCrop (scale
    /// 0.9–1.0) drawn per `(seed, epoch, position)`.
    fn example(&self, seed: u64, epoch: u64, order: &[u32], position: usize) -> Option<Example> {
        let n = order.len() as u64;
        let tries = std::iter::once(order[position] as usize).chain(
            (1..=STAND_IN_TRIES).map(|t| (hash(&[seed, tag::STAND_IN, epoch, position as u64, t]) % n) as usize),
        );
        for row in tries {
            self.decoded.fetch_add(1, Ordering::Relaxed);
            if let Some((row, img)) = self.decoded_row(row, None) {
                let crop = train_rgb8(
                    &img,
                    self.config.image_size as u32,
                    &mut rng_for(&[seed, tag::AUGMENT, epoch, position as u64]),
                );
                return Some(Example { pixels: Pixels::Rgb8(crop), caption: row.caption, id: row.written });
            }
        }
        None
    }
}
