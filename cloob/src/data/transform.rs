//! open_clip's image transforms, with torchvision's geometry and PIL's bicubic resampling: RandomResizedCrop
//! (scale 0.9–1.0) for training, Resize of the shorter side + CenterCrop for evaluation, then CLIP's
//! per-channel normalisation.
//!
//! # Shapes
//! Images come in as `image::RgbImage` (`[H, W, 3]` interleaved bytes). The transforms return `[3, S, S]`
//! channel-major bytes (`out[c * S * S + y * S + x]`), so that the decoding threads hand the training step
//! a quarter of the memory of `f32`; [`normalize_rgb8`] turns `[N, 3, S, S]` bytes into CLIP-normalised
//! `f32` of the same layout.
//!
//! # Resampling
//! PIL's `Image.resize(…, BICUBIC)` (torchvision's PIL backend, always antialiased) is a separable
//! convolution with the a = −0.5 cubic kernel whose support is stretched by the scale factor when
//! downsampling; `fast_image_resize`'s `Convolution(CatmullRom)` is the same kernel with the same support
//! and the same per-output normalised weights, in SIMD. We run its two passes in the order Pillow (≥ 13)
//! picks, each rounded to `u8` as PIL's are, so what remains is the coefficients' fixed-point precision
//! (at most 15 bits against PIL's 22): outputs within one level of PIL's, nearly all equal.

use std::cell::RefCell;

use fast_image_resize::images::{TypedCroppedImage, TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use rand::Rng;

/// CLIP's channel means (OpenAI's, used by open_clip and cloob).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's channel standard deviations.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// open_clip's training crop scale range.
pub const TRAIN_SCALE: (f64, f64) = (0.9, 1.0);

/// RandomResizedCrop's aspect-ratio range (torchvision's default, `(3/4, 4/3)`).
const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// RGB values in `[0, 1]` (`[3, S, S]` channel-major) → CLIP-normalised, in place.
pub fn normalize_chw(pixels: &mut [f32], size: usize) {
    let plane = size * size;
    for (c, chunk) in pixels.chunks_mut(plane).enumerate() {
        for v in chunk {
            *v = (*v - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
}

/// `[N, 3, S, S]` channel-major bytes → CLIP-normalised `f32` of the same layout, each value
/// `(v as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]` (bit for bit the f32 arithmetic of [`normalize_chw`]
/// after `/ 255.0`). A trailing partial plane is normalised as the channel it would be.
///
/// The 3 × 256 possible values are computed once per call and looked up: a load per value instead of two
/// divisions (0.09 against 0.125 ms per 224² image on one core).
pub fn normalize_rgb8(chw: &[u8], size: usize) -> Vec<f32> {
    let plane = size * size;
    if plane == 0 {
        return Vec::new();
    }
    let table: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]));
    let mut out = Vec::with_capacity(chw.len());
    for (i, chunk) in chw.chunks(plane).enumerate() {
        let t = &table[i % 3];
        out.extend(chunk.iter().map(|&v| t[usize::from(v)]));
    }
    out
}

/// A square RGB image (`[S, S, 3]`) → CLIP-normalised `[3, S, S]`.
///
/// # Panics
/// If the image is not square.
pub fn to_tensor(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    assert_eq!(w, h, "to_tensor takes square images");
    normalize_rgb8(&hwc_to_chw(img.as_raw(), w as usize * h as usize), w as usize)
}

/// A rectangle of whole pixels: columns `x..x + width`, rows `y..y + height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels (≥ 1).
    pub width: u32,
    /// Height in pixels (≥ 1).
    pub height: u32,
}

