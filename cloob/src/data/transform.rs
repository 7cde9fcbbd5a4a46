//! open_clip's image transforms: RandomResizedCrop (scale 0.9–1.0, bicubic) for training, resize of the
//! shorter side + centre crop for evaluation, then CLIP's per-channel normalisation to `[3, S, S]`.

use image::imageops::{self, FilterType};
use image::RgbImage;
use rand::Rng;

/// CLIP's channel means (OpenAI's, used by open_clip and cloob).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's channel standard deviations.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// open_clip's training crop scale range.
pub const TRAIN_SCALE: (f64, f64) = (0.9, 1.0);

/// RGB values in `[0, 1]` (`[3, S, S]` channel-major) → CLIP-normalised, in place.
pub fn normalize_chw(pixels: &mut [f32], size: usize) {
    let plane = size * size;
    for (c, chunk) in pixels.chunks_mut(plane).enumerate() {
        for v in chunk {
            *v = (*v - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
}

/// A square RGB image → CLIP-normalised `[3, S, S]`.
pub fn to_tensor(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    assert_eq!(w, h, "to_tensor takes square images");
    let size = w as usize;
    let mut out = vec![0.0f32; 3 * size * size];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            out[c * size * size + y as usize * size + x as usize] = p[c] as f32 / 255.0;
        }
    }
    normalize_chw(&mut out, size);
    out
}

/// torchvision's RandomResizedCrop: a crop of `scale` of the area with aspect ratio in [3/4, 4/3],
/// resized to `size × size` (bicubic); after 10 failed draws a centre crop.
pub fn random_resized_crop(img: &RgbImage, size: u32, scale: (f64, f64), rng: &mut impl Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let area = (w as f64) * (h as f64);
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(scale.0..=scale.1);
        let aspect = rng.gen_range(lo..=hi).exp();
        let cw = (target * aspect).sqrt().round() as u32;
        let ch = (target / aspect).sqrt().round() as u32;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let x = rng.gen_range(0..=w - cw);
            let y = rng.gen_range(0..=h - ch);
            return imageops::resize(
                &imageops::crop_imm(img, x, y, cw, ch).to_image(),
                size,
                size,
                FilterType::CatmullRom,
            );
        }
    }
    center_crop(img, size)
}

/// Resize the shorter side to `size` (bicubic), then crop the centre `size × size`.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let short = w.min(h).max(1) as f64;
    let (nw, nh) = (
        ((w as f64) * size as f64 / short).round().max(size as f64) as u32,
        ((h as f64) * size as f64 / short).round().max(size as f64) as u32,
    );
    let resized = if (nw, nh) == (w, h) { img.clone() } else { imageops::resize(img, nw, nh, FilterType::CatmullRom) };
    imageops::crop_imm(&resized, (nw - size) / 2, (nh - size) / 2, size, size).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crops_have_the_requested_size_and_normalisation_is_clips() {
        let img = RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 128]));
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        assert_eq!(random_resized_crop(&img, 16, TRAIN_SCALE, &mut rng).dimensions(), (16, 16));
        assert_eq!(center_crop(&img, 16).dimensions(), (16, 16));
        let grey = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
        let t = to_tensor(&grey);
        assert!((t[0] - (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
        assert!((t[11] - (1.0 - CLIP_MEAN[2]) / CLIP_STD[2]).abs() < 1e-6);
    }
}
