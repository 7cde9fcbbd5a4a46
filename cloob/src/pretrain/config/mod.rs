//! The settings of a run, as plain data: what the binary's flags fill in, what a checkpoint stores, and
//! what a resumed run must agree with.

use super::run_dir::check_run_name;
use super::{PretrainError, Result};
use crate::loss::{LoobScale, LossConfig, LossKind};
use crate::model::ClipConfig;
use crate::train::TrainConfig;
use hopfield::layers::Retrieval;
use hopfield::optim::{AdamConfig, DecayFilter};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

mod batch;
mod data;
mod lock;
mod open_clip;
mod parse;
mod pretrained;
mod report;
mod resume;
mod schedule;
mod zeroshot;
pub use batch::CONFIG_VERSION;
pub use data::DataSpec;
pub use lock::LockOptions;
pub(crate) use parse::fits_in_memory;
use parse::*;
pub use parse::{at_least_two, separator};
pub use pretrained::{legacy_architecture, ModelSource};
pub use report::{ReportOptions, ReportTarget};
pub use resume::{MAY_CHANGE, SAFE_ON_RESUME};
pub use schedule::Scheduler;
pub use zeroshot::ZeroShotOptions;

/// The most scenes in an epoch of the embedded set (its permutation holds 4 bytes a scene).
pub const MAX_EMBEDDED_LEN: usize = 100_000_000;

/// The most shard samples shuffled together (each held encoded, tens of KB for a photo).
pub const MAX_SHUFFLE_BUFFER: usize = 1_000_000;

/// How to read a CSV source (open_clip's `--csv-*` flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct CsvOptions {
    /// CSV image path column.
    #[arg(long = "csv-img-key", value_name = "CSV_IMG_KEY", default_value = "filepath")]
    pub img_key: String,
    /// CSV caption column.
    #[arg(long = "csv-caption-key", value_name = "CSV_CAPTION_KEY", default_value = "title")]
    pub caption_key: String,
    /// CSV separator (one character; `\t` or `tab` for tab).
    #[arg(long = "csv-separator", value_name = "CSV_SEPARATOR", default_value = "\\t", value_parser = separator)]
    pub separator: char,
    /// A validation CSV for retrieval (default: the first rows of the training CSV).
    #[arg(long = "val-data", value_name = "VAL_DATA")]
    pub val: Option<PathBuf>,
}

/// How to read WebDataset shards (open_clip's `--train-num-samples`, webdataset's shuffle buffer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct WdsOptions {
    /// Pairs in one epoch of the shards (open_clip's flag; needed for --epochs on shards).
    #[arg(long = "train-num-samples", value_name = "TRAIN_NUM_SAMPLES", value_parser = at_least_one::<usize>)]
    pub train_num_samples: Option<usize>,
    /// Shard samples shuffled together, held encoded (about this many × the mean file size in memory).
    #[arg(long = "shuffle-buffer", value_name = "SHUFFLE_BUFFER", default_value_t = 1000)]
    #[arg(value_parser = count_in(1, MAX_SHUFFLE_BUFFER))]
    pub shuffle_buffer: usize,
    /// Where a shard sample's caption is: txt (the `.txt` member) or json:FIELD (a field of `.json`).
    #[arg(long = "wds-caption", value_name = "WDS_CAPTION", default_value = "txt", value_parser = caption_field)]
    pub caption: String,
}

/// What a run does when a step's loss or gradient is not finite (`--on-nan`). The refused step never
/// changes the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnNan {
    /// Stop with an error, after saving the model of the last good step as `step_N-last-good`.
    Stop,
    /// Leave the batch out and go on with the next one (the model is unchanged).
    Skip,
    /// Reload the last checkpoint and replay from it, leaving the offending batch out.
    Rollback,
}