/// torchvision's `RandomResizedCrop.get_params` for a `width × height` image: up to 10 draws of an area
/// fraction in `scale` and a log-uniform aspect ratio in `[3/4, 4/3]`, sides `int(round(…))`, kept when the
/// box fits, top then left drawn uniformly (inclusive ranges); otherwise the central crop of the whole
/// image clamped to that ratio range. The box always lies inside the image and is at least 1×1.
///
/// # Panics
/// If `scale.0 > scale.1` or either is not finite (torch's `uniform_` refuses them too), or if the image is
/// empty.
pub fn random_crop_box(width: u32, height: u32, scale: (f64, f64), rng: &mut impl Rng) -> CropBox {
    assert!(width > 0 && height > 0, "random_crop_box of a {width}×{height} image");
    let area = f64::from(width) * f64::from(height);
    let (lo, hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(scale.0..=scale.1);
        let aspect = rng.gen_range(lo..=hi).exp();
        let w = py_round((target * aspect).sqrt());
        let h = py_round((target / aspect).sqrt());
        if 0.0 < w && w <= f64::from(width) && 0.0 < h && h <= f64::from(height) {
            let (w, h) = (w as u32, h as u32);
            let y = rng.gen_range(0..=height - h);
            let x = rng.gen_range(0..=width - w);
            return CropBox { x, y, width: w, height: h };
        }
    }
    // Fallback: torchvision's central crop, the whole image narrowed to the nearest allowed ratio.
    let in_ratio = f64::from(width) / f64::from(height);
    let (w, h) = if in_ratio < RATIO.0 {
        (width, (py_round(f64::from(width) / RATIO.0) as u32).clamp(1, height))
    } else if in_ratio > RATIO.1 {
        ((py_round(f64::from(height) * RATIO.1) as u32).clamp(1, width), height)
    } else {
        (width, height)
    };
    CropBox { x: (width - w) / 2, y: (height - h) / 2, width: w, height: h }
}

/// Training view: torchvision's `RandomResizedCrop(size, scale=TRAIN_SCALE, interpolation=BICUBIC)` (PIL
/// backend) → `[3, size, size]` channel-major bytes. The crop box is resampled straight from `img` (no copy
/// of the crop), with the crop's edges as the image's edges, as PIL's `crop` then `resize` has them.
pub fn train_rgb8(img: &RgbImage, size: u32, rng: &mut impl Rng) -> Vec<u8> {
    resized_crop_rgb8(img, random_crop_box(img.width().max(1), img.height().max(1), TRAIN_SCALE, rng), size)
}

/// torchvision's `F.resized_crop(img, b.y, b.x, b.height, b.width, [size, size], BICUBIC)` (PIL backend) →
/// `[3, size, size]` channel-major bytes: the box, taken as an image of its own, resampled to `size × size`.
/// A box reaching past the image is cut to it (an empty one gives zeros).
pub fn resized_crop_rgb8(img: &RgbImage, b: CropBox, size: u32) -> Vec<u8> {
    let x = b.x.min(img.width().saturating_sub(1));
    let y = b.y.min(img.height().saturating_sub(1));
    let b = CropBox { x, y, width: b.width.min(img.width() - x).max(1), height: b.height.min(img.height() - y).max(1) };
    resample_chw(img, b, Region::whole(b), size, (size, size))
}

/// Evaluation view: torchvision's `Resize(size, BICUBIC)` (shorter side to `size`, the longer to
/// `int(size * long / short)`) then `CenterCrop(size)` (offsets `int(round((side - size) / 2))`) →
/// `[3, size, size]` channel-major bytes. Only the output pixels that survive the crop are computed.
pub fn eval_rgb8(img: &RgbImage, size: u32) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let whole = CropBox { x: 0, y: 0, width: w, height: h };
    let (nw, nh, left, top) = eval_geometry(w, h, size);
    // Output column `left + i` of the full `nw`-wide resize samples around `(left + i + 0.5) * w / nw`.
    let (sx, sy) = (f64::from(w) / f64::from(nw), f64::from(h) / f64::from(nh));
    let x0 = f64::from(left) * sx;
    let y0 = f64::from(top) * sy;
    let region = Region {
        x: x0,
        y: y0,
        width: (f64::from(left + size) * sx).min(f64::from(w)) - x0,
        height: (f64::from(top + size) * sy).min(f64::from(h)) - y0,
    };
    resample_chw(img, whole, region, size, (nw, nh))
}

