//! hflayers' bit pattern demo: multiple-instance learning on bags of 16 random 8-bit instances, where
//! positive bags carry one of 8 signal patterns. Trains the plain, adapted, pooling and lookup models of the
//! notebook (BCE, AdamW lr 1e-3, clip 1.0, batch 32), prints a table and writes per-epoch metrics as JSONL.
//! Epochs: the notebook's 250, except 500 for the adapted association, whose eval accuracy (here and in the
//! notebook's own curve) is still rising at epoch 250 and levels off by about epoch 350 (README: 5 seeds at
//! 250 and 500 epochs). The adapted pooling gains nothing from the longer run and keeps 250.
//!
//! The table sets each adapted model's final eval accuracy beside the final value of the notebook's curve.
//! Both are single training runs, so they differ by seed noise alone: with `s` the standard deviation of our
//! final eval accuracy over five model seeds ([`REFERENCES`]), the difference of two runs has a standard
//! deviation of `√2·s`, and a model agrees with the notebook when it lies within `2·√2·s` of it (0.055 for
//! the adapted association at 500 epochs, 0.025 for the adapted pooling at 250). That is judged on the
//! notebook's data (`--seed-signals 43 --seed-data 44`) at an epoch count the seeds were measured at (250,
//! 500), for any `--seed`; elsewhere the notebook's value is shown, not judged. The other models' notebook
//! values ([`NOTEBOOK_ONLY`]) are shown beside ours, not judged: we have no five-seed spread for them.
//! Exits with status 2 when a judged model lies outside (the table marks it `OUTSIDE`).
//!
//! ```text
//! cargo run --release --example bit_pattern -- --epochs 250 --seed 42 --out target/demos
//! ```

use clap::Parser;
// The harness is shared with `latch_sequence`: each example uses its own part of it.
#[allow(dead_code, unused_imports)]
mod demos;

use demos::harness::{format_table, Check, Summary};
use demos::run::{run_task_on, Plan, RunOptions, Task};
use demos::{BagDataset, BitPatternConfig, BitPatternSet, Split, Variant};
use std::path::PathBuf;
use std::process::ExitCode;

/// Bags kept for evaluation at each end of the (positives-first) data set, as the notebook's samplers.
const EVAL_EDGE: usize = 256;
/// The notebook's epochs.
const EPOCHS: usize = 250;
/// Epochs of the adapted association: its eval curve still rises at 250.
const EPOCHS_ADAPTED: usize = 500;
/// hflayers' seeds of the signal patterns and of the bags: the notebook's data.
const NOTEBOOK_SEED_SIGNALS: u64 = 43;
const NOTEBOOK_SEED_DATA: u64 = 44;

/// One adapted model's final eval accuracy in the notebook and ours over five model seeds.
struct Reference {
    variant: Variant,
    /// The final value (epoch 250) of the notebook's eval accuracy curve, read from the plot it ships
    /// (`examples/bit_pattern/resources/*.pdf` in hflayers).
    notebook: f64,
    /// Our epoch count.
    epochs: usize,
    /// Our correctly classified eval bags (of `2·EVAL_EDGE` = 512) after `epochs`, model seeds 42, 1, 2, 3, 4,
    /// on the notebook's data (docs/results/bit-pattern-500-epochs.json).
    correct: [u16; 5],
}

/// Every number the table's judgement rests on.
const REFERENCES: [Reference; 4] = [
    Reference { variant: Variant::HopfieldAdapted, notebook: 0.846, epochs: 250, correct: [425, 434, 417, 426, 438] },
    Reference { variant: Variant::HopfieldAdapted, notebook: 0.846, epochs: 500, correct: [438, 440, 449, 422, 433] },
    Reference { variant: Variant::PoolingAdapted, notebook: 0.836, epochs: 250, correct: [420, 422, 428, 428, 431] },
    Reference { variant: Variant::PoolingAdapted, notebook: 0.836, epochs: 500, correct: [425, 408, 425, 435, 428] },
];

impl Reference {
    /// Our five final eval accuracies.
    fn accuracies(&self) -> [f64; 5] {
        self.correct.map(|c| c as f64 / (2 * EVAL_EDGE) as f64)
    }

    /// How far one run may lie from the notebook's: two standard deviations of the difference of two
    /// single runs, `2·√2·s` with `s` the sample standard deviation of [`Reference::accuracies`].
    fn tolerance(&self) -> f64 {
        let acc = self.accuracies();
        let mean = acc.iter().sum::<f64>() / acc.len() as f64;
        let var = acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (acc.len() - 1) as f64;
        2.0 * std::f64::consts::SQRT_2 * var.sqrt()
    }
}

/// The final values (epoch 250) of the notebook's curves for the models without a five-seed spread of ours:
/// shown beside our result, not judged.
const NOTEBOOK_ONLY: [(Variant, f64); 4] =
    [(Variant::Hopfield, 0.565), (Variant::Pooling, 0.578), (Variant::Lookup, 0.521), (Variant::LookupAdapted, 0.848)];

/// What `variant`'s final eval accuracy after `epochs` is checked against; `notebook_data` when the bags are
/// the notebook's.
fn check(variant: Variant, epochs: usize, notebook_data: bool) -> Check {
    if let Some(&(_, value)) = NOTEBOOK_ONLY.iter().find(|(v, _)| *v == variant) {
        return Check::Notebook { value, tolerance: None };
    }
    let mut refs = REFERENCES.iter().filter(|r| r.variant == variant).peekable();
    let Some(value) = refs.peek().map(|r| r.notebook) else { return Check::None };
    let tolerance = refs.find(|r| notebook_data && r.epochs == epochs).map(Reference::tolerance);
    Check::Notebook { value, tolerance }
}

