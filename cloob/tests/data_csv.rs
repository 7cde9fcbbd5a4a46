//! open_clip CSV data: a missing image, a bad row and a non-image file are counted and reported, the
//! good rows still train, and nothing panics; epochs are permutations of the rows, a loader started at
//! any step (in any epoch) gives the uninterrupted run's batches without decoding what it skips, for any
//! number of workers, and each rank decodes only its rows. Fixtures are written into a temp dir.

use cloob::data::csv::{CsvConfig, CsvSource};
use cloob::data::loader::{Batch, Loader, LoaderConfig};
use cloob::data::{epoch_examples, SourceInfo, TrainData};
use image::{Rgb, RgbImage};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloob-csv-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(dir.join("img")).unwrap();
    dir
}

/// `n` small JPEGs of different sizes and a CSV naming them in order, with captions `pair i`.
fn corpus(dir: &Path, n: usize) -> PathBuf {
    let mut csv = String::from("filepath\ttitle\n");
    for i in 0..n {
        let (w, h) = (24 + (i as u32 * 7) % 30, 20 + (i as u32 * 11) % 26);
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 9 + i as u32) as u8, (y * 7) as u8, (i * 23) as u8]))
            .save(dir.join(format!("img/{i:03}.jpg")))
            .unwrap();
        csv += &format!("img/{i:03}.jpg\tpair {i}\n");
    }
    std::fs::write(dir.join("train.csv"), csv).unwrap();
    dir.join("train.csv")
}

fn open(path: &Path, size: usize) -> CsvSource {
    CsvSource::open(CsvConfig::new(path, size)).unwrap()
}

