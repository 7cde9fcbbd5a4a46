//! The embedded default data set: deterministic 32×32 scenes of one or two objects on textured
//! backgrounds, captioned from varied templates and synonyms.
//!
//! Every image has five independent attributes: the main object's shape, colour, size and horizontal
//! position, and the background texture. Captions usually name all of them, so a model that captures
//! only one (say colour) scores at chance on the others: the "explaining away" the CLOOB paper is
//! about. Some (shape, colour) combinations never occur in training ([`is_held_out`]); the test set has
//! them, for a compositional zero-shot test.

use super::rng::{hash, rng_for, tag};
use super::transform::normalize_chw;
use super::{EvalSet, Example, IndexedSource, Pixels, SourceInfo, ZeroShotTask};
use rand::Rng;

/// Side of the generated images.
pub const IMAGE_SIZE: usize = 32;
/// The scenes' own seed: the data set is the same for every run seed (runs differ in order and captions).
pub const DATA_SEED: u64 = 0x5CE7E;

/// Shapes (canonical name first, then synonyms used in captions).
pub const SHAPES: [&[&str]; 5] =
    [&["circle", "disk"], &["square", "box"], &["triangle", "wedge"], &["cross", "plus sign"], &["diamond", "rhombus"]];
/// Colours with synonyms.
pub const COLOURS: [&[&str]; 6] = [
    &["red", "scarlet"],
    &["green", "emerald"],
    &["blue", "azure"],
    &["yellow", "golden"],
    &["purple", "violet"],
    &["orange", "amber"],
];
const RGB: [[f32; 3]; 6] =
    [[0.9, 0.1, 0.1], [0.1, 0.75, 0.15], [0.15, 0.3, 0.95], [0.95, 0.9, 0.1], [0.6, 0.15, 0.8], [1.0, 0.55, 0.05]];
/// Sizes with synonyms.
pub const SIZES: [&[&str]; 2] = [&["small", "little", "tiny"], &["large", "big", "huge"]];
/// Horizontal positions with phrasings.
pub const POSITIONS: [&[&str]; 3] =
    [&["on the left", "at the left"], &["in the centre", "in the middle"], &["on the right", "at the right"]];
/// Background textures with phrasings.
pub const BACKGROUNDS: [&[&str]; 4] = [
    &["a striped background", "stripes"],
    &["a dotted background", "polka dots"],
    &["a checkered background", "a checkerboard"],
    &["a plain background", "a blank background"],
];

/// Whether the (shape, colour) pair is kept out of training: one colour per shape, 5 of 30 pairs.
pub fn is_held_out(shape: usize, colour: usize) -> bool {
    colour == (2 * shape + 1) % COLOURS.len()
}

/// One object of a scene.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Object {
    /// Index into [`SHAPES`].
    pub shape: usize,
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Index into [`SIZES`].
    pub size: usize,
    /// Index into [`POSITIONS`].
    pub position: usize,
}

/// A scene: a main object, maybe a second one elsewhere, a background, and the seed of its pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scene {
    /// The object the attribute labels describe.
    pub main: Object,
    /// A second object at another position.
    pub other: Option<Object>,
    /// Index into [`BACKGROUNDS`].
    pub background: usize,
    /// Seed of the texture, jitter and noise.
    pub pixel_seed: u64,
}

impl Scene {
    /// Draw a scene from `seed`; `allow_held_out` lets held-out (shape, colour) pairs occur (test sets),
    /// `second_object` is the probability of a second object.
    pub fn sample(seed: u64, allow_held_out: bool, second_object: f64) -> Scene {
        let mut rng = rng_for(&[seed]);
        let object = |rng: &mut rand::rngs::StdRng, position: usize| loop {
            let o = Object {
                shape: rng.gen_range(0..SHAPES.len()),
                colour: rng.gen_range(0..COLOURS.len()),
                size: rng.gen_range(0..SIZES.len()),
                position,
            };
            if allow_held_out || !is_held_out(o.shape, o.colour) {
                return o;
            }
        };
        let p = rng.gen_range(0..POSITIONS.len());
        let main = object(&mut rng, p);
        let other = rng.gen_bool(second_object).then(|| {
            let q = (p + rng.gen_range(1..POSITIONS.len())) % POSITIONS.len();
            object(&mut rng, q)
        });
        Scene { main, other, background: rng.gen_range(0..BACKGROUNDS.len()), pixel_seed: rng.gen() }
    }

