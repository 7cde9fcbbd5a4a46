//! MNIST-bags (Ilse et al. 2018, hflayers' third notebook) on MNIST or Fashion-MNIST IDX files.
//!
//! A bag is a random set of images; it is positive when it holds an image of the target class. Bag lengths
//! are `max(1, ⌊N(mean, var)⌋)` as in Ilse's `MnistBags` loader, whose `var_bag_length` is passed to
//! NumPy as the normal's *scale* (a standard deviation) — kept here so the numbers mean the same.

use super::data::{open_regular, Bag, MilDataset};
use super::error::{MilError, Result};
use hopfield::io::idx::{self, IdxArray};
use hopfield::HopfieldError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::path::Path;

/// The largest IDX file [`IdxImages::read`] reads (MNIST's training images are 47 MB).
pub const MAX_IDX_BYTES: u64 = 1 << 30;

/// Images and labels of one IDX pair (`*-images-idx3-ubyte[.gz]`, `*-labels-idx1-ubyte[.gz]`).
#[derive(Clone, Debug)]
pub struct IdxImages {
    /// Rows and columns of every image.
    pub rows: usize,
    pub cols: usize,
    /// Pixels, `[n, rows·cols]`, 0–255.
    pub pixels: Vec<u8>,
    /// Class of each image.
    pub labels: Vec<u8>,
}

impl IdxImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Image `i`'s pixels.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Read an image file and its label file (plain or gzipped) with [`hopfield::io::idx::read_idx`]. A file
    /// that cannot be read or is not an IDX array of the right rank and size is a [`MilError::Io`] naming it.
    ///
    /// A path that is not a regular file (a FIFO, a device, a folder) or is over [`MAX_IDX_BYTES`] is a
    /// [`MilError::File`] before it is read.
    pub fn read(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Self> {
        let (images, labels) = (images.as_ref(), labels.as_ref());
        for path in [images, labels] {
            open_regular(path, MAX_IDX_BYTES, "an IDX file (plain or gzipped)")?;
        }
        let read = |path: &Path, rank| {
            idx::read_idx(path, rank).map_err(|e| match e {
                HopfieldError::Io { path, source, .. } => MilError::Io { path, line: 0, source },
                other => other.into(),
            })
        };
        let IdxArray { dims: img_dims, data: pixels } = read(images, 3)?;
        let IdxArray { dims: lab_dims, data: classes } = read(labels, 1)?;
        if img_dims[0] != lab_dims[0] {
            return Err(MilError::Parse {
                path: labels.display().to_string(),
                line: 0,
                reason: format!("{} labels for {} images in {}", lab_dims[0], img_dims[0], images.display()),
            });
        }
        Ok(IdxImages { rows: img_dims[1], cols: img_dims[2], pixels, labels: classes })
    }
}

/// Settings of [`mnist_bags`] (the notebook's: target 9, mean length 10, var 2, 200 train / 50 test bags).
#[derive(Clone, Debug)]
pub struct MnistBagsConfig {
    /// The class whose presence makes a bag positive, 0–9.
    pub target: u8,
    /// Mean and spread (a standard deviation) of the bag length, in 1..=[`Self::MAX_LEN`] and
    /// 0..=[`Self::MAX_LEN`].
    pub mean_len: f64,
    pub var_len: f64,
    /// Number of bags, in 2..=[`Self::MAX_BAGS`].
    pub bags: usize,
}

impl Default for MnistBagsConfig {
    fn default() -> Self {
        MnistBagsConfig { target: 9, mean_len: 10.0, var_len: 2.0, bags: 200 }
    }
}

impl MnistBagsConfig {
    /// The largest mean bag length and spread.
    pub const MAX_LEN: f64 = 1000.0;
    /// The most bags of one set.
    pub const MAX_BAGS: usize = 100_000;
    /// The most images of one set, drawn or expected (bags × (mean + 4 spreads)): each is 784 `f64`s (6 kB)
    /// for MNIST, so 500 000 images are 3 GB.
    pub const MAX_IMAGES: usize = 500_000;

    /// Check every field; the error's setting is the field's name.
    pub fn validate(&self) -> Result<()> {
        let finite_in = |what, x: f64, lo: f64| {
            if x.is_finite() && (lo..=Self::MAX_LEN).contains(&x) {
                Ok(())
            } else {
                Err(MilError::setting(what, format!("must be a finite number in [{lo}, {}], got {x}", Self::MAX_LEN)))
            }
        };
        if self.target > 9 {
            return Err(MilError::setting("target", format!("must be a class 0–9, got {}", self.target)));
        }
        finite_in("mean_len", self.mean_len, 1.0)?;
        finite_in("var_len", self.var_len, 0.0)?;
        if !(2..=Self::MAX_BAGS).contains(&self.bags) {
            return Err(MilError::setting("bags", format!("must lie in 2..={}, got {}", Self::MAX_BAGS, self.bags)));
        }
        let expected = self.bags as f64 * (self.mean_len + 4.0 * self.var_len);
        if expected > Self::MAX_IMAGES as f64 {
            return Err(MilError::setting(
                "bags",
                format!(
                    "{} bags of mean length {} (spread {}) would hold about {expected:.0} images, more than {}",
                    self.bags,
                    self.mean_len,
                    self.var_len,
                    Self::MAX_IMAGES
                ),
            ));
        }
        Ok(())
    }
}

/// Draw bags of images from `images` (pixels scaled to [0, 1]; Ilse's loader also feeds raw [0, 1] pixels).
/// `cfg` is validated first ([`MnistBagsConfig::validate`]); more than [`MnistBagsConfig::MAX_IMAGES`]
/// images drawn is an error before they are copied.
pub fn mnist_bags(images: &IdxImages, cfg: &MnistBagsConfig, seed: u64) -> Result<MilDataset> {
    cfg.validate()?;
    if images.is_empty() {
        return Err(MilError::setting("images", "no images to draw bags from"));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let len_dist = Normal::new(cfg.mean_len, cfg.var_len).expect("validated bag-length distribution");
    let d = images.rows * images.cols;
    let mut drawn = 0usize;
    let bags = (0..cfg.bags)
        .map(|b| {
            let len = (len_dist.sample(&mut rng).floor() as i64).max(1) as usize;
            drawn += len;
            if drawn > MnistBagsConfig::MAX_IMAGES {
                return Err(MilError::setting(
                    "bags",
                    format!("more than {} images drawn by bag {b}", MnistBagsConfig::MAX_IMAGES),
                ));
            }
            let picks: Vec<usize> = (0..len).map(|_| rng.gen_range(0..images.len())).collect();
            let label = picks.iter().any(|&i| images.labels[i] == cfg.target);
            let mut instances = Vec::with_capacity(len * d);
            for &i in &picks {
                instances.extend(images.image(i).iter().map(|&p| p as f64 / 255.0));
            }
            Ok(Bag { id: format!("bag{b}"), label, instances, len, first_line: 0 })
        })
        .collect::<Result<_>>()?;
    Ok(MilDataset { name: format!("mnist_bags_{}", cfg.target), n_features: d, bags })
}
