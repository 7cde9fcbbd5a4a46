//! open_clip CSV data: a missing image, a bad row and a non-image file are counted and reported, the
//! good rows still train, and nothing panics. Fixtures are written into a temp dir by the test.

use cloob::data::csv::{CsvConfig, CsvSource};
use cloob::data::loader::Loader;
use cloob::data::TrainSource;
use image::{Rgb, RgbImage};
use std::sync::Arc;

fn fixture_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cloob-csv-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("img")).unwrap();
    dir
}

#[test]
fn missing_image_bad_row_and_non_image_are_counted_not_fatal() {
    let dir = fixture_dir("mixed");
    for (i, (w, h)) in [(40u32, 30u32), (20, 20), (64, 48)].iter().enumerate() {
        RgbImage::from_fn(*w, *h, |x, y| Rgb([(x * 4) as u8, (y * 5) as u8, (i * 80) as u8]))
            .save(dir.join(format!("img/{i}.png")))
            .unwrap();
    }
    std::fs::write(dir.join("img/notes.png"), b"this is not a png").unwrap();
    let csv = "filepath\ttitle\n\
               img/0.png\ta red square\n\
               img/missing.png\ta lost cat\n\
               just-one-field\n\
               img/1.png\ta green box\n\
               img/notes.png\ta text file\n\
               \ta row without a path\n\
               img/2.png\ta wide picture\n";
    std::fs::write(dir.join("train.csv"), csv).unwrap();

    let src = CsvSource::open(CsvConfig::new(dir.join("train.csv"), 16)).unwrap();
    assert_eq!(src.rows(), 7);
    let examples: Vec<_> = src.epoch(0, 0, 0).collect();
    let mut captions: Vec<_> = examples.iter().map(|e| e.caption.as_str()).collect();
    captions.sort();
    assert_eq!(captions, ["a green box", "a red square", "a wide picture"]);
    assert!(examples.iter().all(|e| e.pixels.len() == 3 * 16 * 16 && e.pixels.iter().all(|v| v.is_finite())));
    let issues = src.issues();
    assert_eq!((issues.bad_rows, issues.missing_images, issues.undecodable_images), (2, 1, 1), "{issues:?}");
    assert!(issues.examples.iter().any(|e| e.contains("missing.png")), "{:?}", issues.examples);
    assert!(issues.summary().contains("2 bad rows"));

    // A second epoch does not count the same rows again, and the loader still batches the good ones.
    let _: Vec<_> = src.epoch(0, 1, 0).collect();
    assert_eq!(src.issues().total(), 4);
    let batches: Vec<_> = Loader::new(Arc::new(src.clone()), 2, 0, 0, 1).take(3).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(src.eval_set(10, "val").len(), 3);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn custom_columns_and_clear_errors() {
    let dir = fixture_dir("cols");
    RgbImage::from_pixel(8, 8, Rgb([1, 2, 3])).save(dir.join("img/a.png")).unwrap();
    std::fs::write(dir.join("d.csv"), "caption,image\n\"a photo, with a comma\",img/a.png\n").unwrap();
    let mut cfg = CsvConfig::new(dir.join("d.csv"), 8);
    let err = CsvSource::open(cfg.clone()).unwrap_err().to_string();
    assert!(err.contains("no column \"filepath\""), "{err}");
    cfg.separator = b',';
    cfg.img_key = "image".into();
    cfg.caption_key = "caption".into();
    let ex: Vec<_> = CsvSource::open(cfg).unwrap().epoch(1, 0, 0).collect();
    assert_eq!(ex[0].caption, "a photo, with a comma");
    assert!(CsvSource::open(CsvConfig::new(dir.join("absent.csv"), 8))
        .unwrap_err()
        .to_string()
        .contains("cannot open CSV"));
    std::fs::remove_dir_all(&dir).ok();
}
