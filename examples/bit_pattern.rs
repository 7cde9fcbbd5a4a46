//! hflayers' bit pattern demo: multiple-instance learning on bags of 16 random 8-bit instances, where
//! positive bags carry one of 8 signal patterns. Trains the plain, adapted, pooling and lookup models of the
//! notebook (BCE, AdamW lr 1e-3, clip 1.0, batch 32), prints a table and writes per-epoch metrics as JSONL.
//! Epochs: the notebook's 250, except 500 for the adapted association, whose eval accuracy (here and in the
//! notebook's own curve) is still rising at epoch 250 and levels off by about epoch 350 (README: 5 seeds at
//! 250 and 500 epochs). The adapted pooling gains nothing from the longer run and keeps 250.
//! Exits with status 2 when a model misses its target eval accuracy (the table marks it `MISSED`).
//!
//! ```text
//! cargo run --release --example bit_pattern -- --epochs 250 --seed 42 --out target/demos
//! ```

use clap::Parser;
use hopfield::Cpu;
mod demos;

use demos::harness::format_table;
use demos::run::{run_task, Plan, RunOptions, Task};
use demos::{BagDataset, BitPatternConfig, BitPatternSet, Split, Variant};
use std::path::PathBuf;
use std::process::ExitCode;

/// Bags kept for evaluation at each end of the (positives-first) data set, as the notebook's samplers.
const EVAL_EDGE: usize = 256;
/// The notebook's epochs.
const EPOCHS: usize = 250;
/// Epochs of the adapted association: its eval curve still rises at 250.
const EPOCHS_ADAPTED: usize = 500;

#[derive(Parser)]
#[command(about = "hflayers' bit pattern demo (multiple-instance learning)")]
struct Args {
    /// Epochs for every model (default: the notebook's 250; 500 for the adapted association).
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of model initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seed of the signal patterns (hflayers' default 43).
    #[arg(long, default_value_t = 43)]
    seed_signals: u64,
    /// Seed of the bags (hflayers' default 44).
    #[arg(long, default_value_t = 44)]
    seed_data: u64,
    /// Directory for bit_pattern.jsonl.
    #[arg(long, default_value = "target/demos")]
    out: PathBuf,
    /// Only these models (comma separated): hopfield, hopfield_adapted, pooling, pooling_adapted, lookup,
    /// lookup_adapted.
    #[arg(long, value_delimiter = ',')]
    models: Vec<Variant>,
    /// Print every epoch.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = BitPatternConfig { seed_signals: args.seed_signals, seed_data: args.seed_data, ..BitPatternConfig::demo() };
    let data = BitPatternSet::new(&config);
    let split = Split::edges(data.len(), EVAL_EDGE);
    let lookup_patterns = data.unique_instances(&split.train);
    // The issue's bar for the adapted association and pooling (the notebook's curves end at 0.846 and 0.836);
    // none for the rest.
    let adapted = |v| matches!(v, Variant::HopfieldAdapted | Variant::PoolingAdapted);
    let plans = Variant::ALL
        .iter()
        .map(|&variant| Plan {
            variant,
            epochs: if variant == Variant::HopfieldAdapted { EPOCHS_ADAPTED } else { EPOCHS },
            target: adapted(variant).then_some(0.84),
        })
        .collect();
    let task = Task { name: "bit_pattern", data: &data, split, lookup_patterns, plans };
    let options = RunOptions { seed: args.seed, epochs: args.epochs, only: args.models, out_dir: args.out, verbose: args.verbose };
    match run_task(&Cpu::<f32>::with_tuned_allocator(), &task, &options) {
        Ok(rows) => {
            print!("{}", format_table(&rows));
            if rows.iter().all(|r| r.passes()) { ExitCode::SUCCESS } else { ExitCode::from(2) }
        }
        Err(e) => {
            eprintln!("bit_pattern: {e}");
            ExitCode::FAILURE
        }
    }
}