/// Settings of long runs: disk use and recovery. All may change when a run is resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct LongRunOptions {
    /// Regular checkpoints kept in the run folder (the newest N; older ones are deleted after each save).
    #[arg(long = "keep-checkpoints", value_name = "N", default_value_t = 3, value_parser = at_least_one::<usize>)]
    pub keep_checkpoints: usize,
    /// Also keep every checkpoint whose step is a multiple of K (milestones); 0: none.
    #[arg(long = "keep-every", value_name = "K", default_value_t = 0)]
    pub keep_every: u64,
    /// Also keep the newest checkpoint as `checkpoints/latest.json` (a link replaced atomically after each
    /// save; open_clip's `epoch_latest.pt`): a fixed path for `--resume` and `cloob-eval`.
    #[arg(long = "save-most-recent")]
    #[serde(default)]
    pub save_most_recent: bool,
    /// On a non-finite loss or gradient: stop (saving the last good state), skip the batch, or roll back to
    /// the last checkpoint and leave the batch out.
    #[arg(long = "on-nan", value_name = "ACTION", value_enum, default_value_t = OnNan::Stop)]
    pub on_nan: OnNan,
    /// Batches `--on-nan skip|rollback` may leave out in one process before the run stops.
    #[arg(long = "nan-retries", value_name = "N", default_value_t = 3)]
    pub nan_retries: u32,
}

impl Default for LongRunOptions {
    /// The flags' defaults.
    fn default() -> Self {
        flag_defaults()
    }
}

impl Default for WdsOptions {
    /// The flags' defaults.
    fn default() -> Self {
        flag_defaults()
    }
}

impl Default for CsvOptions {
    /// The flags' defaults.
    fn default() -> Self {
        flag_defaults()
    }
}

