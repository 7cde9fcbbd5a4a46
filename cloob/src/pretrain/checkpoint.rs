//! Checkpoints: `step_NNNNNNN.safetensors` (weights, open_clip's names), `step_NNNNNNN.optim.safetensors`
//! (AdamW's moments and step counts, from [`hopfield::optim::Optimizer::export_state`]) and
//! `step_NNNNNNN.json` (step, epoch, schedule, RNG state, run config, and the length and CRC-32 of both
//! binary files).
//!
//! Each file is written to a temporary name and renamed into place, the JSON last: a checkpoint whose
//! JSON exists is complete. Loading checks lengths, checksums, names and shapes, and the run config,
//! before anything is handed back, so a truncated or mismatched checkpoint is an error that loads nothing.
//! The JSON may name its binary files only by a bare file name in its own folder, and a file is read only
//! when it is a regular file of the length the JSON gives.
//!
//! [`prune`] keeps the newest `--keep-checkpoints` and every `--keep-every`-th; a checkpoint saved with a
//! tag (`step_0000123-last-good.json`, written when a run stops on a non-finite step) is never pruned.

use super::{err, PretrainError, Result, RunConfig};
use crate::data::{StreamCursor, TrainData};
use crate::model::{ClipConfig, ClipModel};
use crate::train::Trainer;
use hopfield::io::{decode_safetensors, encode_safetensors, load_state_dict};
use hopfield::optim::{LrSchedule, Optimizer, OptimizerState};
use hopfield::params::named_tensors;
use hopfield::Backend;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format tag of the JSON state.
pub const FORMAT: &str = "cloob-pretrain-checkpoint/1";

/// A binary file of a checkpoint, with what it must contain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// File name, next to the JSON.
    pub file: String,
    /// Length in bytes.
    pub bytes: u64,
    /// CRC-32 of the contents.
    pub crc32: u32,
}

/// Where the data pipeline stands: every random choice is a function of the seed and the position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The run's seed.
    pub seed: u64,
    /// Pairs consumed from the training stream (`step · global batch`).
    pub samples_seen: u64,
}

/// The JSON half of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`FORMAT`].
    pub format: String,
    /// Optimiser steps taken.
    pub step: u64,
    /// Epoch of the last batch.
    pub epoch: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// The learning-rate schedule (a pure function of the step).
    pub schedule: LrSchedule,
    /// The data pipeline's position.
    pub rng: RngState,
    /// The run's settings.
    pub config: RunConfig,
    /// Weights.
    pub weights: FileRef,
    /// Optimiser state.
    pub optimizer: FileRef,
    /// Where each rank's stream stood after the last step, for a streamed source (WebDataset), in rank
    /// order; empty for indexed sources, whose position is a function of the step.
    #[serde(default)]
    pub data_cursors: Vec<StreamCursor>,
    /// Batches left out by `--on-nan skip|rollback` before this step (their indices in the data stream):
    /// an indexed source resumes at batch `step + skipped_batches.len()`.
    #[serde(default)]
    pub skipped_batches: Vec<u64>,
    /// Index in the data stream of the batch the next step takes (absent: `step`, no batch skipped).
    #[serde(default)]
    pub next_batch: Option<u64>,
}

/// Where a saved trainer stands in its run, besides what the trainer holds.
#[derive(Clone, Copy, Debug)]
pub struct SavePoint<'a> {
    /// Epoch of the last batch.
    pub epoch: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Each rank's stream position (streamed sources; empty otherwise).
    pub data_cursors: &'a [StreamCursor],
    /// Batches skipped so far (`--on-nan`).
    pub skipped_batches: &'a [u64],
    /// Index in the data stream of the batch the next step takes.
    pub next_batch: u64,
    /// A tag in the file names (`last-good`), or none for a regular checkpoint.
    pub tag: Option<&'a str>,
}

/// Where a run starts in its data: the start of the stream for a fresh run, else a checkpoint's position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StartPoint {
    /// The step of the checkpoint resumed from (`None`: a fresh run).
    pub resumed_at: Option<u64>,
    /// Index in the data stream of the first batch to take.
    pub next_batch: u64,
    /// This rank's stream position (streamed sources).
    pub cursor: Option<StreamCursor>,
    /// Batches left out by `--on-nan`.
    pub skipped: Vec<u64>,
}

