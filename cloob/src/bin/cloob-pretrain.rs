//! Pretrain a CLOOB (or CLIP) model: `cargo run --release --bin cloob-pretrain` trains the tiny preset on
//! the embedded captioned-scene set in a few minutes on two CPU cores; `--data fashion-mnist` or
//! `--data csv:PATH` train on other data. Flags follow open_clip's and cloob's names.

use clap::Parser;
use cloob::loss::LossKind;
use cloob::pretrain::config::CsvOptions;
use cloob::pretrain::{train, DataSpec, RunConfig, RunOptions, Scheduler};
use std::path::PathBuf;

/// The contrastive loss.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Loss {
    /// InfoLOOB on Hopfield-retrieved embeddings (CLOOB).
    Cloob,
    /// InfoNCE on the embeddings (CLIP).
    Clip,
    /// Ablation: InfoNCE on Hopfield-retrieved embeddings.
    InfonceHopfield,
    /// Ablation: InfoLOOB without Hopfield retrieval.
    Infoloob,
}

#[derive(Parser, Debug)]
#[command(name = "cloob-pretrain", about = "Contrastive image–text pretraining with CLOOB or CLIP on CPU")]
struct Args {
    /// Model preset: tiny (2 CPU cores, minutes), small, vit-b32 (the paper's).
    #[arg(long, default_value = "tiny")]
    model: String,
    /// Loss.
    #[arg(long, value_enum, default_value = "cloob")]
    loss: Loss,
    /// Pairs per optimiser step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Optimiser steps (ignored with --epochs).
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Train for this many epochs instead.
    #[arg(long)]
    epochs: Option<f64>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// AdamW weight decay (not on biases, norms, embeddings, τ).
    #[arg(long, default_value_t = 0.1)]
    wd: f64,
    /// Decay the token and positional embedding tables too (open_clip's exact parameter groups).
    #[arg(long)]
    decay_embeddings: bool,
    /// Warmup steps.
    #[arg(long, default_value_t = 30)]
    warmup: u64,
    /// Schedule after the warmup.
    #[arg(long, value_enum, default_value = "cosine")]
    lr_scheduler: Scheduler,
    /// Cycles of cosine-restarts.
    #[arg(long, default_value_t = 1)]
    restart_cycles: u64,
    /// Initial inverse temperature τ⁻¹.
    #[arg(long, default_value_t = 30.0)]
    init_inv_tau: f64,
    /// Train τ⁻¹ (fixed by default, as cloob).
    #[arg(long)]
    learnable_inv_tau: bool,
    /// β of the Hopfield retrieval.
    #[arg(long, default_value_t = 14.3)]
    scale_hopfield: f64,
    /// Micro-batches per step (the loss is over the whole batch).
    #[arg(long, default_value_t = 1)]
    accum_freq: usize,
    /// Clip the gradient norm (0: off).
    #[arg(long, default_value_t = 1.0)]
    grad_clip_norm: f64,
    /// Seed of the initialisation and the data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training data: embedded, fashion-mnist or csv:PATH.
    #[arg(long, default_value = "embedded")]
    data: DataSpec,
    /// Fashion-MNIST's IDX directory.
    #[arg(long, default_value = cloob::data::fashion::DEFAULT_DIR)]
    fashion_dir: PathBuf,
    /// CSV image path column.
    #[arg(long, default_value = "filepath")]
    csv_img_key: String,
    /// CSV caption column.
    #[arg(long, default_value = "title")]
    csv_caption_key: String,
    /// CSV separator (one character; `\t` for tab).
    #[arg(long, default_value = "\\t")]
    csv_separator: String,
    /// A validation CSV for retrieval (default: the first rows of the training CSV).
    #[arg(long)]
    val_data: Option<PathBuf>,
    /// Generated scenes per epoch of the embedded set.
    #[arg(long, default_value_t = 20_000)]
    embedded_len: usize,
    /// Images per evaluation set.
    #[arg(long, default_value_t = 1000)]
    eval_size: usize,
    /// Evaluate (zero-shot, retrieval, embeddings) every N steps; 0: only at the end.
    #[arg(long, default_value_t = 100)]
    zeroshot_frequency: u64,
    /// Save a checkpoint every N steps; 0: only at the end.
    #[arg(long, default_value_t = 100)]
    save_frequency: u64,
    /// Resume from a checkpoint's JSON, or `latest` for this run's newest.
    #[arg(long)]
    resume: Option<String>,
    /// Logs directory.
    #[arg(long, default_value = "logs")]
    logs: PathBuf,
    /// Run name (default: <loss>-<model>-<data>-s<seed>).
    #[arg(long)]
    name: Option<String>,
    /// Stop after this many steps (with a checkpoint), as if interrupted.
    #[arg(long)]
    stop_after: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() {
    // Training allocates and frees large tensors every step: keep freed memory in the process.
    hopfield::backend::cpu::tune_allocator();
    let a = Args::parse();
    let loss = match a.loss {
        Loss::Cloob => LossKind::Cloob,
        Loss::Clip => LossKind::Clip,
        Loss::InfonceHopfield => LossKind::ClipHopfield,
        Loss::Infoloob => LossKind::InfoLoob,
    };
    let separator = match a.csv_separator.as_str() {
        "\\t" | "tab" => '\t',
        s if s.chars().count() == 1 => s.chars().next().expect("one char"),
        s => {
            eprintln!("error: --csv-separator must be one character, got {s:?}");
            std::process::exit(2);
        }
    };
    let data_name = match &a.data { DataSpec::Csv(p) => p.file_stem().and_then(|s| s.to_str()).unwrap_or("csv").to_string(), d => d.to_string() };
    let cfg = RunConfig {
        model_preset: a.model.clone(), loss, hopfield_beta: a.scale_hopfield, batch_size: a.batch_size, steps: a.steps,
        epochs: a.epochs, lr: a.lr, wd: a.wd, decay_embeddings: a.decay_embeddings, warmup: a.warmup, scheduler: a.lr_scheduler, cycles: a.restart_cycles,
        init_inv_tau: a.init_inv_tau, learnable_inv_tau: a.learnable_inv_tau, accum_freq: a.accum_freq,
        grad_clip_norm: (a.grad_clip_norm > 0.0).then_some(a.grad_clip_norm), seed: a.seed, data: a.data.clone(),
        fashion_dir: a.fashion_dir, csv: CsvOptions { img_key: a.csv_img_key, caption_key: a.csv_caption_key, separator, val: a.val_data },
        embedded_len: a.embedded_len, eval_size: a.eval_size, eval_every: a.zeroshot_frequency, save_every: a.save_frequency,
        logs: a.logs,
        name: a.name.unwrap_or_else(|| format!("{}-{}-{}-s{}", format!("{:?}", a.loss).to_lowercase(), a.model, data_name, a.seed)),
    };
    let opts = RunOptions { progress: !a.quiet, resume: a.resume, stop_after: a.stop_after, no_eval: false, verbose: true };
    match train(&cfg, &opts) {
        Ok(s) => {
            if let Some(r) = &s.final_eval {
                println!("\n{}", r.table());
            }
            println!("{} steps in {:.1} s (this process)", s.steps, s.wall_s);
            println!("data: {}", s.data_issues);
            println!("logs:       {}", s.run_dir.display());
            println!("metrics:    {}", s.metrics.display());
            for p in &s.plots {
                println!("plot:       {}", p.display());
            }
            if let Some(c) = &s.checkpoint {
                println!("checkpoint: {}  (resume with --resume {} or --resume latest)", c.display(), c.display());
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
