//! The training loop: data → step → JSONL metrics, progress (a bar or lines) and TensorBoard events,
//! periodic evaluation, checkpoints and plots. A run resumed from a checkpoint produces the same losses, bit for bit, as the
//! uninterrupted run: the data stream is a function of (seed, position), the schedule of the step, and
//! the checkpoint stores the exact weights and AdamW moments.

use super::checkpoint::{self, SavePoint, StartPoint};
use super::config::{fits_in_memory, OnNan, ReportOptions};
use super::evaluate::{evaluate_with, EvalOptions, EvalReport};
use super::interrupt::interrupt_requested;
use super::run_dir::{self, existing_run, MetricsLog, RunLock};
pub use super::sources::open_data;
use super::watch::Watch;
use super::{err, plots, PretrainError, Result, RunConfig};
use crate::data::loader::{default_workers, Loader, LoaderConfig};
use crate::data::rng::rng_for;
use crate::data::{Pixels, StreamCursor, TrainData};
use crate::dist::{check_same_everywhere, Collective, SingleProcess};
use crate::tokenizer::ClipTokenizer;
use crate::train::Trainer;
use hopfield::backend::{Device, OnBackend};
use hopfield::{Backend, HopfieldError};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

/// How to run (what does not belong in the checkpointed config).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Show progress: a bar when stderr is a terminal, a line every `report.log_every_n_steps` steps
    /// otherwise, and each evaluation's results.
    pub progress: bool,
    /// `--report-to` (TensorBoard event files) and `--log-every-n-steps`.
    pub report: ReportOptions,
    /// For tests of failure handling: this diagnostic of every evaluation fails (see
    /// [`super::evaluate::DIAGNOSTICS`]).
    pub fail_diagnostic: Option<String>,
    /// Resume from a checkpoint JSON path, or `latest` (the run's newest).
    pub resume: Option<String>,
    /// Stop (with a checkpoint) once this many steps are done, as if interrupted.
    pub stop_after: Option<u64>,
    /// Skip the evaluations and plots (tests).
    pub no_eval: bool,
    /// Print what happens.
    pub verbose: bool,
    /// Delete an earlier run in the run folder first (a fresh run refuses such a folder otherwise).
    pub overwrite: bool,
    /// For tests of failure handling: rank `.0` fails with an error before step `.1`.
    pub fail_at: Option<(usize, u64)>,
    /// Where the model trains (the checkpoints do not depend on it: a run written on one device resumes on
    /// any other).
    pub device: Device,
    /// Decoding threads of the data loader (`None`: [`default_workers`]); batches do not depend on it.
    pub workers: Option<usize>,
    /// Batches the loader keeps ready ahead of the step (`None`: 2).
    pub prefetch: Option<usize>,
    /// Set to a signal's number by the binary's handler (SIGTERM, SIGINT, SIGUSR1; see
    /// [`super::interrupt`]): the run then saves a checkpoint after the current step and returns with
    /// [`RunSummary::interrupted`] set. `None`: no handler.
    pub interrupt: Option<Arc<AtomicUsize>>,
    /// For tests of `--on-nan`: the pixels of the batch with this index in the data stream are made NaN.
    pub nan_batch: Option<u64>,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// `logs/name`.
    pub run_dir: PathBuf,
    /// The JSONL metrics.
    pub metrics: PathBuf,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// PNG plots.
    pub plots: Vec<PathBuf>,
    /// `(step, loss)` of the steps run in this process.
    pub losses: Vec<(u64, f64)>,
    /// The final evaluation.
    pub final_eval: Option<EvalReport>,
    /// Steps done in total (including those before a resume).
    pub steps: u64,
    /// Wall time of this process's training loop, seconds.
    pub wall_s: f64,
    /// Skipped rows and images of the data source.
    pub data_issues: String,
    /// Training images this process decoded for the steps it ran (files; 0 for generated data).
    pub train_decoded: u64,
    /// Evaluation images this process read (rank 0 alone evaluates).
    pub eval_images: usize,
    /// The signal that stopped the run early (`SIGTERM`, …), after saving [`RunSummary::checkpoint`].
    pub interrupted: Option<String>,
    /// The TensorBoard event file this process wrote (`--report-to tensorboard`).
    pub tensorboard: Option<PathBuf>,
}

