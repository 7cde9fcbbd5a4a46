//! Fashion-MNIST from Debian's `dataset-fashion-mnist` (gzipped IDX files), captioned from templates.
//!
//! 28×28 grey images are padded to 32×32 and repeated over the three channels. Training captions use
//! [`TRAIN_TEMPLATES`]; zero-shot evaluation uses [`EVAL_TEMPLATES`], none of which occurs in training.
//! The official train/test split is kept.

use super::rng::{permutation, rng_for, tag};
use super::transform::normalize_chw;
use super::{DataError, EvalSet, Example, IndexedSource, Pixels, SourceInfo, ZeroShotTask};
use hopfield::io::idx;
use hopfield::HopfieldError;
use rand::Rng;
use std::path::Path;
use std::sync::Arc;

/// Where Debian installs the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Side after padding.
pub const IMAGE_SIZE: usize = 32;
/// The ten classes, as captions name them.
pub const CLASSES: [&str; 10] =
    ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"];
/// Templates of the training captions.
pub const TRAIN_TEMPLATES: [&str; 6] = [
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a {} on a black background.",
    "a product photo of a {}.",
    "a low resolution photo of a {}.",
];
/// Templates kept for zero-shot evaluation.
pub const EVAL_TEMPLATES: [&str; 3] = ["a grayscale photo of the {}.", "a close-up picture of a {}.", "this is a {}."];

/// Images (`28 × 28` bytes each) and labels of one split.
#[derive(Clone, Debug)]
pub struct Split {
    /// Row-major bytes, 784 per image.
    pub images: Arc<Vec<u8>>,
    /// Class per image.
    pub labels: Arc<Vec<u8>>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Image `i` padded to 32×32, three channels, CLIP-normalised.
    pub fn pixels(&self, i: usize) -> Vec<f32> {
        let s = IMAGE_SIZE;
        let mut out = vec![0.0f32; 3 * s * s];
        let src = &self.images[i * 784..(i + 1) * 784];
        for c in 0..3 {
            for y in 0..28 {
                for x in 0..28 {
                    out[c * s * s + (y + 2) * s + x + 2] = src[y * 28 + x] as f32 / 255.0;
                }
            }
        }
        normalize_chw(&mut out, s);
        out
    }
}

