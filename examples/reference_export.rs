//! Export what `scripts/reference/train_reference.py` needs to replay our CLOOB training loop in plain
//! PyTorch: the initial weights, every batch exactly as the model saw it, and our per-step loss, gradient
//! norm, learning rate and τ⁻¹. The run is `cloob-pretrain`'s (same config, data, initialisation, loader and
//! training step), without evaluation or checkpoints.
//!
//! ```sh
//! cargo run --release --example reference_export -- --out /tmp/refexport --steps 200 [cloob-pretrain flags]
//! ```
//!
//! Writes `init.safetensors` (f32, open_clip's names), `batches.safetensors` (`images` f32
//! `[steps, B, 3, S, S]`, `tokens` f32 `[steps, B, context]`: ids below 2²⁴, exact in f32), `ours.jsonl` and
//! `run.json` (the run config, `total_steps`, `effective_warmup`).

use clap::Parser;
use cloob::data::loader::{Loader, LoaderConfig};
use cloob::data::rng::rng_for;
use cloob::pretrain::run::open_data;
use cloob::pretrain::RunConfig;
use cloob::tokenizer::ClipTokenizer;
use cloob::train::Trainer;
use hopfield::io::encode_safetensors;
use hopfield::params::named_tensors;
use hopfield::{Backend, Cpu};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "reference_export", about = "Export a training run for the PyTorch reference")]
struct Args {
    #[command(flatten)]
    run: RunConfig,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = RunConfig { name: "reference".into(), ..args.run };
    cfg.validate()?;
    std::fs::create_dir_all(&args.out)?;
    let backend = Cpu::<f32>::new();
    let model_cfg = cfg.clip_config()?;
    let data = open_data(&cfg, model_cfg.vision.image_size(), false)?;
    let total = cfg.total_steps(data.train.epoch_len())?;
    // The initialisation of `cloob-pretrain` (pretrain::run): the same seed stream.
    let model = model_cfg.init(&backend, &mut rng_for(&[cfg.seed, 0x1417]))?;
    std::fs::write(args.out.join("init.safetensors"), encode_safetensors(&backend, &named_tensors(&model))?)?;
    let mut trainer = Trainer::new(model, cfg.train_config(total))?;
    let tokenizer = ClipTokenizer::with_context_length(model_cfg.text.context_length)?;
    let mut loader = Loader::new(data.train.clone(), LoaderConfig::new(cfg.global_batch(), cfg.seed, 1), 0, None)?;
    let (mut images, mut tokens, mut lines) = (Vec::new(), Vec::new(), String::new());
    let mut size = 0;
    for _ in 0..total {
        let batch = loader.next().ok_or("the data source ended")?;
        size = batch.size;
        let n = batch.captions.len();
        let t = tokenizer.tokenize(&batch.captions);
        tokens.extend(t.ids.iter().map(|&id| id as f32));
        let x = backend.from_vec(batch.pixels.into_normalized(size), &[n, 3, size, size]);
        images.extend(backend.to_vec(&x));
        let s = trainer.step(&backend, &x, &t)?;
        lines += &format!(
            "{}\n",
            serde_json::json!({"step": s.step, "loss": s.loss, "grad_norm": s.grad_norm, "lr": s.lr, "inv_tau": s.inv_tau})
        );
    }
    let steps = total as usize;
    let (b, ctx) = (cfg.global_batch(), model_cfg.text.context_length);
    let images = backend.from_vec(images, &[steps, b, 3, size, size]);
    let tokens = backend.from_vec(tokens, &[steps, b, ctx]);
    let tensors = [("images".to_string(), &images), ("tokens".to_string(), &tokens)];
    std::fs::write(args.out.join("batches.safetensors"), encode_safetensors(&backend, &tensors)?)?;
    std::fs::File::create(args.out.join("ours.jsonl"))?.write_all(lines.as_bytes())?;
    let mut run = serde_json::to_value(&cfg)?;
    run["total_steps"] = total.into();
    run["effective_warmup"] = cfg.effective_warmup(total).into();
    std::fs::write(args.out.join("run.json"), serde_json::to_string_pretty(&run)?)?;
    eprintln!("{steps} steps of {b} pairs exported to {}", args.out.display());
    Ok(())
}