/// Everything a run depends on, and `cloob-pretrain`'s flags: each field's doc is its `--help` line and
/// its default is written here once ([`RunConfig::default`] reads the flags' defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct RunConfig {
    /// Model: tiny (2 CPU cores, minutes), small, vit-b32 (the paper's), rn-tiny, or open_clip's ViT-B-32,
    /// ViT-B-16, ViT-L-14, RN50, RN101 and their -quickgelu variants (see cloob/model_configs/).
    #[arg(long = "model", value_name = "MODEL", default_value = "tiny")]
    pub model_preset: String,
    /// A model-config file, open_clip weights to start from, the architecture a checkpoint was trained with.
    #[command(flatten)]
    #[serde(default)]
    pub source: ModelSource,
    /// Loss.
    #[arg(long, value_enum, default_value_t = LossKind::Cloob)]
    pub loss: LossKind,
    /// β of CLOOB's Hopfield retrieval.
    #[arg(long = "scale-hopfield", value_name = "SCALE_HOPFIELD", default_value_t = 14.3, value_parser = positive)]
    pub hopfield_beta: f64,
    /// Row normaliser of CLOOB's Hopfield retrieval: softmax (the paper's), sparsemax, entmax15 or
    /// entmax:ALPHA (1 < α ≤ 2); softmax1 is accepted but equals softmax here (rows are renormalised).
    #[arg(long, default_value_t = Retrieval::Softmax, value_parser = fixed_retrieval)]
    #[serde(default)]
    pub retrieval: Retrieval,
    /// Pairs per process and micro-batch, as in open_clip: a step trains on --batch-size × --accum-freq ×
    /// processes pairs (the loss sees all of them); at least 2.
    #[arg(long, default_value_t = 64, value_parser = at_least_two)]
    pub batch_size: usize,
    /// Processes of the run (set at start-up from MPI's world; 1 without it).
    #[arg(skip = 1usize)]
    #[serde(default = "batch::one")]
    pub world_size: usize,
    /// The meaning of the stored flags: [`CONFIG_VERSION`] (absent in old checkpoints: 1, whose
    /// `batch_size` was the global total; see [`RunConfig::global_batch_of_saved`]).
    #[arg(skip = CONFIG_VERSION)]
    #[serde(default = "batch::legacy_version")]
    pub config_version: u32,
    /// Optimiser steps (ignored with --epochs).
    #[arg(long, default_value_t = 1000, value_parser = at_least_one::<u64>)]
    pub steps: u64,
    /// Train for this many epochs instead (the total is rounded up to whole steps).
    #[arg(long, value_parser = positive)]
    pub epochs: Option<f64>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3, value_parser = non_negative)]
    pub lr: f64,
    /// AdamW weight decay (not on biases, norms, embeddings, τ).
    #[arg(long, default_value_t = 0.1, value_parser = non_negative)]
    pub wd: f64,
    /// Decay the token and positional embedding tables too (open_clip's exact parameter groups).
    #[arg(long)]
    #[serde(default)]
    pub decay_embeddings: bool,
    /// Warmup steps (a warmup as long as the run is shortened to end before its last step).
    #[arg(long, default_value_t = 30)]
    pub warmup: u64,
    /// Warmup as a fraction of the run's steps instead of --warmup (set by --recipe; not a flag).
    #[arg(skip)]
    #[serde(default)]
    pub warmup_fraction: Option<f64>,
    /// AdamW β₁.
    #[arg(long, default_value_t = 0.9, value_parser = unit_interval)]
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// AdamW β₂.
    #[arg(long, default_value_t = 0.98, value_parser = unit_interval)]
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// AdamW ε (open_clip's 1e-6 for ViTs; CLOOB's early gradients are small, 1e-8 damps them less).
    #[arg(long, default_value_t = 1e-6, value_parser = positive)]
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// How the two InfoLOOB terms combine: tau-sum (cloob's τ·(L₁ + L₂)) or mean ((L₁ + L₂)/2).
    #[arg(long, value_enum, default_value_t = LoobScale::TauSum)]
    #[serde(default)]
    pub loob_scale: LoobScale,
    /// Start from the model weights of this checkpoint's JSON (same model preset; τ⁻¹ from --init-inv-tau),
    /// with a fresh optimiser and schedule: a warm start, not a resume.
    #[arg(long, value_name = "CKPT")]
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// A paper recipe; flags given explicitly win. `cc`: the Conceptual Captions command of ml-jku/cloob
    /// (--scale-hopfield 8, --init-inv-tau 30, --lr 1e-3, --wd 0.1, cosine restarts with 10 cycles, and its
    /// warmup of 20 000 of ≈ 395 000 steps scaled to this run's length).
    #[arg(long, value_enum)]
    #[serde(default)]
    pub recipe: Option<Recipe>,
    /// Schedule after the warmup.
    #[arg(long = "lr-scheduler", value_name = "LR_SCHEDULER", value_enum, default_value_t = Scheduler::Cosine)]
    pub scheduler: Scheduler,
    /// Cycles of cosine-restarts.
    #[arg(long = "restart-cycles", value_name = "RESTART_CYCLES", default_value_t = 1)]
    #[arg(value_parser = at_least_one::<u64>)]
    pub cycles: u64,
    /// Initial inverse temperature τ⁻¹, in [1, 100] (the range it is clamped to while training).
    #[arg(long, default_value_t = 30.0, value_parser = inv_tau)]
    pub init_inv_tau: f64,
    /// Train τ⁻¹ (fixed by default, as cloob).
    #[arg(long)]
    pub learnable_inv_tau: bool,
    /// Micro-batches of --batch-size pairs accumulated per optimiser step, as open_clip's flag (the loss is
    /// over all of them).
    #[arg(long, default_value_t = 1, value_parser = at_least_one::<usize>)]
    pub accum_freq: usize,
    /// Clip the gradient norm to this (0: off).
    // The full path keeps clap from reading `Option` as "flag may be absent": `clip_norm` maps 0 to `None`.
    #[arg(long, default_value = "1", value_parser = clip_norm)]
    pub grad_clip_norm: ::std::option::Option<f64>,
    /// Seed of the initialisation, the data order, the captions and the crops.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training data: embedded, fashion-mnist, csv:PATH, wds:PATTERN (tar shards, with braces) or
    /// imagefolder:DIR (class folders, captioned by open_clip's templates).
    #[arg(long, default_value_t = DataSpec::Embedded)]
    pub data: DataSpec,
    /// Fashion-MNIST's IDX directory.
    #[arg(long, default_value = crate::data::fashion::DEFAULT_DIR)]
    pub fashion_dir: PathBuf,
    /// CSV layout.
    #[command(flatten)]
    pub csv: CsvOptions,
    /// WebDataset shards.
    #[command(flatten)]
    #[serde(default)]
    pub wds: WdsOptions,
    /// Generated scenes per epoch of the embedded set.
    #[arg(long, default_value_t = 20_000, value_parser = count_in(1, MAX_EMBEDDED_LEN))]
    pub embedded_len: usize,
    /// Images per evaluation set; at least 2.
    #[arg(long, default_value_t = 1000, value_parser = at_least_two)]
    pub eval_size: usize,
    /// Evaluate (zero-shot, retrieval, embeddings; --imagenet-val too) every N optimiser steps (open_clip
    /// counts epochs); 0: only at the end.
    #[arg(long = "zeroshot-frequency", value_name = "ZEROSHOT_FREQUENCY", default_value_t = 100)]
    pub eval_every: u64,
    /// Save a checkpoint every N steps; 0: only at the end.
    #[arg(long = "save-frequency", value_name = "SAVE_FREQUENCY", default_value_t = 100)]
    pub save_every: u64,
    /// Logs directory; a run writes to `<logs>/<name>/`.
    #[arg(long, default_value = "logs")]
    pub logs: PathBuf,
    /// Zero-shot on an ImageFolder tree (open_clip's --imagenet-val).
    #[command(flatten)]
    #[serde(default)]
    pub zero_shot: ZeroShotOptions,
    /// Checkpoint pruning and recovery from non-finite steps.
    #[command(flatten)]
    #[serde(default)]
    pub long_run: LongRunOptions,
    /// Frozen towers for fine-tuning (open_clip's --lock-* flags; LiT).
    #[command(flatten)]
    #[serde(default)]
    pub lock: LockOptions,
    /// Run name (the binary's `--name`; by default [`RunConfig::default_name`]).
    #[arg(skip)]
    pub name: String,
}

