//! The settings of a run, as plain data: what the binary's flags fill in, what a checkpoint stores, and
//! what a resumed run must agree with.

use super::{PretrainError, Result};
use crate::loss::{LossConfig, LossKind};
use crate::model::ClipConfig;
use crate::train::TrainConfig;
use hopfield::optim::{AdamConfig, DecayFilter, LrSchedule};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Learning-rate schedule after the warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scheduler {
    /// open_clip's warmup + cosine to zero.
    Cosine,
    /// cloob's warmup + cosine with hard restarts (`cycles` cycles).
    CosineRestarts,
}

/// Where the training pairs come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSpec {
    /// The generated captioned scenes ([`crate::data::scenes`]).
    Embedded,
    /// Fashion-MNIST from Debian's IDX files.
    FashionMnist,
    /// An open_clip CSV file.
    Csv(PathBuf),
}

impl std::str::FromStr for DataSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "embedded" => Ok(DataSpec::Embedded),
            "fashion-mnist" => Ok(DataSpec::FashionMnist),
            _ => match s.strip_prefix("csv:") {
                Some(p) if !p.is_empty() => Ok(DataSpec::Csv(PathBuf::from(p))),
                _ => Err(format!("unknown data source {s:?}: use embedded, fashion-mnist or csv:PATH")),
            },
        }
    }
}

impl std::fmt::Display for DataSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSpec::Embedded => f.write_str("embedded"),
            DataSpec::FashionMnist => f.write_str("fashion-mnist"),
            DataSpec::Csv(p) => write!(f, "csv:{}", p.display()),
        }
    }
}

/// How to read a CSV source (open_clip's `--csv-*` flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CsvOptions {
    /// Image path column.
    pub img_key: String,
    /// Caption column.
    pub caption_key: String,
    /// Field separator.
    pub separator: char,
    /// A validation CSV for retrieval (default: the first rows of the training file).
    pub val: Option<PathBuf>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { img_key: "filepath".into(), caption_key: "title".into(), separator: '\t', val: None }
    }
}

/// Everything a run depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `tiny`, `small` or `vit-b32`.
    pub model_preset: String,
    /// The loss.
    pub loss: LossKind,
    /// β of CLOOB's Hopfield retrieval.
    pub hopfield_beta: f64,
    /// Pairs per optimiser step (split into `accum_freq` micro-batches).
    pub batch_size: usize,
    /// Optimiser steps (used when `epochs` is `None`).
    pub steps: u64,
    /// Epochs instead of steps (the total is rounded up to whole steps).
    pub epochs: Option<f64>,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW weight decay (open_clip's groups).
    pub wd: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// Schedule after the warmup.
    pub scheduler: Scheduler,
    /// Cycles of `cosine-restarts`.
    pub cycles: u64,
    /// Initial τ⁻¹.
    pub init_inv_tau: f64,
    /// Whether τ⁻¹ is trained.
    pub learnable_inv_tau: bool,
    /// Micro-batches per step.
    pub accum_freq: usize,
    /// Clip the gradient norm to this.
    pub grad_clip_norm: Option<f64>,
    /// Seeds the initialisation, the data order, the captions and the crops.
    pub seed: u64,
    /// Training data.
    pub data: DataSpec,
    /// Fashion-MNIST's directory.
    pub fashion_dir: PathBuf,
    /// CSV layout.
    pub csv: CsvOptions,
    /// Generated scenes per epoch of the embedded set.
    pub embedded_len: usize,
    /// Images per evaluation set.
    pub eval_size: usize,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Save a checkpoint every this many steps (0: only at the end).
    pub save_every: u64,
    /// Logs directory; the run writes to `logs/name/`.
    pub logs: PathBuf,
    /// Run name.
    pub name: String,
}

