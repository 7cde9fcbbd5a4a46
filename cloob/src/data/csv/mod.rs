//! open_clip's CSV format: one row per pair, an image path column and a caption column (names and
//! separator configurable; open_clip's defaults are `filepath`, `title` and a tab). Relative paths are
//! taken from the CSV file's directory.
//!
//! The file is streamed and images are decoded one at a time, so memory stays bounded whatever the size
//! of the data; a bounded shuffle buffer gives each epoch its own order. A bad row, a missing image or a
//! file that is not an image is skipped, counted and reported ([`DataIssues`]), once per row. One line is
//! one row: a quote left open is a bad row, never a caption running into the next lines ([`parse`]).

use super::rng::{rng_for, tag};
use super::transform::{center_crop, random_resized_crop, to_tensor, TRAIN_SCALE};
use super::{DataError, DataIssues, EvalSet, Example, IssueKind, IssueLog, TrainSource};
use rand::Rng;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod parse;
pub use parse::{rows, Layout, Line, Pair, Rows, MAX_LINE_BYTES};

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
    /// Pairs held in the shuffle buffer.
    pub shuffle_buffer: usize,
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
            shuffle_buffer: 1024,
        }
    }
}

/// A usable row: its line, the resolved image path and the caption.
#[derive(Clone, Debug)]
struct Row {
    line: u64,
    image: PathBuf,
    caption: String,
}

/// The CSV training source (and, through [`CsvSource::eval_set`], evaluation sets for retrieval).
#[derive(Clone, Debug)]
pub struct CsvSource {
    config: CsvConfig,
    rows: usize,
    usable_rows: usize,
    issues: IssueLog,
    reported: Arc<Mutex<HashSet<u64>>>,
}

impl CsvSource {
    /// Open `config.path`, check the header names both columns and count the rows (without decoding).
    pub fn open(config: CsvConfig) -> Result<Self, DataError> {
        let (mut rows, mut usable_rows) = (0, 0);
        for line in lines(&config)? {
            rows += 1;
            usable_rows += usize::from(line.row.is_ok());
        }
        Ok(CsvSource { config, rows, usable_rows, issues: IssueLog::default(), reported: Default::default() })
    }

    /// Data rows in the file (its non-blank lines after the header, usable or not).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows that parse (an image path and a non-empty caption); their images are not checked yet.
    pub fn usable_rows(&self) -> usize {
        self.usable_rows
    }

    /// Count an issue once per line.
    fn record(&self, line: u64, kind: IssueKind, reason: String) {
        if self.reported.lock().unwrap_or_else(|p| p.into_inner()).insert(line) {
            self.issues.record(kind, format!("line {line}: {reason}"));
        }
    }