impl Default for RunConfig {
    /// The run of `cloob-pretrain` without flags: tiny model, CLOOB, the embedded set.
    fn default() -> Self {
        let cfg: RunConfig = flag_defaults();
        RunConfig { name: cfg.default_name(), ..cfg }
    }
}

/// The value of flags `T` when none is given.
fn flag_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let matches = T::augment_args(clap::Command::new("defaults")).get_matches_from(["defaults"]);
    T::from_arg_matches(&matches).expect("every flag has a default")
}

/// `--loss` values, under open_clip's and cloob's names.
impl clap::ValueEnum for LossKind {
    fn value_variants<'a>() -> &'a [Self] {
        &[LossKind::Cloob, LossKind::Clip, LossKind::ClipHopfield, LossKind::InfoLoob]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue as V;
        Some(match self {
            LossKind::Cloob => V::new("cloob").help("InfoLOOB on Hopfield-retrieved embeddings (CLOOB)"),
            LossKind::Clip => V::new("clip").help("InfoNCE on the embeddings (CLIP)"),
            LossKind::ClipHopfield => {
                V::new("infonce-hopfield").help("Ablation: InfoNCE on Hopfield-retrieved embeddings")
            }
            LossKind::InfoLoob => V::new("infoloob").help("Ablation: InfoLOOB without Hopfield retrieval"),
        })
    }
}

/// `--loob-scale` values.
impl clap::ValueEnum for LoobScale {
    fn value_variants<'a>() -> &'a [Self] {
        &[LoobScale::TauSum, LoobScale::Mean]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue as V;
        Some(match self {
            LoobScale::TauSum => V::new("tau-sum").help("τ·(L_img + L_txt), cloob's"),
            LoobScale::Mean => V::new("mean").help("(L_img + L_txt)/2, on InfoNCE's scale"),
        })
    }
}

/// A paper's hyper-parameters in one flag (`--recipe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// Conceptual Captions (ml-jku/cloob's README command; batch 512 there).
    Cc,
}

/// The cc command's warmup, 20 000 steps, over its length: 70 epochs of 2.89 M pairs at batch 512.
pub const CC_WARMUP_FRACTION: f64 = 20_000.0 / (70.0 * 2_890_000.0 / 512.0);

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.98
}
fn default_eps() -> f64 {
    1e-6
}

impl RunConfig {
    /// The run name when none is given: `<loss>-<model>-<data>-s<seed>`, a CSV source by its file stem.
    pub fn default_name(&self) -> String {
        use clap::ValueEnum;
        let loss = self.loss.to_possible_value().expect("every loss has a flag value");
        let data = match &self.data {
            DataSpec::Csv(p) => p.file_stem().and_then(|s| s.to_str()).unwrap_or("csv").to_string(),
            DataSpec::ImageFolder(p) => {
                format!("imagefolder-{}", p.file_name().and_then(|s| s.to_str()).unwrap_or("images"))
            }
            DataSpec::Wds(p) => {
                let folder = std::path::Path::new(p).parent().and_then(|d| d.file_name()).and_then(|s| s.to_str());
                format!("wds-{}", folder.unwrap_or("shards"))
            }
            d => d.to_string(),
        };
        format!("{}-{}-{}-s{}", loss.get_name(), self.model_preset, data, self.seed)
    }

