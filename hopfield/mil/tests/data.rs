//! The MIL harness without a model: CSV reading and its errors, standardisation, folds, AUC, IDX files.

use hopfield_mil::folds::{repeated_stratified_splits, stratified_folds, stratified_holdout, stratified_inner_folds};
use hopfield_mil::metrics::{mean_std, roc_auc};
use hopfield_mil::mnist_bags::{mnist_bags, IdxImages, MnistBagsConfig};
use hopfield_mil::report::{FoldRecord, Summary};
use hopfield_mil::{MilDataset, MilError, Standardizer};
use std::io::Write;
use std::path::PathBuf;

fn parse(text: &str) -> Result<MilDataset, MilError> {
    MilDataset::parse(text.as_bytes(), "bad.csv", "bad")
}

/// The message of a parse error, which must name the file and the line.
fn parse_error(text: &str, line: usize) -> String {
    let err = parse(text).expect_err("malformed input must be rejected");
    let msg = err.to_string();
    assert!(matches!(err, MilError::Parse { line: l, .. } if l == line), "wrong line in `{msg}`, expected {line}");
    assert!(msg.starts_with(&format!("bad.csv:{line}: ")), "`{msg}` does not name file and line");
    msg
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mil-test-{}-{name}", std::process::id()))
}

#[test]
fn parses_bags_in_order_of_first_appearance() {
    let data = parse("1,a,1.5,2\n0,b,3,4\n1,a,-1,0.25\r\n\n0,c,7,8\n").unwrap();
    assert_eq!(data.n_features, 2);
    let ids: Vec<&str> = data.bags.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(data.labels(), [true, false, false]);
    assert_eq!(data.bags[0].len, 2);
    assert_eq!(data.bags[0].instances, [1.5, 2.0, -1.0, 0.25]);
    assert_eq!(data.num_instances(), 4);
}

#[test]
fn ragged_row_names_file_and_line() {
    let msg = parse_error("1,a,1,2\n1,a,3\n", 2);
    assert!(msg.contains("ragged") && msg.contains("line 1 has 4"), "{msg}");
}

#[test]
fn non_numeric_cell_names_file_line_and_column() {
    let msg = parse_error("0,a,1,2\n0,a,1,2\n0,a,1,x2\n", 3);
    assert!(msg.contains("column 4") && msg.contains("x2"), "{msg}");
    // Non-finite numbers are no better than text.
    parse_error("0,a,1,NaN\n", 1);
    parse_error("0,a,inf,1\n", 1);
}

#[test]
fn bad_label_names_file_and_line() {
    let msg = parse_error("1,a,1\n2,b,1\n", 2);
    assert!(msg.contains("label must be 0 or 1"), "{msg}");
    parse_error("yes,a,1\n", 1);
}

#[test]
fn mixed_label_bag_names_both_lines() {
    let msg = parse_error("1,a,1\n0,b,2\n0,a,3\n", 3);
    assert!(msg.contains("bag `a` has mixed labels") && msg.contains("line 1"), "{msg}");
}

#[test]
fn empty_file_and_missing_columns_are_errors() {
    let msg = parse_error("", 1);
    assert!(msg.contains("empty file"), "{msg}");
    parse_error("\n  \n", 1);
    let msg = parse_error("1,a\n", 1);
    assert!(msg.contains("2 column(s)"), "{msg}");
    parse_error("1,,3\n", 1);
}

