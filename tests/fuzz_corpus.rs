//! Every committed fuzz input — the minimised corpora in `fuzz/corpus/<target>/` and the crashes found and
//! fixed in `fuzz/regressions/<target>/` — replayed through the fuzz targets' bodies (`fuzz/src/lib.rs`), on
//! stable Rust and without libFuzzer, so that CI checks the corpus on every run.

#[path = "../fuzz/src/lib.rs"]
mod bodies;

use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/`, sorted, or none when the folder is absent.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("a readable folder").path()).collect();
    files.sort();
    files
}

/// Run `body` on every corpus and regression file of `target`; the corpus must not be empty.
fn replay(target: &str, body: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is empty or missing");
    for path in corpus.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            panic!("fuzz target {target} fails on {}", path.display());
        }
    }
}

#[test]
fn tokenizer_corpus() {
    replay("tokenizer", bodies::tokenizer);
}

#[test]
fn checkpoint_corpus() {
    replay("checkpoint", bodies::checkpoint);
}

#[test]
fn run_config_corpus() {
    replay("run_config", bodies::run_config);
}

#[test]
fn mil_csv_corpus() {
    replay("mil_csv", bodies::mil_csv);
}

#[test]
fn csv_corpus() {
    replay("csv", bodies::csv);
}
