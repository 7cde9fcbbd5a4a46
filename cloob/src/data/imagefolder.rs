//! torchvision's `ImageFolder` layout, as ImageNet's validation set is usually laid out: one sub-folder
//! per class, sorted by name (class 0 is the first), the class's images inside. Files ending in `.jpg`,
//! `.jpeg`, `.png` or `.webp` (any case) are images; other files are ignored, as torchvision ignores
//! files without an image extension.
//!
//! Class names come from a file (`--class-names FILE`, one a line, in the sorted-folder order) or else
//! from the folder names with `_` read as a space. The zero-shot task uses open_clip's 80 ImageNet
//! templates ([`IMAGENET_TEMPLATES`]), each class's classifier weight averaged over them as open_clip's
//! `build_zero_shot_classifier` does.
//!
//! As a training source, an image's caption is one of the 80 templates filled with its class name,
//! drawn per `(seed, epoch, position)`.

use super::decode::{decode_rgb8, read_image_file};
use super::labels::IMAGENET_TEMPLATES;
use super::rng::{rng_for, tag};
use super::transform::{eval_rgb8, normalize_rgb8, train_rgb8};
use super::{DataError, EvalSet, Example, IndexedSource, Pixels, SourceInfo, ZeroShotTask};
use rand::Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// File name endings read as images (compared ignoring case).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// Classes with at most this many names report a per-class table.
const PER_CLASS_UP_TO: usize = 100;

/// An ImageFolder tree, listed (nothing decoded yet).
#[derive(Debug)]
pub struct ImageFolder {
    /// The tree's root.
    pub root: PathBuf,
    /// Class names, indexed by label (sorted-folder order).
    pub classes: Vec<String>,
    /// Every image with its label, class by class, each class's files sorted by name.
    pub images: Vec<(PathBuf, usize)>,
    /// Side of the square images it yields.
    pub image_size: usize,
    decoded: AtomicU64,
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError(format!("{what} {}: {e}", path.display()))
}

fn is_image(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    ext.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// The non-blank lines of a class-names file, trimmed.
fn read_names(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error("cannot read the class-names file", path, e))?;
    Ok(text.lines().map(|l| l.trim().trim_start_matches('\u{feff}').to_string()).filter(|l| !l.is_empty()).collect())
}