#[test]
fn reads_plain_and_gzipped_files_and_names_the_path() {
    let text = "1,7,0.5,1\n0,8,2,3\n";
    let plain = temp_path("tiny.csv");
    std::fs::write(&plain, text).unwrap();
    let gz = temp_path("tiny.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    let a = MilDataset::read(&plain).unwrap();
    let b = MilDataset::read(&gz).unwrap();
    assert_eq!(a.bags, b.bags);
    assert_eq!(b.name, format!("mil-test-{}-tiny", std::process::id()));

    let bad = temp_path("bad.csv");
    std::fs::write(&bad, "1,7,0.5,1\n0,8,2\n").unwrap();
    let msg = MilDataset::read(&bad).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}:2:", bad.display())), "{msg}");
    let missing = MilDataset::read(temp_path("absent.csv")).unwrap_err().to_string();
    assert!(missing.contains("absent.csv"), "{missing}");
    for p in [plain, gz, bad] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn shipped_data_sets_have_their_published_sizes() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    // (name, bags, positive bags, instances, features) of the mil 1.0.5 CSVs.
    for (name, bags, pos, inst, feat) in [("musk1", 92, 47, 476, 166), ("elephant", 200, 100, 1391, 230)] {
        let d = MilDataset::read(format!("{root}/data/mil/{name}.csv.gz")).unwrap();
        assert_eq!(
            (d.name.as_str(), d.bags.len(), d.num_positive(), d.num_instances(), d.n_features),
            (name, bags, pos, inst, feat)
        );
    }
}