impl StartPoint {
    /// The position of checkpoint `state` for rank `rank` of `ranks` reading `data`.
    pub fn of_checkpoint(state: &CheckpointState, data: &TrainData, rank: usize, ranks: usize) -> Result<StartPoint> {
        let cursor = match (data, state.data_cursors.len()) {
            (TrainData::Indexed(_), _) => None,
            (TrainData::Streamed(_), n) if n == ranks => Some(state.data_cursors[rank]),
            (TrainData::Streamed(_), n) => {
                return Err(PretrainError(format!(
                    "the checkpoint holds the shard positions of {n} process(es), this run has {ranks}: resume a \
                     WebDataset run on as many processes as it was written by"
                )))
            }
        };
        Ok(StartPoint {
            resumed_at: Some(state.step),
            next_batch: state.next_batch.unwrap_or(state.step),
            cursor,
            skipped: state.skipped_batches.clone(),
        })
    }
}

/// The JSON of the regular checkpoint of `step` in `dir`.
pub fn path_of(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("step_{step:07}.json"))
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(tmp.display(), e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| err(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(format!("rename {} → {}", tmp.display(), path.display()), e))
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// Save the trainer's state after `trainer.step` steps into `dir` at `at`; returns the JSON's path.
pub fn save<B: Backend>(
    backend: &B,
    dir: &Path,
    trainer: &Trainer<B>,
    config: &RunConfig,
    at: &SavePoint,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir.display(), e))?;
    let stem = match at.tag {
        Some(tag) => format!("step_{:07}-{tag}", trainer.step),
        None => format!("step_{:07}", trainer.step),
    };
    let write = |suffix: &str, bytes: Vec<u8>| -> Result<FileRef> {
        let file = format!("{stem}{suffix}");
        write_atomic(&dir.join(&file), &bytes)?;
        Ok(FileRef { file, bytes: bytes.len() as u64, crc32: crc32(&bytes) })
    };
    let weights = write(".safetensors", encode_safetensors(backend, &named_tensors(&trainer.model))?)?;
    let optimizer = write(".optim.safetensors", trainer.optimizer.export_state(backend).to_safetensors()?)?;
    let state = CheckpointState {
        format: FORMAT.into(),
        step: trainer.step,
        epoch: at.epoch,
        total_steps: at.total_steps,
        schedule: trainer.config.schedule,
        rng: RngState { seed: config.seed, samples_seen: trainer.step * config.global_batch() as u64 },
        config: config.clone(),
        weights,
        optimizer,
        data_cursors: at.data_cursors.to_vec(),
        skipped_batches: at.skipped_batches.to_vec(),
        next_batch: Some(at.next_batch),
    };
    let json = dir.join(format!("{stem}.json"));
    write_atomic(&json, serde_json::to_string_pretty(&state).expect("plain data").as_bytes())?;
    Ok(json)
}

/// The step of a regular (untagged) checkpoint's JSON file name `step_NNNNNNN.json`.
fn regular_step(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step_")?.strip_suffix(".json")?;
    digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
}

/// Delete the regular checkpoints of `dir` beyond the newest `keep` (at least 1 is always kept), except
/// those whose step is a multiple of `keep_every` (0: none kept for that). The JSON goes first, so a
/// checkpoint interrupted while being deleted is an orphan [`remove_incomplete`] cleans. Returns the JSON
/// files deleted.
pub fn prune(dir: &Path, keep: usize, keep_every: u64) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| err(dir.display(), e))?;
    let mut steps: Vec<u64> = entries.filter_map(|e| e.ok()?.file_name().to_str().and_then(regular_step)).collect();
    steps.sort_unstable();
    let old = steps.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for &step in &steps[..old] {
        if keep_every > 0 && step % keep_every == 0 {
            continue;
        }
        let stem = format!("step_{step:07}");
        for suffix in [".json", ".safetensors", ".optim.safetensors"] {
            let path = dir.join(format!("{stem}{suffix}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(format!("pruning {}", path.display()), e)),
            }
        }
        removed.push(dir.join(format!("{stem}.json")));
    }
    Ok(removed)
}

/// The fixed name of the newest checkpoint with `--save-most-recent`.
pub const MOST_RECENT: &str = "latest.json";

