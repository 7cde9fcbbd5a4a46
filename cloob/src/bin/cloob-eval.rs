//! Evaluate a `cloob-pretrain` checkpoint on any data source: zero-shot per task, retrieval, embedding
//! analysis and (with labels) the linear probe; prints a table and writes JSON.

use clap::Parser;
use cloob::pretrain::checkpoint::load_model;
use cloob::pretrain::evaluate::evaluate;
use cloob::pretrain::run::open_data;
use cloob::pretrain::{DataSpec, RunConfig};
use hopfield::Cpu;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "cloob-eval", about = "Zero-shot, retrieval, linear probe and embedding analysis of a checkpoint")]
struct Args {
    /// The checkpoint's JSON (`logs/<run>/checkpoints/step_NNNNNNN.json`).
    checkpoint: PathBuf,
    /// Data source (default: the checkpoint's own).
    #[arg(long)]
    data: Option<DataSpec>,
    /// Images per evaluation set (as `cloob-pretrain --eval-size`).
    #[arg(long, default_value_t = RunConfig::default().eval_size)]
    eval_size: usize,
    /// Skip the linear probe.
    #[arg(long)]
    no_probe: bool,
    /// Write the report here (default: next to the checkpoint, `eval-<data>.json`).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() {
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let backend = Cpu::<f32>::with_tuned_allocator();
        let (model, state) = load_model(&backend, &a.checkpoint)?;
        let mut cfg = state.config.clone();
        if let Some(d) = &a.data {
            cfg.data = d.clone();
        }
        cfg.eval_size = a.eval_size;
        let data = open_data(&cfg, model.config.vision.image_size)?;
        let report = evaluate(&backend, &model, &data, !a.no_probe)?;
        println!(
            "checkpoint {} (step {}, {:?} loss)\n{}",
            a.checkpoint.display(),
            state.step,
            cfg.loss,
            report.table()
        );
        let out = a.out.clone().unwrap_or_else(|| {
            a.checkpoint.with_file_name(format!("eval-{}.json", cfg.data.to_string().replace(['/', ':'], "_")))
        });
        std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
        println!("report: {}", out.display());
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
