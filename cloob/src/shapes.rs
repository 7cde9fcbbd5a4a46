//! A generated image–caption set for tests, benches and demos: coloured shapes on a noisy background,
//! captioned from templates ("a photo of a red circle", "a big blue square", …). Each image has a class,
//! its colour × shape, so a trained model can be scored zero-shot from class prompts.

use hopfield::{Backend, Element};
use rand::Rng;

/// The colours, with their RGB in `[0, 1]`.
pub const COLOURS: &[(&str, [f32; 3])] =
    &[("red", [0.9, 0.1, 0.1]), ("green", [0.1, 0.8, 0.2]), ("blue", [0.15, 0.25, 0.95]), ("yellow", [0.95, 0.9, 0.1])];
/// The shapes.
pub const SHAPES: &[&str] = &["square", "circle", "triangle"];

/// Caption templates: `{c}` colour, `{s}` shape, `{z}` size word.
const TEMPLATES: &[&str] = &[
    "a {c} {s}",
    "a photo of a {c} {s}",
    "a {z} {c} {s}",
    "a {s} that is {c}",
    "a drawing of a {c} {s}",
    "there is a {c} {s} in the picture",
    "a {c} {s} on a dark background",
];

/// Number of classes (colours × shapes).
pub fn num_classes() -> usize {
    COLOURS.len() * SHAPES.len()
}

/// The class names, `"{colour} {shape}"`, indexed by class.
pub fn class_names() -> Vec<String> {
    COLOURS.iter().flat_map(|(c, _)| SHAPES.iter().map(move |s| format!("{c} {s}"))).collect()
}

/// A batch of generated pairs.
#[derive(Clone, Debug)]
pub struct ShapesBatch {
    /// Pixels `[n, 3, size, size]` row-major, in `[-1, 1]`.
    pub pixels: Vec<f32>,
    /// One caption per image.
    pub captions: Vec<String>,
    /// One class (`colour · SHAPES.len() + shape`) per image.
    pub classes: Vec<usize>,
    /// Images.
    pub n: usize,
    /// Side in pixels.
    pub size: usize,
}

impl ShapesBatch {
    /// `n` pairs of `size × size` images drawn from `rng`.
    pub fn generate(rng: &mut impl Rng, n: usize, size: usize) -> Self {
        let mut pixels = Vec::with_capacity(n * 3 * size * size);
        let (mut captions, mut classes) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let (colour, shape) = (rng.gen_range(0..COLOURS.len()), rng.gen_range(0..SHAPES.len()));
            let big = rng.gen_bool(0.5);
            let side = size as f32 * if big { rng.gen_range(0.5..0.7) } else { rng.gen_range(0.3..0.45) };
            let (cx, cy) = (
                rng.gen_range(side / 2.0..size as f32 - side / 2.0),
                rng.gen_range(side / 2.0..size as f32 - side / 2.0),
            );
            let rgb = COLOURS[colour].1.map(|v| (v + rng.gen_range(-0.08..0.08)).clamp(0.0, 1.0));
            let background = rng.gen_range(0.05..0.3);
            let mut image = vec![0.0f32; 3 * size * size];
            for y in 0..size {
                for x in 0..size {
                    let (dx, dy) = ((x as f32 + 0.5 - cx) / (side / 2.0), (y as f32 + 0.5 - cy) / (side / 2.0));
                    let inside = match SHAPES[shape] {
                        "square" => dx.abs() <= 1.0 && dy.abs() <= 1.0,
                        "circle" => dx * dx + dy * dy <= 1.0,
                        _ => (-1.0..=1.0).contains(&dy) && dx.abs() <= (dy + 1.0) / 2.0,
                    };
                    for ch in 0..3 {
                        let v = if inside { rgb[ch] } else { background } + rng.gen_range(-0.05..0.05);
                        image[(ch * size + y) * size + x] = 2.0 * v.clamp(0.0, 1.0) - 1.0;
                    }
                }
            }
            pixels.extend(image);
            let template = TEMPLATES[rng.gen_range(0..TEMPLATES.len())];
            captions.push(
                template
                    .replace("{c}", COLOURS[colour].0)
                    .replace("{s}", SHAPES[shape])
                    .replace("{z}", if big { "big" } else { "small" }),
            );
            classes.push(colour * SHAPES.len() + shape);
        }
        ShapesBatch { pixels, captions, classes, n, size }
    }

    /// The images as a backend tensor `[n, 3, size, size]`.
    pub fn images<B: Backend>(&self, backend: &B) -> B::Tensor {
        let data = self.pixels.iter().map(|&v| B::Elem::of(v as f64)).collect();
        backend.from_vec(data, &[self.n, 3, self.size, self.size])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn batches_are_reproducible_and_captions_name_the_class() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let b = ShapesBatch::generate(&mut rng, 20, 16);
        assert_eq!(b.pixels.len(), 20 * 3 * 16 * 16);
        assert!(b.pixels.iter().all(|v| (-1.0..=1.0).contains(v)));
        let names = class_names();
        assert_eq!(names.len(), num_classes());
        for (caption, &class) in b.captions.iter().zip(&b.classes) {
            let (colour, shape) = names[class].split_once(' ').unwrap();
            assert!(caption.contains(colour) && caption.contains(shape), "{caption} for {}", names[class]);
        }
        let again = ShapesBatch::generate(&mut rand::rngs::StdRng::seed_from_u64(3), 20, 16);
        assert_eq!(again.captions, b.captions);
    }
}