impl Default for RunConfig {
    /// The default command's run: tiny model, CLOOB, the embedded set.
    fn default() -> Self {
        RunConfig {
            model_preset: "tiny".into(), loss: LossKind::Cloob, hopfield_beta: 14.3, batch_size: 64, steps: 300, epochs: None,
            lr: 2e-3, wd: 0.1, warmup: 30, scheduler: Scheduler::Cosine, cycles: 1, init_inv_tau: 30.0,
            learnable_inv_tau: false, accum_freq: 1, grad_clip_norm: Some(1.0), seed: 0, data: DataSpec::Embedded,
            fashion_dir: crate::data::fashion::DEFAULT_DIR.into(), csv: CsvOptions::default(), embedded_len: 20_000,
            eval_size: 1000, eval_every: 100, save_every: 100, logs: "logs".into(), name: "cloob-tiny".into(),
        }
    }
}

/// Settings that may change between a run and its resumption (they do not change the loss curve).
const MAY_CHANGE: [&str; 6] = ["eval_every", "save_every", "logs", "name", "eval_size", "fashion_dir"];

impl RunConfig {
    /// The model's shape: the preset with this run's τ⁻¹ settings.
    pub fn clip_config(&self) -> Result<ClipConfig> {
        let base = match self.model_preset.as_str() {
            "tiny" => ClipConfig::tiny(),
            "small" => ClipConfig::small(),
            "vit-b32" | "ViT-B-32" => ClipConfig::vit_b32(),
            other => return Err(PretrainError(format!("unknown model preset {other:?}: use tiny, small or vit-b32"))),
        };
        Ok(ClipConfig { init_inv_tau: self.init_inv_tau, learnable_inv_tau: self.learnable_inv_tau, ..base })
    }

    /// The learning rate as a function of the step, for `total` steps.
    pub fn schedule(&self, total: u64) -> LrSchedule {
        match self.scheduler {
            Scheduler::Cosine => LrSchedule::WarmupCosine { base: self.lr, warmup: self.warmup, total, floor: 0.0 },
            Scheduler::CosineRestarts => LrSchedule::CosineRestarts { base: self.lr, warmup: self.warmup, total, cycles: self.cycles },
        }
    }

    /// The training step's settings for `total` steps.
    pub fn train_config(&self, total: u64) -> TrainConfig {
        let mut t = TrainConfig::new(LossConfig::new(self.loss).hopfield_beta(self.hopfield_beta), self.schedule(total));
        t.adam = AdamConfig::default().betas(0.9, 0.98).eps(1e-6).weight_decay(self.wd, DecayFilter::OpenClip);
        t.accum_freq = self.accum_freq;
        t.grad_clip_norm = self.grad_clip_norm;
        t
    }

    /// Steps of the run, given the pairs per epoch (when `epochs` is set).
    pub fn total_steps(&self, epoch_len: Option<usize>) -> Result<u64> {
        match (self.epochs, epoch_len) {
            (None, _) => Ok(self.steps),
            (Some(e), Some(n)) => Ok(((e * n as f64) / self.batch_size as f64).ceil().max(1.0) as u64),
            (Some(_), None) => Err(PretrainError("--epochs needs a source with a known size; use --steps".into())),
        }
    }

    /// The settings a resumed run must share with its checkpoint, or an error naming the first that differs.
    pub fn check_resumable(&self, saved: &RunConfig) -> Result<()> {
        let (a, b) = (serde_json::to_value(self).expect("plain data"), serde_json::to_value(saved).expect("plain data"));
        let (a, b) = (a.as_object().expect("a struct"), b.as_object().expect("a struct"));
        for (key, value) in a {
            if !MAY_CHANGE.contains(&key.as_str()) && b.get(key) != Some(value) {
                return Err(PretrainError(format!(
                    "checkpoint mismatch: it was trained with {key} = {}, this run has {key} = {value}; \
                     pass the same setting to resume (only {MAY_CHANGE:?} may change)",
                    b.get(key).map(|v| v.to_string()).unwrap_or_else(|| "(absent)".into()))));
            }
        }
        Ok(())
    }
}
