//! open_clip's CSV format: one row per pair, an image path column and a caption column (names and
//! separator configurable; open_clip's defaults are `filepath`, `title` and a tab). Relative paths are
//! taken from the CSV file's directory.
//!
//! The file is streamed and images are decoded one at a time, so memory stays bounded whatever the size
//! of the data; a bounded shuffle buffer gives each epoch its own order. A bad row, a missing image or a
//! file that is not an image is skipped, counted and reported ([`DataIssues`]), once per row.

use super::rng::{rng_for, tag};
use super::transform::{center_crop, random_resized_crop, to_tensor, TRAIN_SCALE};
use super::{DataError, DataIssues, EvalSet, Example, IssueKind, IssueLog, TrainSource};
use rand::Rng;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// A parsed row: its line, the resolved image path and the caption.
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
    columns: (usize, usize),
    rows: usize,
    issues: IssueLog,
    reported: Arc<Mutex<HashSet<u64>>>,
}

impl CsvSource {
    /// Open `config.path`, check the header names both columns and count the rows (without decoding).
    pub fn open(config: CsvConfig) -> Result<Self, DataError> {
        let mut reader = reader(&config)?;
        let header = reader
            .headers()
            .map_err(|e| DataError(format!("{}: cannot read the header: {e}", config.path.display())))?;
        let find =
            |key: &str| {
                header.iter().position(|h| h == key).ok_or_else(|| {
                    DataError(format!(
            "{}: no column {key:?} (columns: {:?}; set --csv-img-key / --csv-caption-key / --csv-separator)",
            config.path.display(), header.iter().collect::<Vec<_>>()))
                })
            };
        let columns = (find(&config.img_key)?, find(&config.caption_key)?);
        let rows = reader.records().count();
        Ok(CsvSource { config, columns, rows, issues: IssueLog::default(), reported: Default::default() })
    }

    /// Data rows in the file (valid or not).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Count an issue once per line.
    fn record(&self, line: u64, kind: IssueKind, reason: String) {
        if self.reported.lock().unwrap_or_else(|p| p.into_inner()).insert(line) {
            self.issues.record(kind, format!("line {line}: {reason}"));
        }
    }

    /// The rows in file order, bad ones counted and skipped.
    fn parsed_rows(&self) -> impl Iterator<Item = Row> + Send + 'static {
        let this = self.clone();
        let dir = self.config.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let records = reader(&self.config).ok().into_iter().flat_map(|r| r.into_records());
        records.filter_map(move |rec| {
            let rec = match rec {
                Ok(rec) => rec,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    this.record(line, IssueKind::BadRow, format!("unreadable row: {e}"));
                    return None;
                }
            };
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let (i, c) = this.columns;
            match (rec.get(i).map(str::trim), rec.get(c)) {
                (Some(img), Some(caption)) if !img.is_empty() => {
                    Some(Row { line, image: dir.join(img), caption: caption.to_string() })
                }
                (Some(""), _) => {
                    this.record(line, IssueKind::BadRow, "empty image path".into());
                    None
                }
                _ => {
                    this.record(line, IssueKind::BadRow, format!("{} fields, the header has more", rec.len()));
                    None
                }
            }
        })
    }

    /// Decode a row's image, or count why not.
    fn decode(&self, row: &Row) -> Option<image::RgbImage> {
        let reader = match image::ImageReader::open(&row.image) {
            Ok(r) => r,
            Err(e) => {
                self.record(row.line, IssueKind::MissingImage, format!("{}: {e}", row.image.display()));
                return None;
            }
        };
        match reader.with_guessed_format().map_err(image::ImageError::IoError).and_then(|r| r.decode()) {
            Ok(img) => Some(img.to_rgb8()),
            Err(e) => {
                self.record(row.line, IssueKind::Undecodable, format!("{}: {e}", row.image.display()));
                None
            }
        }
    }

    /// The first `n` readable pairs, resized and centre-cropped, as an evaluation set for retrieval and
    /// embedding analysis (a CSV has no class labels, so no zero-shot task).
    pub fn eval_set(&self, n: usize, name: &str) -> EvalSet {
        let size = self.config.image_size as u32;
        let mut set = EvalSet { name: name.into(), size: self.config.image_size, ..Default::default() };
        for row in self.parsed_rows() {
            if set.len() == n {
                break;
            }
            if let Some(img) = self.decode(&row) {
                set.pixels.extend(to_tensor(&center_crop(&img, size)));
                set.captions.push(row.caption);
            }
        }
        set
    }
}

fn reader(config: &CsvConfig) -> Result<csv::Reader<std::fs::File>, DataError> {
    csv::ReaderBuilder::new()
        .delimiter(config.separator)
        .flexible(true)
        .has_headers(true)
        .from_path(&config.path)
        .map_err(|e| DataError(format!("cannot open CSV {}: {e}", config.path.display())))
}

impl TrainSource for CsvSource {
    fn image_size(&self) -> usize {
        self.config.image_size
    }
    fn describe(&self) -> String {
        format!(
            "CSV {} ({} rows; image column {:?}, caption column {:?})",
            self.config.path.display(),
            self.rows,
            self.config.img_key,
            self.config.caption_key
        )
    }
    fn epoch_len(&self) -> Option<usize> {
        None
    }
    /// Rows decoded in file order through a bounded shuffle buffer, RandomResizedCrop (scale 0.9–1.0)
    /// drawn per (seed, epoch, line).
    fn epoch(&self, seed: u64, epoch: u64, skip: usize) -> Box<dyn Iterator<Item = Example> + Send> {
        let this = self.clone();
        let size = self.config.image_size as u32;
        let decoded = self.parsed_rows().filter_map(move |row| {
            let img = this.decode(&row)?;
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