/// Read `{prefix}-images-idx3-ubyte.gz` and `{prefix}-labels-idx1-ubyte.gz` (`prefix` = `train` or `t10k`).
pub fn load_split(dir: &Path, prefix: &str) -> Result<Split, DataError> {
    let images = read_idx(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")), 3)?;
    let labels = read_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")), 1)?;
    if images.len() != labels.len() * 784 {
        return Err(DataError(format!("{}: {} image bytes for {} labels", dir.display(), images.len(), labels.len())));
    }
    if let Some(bad) = labels.iter().find(|&&l| l as usize >= CLASSES.len()) {
        return Err(DataError(format!("{}: label {bad} out of range", dir.display())));
    }
    Ok(Split { images: Arc::new(images), labels: Arc::new(labels) })
}

/// The data of an IDX file of `rank` dimensions, read with [`hopfield::io::idx::read_idx`]; a missing file
/// says how to install the data set.
fn read_idx(path: &Path, rank: usize) -> Result<Vec<u8>, DataError> {
    idx::read_idx(path, rank).map(|a| a.data).map_err(|e| match e {
        HopfieldError::Io { source, .. } if !path.is_file() => DataError(format!(
            "cannot open {}: {source}. Fashion-MNIST comes from Debian: `apt-get install -y dataset-fashion-mnist` \
                 (or pass its directory with --fashion-dir)",
            path.display()
        )),
        other => DataError(other.to_string()),
    })
}

/// The training split as captioned pairs: a new order and a new template per image every epoch.
#[derive(Clone, Debug)]
pub struct FashionSource {
    /// The training split.
    pub train: Split,
}

impl SourceInfo for FashionSource {
    fn image_size(&self) -> usize {
        IMAGE_SIZE
    }
    fn describe(&self) -> String {
        format!(
            "Fashion-MNIST train: {} images, {} caption templates ({} held out for zero-shot)",
            self.train.len(),
            TRAIN_TEMPLATES.len(),
            EVAL_TEMPLATES.len()
        )
    }
    fn epoch_len(&self) -> Option<usize> {
        Some(self.train.len())
    }
}

impl IndexedSource for FashionSource {
    fn len(&self) -> usize {
        self.train.len()
    }
    fn example(&self, seed: u64, epoch: u64, order: &[u32], position: usize) -> Option<Example> {
        let i = order[position] as usize;
        let t = rng_for(&[seed, tag::CAPTION, epoch, i as u64]).gen_range(0..TRAIN_TEMPLATES.len());
        let caption = TRAIN_TEMPLATES[t].replace("{}", CLASSES[self.train.labels[i] as usize]);
        Some(Example { pixels: Pixels::Normalized(self.train.pixels(i)), caption, id: format!("train image {i}") })
    }
}

/// `n` images of `split` (a fixed, seed-independent subset when `n` is smaller) as an evaluation set
/// with the zero-shot task `fashion` over the held-out templates.
pub fn eval_set(split: &Split, n: usize, name: &str) -> EvalSet {
    let mut idx = permutation(split.len(), 0, tag::EVAL, 0);
    idx.truncate(n.min(split.len()));
    let mut pixels = Vec::with_capacity(idx.len() * 3 * IMAGE_SIZE * IMAGE_SIZE);
    for &i in &idx {
        pixels.extend(split.pixels(i));
    }
    let labels: Vec<usize> = idx.iter().map(|&i| split.labels[i] as usize).collect();
    EvalSet {
        name: name.into(),
        pixels,
        size: IMAGE_SIZE,
        captions: labels.iter().map(|&l| EVAL_TEMPLATES[0].replace("{}", CLASSES[l])).collect(),
        tasks: vec![ZeroShotTask {
            name: "fashion".into(),
            classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            templates: EVAL_TEMPLATES.iter().map(|t| t.to_string()).collect(),
            labels: labels.into_iter().map(Some).collect(),
            per_class: false,
        }],
        skipped: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn write_gz(path: &Path, bytes: &[u8]) {
        let mut e = GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap();
    }

    #[test]
    fn reads_idx_and_says_how_to_install_when_absent() {
        let dir = std::env::temp_dir().join(format!("cloob-fashion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = load_split(&dir, "train").unwrap_err().to_string();
        assert!(err.contains("apt-get install -y dataset-fashion-mnist"), "{err}");
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
        img.extend((0..2 * 784).map(|i| (i % 251) as u8));
        write_gz(&dir.join("train-images-idx3-ubyte.gz"), &img);
        write_gz(&dir.join("train-labels-idx1-ubyte.gz"), &[0, 0, 8, 1, 0, 0, 0, 2, 3, 9]);
        let split = load_split(&dir, "train").unwrap();
        assert_eq!(*split.labels, vec![3, 9]);
        assert_eq!(split.pixels(1).len(), 3 * 32 * 32);
        let ex = crate::data::epoch_examples(&FashionSource { train: split.clone() }, 1, 0);
        assert_eq!(ex.len(), 2);
        assert!(ex.iter().all(|e| e.caption.contains("dress") || e.caption.contains("ankle boot")));
        let set = eval_set(&split, 10, "t");
        assert_eq!(set.len(), 2);
        assert!(EVAL_TEMPLATES.iter().all(|t| !TRAIN_TEMPLATES.contains(t)));
        write_gz(&dir.join("train-labels-idx1-ubyte.gz"), &[0, 0, 8, 1, 0, 0, 0, 3, 3, 9]);
        let err = load_split(&dir, "train").unwrap_err().to_string();
        assert!(err.contains("train-labels-idx1-ubyte.gz"), "{err}");
        assert!(err.contains("need 3 bytes of data, the file has 2"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