/// torchvision's `Resize(size)` + `CenterCrop(size)` geometry for a `w × h` image: the resized size
/// `(nw, nh)` and the crop's `(left, top)` in it. Sides are at least 1, and never below `size` (torchvision
/// would pad; that cannot happen for `size ≥ 1`).
fn eval_geometry(w: u32, h: u32, size: u32) -> (u32, u32, u32, u32) {
    let (w, h) = (w.max(1), h.max(1));
    let (short, long) = (w.min(h), w.max(h));
    let new_long = ((f64::from(size) * f64::from(long) / f64::from(short)) as u32).max(size);
    let (nw, nh) = if w <= h { (size, new_long) } else { (new_long, size) };
    let offset = |side: u32| py_round(f64::from(side - size) / 2.0) as u32;
    (nw, nh, offset(nw), offset(nh))
}

/// Python's `round` on a float (ties to even), as torchvision's `int(round(…))` uses it.
fn py_round(v: f64) -> f64 {
    v.round_ties_even()
}

/// A source rectangle in (possibly fractional) pixel coordinates of the image being resampled.
#[derive(Clone, Copy, Debug)]
struct Region {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

impl Region {
    /// All of `b`, in `b`'s own coordinates.
    fn whole(b: CropBox) -> Self {
        Region { x: 0.0, y: 0.0, width: f64::from(b.width), height: f64::from(b.height) }
    }
}

thread_local! {
    /// Each thread's resizer (it keeps its scratch buffers between images).
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// `len`, lowered by an ulp or two if need be so that `start + len` stays within `size` in floating point
/// (fast_image_resize refuses a crop box whose end lies past the image).
fn fit(start: f64, len: f64, size: u32) -> f64 {
    let mut len = len;
    while start + len > f64::from(size) {
        len = len.next_down();
    }
    len
}

/// PIL's `precompute_coeffs` bounds: the input samples `[first, last)` read by the `out` outputs of the
/// bicubic resampling of `[start, start + len)` on an axis of `in_size` samples.
fn support_range(in_size: u32, start: f64, len: f64, out: u32) -> (u32, u32) {
    let scale = len / f64::from(out);
    let support = 2.0 * scale.max(1.0);
    let first = (start + 0.5 * scale - support + 0.5).max(0.0) as u32;
    let last = ((start + (f64::from(out) - 0.5) * scale + support + 0.5) as u32).min(in_size);
    (first.min(last.saturating_sub(1)), last.max(1))
}

/// Bicubic resampling (PIL's) of `region` of the sub-image `view` of `img` (whose borders are the
/// resampling's borders) to `size × size`, returned as `[3, size, size]` bytes; `full` is the size PIL
/// resizes all of `view` to (`region` maps onto a `size × size` window of it), which picks PIL's pass order.
fn resample_chw(img: &RgbImage, view: CropBox, region: Region, size: u32, full: (u32, u32)) -> Vec<u8> {
    let plane = size as usize * size as usize;
    if plane == 0 {
        return Vec::new();
    }
    hwc_to_chw(&resample_hwc(img, view, region, (size, size), full), plane)
}

/// Pillow's choice of pass order (Pillow ≥ 13, `ImagingResampleInner`): vertical first when the height
/// shrinks by more than twice as many pixels as the width does; horizontal first otherwise (and always in
/// Pillow ≤ 12). The order matters at the last bit: the first pass is rounded to `u8`.
fn pil_vertical_first((in_w, in_h): (u32, u32), (out_w, out_h): (u32, u32)) -> bool {
    let dy = i64::from(in_h) - i64::from(out_h);
    dy > 0 && dy > 2 * (i64::from(in_w) - i64::from(out_w))
}

/// [`resample_chw`] to `out = (w, h)` (both ≥ 1), as `[h, w, 3]` bytes, with PIL's two passes in PIL's
/// order. Horizontal first: into `[rows, w, 3]` for the rows the vertical pass reads, then vertical.
/// Vertical first: fast_image_resize's own order for `u8` pixels in one call (vertical over the columns
/// the horizontal pass reads, then horizontal).
fn resample_hwc(img: &RgbImage, view: CropBox, region: Region, out: (u32, u32), full: (u32, u32)) -> Vec<u8> {
    let (out_w, out_h) = out;
    let mut hwc = vec![0u8; out_w as usize * out_h as usize * 3];
    if img.width() == 0 || img.height() == 0 {
        return hwc;
    }
    let src = TypedImageRef::<U8x3>::from_buffer(img.width(), img.height(), img.as_raw())
        .expect("an RgbImage's buffer holds its pixels");
    let alg = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
    let crop = |b: CropBox| TypedCroppedImage::from_ref(&src, b.x, b.y, b.width, b.height).expect("inside");
    RESIZER.with(|r| {
        let mut r = r.borrow_mut();
        let mut dst = TypedImage::<U8x3>::from_buffer(out_w, out_h, &mut hwc).expect("sized above");
        if pil_vertical_first((view.width, view.height), full) {
            let (w, h) = (fit(region.x, region.width, view.width), fit(region.y, region.height, view.height));
            let opts = alg.crop(region.x, region.y, w, h);
            r.resize_typed(&crop(view), &mut dst, &opts).expect("valid crop of the view");
            return;
        }
        let (first, last) = support_range(view.height, region.y, region.height, out_h);
        let rows = crop(CropBox { y: view.y + first, height: last - first, ..view });
        let mut tmp = vec![0u8; out_w as usize * (last - first) as usize * 3];
        let mut mid = TypedImage::<U8x3>::from_buffer(out_w, last - first, &mut tmp).expect("sized above");
        let h = alg.crop(region.x, 0.0, fit(region.x, region.width, view.width), f64::from(last - first));
        r.resize_typed(&rows, &mut mid, &h).expect("valid crop of the view");
        let mid = TypedImageRef::<U8x3>::from_buffer(out_w, last - first, &tmp).expect("sized above");
        let y = region.y - f64::from(first);
        let v = alg.crop(0.0, y, f64::from(out_w), fit(y, region.height, last - first));
        r.resize_typed(&mid, &mut dst, &v).expect("valid crop of the rows");
    });
    hwc
}

/// `[P, 3]` interleaved bytes → `[3, P]` planes, in one pass.
fn hwc_to_chw(hwc: &[u8], plane: usize) -> Vec<u8> {
    let mut out = vec![0u8; 3 * plane];
    let (r, gb) = out.split_at_mut(plane);
    let (g, b) = gb.split_at_mut(plane);
    for (((px, r), g), b) in hwc.chunks_exact(3).zip(r).zip(g).zip(b) {
        (*r, *g, *b) = (px[0], px[1], px[2]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng(seed: u64) -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(seed)
    }

    /// A smooth, non-constant test picture.
    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 + y) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8]))
    }

    #[test]
    fn crop_boxes_lie_inside_with_the_asked_area_and_ratio() {
        let mut r = rng(1);
        for &(w, h) in &[(640, 480), (480, 640), (500, 500), (1000, 400), (37, 53)] {
            for _ in 0..500 {
                let b = random_crop_box(w, h, TRAIN_SCALE, &mut r);
                assert!(b.width >= 1 && b.height >= 1 && b.x + b.width <= w && b.y + b.height <= h, "{b:?}");
                // torchvision's fallback when ten draws miss (certain for 1000×400, whose ratio is 2.5).
                let fw = if w * 3 > h * 4 { (f64::from(h) * 4.0 / 3.0).round_ties_even() as u32 } else { w };
                if b == (CropBox { x: (w - fw) / 2, y: 0, width: fw, height: h }) && w * 3 > h * 4 {
                    continue;
                }
                // Rounding each side moves the area and ratio by at most half a pixel per side.
                let (bw, bh) = (f64::from(b.width), f64::from(b.height));
                let area = f64::from(w) * f64::from(h);
                let slack = (bw + bh + 1.0) / 2.0;
                assert!(bw * bh >= 0.9 * area - slack && bw * bh <= area + slack, "{b:?} in {w}×{h}");
                let ratio = bw / bh;
                assert!(ratio >= 0.75 * (1.0 - 1.0 / bw.min(bh)) && ratio <= 4.0 / 3.0 * (1.0 + 1.0 / bw.min(bh)));
            }
        }
    }

    #[test]
    fn the_fallback_is_torchvisions_central_crop() {
        // No 90 %-area box with ratio ≤ 4/3 fits a 1-pixel-high strip: torchvision's central fallback.
        let b = random_crop_box(500, 1, TRAIN_SCALE, &mut rng(0));
        assert_eq!(b, CropBox { x: 249, y: 0, width: 1, height: 1 }); // w = round(1 · 4/3) = 1
        let b = random_crop_box(1, 500, TRAIN_SCALE, &mut rng(0));
        assert_eq!(b, CropBox { x: 0, y: 249, width: 1, height: 1 }); // h = round(1 / (3/4)) = 1
        let b = random_crop_box(300, 20, TRAIN_SCALE, &mut rng(0));
        assert_eq!(b, CropBox { x: 136, y: 0, width: 27, height: 20 }); // w = round(20 · 4/3) = 27
        let b = random_crop_box(20, 300, TRAIN_SCALE, &mut rng(0));
        assert_eq!(b, CropBox { x: 0, y: 136, width: 20, height: 27 }); // h = round(20 / 0.75) = 27
        let one = random_crop_box(1, 1, TRAIN_SCALE, &mut rng(0)); // every draw rounds to the whole pixel
        assert_eq!(one, CropBox { x: 0, y: 0, width: 1, height: 1 });
        // An area above the image's never fits; a ratio inside [3/4, 4/3] falls back to the whole image.
        let b = random_crop_box(40, 30, (2.0, 3.0), &mut rng(0));
        assert_eq!(b, CropBox { x: 0, y: 0, width: 40, height: 30 });
    }

    #[test]
    fn odd_shapes_give_the_asked_size() {
        for &(w, h) in &[(1, 1), (1, 500), (500, 1), (224, 224), (100, 60), (16, 16), (3, 900)] {
            let img = picture(w, h);
            for size in [1, 16, 224] {
                let n = 3 * size as usize * size as usize;
                assert_eq!(train_rgb8(&img, size, &mut rng(u64::from(w))).len(), n, "{w}×{h} → {size}");
                assert_eq!(eval_rgb8(&img, size).len(), n, "{w}×{h} → {size}");
            }
        }
        for (w, h, size) in (1..=13).flat_map(|w| (1..=13).flat_map(move |h| (1..=9).map(move |s| (w, h, s * 3)))) {
            let img = picture(w * 7, h * 5);
            let n = 3 * size as usize * size as usize;
            assert_eq!(train_rgb8(&img, size, &mut rng(u64::from(w * h))).len(), n);
            assert_eq!(eval_rgb8(&img, size).len(), n);
        }
        assert!(train_rgb8(&picture(5, 5), 0, &mut rng(0)).is_empty());
        assert!(eval_rgb8(&picture(5, 5), 0).is_empty());
    }

    #[test]
    fn an_image_of_the_output_size_is_returned_unchanged_by_eval() {
        let img = picture(16, 16);
        assert_eq!(eval_rgb8(&img, 16), hwc_to_chw(img.as_raw(), 256));
        // A taller one is only cropped, centred: rows 2..18 of 16×20.
        let img = picture(16, 20);
        let want = image::imageops::crop_imm(&img, 0, 2, 16, 16).to_image();
        assert_eq!(eval_rgb8(&img, 16), hwc_to_chw(want.as_raw(), 256));
    }

    #[test]
    fn normalize_rgb8_is_the_per_pixel_formula_bit_for_bit() {
        let chw: Vec<u8> = (0..2 * 3 * 16 * 16).map(|i| (i * 7 % 256) as u8).collect();
        let got = normalize_rgb8(&chw, 16);
        for (i, (&v, &g)) in chw.iter().zip(&got).enumerate() {
            let c = i / 256 % 3;
            assert_eq!(g.to_bits(), ((v as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]).to_bits());
        }
        // and `to_tensor` is it on the planes, as `normalize_chw` after `/ 255` was.
        let img = picture(9, 9);
        let mut old = vec![0.0f32; 3 * 81];
        for (x, y, p) in img.enumerate_pixels() {
            for c in 0..3 {
                old[c * 81 + (y * 9 + x) as usize] = p[c] as f32 / 255.0;
            }
        }
        normalize_chw(&mut old, 9);
        assert_eq!(to_tensor(&img), old);
    }

    #[test]
    fn boxes_past_the_image_are_cut_to_it() {
        let img = picture(40, 30);
        let inside = resized_crop_rgb8(&img, CropBox { x: 30, y: 20, width: 10, height: 10 }, 8);
        assert_eq!(resized_crop_rgb8(&img, CropBox { x: 30, y: 20, width: 99, height: 99 }, 8), inside);
        assert_eq!(resized_crop_rgb8(&img, CropBox { x: 99, y: 99, width: 0, height: 0 }, 8).len(), 3 * 64);
    }

    #[test]
    fn pass_order_is_pillow_13s() {
        // Observed on Pillow 13.0.0: vertical first iff Δh > 0 and Δh > 2 Δw (sizes as (w, h)).
        assert!(!pil_vertical_first((580, 537), (224, 224)));
        assert!(pil_vertical_first((300, 500), (224, 224)));
        assert!(!pil_vertical_first((500, 300), (224, 224)));
        assert!(pil_vertical_first((7, 300), (224, 224)));
        assert!(!pil_vertical_first((150, 100), (224, 224)));
        assert!(pil_vertical_first((400, 400), (300, 100)));
        assert!(!pil_vertical_first((400, 400), (100, 300)));
    }

    #[test]
    fn a_grey_image_stays_that_grey() {
        for &(w, h) in &[(1, 1), (7, 300), (640, 480), (100, 100)] {
            let img = RgbImage::from_pixel(w, h, image::Rgb([77, 77, 77]));
            assert!(train_rgb8(&img, 32, &mut rng(3)).iter().all(|&v| v == 77));
            assert!(eval_rgb8(&img, 32).iter().all(|&v| v == 77));
        }
    }

    #[test]
    fn eval_geometry_is_torchvisions() {
        // Resize: short → size, long → int(size * long / short); CenterCrop: int(round((side - size) / 2)).
        for &(w, h, size) in &[(640, 480, 224), (480, 640, 224), (500, 375, 224), (333, 1000, 224), (101, 37, 16)] {
            let (short, long) = (w.min(h), w.max(h));
            let new_long = (size as f64 * long as f64 / short as f64).floor() as u32;
            let (nw, nh) = if w <= h { (size, new_long) } else { (new_long, size) };
            let (left, top) =
                (((nw - size) as f64 / 2.0).round_ties_even(), ((nh - size) as f64 / 2.0).round_ties_even());
            assert_eq!(eval_geometry(w, h, size), (nw, nh, left as u32, top as u32), "{w}×{h}");
        }
        // Python's round: ties to even ((17 - 16) / 2 = 0.5 → 0, (19 - 16) / 2 = 1.5 → 2).
        assert_eq!(eval_geometry(17, 16, 16), (17, 16, 0, 0));
        assert_eq!(eval_geometry(16, 19, 16), (16, 19, 0, 2));
        assert_eq!(eval_geometry(640, 480, 224), (298, 224, 37, 0));
    }

    #[test]
    fn eval_is_the_full_resize_then_the_centre_crop() {
        // Resampling only the kept region gives the pixels of the whole resize, cropped (up to the one
        // level the coefficients' fixed-point precision, chosen from the largest weight, can move).
        for &(w, h) in &[(640, 480), (375, 500), (90, 31), (300, 224), (90, 400)] {
            let img = picture(w, h);
            let (nw, nh, left, top) = eval_geometry(w, h, 24);
            let whole = CropBox { x: 0, y: 0, width: w, height: h };
            let full = resample_hwc(&img, whole, Region::whole(whole), (nw, nh), (nw, nh));
            let got = eval_rgb8(&img, 24);
            let mut worst = 0;
            for (y, x, c) in (0..24).flat_map(|y| (0..24).flat_map(move |x| (0..3).map(move |c| (y, x, c)))) {
                let want = full[(((top + y) * nw + left + x) * 3 + c) as usize];
                worst = worst.max(got[(c * 576 + y * 24 + x) as usize].abs_diff(want));
            }
            assert!(worst <= 1, "{w}×{h}: {worst}");
        }
    }
}