impl ImageFolder {
    /// List the tree at `root`: its class folders (at least two), each holding at least one image, with
    /// names from `class_names` (one a line, as many as folders) or the folder names. Errors name the
    /// path: a missing root, a root without class folders, an empty class, a names file of the wrong
    /// length.
    pub fn open(root: &Path, class_names: Option<&Path>, image_size: usize) -> Result<ImageFolder, DataError> {
        if image_size == 0 {
            return Err(DataError(format!("ImageFolder {}: image size must be positive", root.display())));
        }
        let entries = std::fs::read_dir(root).map_err(|e| io_error("cannot read the ImageFolder", root, e))?;
        let mut folders: Vec<(String, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot read the ImageFolder", root, e))?;
            // Follows links, as torchvision's `entry.is_dir()` does.
            if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
                folders.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
            }
        }
        folders.sort();
        if folders.len() < 2 {
            return Err(DataError(format!(
                "ImageFolder {}: {} class folder(s); the layout is one sub-folder per class (at least two), the \
                 class's images inside (DIR/CLASS/IMAGE.jpg)",
                root.display(),
                folders.len()
            )));
        }
        let mut images = Vec::new();
        for (label, (_, dir)) in folders.iter().enumerate() {
            let listed = std::fs::read_dir(dir).map_err(|e| io_error("cannot read the class folder", dir, e))?;
            let mut files: Vec<PathBuf> =
                listed.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_image(p)).collect();
            if files.is_empty() {
                return Err(DataError(format!(
                    "ImageFolder class folder {} holds no image (files ending in {})",
                    dir.display(),
                    IMAGE_EXTENSIONS.map(|e| format!(".{e}")).join(", ")
                )));
            }
            files.sort();
            images.extend(files.into_iter().map(|p| (p, label)));
        }
        let classes = match class_names {
            Some(file) => {
                let names = read_names(file)?;
                if names.len() != folders.len() {
                    return Err(DataError(format!(
                        "the class-names file {} has {} name(s) but the ImageFolder {} has {} class folders; give \
                         one name a line, in the sorted order of the folders ({} first)",
                        file.display(),
                        names.len(),
                        root.display(),
                        folders.len(),
                        folders[0].0
                    )));
                }
                names
            }
            None => folders.iter().map(|(name, _)| name.replace('_', " ")).collect(),
        };
        Ok(ImageFolder { root: root.to_path_buf(), classes, images, image_size, decoded: AtomicU64::new(0) })
    }

    /// The image at `path`, decoded, or an error naming it.
    fn decode(&self, path: &Path) -> Result<image::RgbImage, DataError> {
        self.decoded.fetch_add(1, Ordering::Relaxed);
        let bytes = read_image_file(path).map_err(|(_, why)| DataError(format!("ImageFolder image {why}")))?;
        decode_rgb8(&bytes).map_err(|e| io_error("ImageFolder image", path, e))
    }

    /// The indices of `n` images (all when `n` is at least their number), taken class by class in turn:
    /// the first image of each class, then the second, … so that a subset covers every class evenly.
    pub fn balanced(&self, n: usize) -> Vec<usize> {
        let mut rank = vec![0usize; self.images.len()];
        let mut seen = vec![0usize; self.classes.len()];
        for (i, (_, label)) in self.images.iter().enumerate() {
            rank[i] = seen[*label];
            seen[*label] += 1;
        }
        let mut order: Vec<usize> = (0..self.images.len()).collect();
        order.sort_by_key(|&i| (rank[i], self.images[i].1));
        order.truncate(n);
        order
    }

    /// An evaluation set `name` of `n` images ([`ImageFolder::balanced`]), resized and centre-cropped,
    /// with one zero-shot task `task` over the classes (open_clip's 80 templates) and the prompt
    /// `a photo of a CLASS.` as each image's caption (for retrieval). An unreadable image is an error
    /// naming its path.
    pub fn eval_set(&self, n: usize, name: &str, task: &str) -> Result<EvalSet, DataError> {
        let picked = self.balanced(n);
        let size = self.image_size;
        let decoded: Vec<Result<Vec<f32>, DataError>> = picked
            .par_iter()
            .map(|&i| Ok(normalize_rgb8(&eval_rgb8(&self.decode(&self.images[i].0)?, size as u32), size)))
            .collect();
        let mut set = EvalSet { name: name.into(), size, ..Default::default() };
        set.pixels.reserve(picked.len() * 3 * size * size);
        for pixels in decoded {
            set.pixels.extend(pixels?);
        }
        set.captions = picked.iter().map(|&i| format!("a photo of a {}.", self.classes[self.images[i].1])).collect();
        set.tasks.push(ZeroShotTask {
            name: task.into(),
            classes: self.classes.clone(),
            templates: IMAGENET_TEMPLATES.iter().map(|t| t.to_string()).collect(),
            labels: picked.iter().map(|&i| Some(self.images[i].1)).collect(),
            per_class: self.classes.len() <= PER_CLASS_UP_TO,
        });
        Ok(set)
    }
}

impl SourceInfo for ImageFolder {
    fn image_size(&self) -> usize {
        self.image_size
    }
    fn describe(&self) -> String {
        format!(
            "ImageFolder {} ({} images in {} classes; captions: open_clip's ImageNet templates)",
            self.root.display(),
            self.images.len(),
            self.classes.len()
        )
    }
    fn epoch_len(&self) -> Option<usize> {
        Some(self.images.len())
    }
    fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }
}

