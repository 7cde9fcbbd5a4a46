//! Inputs that would make the readers wait or allocate without bound are refused, each with an error naming
//! the file (issue 30): devices, FIFOs and folders as data, files and decompressed text over a cap, endless
//! lines, too many rows, features or values; MNIST-bag settings out of range.

use flate2::write::GzEncoder;
use hopfield_mil::mnist_bags::{mnist_bags, IdxImages, MnistBagsConfig};
use hopfield_mil::{MilDataset, MilError, ReadLimits};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A fresh folder under the system's temporary one.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mil-limits-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The message of reading `path` within `limits`, which must fail within a second and name `path`.
fn refused(path: &Path, limits: &ReadLimits) -> String {
    let start = Instant::now();
    let err = MilDataset::read_with_limits(path, limits).expect_err("must be refused").to_string();
    assert!(start.elapsed() < Duration::from_secs(1), "took {:?}: {err}", start.elapsed());
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    err
}

#[test]
fn devices_fifos_and_folders_are_refused_before_they_are_opened() {
    let dir = scratch("kinds");
    let zero = refused(Path::new("/dev/zero"), &ReadLimits::default());
    assert!(zero.contains("a character device, not a regular file"), "{zero}");
    let fifo = dir.join("fifo.csv");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    // Opening a FIFO without a writer would block this test for ever.
    let err = refused(&fifo, &ReadLimits::default());
    assert!(err.contains("a FIFO, not a regular file"), "{err}");
    let err = refused(&dir, &ReadLimits::default());
    assert!(err.contains("a folder, not a regular file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sizes_over_the_caps_are_refused_naming_the_file() {
    let dir = scratch("caps");
    let small = ReadLimits { file_bytes: 1000, text_bytes: 4000, line_bytes: 100, rows: 5, features: 3, values: 8 };
    let csv = dir.join("a.csv");
    let write = |text: &str| std::fs::write(&csv, text).unwrap();

    write(&"1,a,1\n".repeat(200));
    assert!(refused(&csv, &small).contains("1200 bytes, more than the 1000 bytes"));
    // 20 kB of CSV text in a gzip file of a few hundred bytes.
    let gz = dir.join("b.csv.gz");
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all("0,a,1\n".repeat(20_000 / 6).as_bytes()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    assert!(std::fs::metadata(&gz).unwrap().len() < 1000);
    let err = refused(&gz, &ReadLimits { rows: 1 << 20, values: 1 << 20, ..small });
    assert!(err.contains("more than 4000 bytes of CSV text (decompressed)"), "{err}");

    write(&format!("1,a,{}\n", "1".repeat(150)));
    assert!(refused(&csv, &small).contains(":1: a line longer than 100 bytes"));
    write("1,a,1,2,3,4\n");
    assert!(refused(&csv, &small).contains(":1: 4 features, more than 3"));
    write("1,a,1\n0,b,1\n1,a,1\n0,b,1\n1,c,1\n0,d,1\n");
    assert!(refused(&csv, &small).contains(":6: more than 5 rows"));
    write("1,a,1,2\n0,b,1,2\n1,a,1,2\n0,b,1,2\n1,c,1,2\n");
    assert!(refused(&csv, &small).contains(":5: more than 5 rows or 8 feature values"));
    // At the caps exactly, it reads.
    write("1,a,1,2\n0,b,1,2\n1,a,1,2\n0,b,1,2\n");
    assert_eq!(MilDataset::read_with_limits(&csv, &small).unwrap().num_instances(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mnist_bag_settings_out_of_range_are_refused_naming_the_setting() {
    let ok = MnistBagsConfig::default();
    ok.validate().unwrap();
    let bad = [
        ("target", MnistBagsConfig { target: 10, ..ok.clone() }),
        ("mean_len", MnistBagsConfig { mean_len: 0.0, ..ok.clone() }),
        ("mean_len", MnistBagsConfig { mean_len: 1e6, ..ok.clone() }),
        ("mean_len", MnistBagsConfig { mean_len: f64::NAN, ..ok.clone() }),
        ("var_len", MnistBagsConfig { var_len: -1.0, ..ok.clone() }),
        ("var_len", MnistBagsConfig { var_len: f64::INFINITY, ..ok.clone() }),
        ("bags", MnistBagsConfig { bags: 1, ..ok.clone() }),
        ("bags", MnistBagsConfig { bags: 100_001, ..ok.clone() }),
        ("bags", MnistBagsConfig { bags: 100_000, mean_len: 10.0, ..ok.clone() }),
    ];
    let images = IdxImages { rows: 1, cols: 1, pixels: vec![0, 255], labels: vec![0, 9] };
    for (what, cfg) in bad {
        let err = cfg.validate().expect_err(&format!("{cfg:?} accepted"));
        assert!(matches!(err, MilError::Setting { what: w, .. } if w == what), "{cfg:?}: {err}");
        assert!(mnist_bags(&images, &cfg, 0).is_err(), "{cfg:?} drew bags");
    }
    assert_eq!(mnist_bags(&images, &ok, 0).unwrap().bags.len(), 200);
}

#[test]
fn idx_paths_that_are_not_regular_files_are_refused() {
    let dir = scratch("idx");
    let err = IdxImages::read("/dev/zero", dir.join("labels")).unwrap_err().to_string();
    assert!(err.starts_with("/dev/zero: a character device, not a regular file; give an IDX file"), "{err}");
    let err = IdxImages::read(&dir, dir.join("labels")).unwrap_err().to_string();
    assert!(err.contains("a folder, not a regular file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