/// Train as `cfg` says, in this process. Everything is checked before anything is written: the
/// settings, the data (at least one batch of usable pairs, evaluation sets of at least two images), the
/// run folder (a fresh run does not write into another run's folder unless `overwrite`) and the
/// checkpoint to resume from.
pub fn train(cfg: &RunConfig, opts: &RunOptions) -> Result<RunSummary> {
    train_with(cfg, opts, &SingleProcess)
}

/// [`train`] as one rank of a data-parallel run over `comm` (see [`crate::dist`]): `--batch-size` is
/// per rank (open_clip's meaning), each rank encodes its `batch_size × accum_freq` pairs of every global
/// batch; every rank reads the data and the
/// checkpoint to resume from (a shared file system), rank 0 alone writes logs, evaluations, plots and
/// checkpoints. Ranks must run the same settings and program: checked at start-up.
pub fn train_with(cfg: &RunConfig, opts: &RunOptions, comm: &dyn Collective) -> Result<RunSummary> {
    let mut cfg = cfg.with_absolute_paths()?;
    cfg.world_size = comm.size();
    // The architecture is fixed here, so the checkpoints hold it whatever the named config or file says later.
    cfg.source = cfg.source.resolved(&cfg.model_preset)?;
    let cfg = &cfg;
    cfg.validate()?;
    struct OnDevice<'a>(&'a RunConfig, &'a RunOptions, &'a dyn Collective);
    impl OnBackend for OnDevice<'_> {
        type Output = Result<RunSummary>;
        fn run<B: Backend<Elem = f32>>(self, backend: B) -> Result<RunSummary> {
            train_on(&backend, self.0, self.1, self.2)
        }
    }
    opts.device.run(OnDevice(cfg, opts, comm))?
}