/// The exit status for the closing table: 2 when a model fails its check.
fn exit_status(rows: &[Summary]) -> u8 {
    if rows.iter().all(Summary::passes) {
        0
    } else {
        2
    }
}

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
    #[arg(long, default_value_t = NOTEBOOK_SEED_SIGNALS)]
    seed_signals: u64,
    /// Seed of the bags (hflayers' default 44).
    #[arg(long, default_value_t = NOTEBOOK_SEED_DATA)]
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
    /// Where to train: cpu (default), wgpu (a Vulkan, Metal or DX12 GPU; without one, Mesa's lavapipe: apt
    /// install mesa-vulkan-drivers) or cuda[:N] (NVIDIA GPU N; a build with --features cuda).
    #[arg(long, default_value = "cpu", value_parser = hopfield::backend::Device::parse_flag)]
    device: hopfield::backend::Device,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config =
        BitPatternConfig { seed_signals: args.seed_signals, seed_data: args.seed_data, ..BitPatternConfig::demo() };
    let data = BitPatternSet::new(&config);
    let split = Split::edges(data.len(), EVAL_EDGE);
    let lookup_patterns = data.unique_instances(&split.train);
    let notebook_data = (args.seed_signals, args.seed_data) == (NOTEBOOK_SEED_SIGNALS, NOTEBOOK_SEED_DATA);
    let plans = Variant::ALL
        .iter()
        .map(|&variant| {
            let epochs = if variant == Variant::HopfieldAdapted { EPOCHS_ADAPTED } else { EPOCHS };
            Plan { variant, epochs, check: check(variant, args.epochs.unwrap_or(epochs), notebook_data) }
        })
        .collect();
    let task = Task { name: "bit_pattern", data: &data, split, lookup_patterns, plans };
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
            ExitCode::from(exit_status(&rows))
        }
        Err(e) => {
            eprintln!("bit_pattern: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: Variant, epochs: usize, eval_accuracy: f64) -> Summary {
        let check = check(variant, epochs, true);
        Summary {
            model: variant.name().into(),
            parameters: 1,
            epochs,
            train_accuracy: 0.0,
            eval_accuracy,
            best_eval_accuracy: eval_accuracy,
            wall_s: 0.0,
            check,
        }
    }

    #[test]
    fn the_tolerance_is_two_standard_deviations_of_a_difference_of_two_runs() {
        let tol = |variant, epochs| match check(variant, epochs, true) {
            Check::Notebook { tolerance: Some(t), .. } => t,
            other => panic!("{other:?}"),
        };
        // Our seeds: 0.852 ± 0.019 (adapted association, 500 epochs), 0.832 ± 0.009 (adapted pooling, 250).
        assert!((tol(Variant::HopfieldAdapted, EPOCHS_ADAPTED) - 0.0548).abs() < 5e-4);
        assert!((tol(Variant::PoolingAdapted, EPOCHS) - 0.0254).abs() < 5e-4);
        assert!((tol(Variant::HopfieldAdapted, 250) - 0.0453).abs() < 5e-4);
    }

    #[test]
    fn every_measured_seed_agrees_with_the_notebook_and_the_notebook_lies_in_our_range() {
        for r in &REFERENCES {
            let acc = r.accuracies();
            for a in acc {
                assert!(row(r.variant, r.epochs, a).passes(), "{} {} epochs: {a}", r.variant.name(), r.epochs);
            }
            let (lo, hi) = acc.iter().fold((1.0f64, 0.0f64), |(lo, hi), &a| (lo.min(a), hi.max(a)));
            assert!(lo <= r.notebook && r.notebook <= hi, "{} {}: {lo}..{hi}", r.variant.name(), r.epochs);
        }
        // The default run (seed 42): 0.855 and 0.820.
        let default =
            [row(Variant::HopfieldAdapted, EPOCHS_ADAPTED, 0.855), row(Variant::PoolingAdapted, EPOCHS, 0.820)];
        assert_eq!(exit_status(&default), 0);
    }

    #[test]
    fn a_model_clearly_off_the_notebook_fails_in_either_direction() {
        for (variant, epochs, acc) in [
            (Variant::PoolingAdapted, EPOCHS, 0.80),
            (Variant::PoolingAdapted, EPOCHS, 0.87),
            (Variant::HopfieldAdapted, EPOCHS_ADAPTED, 0.78),
            (Variant::HopfieldAdapted, EPOCHS_ADAPTED, 0.91),
        ] {
            let r = row(variant, epochs, acc);
            assert!(!r.passes(), "{} at {acc}", variant.name());
            assert_eq!(exit_status(&[row(Variant::Hopfield, EPOCHS, 0.5), r]), 2);
        }
    }

    #[test]
    fn unmeasured_settings_and_the_other_models_show_the_notebook_unjudged() {
        let shown = Check::Notebook { value: 0.836, tolerance: None };
        assert_eq!(check(Variant::PoolingAdapted, 100, true), shown);
        assert_eq!(check(Variant::PoolingAdapted, EPOCHS, false), shown);
        assert!(shown.passes(0.5));
        for (variant, value) in NOTEBOOK_ONLY {
            assert_eq!(check(variant, EPOCHS, true), Check::Notebook { value, tolerance: None });
        }
    }
}
