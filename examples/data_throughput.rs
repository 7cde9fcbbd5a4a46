//! Throughput of the training data loader alone, as `cloob-pretrain` runs it (same sources, loader,
//! workers and transforms; no model): images/s, images per CPU-second, time to the first batch (from the
//! loader's start, so with `--start-step S` the start-up time of a resume at step S), peak resident memory
//! and the loader's part of it. `scripts/bench-data.sh` runs it beside PyTorch's DataLoader with
//! open_clip's CSV dataset and transform.
//!
//! ```sh
//! cargo run --release --example data_throughput -- --data csv:/tmp/cloob-corpus/train.csv \
//!     --image-size 224 --batch-size 128 --batches 20 --workers 2
//! ```
//! Prints one JSON line.

use clap::Parser;
use cloob::data::loader::{Loader, LoaderConfig};
use cloob::data::{StreamCursor, TrainData};
use cloob::pretrain::run::open_data;
use cloob::pretrain::RunConfig;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(name = "data_throughput", about = "Images per second of the training data loader")]
struct Args {
    /// Data source and its flags, as cloob-pretrain takes them (--data, --batch-size, --seed, --csv-*,
    /// --shuffle-buffer, …).
    #[command(flatten)]
    run: RunConfig,
    /// Side of the images produced.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// Batches to take.
    #[arg(long, default_value_t = 20)]
    batches: usize,
    /// Decoding threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Batches kept ready ahead.
    #[arg(long, default_value_t = 2)]
    prefetch: usize,
    /// Start the loader at this step (a resume's start-up). For shards, the stream's cursor at that step
    /// is found first by reading the candidates before it (not timed), as a checkpoint would store it.
    #[arg(long, default_value_t = 0)]
    start_step: u64,
}

/// This process's user + system CPU seconds, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct it is given and reads nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// A `kB` field of /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = text.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok());
    kb.unwrap_or(f64::NAN) / 1024.0
}

fn main() {
    let a = Args::parse();
    let opened = Instant::now();
    let data = match open_data(&a.run, a.image_size, false) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let open_s = opened.elapsed().as_secs_f64();
    let cursor = match (&data.train, a.start_step) {
        (TrainData::Streamed(source), k) if k > 0 => {
            let mut stream = source.candidates(a.run.seed, 0, 1, StreamCursor::default()).unwrap_or_else(|e| {
                eprintln!("error: {e}");
                std::process::exit(1)
            });
            // Every sample of a clean corpus decodes: the cursor after k batches is after k·B candidates.
            stream.nth(k as usize * a.run.global_batch() - 1).map(|(_, c)| c)
        }
        _ => None,
    };
    let rss_before = status_mib("VmRSS:");
    let cfg = LoaderConfig { prefetch: a.prefetch, ..LoaderConfig::new(a.run.global_batch(), a.run.seed, a.workers) };
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    let mut loader = match Loader::new(data.train.clone(), cfg, a.start_step, cursor) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let (mut images, mut first_batch_s, mut batch_bytes) = (0usize, f64::NAN, 0usize);
    for k in 0..a.batches {
        let Some(b) = loader.next() else {
            eprintln!("error: the loader ended: {}", loader.why_ended().unwrap_or_default());
            std::process::exit(1);
        };
        if k == 0 {
            first_batch_s = t0.elapsed().as_secs_f64();
        }
        images += b.captions.len();
        batch_bytes = match &b.pixels {
            cloob::data::Pixels::Rgb8(v) => v.len(),
            cloob::data::Pixels::Normalized(v) => 4 * v.len(),
        };
    }
    let (wall_s, cpu_s) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    drop(loader);
    let peak = status_mib("VmHWM:");
    let line = serde_json::json!({
        "impl": "ours",
        "source": a.run.data.to_string(),
        "workers": a.workers,
        "batch_size": a.run.global_batch(),
        "images": images,
        "open_s": open_s,
        "wall_s": wall_s,
        "images_per_s": images as f64 / wall_s,
        "cpu_s": cpu_s,
        "images_per_cpu_s": images as f64 / cpu_s,
        "first_batch_s": first_batch_s,
        "peak_rss_mb": peak,
        "loader_peak_mb": peak - rss_before,
        "batch_mb": batch_bytes as f64 / (1 << 20) as f64,
        "prefetch": a.prefetch,
        "skipped": data.train.issues().summary(),
    });
    println!("{line}");
}