/// [`train_with`] on `backend` (`cfg` validated, its paths absolute).
fn train_on<B: Backend<Elem = f32>>(
    backend: &B,
    cfg: &RunConfig,
    opts: &RunOptions,
    comm: &dyn Collective,
) -> Result<RunSummary> {
    let (rank, ranks) = (comm.rank(), comm.size());
    let lead = rank == 0;
    if ranks > 1 {
        let fingerprint = format!(
            "cloob {} {}; resume {:?}, stop after {:?}, overwrite {}",
            env!("CARGO_PKG_VERSION"),
            serde_json::to_string(cfg).expect("plain data"),
            opts.resume,
            opts.stop_after,
            opts.overwrite
        );
        check_same_everywhere(comm, &fingerprint)?;
    }
    if opts.overwrite && opts.resume.is_some() {
        return Err(PretrainError("--overwrite deletes the run that --resume would continue: pass one of them".into()));
    }
    let model_cfg = cfg.clip_config()?;
    let prefetch = opts.prefetch.unwrap_or(2);
    let side = model_cfg.vision.image_size() as u64;
    fits_in_memory("prefetch", prefetch, (prefetch as u64 + 1) * cfg.process_batch() as u64 * 3 * side * side)?;
    let data = open_data(cfg, model_cfg.vision.image_size(), lead && !opts.no_eval)?;
    let total = cfg.total_steps(data.train.epoch_len())?;
    let say = |m: String| {
        if opts.verbose && lead {
            eprintln!("{m}")
        }
    };
    if let Some(n) = data.train.pairs_at_most().filter(|&n| n < cfg.global_batch()) {
        return Err(PretrainError(format!(
            "the training data has {n} usable pair(s), fewer than one batch of {0} (--batch-size {3} × \
             --accum-freq {4} × {ranks} process(es)): {1} ({2})",
            cfg.global_batch(),
            data.train.describe(),
            data.train.issues().summary(),
            cfg.batch_size,
            cfg.accum_freq
        )));
    }
    if !opts.no_eval {
        if let Some(set) = data.eval.iter().find(|s| s.len() < 2) {
            return Err(PretrainError(format!(
                "the evaluation set {} has {} readable image(s); evaluation needs at least 2 ({})",
                set.name,
                set.len(),
                set.skipped.summary()
            )));
        }
    }
    if cfg.warmup_fraction.is_none() && cfg.effective_warmup(total) < cfg.warmup {
        say(format!(
            "note: --warmup {} is not shorter than the run's {total} steps; warming up for {} steps",
            cfg.warmup,
            cfg.effective_warmup(total)
        ));
    }
    let run_dir = cfg.logs.join(&cfg.name);
    let ckpt_dir = run_dir.join("checkpoints");
    let metrics = run_dir.join("metrics.jsonl");
    // Held until this function returns: no other process writes this run folder meanwhile.
    let lock = match lead {
        true => Some(RunLock::acquire(&run_dir, &say)?),
        false => None,
    };
    if lead && opts.resume.is_none() && !opts.overwrite {
        if let Some(what) = existing_run(&run_dir) {
            return Err(PretrainError(format!(
                "{} already holds a run ({what}): resume it with --resume latest, choose another --name, or pass \
                 --overwrite to delete it first",
                run_dir.display()
            )));
        }
    }

    let mut start = StartPoint::default();
    let mut trainer = match &opts.resume {
        Some(spec) => {
            let path = if spec == "latest" {
                checkpoint::latest(&ckpt_dir)
                    .ok_or_else(|| PretrainError(format!("--resume latest: no checkpoint in {}", ckpt_dir.display())))?
            } else {
                PathBuf::from(spec)
            };
            let (t, state) = checkpoint::resume(backend, &path, cfg, total, &say)?;
            say(format!("resumed from {} at step {} (epoch {})", path.display(), state.step, state.epoch));
            start = StartPoint::of_checkpoint(&state, &data.train, rank, ranks).map_err(|e| err(path.display(), e))?;
            t
        }
        None => {
            let model = match (&cfg.init_from, &cfg.source.pretrained) {
                (Some(ckpt), _) => {
                    let m = checkpoint::init_from(backend, ckpt, &model_cfg)?;
                    say(format!("model weights from {} (fresh optimiser and schedule)", ckpt.display()));
                    m
                }
                (None, Some(file)) => {
                    let partial = cfg.source.pretrained_partial;
                    let m = crate::pretrained::init_from_pretrained(backend, file, &model_cfg, partial, &say)?;
                    say(format!("pretrained weights from {} (fresh optimiser and schedule)", file.display()));
                    m
                }
                (None, None) => model_cfg.init(backend, &mut rng_for(&[cfg.seed, 0x1417]))?,
            };
            Trainer::new(model, cfg.train_config(total))?
        }
    };
    if let Some(f) = cfg.warmup_fraction {
        say(format!(
            "warmup: {} of {total} steps ({:.2} % of the run, from --recipe)",
            cfg.effective_warmup(total),
            100.0 * f
        ));
    }
    let tokenizer = ClipTokenizer::with_context_length(model_cfg.text.context_length)?;
    let stop = opts.stop_after.unwrap_or(total).min(total);
    let workers = opts.workers.unwrap_or_else(|| default_workers(opts.device == Device::Cpu));
    let loader_cfg = LoaderConfig { batch: cfg.global_batch(), seed: cfg.seed, workers, prefetch, rank, ranks };
    let new_loader = |s: &StartPoint| Loader::new(data.train.clone(), loader_cfg, s.next_batch, s.cursor);
    let mut loader = new_loader(&start)?;
    let no_batch = |loader: &Loader| {
        PretrainError(format!(
            "the data source yielded no complete batch of {} pairs: {} ({})",
            cfg.global_batch(),
            loader.why_ended().unwrap_or_else(|| "it ended".into()),
            data.train.issues().summary()
        ))
    };
    let mut pending = if trainer.step < stop { Some(loader.next().ok_or_else(|| no_batch(&loader))?) } else { None };

    // Checked: from here on the run folder is this run's (rank 0's to write).
    if lead {
        run_dir::prepare(cfg, opts.overwrite, start.resumed_at, &say)?;
    }
    let shards = match (ranks, cfg.accum_freq) {
        (1, 1) => String::new(),
        (r, a) => format!(" (--batch-size {} × --accum-freq {a} × {r} process(es))", cfg.batch_size),
    };
    if let Some(note) = cfg.open_clip_note().filter(|_| opts.resume.is_none()) {
        say(note);
    }
    // What ran, for a user's report: the processor, the f32 GEMM kernel and vector width, rayon's threads.
    say(format!("cpu: {}", hopfield::backend::cpu::CpuInfo::detect()));
    say(format!(
        "data: {}\nrun: {} steps of {} pairs{shards}, {:?} loss, logs in {}",
        data.train.describe(),
        total,
        cfg.global_batch(),
        cfg.loss,
        run_dir.display()
    ));

    let mut log = MetricsLog::open(lead.then(|| metrics.clone()))?;
    let mut watch =
        Watch::new(opts.progress, &opts.report, total, lead.then_some(&*run_dir), start.resumed_at, !opts.no_eval)?;

    let (mut losses, mut last_ckpt, mut final_eval, mut interrupted) = (Vec::new(), None, None, None);
    let mut train_decoded = 0u64;
    let mut cursor = start.cursor.unwrap_or_default();
    let (mut skipped, mut last_saved) = (start.skipped.clone(), start.resumed_at);
    let mut recoveries = 0u32;
    let started = Instant::now();
    let mut rate = None::<f64>;
    while trainer.step < stop {
        let t0 = Instant::now();
        let mut batch = match pending.take() {
            Some(b) => b,
            None => loader.next().ok_or_else(|| no_batch(&loader))?,
        };
        train_decoded += batch.decoded;
        let next_batch = batch.step + 1;
        if skipped.contains(&batch.step) {
            continue; // left out by --on-nan rollback: the replay passes it by
        }
        if opts.fail_at == Some((rank, trainer.step)) {
            return Err(PretrainError(format!("rank {rank}: failing before step {} as asked (a test)", trainer.step)));
        }
        // The loader made this rank's shard of the global batch only.
        let n = batch.captions.len();
        let mut pixels = std::mem::replace(&mut batch.pixels, Pixels::Rgb8(Vec::new())).into_normalized(batch.size);
        if opts.nan_batch == Some(batch.step) {
            pixels.iter_mut().for_each(|p| *p = f32::NAN);
        }
        let images = backend.from_vec(pixels, &[n, 3, batch.size, batch.size]);
        let tokens = tokenizer.tokenize(&batch.captions);
        let stats = match trainer.step_with(backend, &images, &tokens, comm) {
            Ok(stats) => stats,
            Err(e @ HopfieldError::NonFinite { .. }) => {
                let policy = cfg.long_run.on_nan;
                if policy == OnNan::Stop || recoveries >= cfg.long_run.nan_retries {
                    let why = match policy {
                        OnNan::Stop => String::new(),
                        _ => format!(" ({recoveries} batch(es) left out already: --nan-retries)"),
                    };
                    let cursors = match &data.train {
                        TrainData::Streamed(_) => gather_cursors(comm, cursor)?,
                        TrainData::Indexed(_) => Vec::new(),
                    };
                    // Resumed from, it replays the batch that failed (with a lower --lr, say).
                    let at = SavePoint {
                        epoch: batch.epoch,
                        total_steps: total,
                        data_cursors: &cursors,
                        skipped_batches: &skipped,
                        next_batch: batch.step,
                        tag: Some("last-good"),
                    };
                    let saved = match lead {
                        true => format!(
                            "; the model of the last good step ({}) is saved in {}: resume from it with --resume \
                             PATH (a lower --lr is allowed), or rerun with --on-nan skip|rollback",
                            trainer.step,
                            checkpoint::save(backend, &ckpt_dir, &trainer, cfg, &at)?.display()
                        ),
                        false => String::new(),
                    };
                    return Err(PretrainError(format!("{e}{why}{saved}")));
                }
                recoveries += 1;
                skipped.push(batch.step);
                let action = if policy == OnNan::Skip { "skip" } else { "rollback" };
                say(format!("{e}: --on-nan {action}, leaving batch {} out", batch.step));
                if policy == OnNan::Rollback {
                    if let Some(step) = last_saved {
                        let json = checkpoint::path_of(&ckpt_dir, step);
                        let (t, state) = checkpoint::resume(backend, &json, cfg, total, &|_| {})?;
                        trainer = t;
                        let back = StartPoint::of_checkpoint(&state, &data.train, rank, ranks)?;
                        drop(loader);
                        loader = new_loader(&back)?;
                        cursor = back.cursor.unwrap_or_default();
                        losses.retain(|&(s, _)| s < step);
                        log.truncate_to(step)?;
                        watch.rewind_to(step)?;
                        say(format!("rolled back to {}", json.display()));
                    }
                }
                log.write(
                    json!({"step": trainer.step, "nan_batch": batch.step, "action": policy, "error": e.to_string()}),
                )?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let n = cfg.global_batch();
        let epoch = batch.epoch;
        if let Some(c) = batch.cursor {
            cursor = c;
        }
        let sps = n as f64 / t0.elapsed().as_secs_f64();
        let r = *rate.get_or_insert(sps);
        rate = Some(0.9 * r + 0.1 * sps);
        losses.push((stats.step, stats.loss));
        log.write(
            json!({"step": stats.step, "epoch": epoch, "loss": stats.loss, "lr": stats.lr, "inv_tau": stats.inv_tau,
                          "grad_norm": stats.grad_norm, "samples_per_s": sps, "comm_s": stats.comm_seconds}),
        )?;
        watch.step(&stats, epoch, sps, rate.unwrap_or(sps))?;
        let done = trainer.step;
        let is_end = done == total;
        let signal = interrupt_requested(opts.interrupt.as_ref(), comm)?;
        // Save before evaluating: an evaluation that fails loses no training.
        let mut saved_now = None;
        let cursors = match &data.train {
            TrainData::Streamed(_) => gather_cursors(comm, cursor)?,
            TrainData::Indexed(_) => Vec::new(),
        };
        let at = SavePoint {
            epoch,
            total_steps: total,
            data_cursors: &cursors,
            skipped_batches: &skipped,
            next_batch,
            tag: None,
        };
        if done == stop || signal.is_some() || (cfg.save_every > 0 && done % cfg.save_every == 0) {
            last_saved = Some(done);
            if lead {
                let path = checkpoint::save(backend, &ckpt_dir, &trainer, cfg, &at)?;
                checkpoint::after_save(&ckpt_dir, &path, &cfg.long_run)?;
                last_ckpt = Some(path.clone());
                saved_now = Some(path);
            }
        }
        if let Some(sig) = signal {
            log.flush()?;
            interrupted = Some(sig);
            break;
        }
        if lead && !opts.no_eval && (is_end || (cfg.eval_every > 0 && done % cfg.eval_every == 0)) {
            let eval_opts = EvalOptions { with_probe: is_end, fail_diagnostic: opts.fail_diagnostic.clone() };
            let report = match evaluate_with(backend, &trainer.model, &data, &eval_opts) {
                Ok(r) => r,
                Err(e) => {
                    let path = match saved_now {
                        Some(p) => p,
                        None => checkpoint::save(backend, &ckpt_dir, &trainer, cfg, &at)?,
                    };
                    return Err(PretrainError(format!(
                        "evaluation at step {done} failed: {e}; the training so far is saved in {} (resume with \
                         --resume latest, or evaluate it with cloob-eval)",
                        path.display()
                    )));
                }
            };
            log.write(json!({"step": done, "eval": report}))?;
            watch.evaluation(done, &report, is_end)?;
            if is_end {
                final_eval = Some(report);
            }
        }
    }
    watch.finish();
    drop(loader);
    log.flush()?;
    let wall_s = started.elapsed().as_secs_f64();
    let plots = if !lead || opts.no_eval || trainer.step < total {
        Vec::new()
    } else {
        match plots::draw_all(&metrics, final_eval.as_ref(), &run_dir.join("plots")) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("plots skipped: {e}");
                Vec::new()
            }
        }
    };
    let issues = data.train.issues();
    let eval_images =
        data.eval.iter().map(|s| s.len()).sum::<usize>() + data.probe.as_ref().map_or(0, |(a, b, _)| a.len() + b.len());
    drop(lock);
    Ok(RunSummary {
        run_dir,
        metrics,
        checkpoint: last_ckpt,
        plots,
        losses,
        final_eval,
        steps: trainer.step,
        wall_s,
        data_issues: issues.summary(),
        train_decoded,
        eval_images,
        interrupted,
        tensorboard: watch.event_file().map(PathBuf::from),
    })
}

/// Every rank's stream cursor, in rank order (a collective: every rank calls it at the same step).
fn gather_cursors(comm: &dyn Collective, c: StreamCursor) -> Result<Vec<StreamCursor>> {
    // Exact in f64: every field is far below 2^53.
    let mine = [c.epoch, c.shard, c.offset, c.window, c.taken].map(|v| v as f64);
    let all = comm.all_gather_f64(&mine)?;
    Ok(all
        .chunks(5)
        .map(|v| StreamCursor {
            epoch: v[0] as u64,
            shard: v[1] as u64,
            offset: v[2] as u64,
            window: v[3] as u64,
            taken: v[4] as u64,
        })
        .collect())
}