/// What follows a regular save of `json` in `dir`: with `--save-most-recent`, point `latest.json` at it
/// (before pruning, so the link never names a pruned checkpoint), then [`prune`].
pub fn after_save(dir: &Path, json: &Path, opts: &super::LongRunOptions) -> Result<Vec<PathBuf>> {
    if opts.save_most_recent {
        link_most_recent(dir, json)?;
    }
    prune(dir, opts.keep_checkpoints, opts.keep_every)
}

/// Make `dir/latest.json` a relative symbolic link to `json` (a checkpoint JSON in `dir`), replaced
/// atomically: a link to a temporary name, renamed over the old one. A reader sees the old checkpoint or
/// the new one, each complete (its binary files are named from the JSON, next to it).
pub fn link_most_recent(dir: &Path, json: &Path) -> Result<()> {
    let name = json.file_name().ok_or_else(|| PretrainError(format!("{} names no file", json.display())))?;
    let (tmp, link) = (dir.join(format!("{MOST_RECENT}.tmp")), dir.join(MOST_RECENT));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(tmp.display(), e)),
        _ => {}
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(name, &tmp).map_err(|e| err(format!("linking {}", tmp.display()), e))?;
    #[cfg(not(unix))]
    std::fs::copy(json, &tmp).map_err(|e| err(format!("copying {}", json.display()), e))?;
    std::fs::rename(&tmp, &link).map_err(|e| err(format!("rename {} → {}", tmp.display(), link.display()), e))
}

/// The newest checkpoint (highest step) in `dir`.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step_"))
        })
        .max()
}