    /// The usable rows in file order, bad ones counted into `log` (once per line when `log` is `None`,
    /// this source's own log).
    fn parsed_rows(&self, log: Option<IssueLog>) -> impl Iterator<Item = Row> + Send + 'static {
        let this = self.clone();
        let dir = self.config.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let record = move |line: u64, kind: IssueKind, reason: String| match &log {
            Some(log) => log.record(kind, format!("line {line}: {reason}")),
            None => this.record(line, kind, reason),
        };
        let lines = match lines(&self.config) {
            Ok(lines) => Some(lines),
            Err(e) => {
                record(0, IssueKind::BadRow, e.0);
                None
            }
        };
        lines.into_iter().flatten().filter_map(move |l| match l.row {
            Ok(pair) => Some(Row { line: l.line, image: dir.join(pair.image), caption: pair.caption }),
            Err(reason) => {
                record(l.line, IssueKind::BadRow, reason);
                None
            }
        })
    }

    /// Decode a row's image, or count why not into `log` (this source's own when `None`).
    fn decode(&self, row: &Row, log: Option<&IssueLog>) -> Option<image::RgbImage> {
        let record = |kind, e: &dyn std::fmt::Display| {
            let reason = format!("{}: {e}", row.image.display());
            match log {
                Some(log) => log.record(kind, format!("line {}: {reason}", row.line)),
                None => self.record(row.line, kind, reason),
            }
        };
        let reader = match image::ImageReader::open(&row.image) {
            Ok(r) => r,
            Err(e) => {
                record(IssueKind::MissingImage, &e);
                return None;
            }
        };
        match reader.with_guessed_format().map_err(image::ImageError::IoError).and_then(|r| r.decode()) {
            Ok(img) => Some(img.to_rgb8()),
            Err(e) => {
                record(IssueKind::Undecodable, &e);
                None
            }
        }
    }

    /// The first `n` readable pairs, resized and centre-cropped, as an evaluation set for retrieval and
    /// embedding analysis (no zero-shot task: see [`crate::data::labels`] for class-labelled CSVs). The
    /// rows and images skipped on the way are counted in the set's own [`EvalSet::skipped`].
    pub fn eval_set(&self, n: usize, name: &str) -> EvalSet {
        let size = self.config.image_size as u32;
        let mut set = EvalSet { name: name.into(), size: self.config.image_size, ..Default::default() };
        let log = IssueLog::default();
        for row in self.parsed_rows(Some(log.clone())) {
            if set.len() == n {
                break;
            }
            if let Some(img) = self.decode(&row, Some(&log)) {
                set.pixels.extend(to_tensor(&center_crop(&img, size)));
                set.captions.push(row.caption);
            }
        }
        set.skipped = log.snapshot();
        set
    }
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

impl TrainSource for CsvSource {
    fn image_size(&self) -> usize {
        self.config.image_size
    }
    fn describe(&self) -> String {
        format!(
            "CSV {} ({} rows, {} usable before decoding; image column {:?}, caption column {:?})",
            self.config.path.display(),
            self.rows,
            self.usable_rows,
            self.config.img_key,
            self.config.caption_key
        )
    }
    fn epoch_len(&self) -> Option<usize> {
        None
    }
    fn pairs_at_most(&self) -> Option<usize> {
        Some(self.usable_rows)
    }
    /// Rows decoded in file order through a bounded shuffle buffer, RandomResizedCrop (scale 0.9–1.0)
    /// drawn per (seed, epoch, line).
    fn epoch(&self, seed: u64, epoch: u64, skip: usize) -> Box<dyn Iterator<Item = Example> + Send> {
        let this = self.clone();
        let size = self.config.image_size as u32;
        let decoded = self.parsed_rows(None).filter_map(move |row| {
            let img = this.decode(&row, None)?;
            let crop =
                random_resized_crop(&img, size, TRAIN_SCALE, &mut rng_for(&[seed, tag::AUGMENT, epoch, row.line]));
            Some(Example { pixels: to_tensor(&crop), caption: row.caption })
        });
        // Skipping still decodes: which rows are valid is only known by reading them.
        Box::new(
            Shuffled {
                inner: decoded,
                buffer: Vec::new(),
                cap: self.config.shuffle_buffer.max(1),
                rng: rng_for(&[seed, tag::ORDER, epoch]),
            }
            .skip(skip),
        )
    }
    fn issues(&self) -> DataIssues {
        self.issues.snapshot()
    }
}

/// A bounded shuffle buffer (as webdataset's): fill to `cap`, then emit a random element per arrival.
struct Shuffled<I> {
    inner: I,
    buffer: Vec<Example>,
    cap: usize,
    rng: rand::rngs::StdRng,
}

impl<I: Iterator<Item = Example>> Iterator for Shuffled<I> {
    type Item = Example;
    fn next(&mut self) -> Option<Example> {
        while self.buffer.len() < self.cap {
            match self.inner.next() {
                Some(e) => self.buffer.push(e),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..self.buffer.len());
        Some(self.buffer.swap_remove(i))
    }
}
