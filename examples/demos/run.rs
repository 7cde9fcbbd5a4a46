//! One demo task end to end: train each requested variant from the same seed, log every epoch, and
//! summarise. The two examples only describe their task and parse their flags.

use super::data::{BagDataset, Split};
use super::harness::{Check, EpochRecord, MetricsLog, Summary};
use super::model::{DemoNet, Variant};
use super::train::{fit, TrainConfig};
use hopfield::backend::{Device, OnBackend};
use hopfield::{Backend, HopfieldError, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// How one variant is trained in a task.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub variant: Variant,
    /// The notebook's epoch count for this variant.
    pub epochs: usize,
    /// What the variant's final eval accuracy is checked against.
    pub check: Check,
}

/// A demo task: its data, split and per-variant plans.
pub struct Task<'a> {
    /// `bit_pattern` or `latch_sequence` (names the metrics file).
    pub name: &'a str,
    pub data: &'a dyn BagDataset,
    pub split: Split,
    /// Distinct training instances (lookup quantity and the adapted lookup's initial stored patterns).
    pub lookup_patterns: Vec<Vec<u8>>,
    pub plans: Vec<Plan>,
}

/// What the examples let the user change.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Seed of each model's initialisation, shuffling and dropout (the notebooks' `set_seed()` uses 42).
    pub seed: u64,
    /// Replace every plan's epoch count.
    pub epochs: Option<usize>,
    /// Run only these variants (all when empty).
    pub only: Vec<Variant>,
    /// Where `<task>.jsonl` goes.
    pub out_dir: std::path::PathBuf,
    /// Print one line per epoch.
    pub verbose: bool,
}

/// [`run_task`] on `device` (`--device`), the CPU's allocator tuned for a long run.
pub fn run_task_on(device: Device, task: &Task<'_>, options: &RunOptions) -> Result<Vec<Summary>> {
    struct On<'a, 'b>(&'a Task<'b>, &'a RunOptions);
    impl OnBackend for On<'_, '_> {
        type Output = Result<Vec<Summary>>;
        fn run<B: Backend<Elem = f32>>(self, backend: B) -> Self::Output {
            run_task(&backend, self.0, self.1)
        }
    }
    hopfield::backend::cpu::tune_allocator();
    device.run(On(task, options))?
}

/// Train every selected variant of `task` in turn and return the table rows.
pub fn run_task<B: Backend>(backend: &B, task: &Task<'_>, options: &RunOptions) -> Result<Vec<Summary>> {
    let mut log = MetricsLog::create(&options.out_dir, task.name).map_err(|source| HopfieldError::Io {
        op: "metrics log",
        path: options.out_dir.display().to_string(),
        source,
    })?;
    let mut rows = Vec::new();
    for plan in task.plans.iter().filter(|p| options.only.is_empty() || options.only.contains(&p.variant)) {
        rows.push(run_plan(backend, task, plan, options, &mut log)?);
    }
    eprintln!("metrics: {}", log.path().display());
    Ok(rows)
}

fn run_plan<B: Backend>(
    backend: &B,
    task: &Task<'_>,
    plan: &Plan,
    options: &RunOptions,
    log: &mut MetricsLog,
) -> Result<Summary> {
    let name = plan.variant.name();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut net = DemoNet::new(backend, plan.variant, task.data.bag_shape(), &task.lookup_patterns, &mut rng)?;
    let config = TrainConfig::notebook(options.epochs.unwrap_or(plan.epochs));
    let log_path = log.path().display().to_string();
    let history = fit(backend, &mut net, task.data, &task.split, &config, &mut rng, |s| {
        if options.verbose {
            eprintln!(
                "{} {name} epoch {:>3}: train loss {:.4} acc {:.4} | eval loss {:.4} acc {:.4} ({:.1} s)",
                task.name, s.epoch, s.train_loss, s.train_accuracy, s.eval_loss, s.eval_accuracy, s.elapsed_s
            );
        }
        log.write(&EpochRecord {
            task: task.name,
            model: name,
            epoch: s.epoch,
            train_loss: s.train_loss,
            train_accuracy: s.train_accuracy,
            eval_loss: s.eval_loss,
            eval_accuracy: s.eval_accuracy,
            elapsed_s: s.elapsed_s,
        })
        .map_err(|source| HopfieldError::Io { op: "metrics log", path: log_path.clone(), source })
    })?;
    let last = history.last().copied();
    Ok(Summary {
        model: name.to_string(),
        parameters: net.num_trainable(backend),
        epochs: history.len(),
        train_accuracy: last.map_or(0.0, |s| s.train_accuracy),
        eval_accuracy: last.map_or(0.0, |s| s.eval_accuracy),
        best_eval_accuracy: history.iter().map(|s| s.eval_accuracy).fold(0.0, f64::max),
        wall_s: last.map_or(0.0, |s| s.elapsed_s),
        check: plan.check,
    })
}
