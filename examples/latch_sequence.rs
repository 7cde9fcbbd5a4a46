//! hflayers' latch demo: sequences of 32 one-hot characters (20 of them) whose label is the first
//! character, 0 or 1; the rest is noise from characters 2..20. Trains the plain, adapted, pooling and
//! lookup models of the notebook (BCE, AdamW lr 1e-3, clip 1.0, batch 32, 20 epochs, 18 for lookup), prints
//! a table and writes per-epoch metrics as JSONL.
//! Exits with status 2 when a model's final eval accuracy is below 0.99 (the table marks it `MISSED`).
//!
//! ```text
//! cargo run --release --example latch_sequence -- --seed 42 --out target/demos
//! ```

use clap::Parser;
// The harness is shared with `bit_pattern`: each example uses its own part of it.
#[allow(dead_code, unused_imports)]
mod demos;

use demos::harness::{format_table, Check};
use demos::run::{run_task_on, Plan, RunOptions, Task};
use demos::{BagDataset, LatchSequenceSet, Split, Variant};
use std::path::PathBuf;
use std::process::ExitCode;

/// Sequences kept for evaluation at each end of the data set, as the notebook's samplers.
const EVAL_EDGE: usize = 512;

#[derive(Parser)]
#[command(about = "hflayers' latch sequence demo")]
struct Args {
    /// Epochs for every model (default: the notebook's 20, and 18 for the lookup models).
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of model initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seed of the sequences (hflayers' default 43).
    #[arg(long, default_value_t = 43)]
    seed_data: u64,
    /// Directory for latch_sequence.jsonl.
    #[arg(long, default_value = "target/demos")]
    out: PathBuf,
    /// Only these models (comma separated): hopfield, hopfield_adapted, pooling, pooling_adapted, lookup,
    /// lookup_adapted.
    #[arg(long, value_delimiter = ',')]
    models: Vec<Variant>,
    /// Print every epoch.
    #[arg(long, short)]
    verbose: bool,
    /// Where to train: cpu (default), wgpu (a Vulkan, Metal or DX12 GPU; without one, Mesa's lavapipe: apt
    /// install mesa-vulkan-drivers) or cuda[:N] (NVIDIA GPU N; a build with --features cuda).
    #[arg(long, default_value = "cpu", value_parser = hopfield::backend::Device::parse_flag)]
    device: hopfield::backend::Device,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let data = LatchSequenceSet::new(4096, 32, 20, args.seed_data);
    let split = Split::edges(data.len(), EVAL_EDGE);
    let lookup_patterns = data.unique_instances(&split.train);
    let epochs = |v| if matches!(v, Variant::Lookup | Variant::LookupAdapted) { 18 } else { 20 };
    let check = Check::AtLeast(0.99);
    let plans = Variant::ALL.iter().map(|&variant| Plan { variant, epochs: epochs(variant), check }).collect();
    let task = Task { name: "latch_sequence", data: &data, split, lookup_patterns, plans };
    let options = RunOptions {
        seed: args.seed,
        epochs: args.epochs,
        only: args.models,
        out_dir: args.out,
        verbose: args.verbose,
    };
    match run_task_on(args.device, &task, &options) {
        Ok(rows) => {
            print!("{}", format_table(&rows));
            if rows.iter().all(|r| r.passes()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("latch_sequence: {e}");
            ExitCode::FAILURE
        }
    }
}