/// Remove what interrupted saves left in `dir`: temporary files (`*.tmp`) and the binary files of a
/// checkpoint whose JSON was never written (`step_N.safetensors` without `step_N.json`). Returns the
/// files removed; other files are left alone.
pub fn remove_incomplete(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| err(dir.display(), e))?;
    let mut removed = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let stem = name.strip_suffix(".optim.safetensors").or_else(|| name.strip_suffix(".safetensors"));
        let orphan = stem.is_some_and(|s| s.starts_with("step_") && !dir.join(format!("{s}.json")).exists());
        if path.is_file() && (orphan || name.ends_with(".tmp")) {
            std::fs::remove_file(&path).map_err(|e| err(format!("removing {}", path.display()), e))?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Read and check the JSON state.
pub fn read_state(path: &Path) -> Result<CheckpointState> {
    let text =
        std::fs::read_to_string(path).map_err(|e| err(format!("cannot read checkpoint {}", path.display()), e))?;
    let mut state: CheckpointState = serde_json::from_str(&text).map_err(|e| {
        err(format!("{} is not a cloob-pretrain checkpoint (truncated or corrupt JSON)", path.display()), e)
    })?;
    if state.format != FORMAT {
        return Err(PretrainError(format!("{}: format {:?}, expected {FORMAT:?}", path.display(), state.format)));
    }
    // A checkpoint from before architectures were stored: its preset by the names of that time.
    let source = &mut state.config.source;
    if source.architecture.is_none() && source.model_config.is_none() {
        if let Some((arch, preset)) = super::config::legacy_architecture(&state.config.model_preset) {
            source.architecture = Some(arch);
            state.config.model_preset = preset.into();
        }
    }
    Ok(state)
}

/// Why `file` cannot be a checkpoint's binary file name, if it cannot: it must be a bare file name in the
/// checkpoint's own folder (no separator, not `.` or `..`).
fn check_sidecar_name(file: &str) -> std::result::Result<(), String> {
    if file.is_empty() || file == "." || file == ".." || file.contains(['/', '\\', '\0']) {
        Err(format!("{file:?} is not a file name in the checkpoint's folder"))
    } else {
        Ok(())
    }
}

/// The bytes of a checkpoint's binary file, checked against its length and checksum. The file must be a
/// regular file next to `json` of the length the JSON says, checked before anything is read.
fn read_checked(json: &Path, f: &FileRef) -> Result<Vec<u8>> {
    use std::io::Read;
    check_sidecar_name(&f.file).map_err(|e| err(format!("checkpoint {}", json.display()), e))?;
    let path = json.parent().unwrap_or(Path::new(".")).join(&f.file);
    let meta = std::fs::metadata(&path).map_err(|e| err(format!("checkpoint file {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(PretrainError(format!("checkpoint file {} is not a regular file", path.display())));
    }
    if meta.len() != f.bytes {
        return Err(PretrainError(format!(
            "checkpoint file {} is truncated or replaced: {} bytes, the checkpoint says {}",
            path.display(),
            meta.len(),
            f.bytes
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|file| file.take(f.bytes + 1).read_to_end(&mut bytes))
        .map_err(|e| err(format!("checkpoint file {}", path.display()), e))?;
    if bytes.len() as u64 != f.bytes {
        return Err(PretrainError(format!(
            "checkpoint file {} changed while being read: {} bytes, the checkpoint says {}",
            path.display(),
            bytes.len(),
            f.bytes
        )));
    }
    if crc32(&bytes) != f.crc32 {
        return Err(PretrainError(format!(
            "checkpoint file {} is corrupt: CRC-32 {:08x}, the checkpoint says {:08x}",
            path.display(),
            crc32(&bytes),
            f.crc32
        )));
    }
    Ok(bytes)
}

/// The model stored in a checkpoint (shape from its own config), for evaluation.
pub fn load_model<B: Backend>(backend: &B, json: &Path) -> Result<(ClipModel<B>, CheckpointState)> {
    let state = read_state(json)?;
    let model = weights_into_fresh_model(backend, json, &state)?;
    Ok((model, state))
}

fn weights_into_fresh_model<B: Backend>(backend: &B, json: &Path, state: &CheckpointState) -> Result<ClipModel<B>> {
    let bytes = read_checked(json, &state.weights)?;
    let map = decode_safetensors(&bytes, "checkpoint weights")?;
    let mut model = state.config.clip_config()?.init(backend, &mut rand::rngs::StdRng::seed_from_u64(0))?;
    load_state_dict(backend, &mut model, &map, "", true)
        .map_err(|e| err(format!("checkpoint {} does not fit the model", json.display()), e))?;
    Ok(model)
}

/// `--init-from`: a fresh model of `model_cfg` (this run's preset) holding the weights of checkpoint `json`,
/// except τ⁻¹, which stays this run's `--init-inv-tau` (a CLOOB run warm-started from a CLIP checkpoint keeps
/// its own fixed temperature). The optimiser and schedule start fresh.
pub fn init_from<B: Backend>(backend: &B, json: &Path, model_cfg: &ClipConfig) -> Result<ClipModel<B>> {
    let state = read_state(json)?;
    let bytes = read_checked(json, &state.weights)?;
    let map = decode_safetensors(&bytes, "checkpoint weights")?;
    let mut model = model_cfg.init(backend, &mut rand::rngs::StdRng::seed_from_u64(0))?;
    let own_tau = model.logit_scale.clone();
    load_state_dict(backend, &mut model, &map, "", true).map_err(|e| {
        err(
            format!(
                "--init-from {}: its model (preset {}) does not fit this run's --model",
                json.display(),
                state.config.model_preset
            ),
            e,
        )
    })?;
    model.logit_scale = own_tau;
    Ok(model)
}

/// A trainer restored from `json` for a run with settings `config`: weights, optimiser state and step.
/// Everything is checked first; on error nothing is returned. `say` gets a note for each setting that
/// differs from the checkpoint's where that is allowed ([`super::config::SAFE_ON_RESUME`]).
pub fn resume<B: Backend>(
    backend: &B,
    json: &Path,
    config: &RunConfig,
    total_steps: u64,
    say: &dyn Fn(String),
) -> Result<(Trainer<B>, CheckpointState)> {
    let state = read_state(json)?;
    // The checkpoint holds its resolved architecture; compare it with this run's, resolved the same way.
    let config = &RunConfig { source: config.source.resolved(&config.model_preset)?, ..config.clone() };
    let notes = config.check_resumable(&state.config).map_err(|e| err(json.display(), e))?;
    if state.total_steps != total_steps {
        return Err(PretrainError(format!(
            "{}: the checkpoint's run has {} steps, this one {total_steps}",
            json.display(),
            state.total_steps
        )));
    }
    let model = weights_into_fresh_model(backend, json, &state)?;
    let opt = OptimizerState::<B::Elem>::from_safetensors(&read_checked(json, &state.optimizer)?)?;
    let mut trainer = Trainer::new(model, config.train_config(total_steps))?;
    trainer
        .optimizer
        .import_state(backend, &opt)
        .map_err(|e| err(format!("{}: optimiser state", json.display()), e))?;
    trainer.step = state.step;
    notes.into_iter().for_each(say);
    Ok((trainer, state))
}