fn load(src: &CsvSource, cfg: LoaderConfig, start: u64, n: usize) -> Vec<Batch> {
    Loader::new(TrainData::Indexed(Arc::new(src.clone())), cfg, start, None).unwrap().take(n).collect()
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

    let src = open(&dir.join("train.csv"), 16);
    assert_eq!((src.rows(), src.usable_rows()), (7, 4), "the missing image is known at open");
    let issues = src.issues();
    assert_eq!((issues.bad_rows, issues.missing_images, issues.undecodable_images), (2, 1, 0), "{issues:?}");
    assert!(issues.examples.iter().any(|e| e.contains("missing.png")), "{:?}", issues.examples);
    assert!(issues.summary().contains("2 bad rows"));

    // The non-image is found when decoded: counted once, and its position takes a stand-in.
    let examples = epoch_examples(&src, 0, 0);
    assert_eq!(examples.len(), 4);
    let captions: BTreeSet<_> = examples.iter().map(|e| e.caption.as_str()).collect();
    assert!(!captions.contains("a text file"));
    assert_eq!(captions.len(), 3, "{captions:?}");
    assert!(examples.iter().all(|e| e.pixels.len() == 3 * 16 * 16));
    assert!(src.issues().examples.iter().any(|e| e.contains("notes.png")), "{:?}", src.issues());
    assert_eq!(src.issues().undecodable_images, 1);

    // A second epoch does not count the same rows again, and the loader still batches the good ones.
    epoch_examples(&src, 0, 1);
    assert_eq!(src.issues().total(), 4);
    assert_eq!(load(&src, LoaderConfig::new(2, 0, 1), 0, 3).len(), 3);
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
    let ex = epoch_examples(&CsvSource::open(cfg).unwrap(), 1, 0);
    assert_eq!(ex[0].caption, "a photo, with a comma");
    assert!(CsvSource::open(CsvConfig::new(dir.join("absent.csv"), 8))
        .unwrap_err()
        .to_string()
        .contains("cannot open CSV"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_epoch_is_a_permutation_of_the_rows_and_each_epoch_another() {
    let dir = fixture_dir("perm");
    let src = open(&corpus(&dir, 40), 8);
    assert_eq!(src.epoch_len(), Some(40));
    let ids = |epoch| epoch_examples(&src, 3, epoch).into_iter().map(|e| e.id).collect::<Vec<_>>();
    let (a, b) = (ids(0), ids(1));
    let all: BTreeSet<_> = a.iter().collect();
    assert_eq!(all.len(), 40, "every row once");
    assert_eq!(all, b.iter().collect());
    assert_ne!(a, b);
    let file_order: Vec<String> = (0..40).map(|i| format!("img/{i:03}.jpg")).collect();
    assert_ne!(a, file_order);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_loader_started_in_a_later_epoch_gives_the_same_batches_and_decodes_nothing_to_get_there() {
    let dir = fixture_dir("resume");
    let path = corpus(&dir, 10);
    let cfg = LoaderConfig::new(4, 7, 1);
    // 10 rows, 4 a batch: step 6 is in epoch 2 (positions 24..28).
    let full = load(&open(&path, 8), cfg, 0, 8);
    assert_eq!(full[6].epoch, 2);
    let late = open(&path, 8);
    let resumed = load(&late, cfg, 6, 2);
    for (a, b) in full[6..].iter().zip(&resumed) {
        assert_eq!((a.step, a.epoch, &a.ids, &a.captions), (b.step, b.epoch, &b.ids, &b.captions));
        assert_eq!(a.pixels, b.pixels);
    }
    // Only the batches made (2 taken, at most prefetch + 1 more in flight) are decoded, at any step.
    for start in [10, 1000] {
        let src = open(&path, 8);
        let mut loader = Loader::new(TrainData::Indexed(Arc::new(src.clone())), cfg, start, None).unwrap();
        assert_eq!(loader.next().unwrap().step, start);
        drop(loader);
        assert!(src.decoded() <= 4 * (cfg.prefetch as u64 + 2), "step {start}: {} decoded", src.decoded());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn batches_are_the_same_for_any_number_of_workers() {
    let dir = fixture_dir("workers");
    let path = corpus(&dir, 30);
    let one = load(&open(&path, 16), LoaderConfig::new(8, 1, 1), 0, 6);
    for workers in [2, 3] {
        let many = load(&open(&path, 16), LoaderConfig::new(8, 1, workers), 0, 6);
        for (a, b) in one.iter().zip(&many) {
            assert_eq!((&a.ids, &a.captions, a.epoch), (&b.ids, &b.captions, b.epoch), "{workers} workers");
            assert_eq!(a.pixels, b.pixels, "{workers} workers");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn each_rank_decodes_only_its_rows_of_each_global_batch() {
    let dir = fixture_dir("ranks");
    let path = corpus(&dir, 24);
    let whole = load(&open(&path, 8), LoaderConfig::new(8, 2, 1), 0, 5);
    let ranks: Vec<(CsvSource, Vec<Batch>)> = (0..2)
        .map(|rank| {
            let src = open(&path, 8);
            let cfg = LoaderConfig { rank, ranks: 2, prefetch: 1, ..LoaderConfig::new(8, 2, 1) };
            let mut loader = Loader::new(TrainData::Indexed(Arc::new(src.clone())), cfg, 0, None).unwrap();
            let batches: Vec<Batch> = loader.by_ref().take(5).collect();
            drop(loader);
            (src, batches)
        })
        .collect();
    for (k, b) in whole.iter().enumerate() {
        let union: Vec<&String> = ranks.iter().flat_map(|(_, r)| &r[k].ids).collect();
        assert_eq!(union, b.ids.iter().collect::<Vec<_>>(), "step {k}: the union in rank order");
    }
    for (src, _) in &ranks {
        // 5 batches taken, at most prefetch + 1 more made: 4 rows each, never the other rank's.
        assert!((20..=28).contains(&src.decoded()), "{}", src.decoded());
        assert_eq!(src.decoded() % 4, 0);
    }
    std::fs::remove_dir_all(&dir).ok();
}