    /// The caption, its wording drawn from `rng`.
    pub fn caption(&self, rng: &mut impl Rng) -> String {
        let pick = |rng: &mut dyn rand::RngCore, words: &[&str]| words[rng.gen_range(0..words.len())].to_string();
        let describe = |rng: &mut dyn rand::RngCore, o: &Object| {
            let shape = pick(rng, SHAPES[o.shape]);
            let colour = pick(rng, COLOURS[o.colour]);
            let size = pick(rng, SIZES[o.size]);
            let mut obj = match rng.gen_range(0..10) {
                0 => format!("{colour} {shape}"),
                1 => format!("{size} {shape} that is {colour}"),
                _ => format!("{size} {colour} {shape}"),
            };
            obj = with_article(&obj);
            if rng.gen_bool(0.85) {
                obj = format!("{obj} {}", pick(rng, POSITIONS[o.position]));
            }
            obj
        };
        let mut text = describe(rng, &self.main);
        if let Some(o) = &self.other {
            text = format!("{text} and {}", describe(rng, o));
        }
        const PREFIXES: [&str; 6] =
            ["", "a photo of ", "an image of ", "there is ", "a picture showing ", "a drawing of "];
        const JOINS: [&str; 3] = [" on ", " against ", " with "];
        let prefix = PREFIXES[rng.gen_range(0..PREFIXES.len())];
        if rng.gen_bool(0.8) {
            let join = JOINS[rng.gen_range(0..JOINS.len())];
            text = format!("{text}{join}{}", pick(rng, BACKGROUNDS[self.background]));
        }
        format!("{prefix}{text}")
    }

    /// The RGB image in `[0, 1]`, `[3, 32, 32]` channel-major (not normalised).
    pub fn render(&self) -> Vec<f32> {
        let s = IMAGE_SIZE;
        let mut rng = rng_for(&[self.pixel_seed]);
        let grey: f32 = rng.gen_range(0.2..0.65);
        let base: [f32; 3] = std::array::from_fn(|_| grey + rng.gen_range(-0.08..0.08));
        let contrast: f32 = rng.gen_range(0.15..0.25) * if grey > 0.45 { -1.0 } else { 1.0 };
        let period = rng.gen_range(4..7);
        let orientation = rng.gen_range(0..3);
        let phase = rng.gen_range(0..period);
        let mut img = vec![0.0f32; 3 * s * s];
        for y in 0..s {
            for x in 0..s {
                let on = match self.background {
                    0 => {
                        (match orientation {
                            0 => y,
                            1 => x,
                            _ => x + y,
                        } + phase)
                            % period
                            < period / 2
                    }
                    1 => (x + phase) % period == period / 2 && (y + phase) % period == period / 2,
                    2 => ((x + phase) / (period - 1) + (y + phase) / (period - 1)) % 2 == 0,
                    _ => false,
                };
                for c in 0..3 {
                    img[c * s * s + y * s + x] = base[c] + if on { contrast } else { 0.0 };
                }
            }
        }
        for o in [Some(self.main), self.other].into_iter().flatten() {
            draw(&mut img, &o, &mut rng);
        }
        for v in &mut img {
            *v = (*v + rng.gen_range(-0.03..0.03)).clamp(0.0, 1.0);
        }
        img
    }

    /// The CLIP-normalised image.
    pub fn pixels(&self) -> Vec<f32> {
        let mut img = self.render();
        normalize_chw(&mut img, IMAGE_SIZE);
        img
    }
}

/// "a"/"an" in front of a phrase.
fn with_article(phrase: &str) -> String {
    let vowel = phrase.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {phrase}", if vowel { "an" } else { "a" })
}

/// Whether the offset `(dx, dy)` (in radii, y downwards) lies inside `shape`.
fn inside(shape: usize, dx: f32, dy: f32) -> bool {
    match shape {
        0 => dx * dx + dy * dy <= 1.0,
        1 => dx.abs().max(dy.abs()) <= 0.8,
        2 => (-0.9..=0.8).contains(&dy) && dx.abs() <= (dy + 0.9) / 1.7,
        3 => (dx.abs() <= 0.33 && dy.abs() <= 1.0) || (dy.abs() <= 0.33 && dx.abs() <= 1.0),
        _ => dx.abs() + dy.abs() <= 1.0,
    }
}