    /// The model's shape ([`ModelSource::resolve`]) with this run's τ⁻¹ settings.
    pub fn clip_config(&self) -> Result<ClipConfig> {
        let base = self.source.resolve(&self.model_preset)?;
        Ok(ClipConfig { init_inv_tau: self.init_inv_tau, learnable_inv_tau: self.learnable_inv_tau, ..base })
    }

    /// Apply `recipe`'s settings to every field whose flag was not given (`given(id)`: the flag's clap id,
    /// the field name).
    pub fn apply_recipe(&mut self, given: &dyn Fn(&str) -> bool) {
        let Some(Recipe::Cc) = self.recipe else { return };
        let set = |id: &str| !given(id);
        if set("hopfield_beta") {
            self.hopfield_beta = 8.0;
        }
        if set("init_inv_tau") {
            self.init_inv_tau = 30.0;
        }
        if set("lr") {
            self.lr = 1e-3;
        }
        if set("wd") {
            self.wd = 0.1;
        }
        if set("scheduler") {
            self.scheduler = Scheduler::CosineRestarts;
        }
        if set("cycles") {
            self.cycles = 10;
        }
        if set("warmup") {
            self.warmup_fraction = Some(CC_WARMUP_FRACTION);
        }
    }

    /// Check every setting as the flags' parsers do, and those that depend on each other; messages name
    /// the flags. (A config from the flags passes the per-flag checks already; one built in code or read
    /// from a file may not.)
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, why: String| Err(PretrainError(format!("--{flag} {why}")));
        let finite = |v: f64| v.is_finite();
        let reals = [("scale-hopfield", self.hopfield_beta, true), ("lr", self.lr, false), ("wd", self.wd, false)];
        for (flag, v, strictly) in reals {
            if !finite(v) || v < 0.0 || (strictly && v == 0.0) {
                return bad(flag, format!("must be a finite number {} 0, got {v}", if strictly { ">" } else { "≥" }));
            }
        }
        if let Err(e) = fixed_retrieval(&self.retrieval.to_string()) {
            return bad("retrieval", e);
        }
        for (flag, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(flag, format!("must lie in [0, 1), got {v}"));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps", format!("must be a finite number > 0, got {}", self.eps));
        }
        if let Some(f) = self.warmup_fraction.filter(|f| !(0.0..1.0).contains(f)) {
            return bad("recipe", format!("warmup fraction must lie in [0, 1), got {f}"));
        }
        if !(1.0..=100.0).contains(&self.init_inv_tau) {
            return bad("init-inv-tau", format!("must lie in [1, 100], got {}", self.init_inv_tau));
        }
        if let Some(e) = self.epochs.filter(|&e| !finite(e) || e <= 0.0) {
            return bad("epochs", format!("must be a finite number > 0, got {e}"));
        }
        if let Some(c) = self.grad_clip_norm.filter(|&c| !finite(c) || c <= 0.0) {
            return bad("grad-clip-norm", format!("must be a finite number > 0 (or 0 for off), got {c}"));
        }
        if self.batch_size < 2 {
            return bad(
                "batch-size",
                format!("must be at least 2 (the other pairs of a batch are the negatives), got {}", self.batch_size),
            );
        }
        if self.accum_freq == 0 {
            return bad("accum-freq", "must be at least 1, got 0".into());
        }
        if self.world_size == 0 || self.global_batch() == usize::MAX {
            return bad(
                "batch-size",
                format!(
                    "{} × --accum-freq {} × {} process(es) is not a usable global batch",
                    self.batch_size, self.accum_freq, self.world_size
                ),
            );
        }
        for (flag, v) in [("steps", self.steps), ("restart-cycles", self.cycles)] {
            if v == 0 {
                return bad(flag, "must be at least 1, got 0".into());
            }
        }
        if !(1..=MAX_EMBEDDED_LEN).contains(&self.embedded_len) {
            return bad("embedded-len", format!("must lie in [1, {MAX_EMBEDDED_LEN}], got {}", self.embedded_len));
        }
        if self.eval_size < 2 {
            return bad("eval-size", format!("must be at least 2, got {}", self.eval_size));
        }
        if !(1..=MAX_SHUFFLE_BUFFER).contains(&self.wds.shuffle_buffer) {
            return bad(
                "shuffle-buffer",
                format!("must lie in [1, {MAX_SHUFFLE_BUFFER}], got {}", self.wds.shuffle_buffer),
            );
        }
        if let Err(e) = check_run_name(&self.name) {
            return bad("name", e);
        }
        let image_bytes = {
            let s = self.clip_config()?.vision.image_size() as u64;
            3 * s * s * 4
        };
        // The evaluation sets are held decoded (Fashion-MNIST's probe adds a train set twice its size).
        let eval_sets = if self.data == DataSpec::FashionMnist { 3 } else { 1 };
        fits_in_memory("eval-size", self.eval_size, self.eval_size as u64 * eval_sets * image_bytes)?;
        // A batch's pixels in f32, in the loader's queue, in the step and its activations: a floor.
        fits_in_memory("batch-size", self.batch_size, self.process_batch() as u64 * 4 * image_bytes)?;
        if let Err(e) = caption_field(&self.wds.caption) {
            return bad("wds-caption", e);
        }
        if !self.csv.separator.is_ascii() {
            return bad("csv-separator", format!("must be one ASCII character, got {:?}", self.csv.separator));
        }
        self.zero_shot.validate(&self.data)?;
        self.lock.validate(&self.clip_config()?)
    }

    /// This config with its data paths (`--data csv:`, `--val-data`, `--fashion-dir`) made absolute against
    /// the current directory, so a checkpoint's config finds its data from any directory.
    pub fn with_absolute_paths(&self) -> Result<RunConfig> {
        let abs = |p: &std::path::Path| {
            std::path::absolute(p).map_err(|e| PretrainError(format!("cannot resolve the path {}: {e}", p.display())))
        };
        let mut cfg = self.clone();
        match &self.data {
            DataSpec::Csv(p) => cfg.data = DataSpec::Csv(abs(p)?),
            DataSpec::Wds(p) => {
                cfg.data = DataSpec::Wds(abs(std::path::Path::new(p))?.to_string_lossy().into_owned());
            }
            DataSpec::ImageFolder(p) => cfg.data = DataSpec::ImageFolder(abs(p)?),
            _ => {}
        }
        cfg.zero_shot = self.zero_shot.with_absolute_paths(&abs)?;
        if let Some(v) = &self.csv.val {
            cfg.csv.val = Some(abs(v)?);
        }
        cfg.fashion_dir = abs(&self.fashion_dir)?;
        if let Some(p) = &self.init_from {
            cfg.init_from = Some(abs(p)?);
        }
        cfg.source = self.source.with_absolute_paths()?;
        Ok(cfg)
    }

    /// The training step's settings for `total` steps.
    pub fn train_config(&self, total: u64) -> TrainConfig {
        let mut t = TrainConfig::new(
            LossConfig::new(self.loss).hopfield_beta(self.hopfield_beta).retrieval(self.retrieval),
            self.schedule(total),
        );
        let groups = if self.decay_embeddings { DecayFilter::OpenClip } else { DecayFilter::OpenClipNoEmbeddings };
        t.adam = AdamConfig::default().betas(self.beta1, self.beta2).eps(self.eps).weight_decay(self.wd, groups);
        t.loss.loob_scale = self.loob_scale;
        t.accum_freq = self.accum_freq;
        t.grad_clip_norm = self.grad_clip_norm;
        t.lock = self.lock.lock_config();
        t
    }

    /// Steps of the run, given the pairs per epoch (when `epochs` is set).
    pub fn total_steps(&self, epoch_len: Option<usize>) -> Result<u64> {
        match (self.epochs, epoch_len) {
            (None, _) => Ok(self.steps),
            (Some(e), Some(n)) => Ok(((e * n as f64) / self.global_batch() as f64).ceil().max(1.0) as u64),
            (Some(_), None) => Err(PretrainError(
                "--epochs needs a source with a known size (WebDataset shards: give it with --train-num-samples N); \
                 use --steps otherwise"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests;