#[test]
fn standardizer_uses_only_the_training_bags() {
    let data = parse("0,a,1,5\n0,a,3,5\n1,b,2,5\n1,c,1000,-1000\n").unwrap();
    let s = Standardizer::fit(&data, &[0, 1]);
    assert_eq!(s.mean, [2.0, 5.0]);
    // Population σ of {1, 3, 2} is √(2/3); the constant feature keeps σ = 1.
    assert!((s.std[0] - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
    assert_eq!(s.std[1], 1.0);
    let b: Vec<f64> = s.apply(&data.bags[1]);
    assert_eq!(b, [0.0, 0.0]);
    // The held-out outlier bag is scaled by the training statistics, not its own.
    let outlier: Vec<f64> = s.apply(&data.bags[2]);
    assert!((outlier[0] - 998.0 / s.std[0]).abs() < 1e-9 && outlier[1] == -1005.0);
    let train: Vec<f64> = [0, 1].iter().flat_map(|&b| s.apply::<f64>(&data.bags[b])).collect();
    let m0 = (train[0] + train[2] + train[4]) / 3.0;
    assert!(m0.abs() < 1e-12, "training features are centred");
}

#[test]
fn standardizer_is_finite_for_features_near_the_largest_f64() {
    // Found by the mil_csv fuzz target: the sums overflowed to ∞ and every value standardised to NaN.
    let huge = parse("0,a,1e308,1\n1,b,-1e308,2\n0,a,1.7e308,3\n1,c,-1.79e308,4\n").unwrap();
    let small = parse("0,a,1,1\n1,b,-1,2\n0,a,1.7,3\n1,c,-1.79,4\n").unwrap();
    let (sh, ss) = (Standardizer::fit(&huge, &[0, 1, 2]), Standardizer::fit(&small, &[0, 1, 2]));
    assert!(sh.mean.iter().chain(&sh.std).all(|v| v.is_finite()), "{sh:?}");
    // Standardising does not depend on the unit: 1e308 times the small set gives its values.
    for b in 0..3 {
        let (zh, zs): (Vec<f64>, Vec<f64>) = (sh.apply(&huge.bags[b]), ss.apply(&small.bags[b]));
        for (h, s) in zh.iter().zip(&zs) {
            assert!((h - s).abs() < 1e-9, "bag {b}: {zh:?} vs {zs:?}");
        }
    }
    // Below 1e150 nothing is rescaled: the same bits as the plain formulas.
    assert_eq!(ss.mean[0], (1.0 + 1.7 - 1.0 - 1.79) / 4.0, "bag a's two lines, then b, then c");
}

#[test]
fn folds_partition_the_bags_and_keep_class_shares() {
    let labels: Vec<bool> = (0..103).map(|i| i % 3 == 0).collect(); // 35 positive, 68 negative
    let folds = stratified_folds(&labels, 10, 7).unwrap();
    let mut all: Vec<usize> = folds.concat();
    all.sort_unstable();
    assert_eq!(all, (0..103).collect::<Vec<_>>());
    for f in &folds {
        let pos = f.iter().filter(|&&i| labels[i]).count();
        assert!((3..=4).contains(&pos), "positives per fold: {pos}");
        assert!((10..=11).contains(&f.len()), "fold size {}", f.len());
    }
    assert_eq!(folds, stratified_folds(&labels, 10, 7).unwrap(), "same seed, same folds");
    assert_ne!(folds, stratified_folds(&labels, 10, 8).unwrap(), "another seed, other folds");
    let err = stratified_folds(&labels, 36, 0).unwrap_err().to_string();
    assert!(err.contains("35 positive"), "{err}");
}

#[test]
fn repeated_splits_test_every_bag_once_per_repeat() {
    let labels: Vec<bool> = (0..40).map(|i| i < 15).collect();
    let splits = repeated_stratified_splits(&labels, 5, 3, 1).unwrap();
    assert_eq!(splits.len(), 15);
    for rep in 0..3 {
        let mut tested: Vec<usize> = splits.iter().filter(|s| s.repeat == rep).flat_map(|s| s.test.clone()).collect();
        tested.sort_unstable();
        assert_eq!(tested, (0..40).collect::<Vec<_>>());
    }
    for s in &splits {
        assert_eq!(s.train.len() + s.test.len(), 40);
        assert!(s.train.iter().all(|i| s.test.binary_search(i).is_err()), "train and test overlap");
    }
    assert_ne!(splits[0].test, splits[5].test, "repeats are shuffled differently");
}

#[test]
fn holdout_is_stratified_and_disjoint() {
    let labels: Vec<bool> = (0..50).map(|i| i % 2 == 0).collect();
    let pool: Vec<usize> = (0..40).collect();
    let (train, val) = stratified_holdout(&pool, &labels, 0.2, 3).unwrap();
    assert_eq!((train.len(), val.len()), (32, 8));
    assert_eq!(val.iter().filter(|&&i| labels[i]).count(), 4);
    assert!(val.iter().all(|i| train.binary_search(i).is_err() && *i < 40));
    assert!(stratified_holdout(&[0, 1, 3], &labels, 0.2, 0).is_err(), "one positive cannot be split");
}

#[test]
fn inner_folds_partition_the_training_fold_and_keep_class_shares() {
    // 30 positives, 70 negatives; the training fold is every bag but multiples of 10.
    let labels: Vec<bool> = (0..100).map(|i| i % 10 < 3).collect();
    let pool: Vec<usize> = (0..100).filter(|i| i % 10 != 0).collect();
    let inner = stratified_inner_folds(&pool, &labels, 4, 5).unwrap();
    assert_eq!(inner.len(), 4);
    let mut seen = Vec::new();
    for (train, val) in &inner {
        assert_eq!(train.len() + val.len(), pool.len());
        assert!(val.iter().all(|i| train.binary_search(i).is_err() && pool.binary_search(i).is_ok()));
        assert!(train.windows(2).all(|w| w[0] < w[1]) && val.windows(2).all(|w| w[0] < w[1]));
        let pos = val.iter().filter(|&&i| labels[i]).count();
        assert!((5..=5).contains(&pos), "20 positives in 4 folds: {pos}");
        seen.extend_from_slice(val);
    }
    seen.sort_unstable();
    assert_eq!(seen, pool, "every bag of the training fold validates exactly once");
    assert_eq!(inner, stratified_inner_folds(&pool, &labels, 4, 5).unwrap());
    assert_ne!(inner, stratified_inner_folds(&pool, &labels, 4, 6).unwrap());
    assert!(stratified_inner_folds(&pool, &labels, 21, 5).is_err(), "more folds than positives");
}

#[test]
fn auc_matches_hand_computed_cases() {
    // Positives 0.35, 0.8, 0.4 against negatives 0.1, 0.4: pairs won 1+0 + 1+1 + 1+½ = 4.5 of 6.
    let auc = roc_auc(&[0.1, 0.4, 0.35, 0.8, 0.4], &[false, false, true, true, true]).unwrap();
    assert!((auc - 0.75).abs() < 1e-12, "{auc}");
    assert_eq!(roc_auc(&[1.0, 2.0, 3.0], &[false, true, true]), Some(1.0));
    assert_eq!(roc_auc(&[3.0, 2.0, 1.0], &[false, true, true]), Some(0.0));
    assert_eq!(roc_auc(&[5.0; 4], &[false, true, true, false]), Some(0.5));
    assert_eq!(roc_auc(&[1.0, 2.0], &[true, true]), None);
    assert_eq!(roc_auc(&[f64::NAN, 2.0], &[true, false]), None);
}

#[test]
fn summary_std_is_over_repeat_means() {
    let rec = |repeat, fold, test_auc| FoldRecord {
        dataset: "d".into(),
        repeat,
        fold,
        seed: 0,
        n_train: 1,
        n_test: 1,
        test_auc,
        val_auc: None,
        grid_index: 0,
        config: serde_json::Value::Null,
        seconds: 0.0,
    };
    let recs = [rec(0, 0, 0.8), rec(0, 1, 1.0), rec(1, 0, 0.6), rec(1, 1, 0.8)];
    let s = Summary::from_records("d", 10, &recs, 1.0);
    assert!((s.auc_mean - 0.8).abs() < 1e-12);
    assert!((s.auc_std_repeats - mean_std(&[0.9, 0.7]).1).abs() < 1e-12);
    assert_eq!((s.folds, s.repeats), (2, 2));
}

fn write_idx(path: &PathBuf, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    dims.iter().for_each(|d| bytes.extend_from_slice(&d.to_be_bytes()));
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn idx_files_read_and_bags_follow_the_target() {
    let (img, lab) = (temp_path("img.idx"), temp_path("lab.idx"));
    // Six 2×2 images whose pixels equal their class, classes 0..5.
    let pixels: Vec<u8> = (0..6u8).flat_map(|c| [c; 4]).collect();
    write_idx(&img, &[6, 2, 2], &pixels);
    write_idx(&lab, &[6], &[0, 1, 2, 3, 4, 5]);
    let images = IdxImages::read(&img, &lab).unwrap();
    assert_eq!((images.len(), images.rows, images.cols), (6, 2, 2));
    assert_eq!(images.image(3), [3, 3, 3, 3]);
    let cfg = MnistBagsConfig { target: 4, mean_len: 3.0, var_len: 1.0, bags: 50 };
    let bags = mnist_bags(&images, &cfg, 5).unwrap();
    assert_eq!(bags.n_features, 4);
    for b in &bags.bags {
        let has_target = b.instances.chunks(4).any(|px| (px[0] * 255.0 - 4.0).abs() < 1e-9);
        assert_eq!(b.label, has_target);
        assert!(b.len >= 1);
    }
    assert!(bags.num_positive() > 0 && bags.num_positive() < 50);

    write_idx(&lab, &[5], &[0, 1, 2, 3, 4]);
    let msg = IdxImages::read(&img, &lab).unwrap_err().to_string();
    assert!(msg.contains("5 labels for 6 images"), "{msg}");
    write_idx(&lab, &[7], &[0, 1, 2, 3, 4]);
    let msg = IdxImages::read(&img, &lab).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}:0: ", lab.display())) && msg.contains("need 7 bytes"), "{msg}");
    std::fs::write(&lab, b"not idx").unwrap();
    assert!(IdxImages::read(&img, &lab).unwrap_err().to_string().contains("not an unsigned-byte IDX"));
    std::fs::remove_file(img).unwrap();
    std::fs::remove_file(lab).unwrap();
}