/// Paint one object (2×2 supersampled coverage) with a jittered colour.
fn draw(img: &mut [f32], o: &Object, rng: &mut impl Rng) {
    let s = IMAGE_SIZE;
    let r: f32 = if o.size == 0 { rng.gen_range(3.5..5.0) } else { rng.gen_range(7.0..9.0) };
    let cx = [7.0, 16.0, 25.0][o.position] + rng.gen_range(-1.0..1.0);
    let cy = rng.gen_range(r.min(15.0)..(s as f32 - r).max(17.0));
    let rgb: [f32; 3] = std::array::from_fn(|c| (RGB[o.colour][c] + rng.gen_range(-0.07..0.07)).clamp(0.0, 1.0));
    for y in 0..s {
        for x in 0..s {
            let mut cover = 0.0;
            for (ox, oy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                if inside(o.shape, (x as f32 + ox - cx) / r, (y as f32 + oy - cy) / r) {
                    cover += 0.25;
                }
            }
            if cover > 0.0 {
                for c in 0..3 {
                    let v = &mut img[c * s * s + y * s + x];
                    *v = *v * (1.0 - cover) + rgb[c] * cover;
                }
            }
        }
    }
}

/// Write a synthetic ImageFolder tree ([`crate::data::imagefolder`]) under `root`: one folder per colour
/// (`red`, `green`, … the canonical names of [`COLOURS`]) holding `per_class` PNGs of single-object
/// scenes of that colour, their shape, size, position and background drawn from `seed` (held-out
/// shape×colour pairs included). The colour is what the embedded set's captions teach first, so a model
/// trained on it classifies these folders zero-shot. Returns the number of images written.
pub fn write_image_folder(root: &std::path::Path, per_class: usize, seed: u64) -> Result<usize, super::DataError> {
    let s = IMAGE_SIZE;
    let mut written = 0;
    for (c, names) in COLOURS.iter().enumerate() {
        let dir = root.join(names[0]);
        std::fs::create_dir_all(&dir)
            .map_err(|e| super::DataError(format!("cannot create the folder {}: {e}", dir.display())))?;
        for i in 0..per_class {
            let mut scene = Scene::sample(hash(&[seed, tag::EVAL, c as u64, i as u64]), true, 0.0);
            scene.main.colour = c;
            let px = scene.render();
            let img = image::RgbImage::from_fn(s as u32, s as u32, |x, y| {
                let at =
                    |ch: usize| (px[ch * s * s + y as usize * s + x as usize] * 255.0).round().clamp(0.0, 255.0) as u8;
                image::Rgb([at(0), at(1), at(2)])
            });
            let path = dir.join(format!("{i:05}.png"));
            img.save(&path).map_err(|e| super::DataError(format!("cannot write {}: {e}", path.display())))?;
            written += 1;
        }
    }
    Ok(written)
}

/// The training stream: `len` fixed scenes (a third with a second object), no held-out pair, in a new
/// order with new caption wordings every epoch.
#[derive(Clone, Debug)]
pub struct SceneSource {
    /// Scenes per epoch.
    pub len: usize,
}

impl SourceInfo for SceneSource {
    fn image_size(&self) -> usize {
        IMAGE_SIZE
    }
    fn describe(&self) -> String {
        let held_out = "5 attributes, 5 of 30 shape×colour pairs held out";
        format!("embedded scenes: {} generated 32×32 captioned images per epoch ({held_out})", self.len)
    }
    fn epoch_len(&self) -> Option<usize> {
        Some(self.len)
    }
}

impl IndexedSource for SceneSource {
    fn len(&self) -> usize {
        self.len
    }
    fn example(&self, seed: u64, epoch: u64, order: &[u32], position: usize) -> Option<Example> {
        let i = u64::from(order[position]);
        let scene = Scene::sample(hash(&[DATA_SEED, tag::SCENE, i]), false, 0.35);
        let caption = scene.caption(&mut rng_for(&[seed, tag::CAPTION, epoch, i]));
        Some(Example { pixels: Pixels::Normalized(scene.pixels()), caption, id: format!("scene {i}") })
    }
}