impl IndexedSource for ImageFolder {
    fn len(&self) -> usize {
        self.images.len()
    }
    /// The image at `position` (RandomResizedCrop drawn per `(seed, epoch, position)`), captioned by one
    /// of the 80 templates with its class name; `None` when it cannot be read.
    fn example(&self, seed: u64, epoch: u64, order: &[u32], position: usize) -> Option<Example> {
        let (path, label) = &self.images[order[position] as usize];
        let img = self.decode(path).ok()?;
        let mut rng = rng_for(&[seed, tag::AUGMENT, epoch, position as u64]);
        let crop = train_rgb8(&img, self.image_size as u32, &mut rng);
        let template = IMAGENET_TEMPLATES[rng.gen_range(0..IMAGENET_TEMPLATES.len())];
        let caption = template.replace("{}", &self.classes[*label]);
        Some(Example { pixels: Pixels::Rgb8(crop), caption, id: path.display().to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn tree(name: &str, classes: &[(&str, usize)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("cloob-imagefolder-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&root).ok();
        for (c, (class, n)) in classes.iter().enumerate() {
            std::fs::create_dir_all(root.join(class)).unwrap();
            for i in 0..*n {
                let px = Rgb([(c * 80) as u8, (i * 40) as u8, 100]);
                RgbImage::from_pixel(10, 8, px).save(root.join(class).join(format!("{i}.png"))).unwrap();
            }
        }
        root
    }

    #[test]
    fn classes_are_sorted_folders_with_underscores_as_spaces() {
        let root = tree("ok", &[("sea_lion", 3), ("cat", 2), ("dog", 1)]);
        std::fs::write(root.join("cat/notes.txt"), "not an image").unwrap();
        std::fs::write(root.join("README"), "a file beside the classes").unwrap();
        let f = ImageFolder::open(&root, None, 8).unwrap();
        assert_eq!(f.classes, ["cat", "dog", "sea lion"]);
        assert_eq!(f.images.iter().map(|(_, l)| *l).collect::<Vec<_>>(), [0, 0, 1, 2, 2, 2]);
        // Class by class in turn: cat 0, dog 0, sea lion 0, cat 1, sea lion 1, sea lion 2.
        assert_eq!(f.balanced(4), [0, 2, 3, 1]);
        let set = f.eval_set(100, "val", "imagenet").unwrap();
        assert_eq!((set.len(), set.pixels.len()), (6, 6 * 3 * 8 * 8));
        assert_eq!(set.tasks[0].templates.len(), 80);
        assert_eq!(set.tasks[0].labels, [0, 1, 2, 0, 2, 2].map(Some));
        assert_eq!(set.captions[2], "a photo of a sea lion.");
        let names = root.join("names.txt");
        std::fs::write(&names, "tabby cat\n\ngolden retriever\nCalifornia sea lion\n").unwrap();
        let f = ImageFolder::open(&root, Some(&names), 8).unwrap();
        assert_eq!(f.classes, ["tabby cat", "golden retriever", "California sea lion"]);
        let ex = crate::data::epoch_examples(&f, 0, 0);
        assert_eq!(ex.len(), 6);
        assert!(ex.iter().all(|e| f.classes.iter().any(|c| e.caption.contains(c.as_str()))));
    }

    #[test]
    fn bad_layouts_are_errors_naming_the_path() {
        let missing = ImageFolder::open(Path::new("/nonexistent/val"), None, 8).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/val"), "{missing}");
        let flat = tree("flat", &[]);
        std::fs::create_dir_all(&flat).unwrap();
        RgbImage::new(4, 4).save(flat.join("a.png")).unwrap();
        let e = ImageFolder::open(&flat, None, 8).unwrap_err().to_string();
        assert!(e.contains("0 class folder(s)") && e.contains(&flat.display().to_string()), "{e}");
        let empty = tree("empty", &[("a", 1), ("b", 0)]);
        let e = ImageFolder::open(&empty, None, 8).unwrap_err().to_string();
        assert!(e.contains("holds no image") && e.contains(&empty.join("b").display().to_string()), "{e}");
        let root = tree("names", &[("a", 1), ("b", 1)]);
        let names = root.join("names.txt");
        std::fs::write(&names, "one\ntwo\nthree\n").unwrap();
        let e = ImageFolder::open(&root, Some(&names), 8).unwrap_err().to_string();
        assert!(e.contains("has 3 name(s)") && e.contains("2 class folders") && e.contains("names.txt"), "{e}");
        let broken = root.join("b/broken.jpg");
        std::fs::write(&broken, b"not a jpeg").unwrap();
        let f = ImageFolder::open(&root, None, 8).unwrap();
        let e = f.eval_set(10, "val", "t").unwrap_err().to_string();
        assert!(e.contains(&broken.display().to_string()), "{e}");
    }
}
