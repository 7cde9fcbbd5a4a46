//! Peak memory of loading open_clip weights into our model, against the file's size: the load alone
//! (`cloob::pretrained::load_pretrained` on the f32 CPU backend, the allocator tuned as the binaries tune
//! it), read from the kernel's high-water mark of the resident set (`VmHWM` of /proc/self/status, Linux).
//!
//! ```text
//! cargo run --release --example pretrained_memory -- FILE MODEL [--max-ratio R]
//! ```
//!
//! FILE is an open_clip `.safetensors` or PyTorch `.pt`/`.bin` checkpoint of model MODEL (a built-in
//! name such as `ViT-B-16`, or an open_clip model-config JSON file). Prints the peak, the resident set
//! before the load (the program itself) and after it (the model), each as a multiple of the file's size;
//! with `--max-ratio R` it exits non-zero when the peak exceeds R times the file's size.
//! `python scripts/fixtures/open_clip_cases.py ViT-B-16 /tmp/b16` writes a random ViT-B-16 in both
//! formats (599 MB each).

use cloob::model_config::{named_clip_config, OpenClipConfig};
use cloob::pretrained::load_pretrained;
use hopfield::Cpu;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `VmHWM` and `VmRSS` of this process, in bytes.
fn memory() -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| format!("/proc/self/status has no `{name}` in kB"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

struct Args {
    file: PathBuf,
    model: String,
    max_ratio: Option<f64>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    const USAGE: &str = "usage: pretrained_memory FILE MODEL [--max-ratio R]";
    let (mut positional, mut max_ratio) = (Vec::new(), None);
    while let Some(a) = args.next() {
        if a == "--max-ratio" {
            let v = args.next().ok_or(format!("--max-ratio needs a value; {USAGE}"))?;
            let r: f64 = v.parse().map_err(|_| format!("--max-ratio {v}: not a number"))?;
            if !(r > 0.0) {
                return Err(format!("--max-ratio {v}: must be positive"));
            }
            max_ratio = Some(r);
        } else if a.starts_with("--") {
            return Err(format!("unknown flag {a}; {USAGE}"));
        } else {
            positional.push(a);
        }
    }
    let [file, model]: [String; 2] = positional.try_into().map_err(|_| USAGE.to_string())?;
    Ok(Args { file: file.into(), model, max_ratio })
}

fn run(a: &Args) -> Result<bool, String> {
    let size = std::fs::metadata(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?.len();
    let cfg = if a.model.ends_with(".json") {
        OpenClipConfig::from_file(Path::new(&a.model)).and_then(|c| c.to_clip_config())
    } else {
        named_clip_config(&a.model)
    }
    .map_err(|e| e.to_string())?;
    let (_, before) = memory()?;
    let start = std::time::Instant::now();
    let (model, report) = load_pretrained(&Cpu::<f32>::new(), &a.file, &cfg, false).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    let (peak, after) = memory()?;
    drop(model);
    let mb = |b: u64| b as f64 / 1e6;
    let ratio = peak as f64 / size as f64;
    println!(
        "{}: {} tensors from {:.1} MB in {seconds:.1} s; peak resident {:.1} MB = {ratio:.3}x the file \
         (before the load {:.1} MB = {:.3}x, after it {:.1} MB = {:.3}x)",
        a.file.display(),
        report.loaded,
        mb(size),
        mb(peak),
        mb(before),
        before as f64 / size as f64,
        mb(after),
        after as f64 / size as f64,
    );
    Ok(a.max_ratio.is_none_or(|r| ratio <= r))
}

fn main() -> ExitCode {
    hopfield::backend::cpu::tune_allocator();
    match parse(std::env::args().skip(1)).and_then(|a| run(&a).map(|ok| (ok, a.max_ratio))) {
        Ok((true, _)) => ExitCode::SUCCESS,
        Ok((false, r)) => {
            eprintln!("error: the peak exceeds --max-ratio {}", r.unwrap_or_default());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