/// The test set: `n` single-object scenes over all 30 pairs, with zero-shot tasks per attribute and for
/// the (colour, shape) pair on seen and on held-out pairs separately. The same for every run.
pub fn eval_set(n: usize) -> EvalSet {
    let scenes: Vec<Scene> =
        (0..n).map(|i| Scene::sample(hash(&[DATA_SEED, tag::EVAL, i as u64]), true, 0.0)).collect();
    let mut pixels = Vec::with_capacity(n * 3 * IMAGE_SIZE * IMAGE_SIZE);
    let mut captions = Vec::with_capacity(n);
    for (i, s) in scenes.iter().enumerate() {
        pixels.extend(s.pixels());
        captions.push(s.caption(&mut rng_for(&[DATA_SEED, tag::EVAL, tag::CAPTION, i as u64])));
    }
    let names = |table: &[&[&str]]| table.iter().map(|w| w[0].to_string()).collect::<Vec<_>>();
    let task =
        |name: &str, classes: Vec<String>, templates: &[&str], label: &dyn Fn(&Scene) -> Option<usize>| ZeroShotTask {
            name: name.into(),
            classes,
            templates: templates.iter().map(|t| t.to_string()).collect(),
            labels: scenes.iter().map(label).collect(),
            per_class: false,
        };
    let pairs: Vec<String> =
        (0..COLOURS.len()).flat_map(|c| SHAPES.iter().map(move |s| format!("{} {}", COLOURS[c][0], s[0]))).collect();
    let pair = |s: &Scene| s.main.colour * SHAPES.len() + s.main.shape;
    let tasks = vec![
        task("shape", names(&SHAPES), &["a photo of a {}.", "a drawing of a {}.", "a {} shape."], &|s| {
            Some(s.main.shape)
        }),
        task("colour", names(&COLOURS), &["a photo of a {} object.", "a {} shape.", "something {}."], &|s| {
            Some(s.main.colour)
        }),
        task("size", names(&SIZES), &["a photo of a {} object.", "a {} shape."], &|s| Some(s.main.size)),
        task("position", names(&POSITIONS), &["a photo of an object {}.", "a shape {}."], &|s| Some(s.main.position)),
        task("background", names(&BACKGROUNDS), &["a shape on {}.", "a photo of an object against {}."], &|s| {
            Some(s.background)
        }),
        task("pair-seen", pairs.clone(), &["a photo of a {}.", "a {}."], &|s| {
            (!is_held_out(s.main.shape, s.main.colour)).then(|| pair(s))
        }),
        task("pair-held-out", pairs, &["a photo of a {}.", "a {}."], &|s| {
            is_held_out(s.main.shape, s.main.colour).then(|| pair(s))
        }),
    ];
    EvalSet { name: "embedded-test".into(), pixels, size: IMAGE_SIZE, captions, tasks, skipped: Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::epoch_examples;

    #[test]
    fn same_seed_same_data_other_seed_other_order() {
        let src = SceneSource { len: 64 };
        let a = epoch_examples(&src, 7, 0);
        let b = epoch_examples(&src, 7, 0);
        assert!(a.iter().zip(&b).all(|(x, y)| x.pixels == y.pixels && x.caption == y.caption));
        let c = epoch_examples(&src, 8, 0);
        assert!(a.iter().zip(&c).any(|(x, y)| x.caption != y.caption));
        let d = epoch_examples(&src, 7, 1);
        assert!(a.iter().zip(&d).any(|(x, y)| x.pixels != y.pixels), "a new order each epoch");
        assert_eq!(eval_set(20).pixels, eval_set(20).pixels);
    }

    #[test]
    fn attributes_are_spread_and_held_out_pairs_absent_from_training() {
        let mut seen = [[0usize; 6]; 5];
        for i in 0..3000u64 {
            let s = Scene::sample(hash(&[DATA_SEED, tag::SCENE, i]), false, 0.35);
            for o in [Some(s.main), s.other].into_iter().flatten() {
                assert!(!is_held_out(o.shape, o.colour));
                seen[o.shape][o.colour] += 1;
            }
        }
        let held: usize = (0..5).flat_map(|s| (0..6).map(move |c| (s, c))).filter(|&(s, c)| is_held_out(s, c)).count();
        assert_eq!(held, 5);
        for s in 0..5 {
            for c in 0..6 {
                assert_eq!(seen[s][c] == 0, is_held_out(s, c), "shape {s} colour {c}");
            }
        }
        let set = eval_set(300);
        let held_task = set.tasks.iter().find(|t| t.name == "pair-held-out").unwrap();
        assert!(held_task.labels.iter().flatten().count() > 20);
        assert_eq!(set.pixels.len(), 300 * 3 * 32 * 32);
    }

    #[test]
    fn captions_name_the_attributes() {
        let s = Scene {
            main: Object { shape: 0, colour: 2, size: 1, position: 0 },
            other: None,
            background: 0,
            pixel_seed: 1,
        };
        let mut rng = rng_for(&[3]);
        let caps: Vec<String> = (0..50).map(|_| s.caption(&mut rng)).collect();
        assert!(caps.iter().all(|c| c.contains("circle") || c.contains("disk")), "{caps:?}");
        assert!(caps.iter().filter(|c| c.contains("left")).count() > 30);
        assert!(caps.iter().any(|c| c.contains("stripes") || c.contains("striped")));
        let distinct: std::collections::HashSet<_> = caps.iter().collect();
        assert!(distinct.len() > 20, "varied wording");
    }
}
