//! Reading and decoding image files: JPEG, PNG and WebP through the `image` crate, the format guessed
//! from the bytes (not the file name), with limits that hold before any pixel buffer is allocated.
//!
//! - Only regular files are opened: a FIFO, a device or a directory given as an image path is refused
//!   without opening it (reading a FIFO would block the loader).
//! - A file larger than [`MAX_FILE_BYTES`] is refused unread.
//! - An image of more than [`MAX_PIXELS`] pixels is refused from its header (PIL's decompression-bomb
//!   limit), whatever its colour type, and the decoder's own allocation limit stays on.
//! - A JPEG cut short (no end-of-image marker after its scan) is refused: the decoder would fill the
//!   missing rows with grey silently.

use super::IssueKind;
use image::{ImageReader, RgbImage};
use std::io::Cursor;
use std::path::Path;

/// The largest image file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The most pixels an image may have (PIL's `MAX_IMAGE_PIXELS` · 2, where PIL refuses to open).
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// The bytes of the image file at `path`, or why it cannot be read (missing, not a regular file, too large).
pub fn read_image_file(path: &Path) -> Result<Vec<u8>, (IssueKind, String)> {
    let missing = |e: &dyn std::fmt::Display| (IssueKind::MissingImage, format!("{}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| missing(&e))?;
    if !meta.is_file() {
        return Err(missing(&"not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err((
            IssueKind::Undecodable,
            format!("{}: {} bytes, more than the {MAX_FILE_BYTES} read for one image", path.display(), meta.len()),
        ));
    }
    std::fs::read(path).map_err(|e| missing(&e))
}

/// Decode an encoded image (JPEG, PNG or WebP, guessed from its first bytes) to 8-bit RGB.
pub fn decode_rgb8(bytes: &[u8]) -> Result<RgbImage, String> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let format = reader.format();
    if format.is_none() {
        return Err("not a JPEG, PNG or WebP file".into());
    }
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!("{w}×{h} pixels, more than the {MAX_PIXELS} decoded for one image"));
    }
    if format == Some(image::ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        return Err("truncated JPEG (no end-of-image marker after its scan data)".into());
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let img = reader.decode().map_err(|e| e.to_string())?;
    Ok(match img {
        image::DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// Whether a JPEG's scan data ends with an end-of-image marker (`FF D9`), as PIL requires unless told to
/// load truncated images. The JPEG decoder fills a cut-off scan with grey and reports no error, so a
/// file cut short in transit would be trained on. The marker segments before the first scan (start of
/// scan, `FF DA`) are skipped by their lengths (an EXIF thumbnail holds its own `FF D9`); inside scan data
/// an `FF` byte is followed by `00` or a restart marker, so `FF D9` there is the end of the image. Bytes
/// after it (some cameras append data) are allowed.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA {
            return bytes[i + 2..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        i += 2 + len;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: image::ImageFormat) -> Vec<u8> {
        let img = RgbImage::from_fn(9, 7, |x, y| image::Rgb([(x * 20) as u8, (y * 30) as u8, 77]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn jpeg_png_and_webp_decode_by_content_not_name() {
        for f in [image::ImageFormat::Jpeg, image::ImageFormat::Png, image::ImageFormat::WebP] {
            let img = decode_rgb8(&encoded(f)).unwrap_or_else(|e| panic!("{f:?}: {e}"));
            assert_eq!(img.dimensions(), (9, 7), "{f:?}");
        }
        assert!(decode_rgb8(b"plain text, not an image").unwrap_err().contains("not a JPEG"));
        let png = encoded(image::ImageFormat::Png);
        assert!(decode_rgb8(&png[..png.len() / 2]).is_err(), "a truncated PNG is an error");
    }

    #[test]
    fn a_truncated_jpeg_is_an_error_and_trailing_bytes_are_not() {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x ^ y) * 7) as u8]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        let jpeg = out.into_inner();
        decode_rgb8(&jpeg).unwrap();
        for cut in [jpeg.len() - 2, jpeg.len() * 3 / 4, jpeg.len() / 2] {
            let e = decode_rgb8(&jpeg[..cut]).unwrap_err();
            assert!(e.contains("truncated JPEG"), "cut at {cut} of {}: {e}", jpeg.len());
        }
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"camera maker's trailer");
        decode_rgb8(&trailing).unwrap();
    }

    #[test]
    fn non_regular_and_missing_files_are_refused_without_reading() {
        let dir = std::env::temp_dir();
        let (kind, why) = read_image_file(&dir).unwrap_err();
        assert_eq!(kind, IssueKind::MissingImage);
        assert!(why.contains("not a regular file"), "{why}");
        let (kind, _) = read_image_file(&dir.join("no-such-image-here.jpg")).unwrap_err();
        assert_eq!(kind, IssueKind::MissingImage);
    }
}
