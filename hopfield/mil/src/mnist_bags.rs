//! MNIST-bags (Ilse et al. 2018, hflayers' third notebook) on MNIST or Fashion-MNIST IDX files.
//!
//! A bag is a random set of images; it is positive when it holds an image of the target class. Bag lengths
//! are `max(1, ⌊N(mean, var)⌋)` as in Ilse's `MnistBags` loader, whose `var_bag_length` is passed to
//! NumPy as the normal's *scale* (a standard deviation) — kept here so the numbers mean the same.

use super::data::{Bag, MilDataset};
use super::error::{MilError, Result};
use hopfield::io::idx::{self, IdxArray};
use hopfield::HopfieldError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::path::Path;

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
    pub fn read(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Self> {
        let (images, labels) = (images.as_ref(), labels.as_ref());
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
    /// The class whose presence makes a bag positive.
    pub target: u8,
    /// Mean and spread of the bag length.
    pub mean_len: f64,
    pub var_len: f64,
    /// Number of bags.
    pub bags: usize,
}

impl Default for MnistBagsConfig {
    fn default() -> Self {
        MnistBagsConfig { target: 9, mean_len: 10.0, var_len: 2.0, bags: 200 }
    }
}

/// Draw bags of images from `images` (pixels scaled to [0, 1]; Ilse's loader also feeds raw [0, 1] pixels).
pub fn mnist_bags(images: &IdxImages, cfg: &MnistBagsConfig, seed: u64) -> MilDataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let len_dist = Normal::new(cfg.mean_len, cfg.var_len.max(0.0)).expect("finite bag-length distribution");
    let d = images.rows * images.cols;
    let bags = (0..cfg.bags)
        .map(|b| {
            let len = (len_dist.sample(&mut rng).floor() as i64).max(1) as usize;
            let picks: Vec<usize> = (0..len).map(|_| rng.gen_range(0..images.len())).collect();
            let label = picks.iter().any(|&i| images.labels[i] == cfg.target);
            let mut instances = Vec::with_capacity(len * d);
            for &i in &picks {
                instances.extend(images.image(i).iter().map(|&p| p as f64 / 255.0));
            }
            Bag { id: format!("bag{b}"), label, instances, len, first_line: 0 }
        })
        .collect();
    MilDataset { name: format!("mnist_bags_{}", cfg.target), n_features: d, bags }
}
