//! The training loop: data → step → JSONL metrics, progress bar, periodic evaluation and checkpoints,
//! plots at the end. A run resumed from a checkpoint produces the same losses, bit for bit, as the
//! uninterrupted run: the data stream is a function of (seed, position), the schedule of the step, and
//! the checkpoint stores the exact weights and AdamW moments.

use super::checkpoint::{self, write_atomic};
use super::evaluate::{evaluate, EvalReport};
use super::{err, plots, PretrainError, Result, RunConfig};
use crate::data::csv::{CsvConfig, CsvSource};
use crate::data::loader::{default_workers, Loader, LoaderConfig};
use crate::data::rng::rng_for;
use crate::data::wds::{WdsConfig, WdsSource};
use crate::data::Pixels;
use crate::data::{fashion, scenes, DataBundle, StreamCursor, TrainData};
use crate::dist::{check_same_everywhere, Collective, SingleProcess};
use crate::pretrain::config::DataSpec;
use crate::tokenizer::ClipTokenizer;
use crate::train::Trainer;
use hopfield::backend::{Device, OnBackend};
use hopfield::Backend;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How to run (what does not belong in the checkpointed config).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Show the progress bar.
    pub progress: bool,
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
}

/// Open the data source of `cfg`, with its evaluation sets when `with_eval` (rank 0 alone evaluates, so
/// the other ranks read no evaluation image).
pub fn open_data(cfg: &RunConfig, image_size: usize, with_eval: bool) -> Result<DataBundle> {
    let need = |have: usize, what: &str| {
        if have == image_size {
            Ok(())
        } else {
            Err(PretrainError(format!(
                "{what} has {have}×{have} images but the model takes {image_size}×{image_size}; use the tiny preset"
            )))
        }
    };
    Ok(match &cfg.data {
        DataSpec::Embedded => {
            need(scenes::IMAGE_SIZE, "the embedded set")?;
            DataBundle {
                train: TrainData::Indexed(Arc::new(scenes::SceneSource { len: cfg.embedded_len })),
                eval: if with_eval { vec![scenes::eval_set(cfg.eval_size)] } else { Vec::new() },
                probe: None,
            }
        }
        DataSpec::FashionMnist => {
            need(fashion::IMAGE_SIZE, "Fashion-MNIST")?;
            let train = fashion::load_split(&cfg.fashion_dir, "train")?;
            let (eval, probe) = if with_eval {
                let test = fashion::load_split(&cfg.fashion_dir, "t10k")?;
                let eval = fashion::eval_set(&test, cfg.eval_size, "fashion-mnist-test");
                let probe = (
                    fashion::eval_set(&train, 2 * cfg.eval_size, "fashion-mnist-train"),
                    eval.clone(),
                    "fashion".to_string(),
                );
                (vec![eval], Some(probe))
            } else {
                (Vec::new(), None)
            };
            DataBundle { train: TrainData::Indexed(Arc::new(fashion::FashionSource { train })), eval, probe }
        }
        DataSpec::Csv(path) => {
            let mk = |p: &Path| {
                let mut c = CsvConfig::new(p, image_size);
                c.img_key.clone_from(&cfg.csv.img_key);
                c.caption_key.clone_from(&cfg.csv.caption_key);
                c.separator = u8::try_from(cfg.csv.separator)
                    .map_err(|_| PretrainError("--csv-separator must be one ASCII character".into()))?;
                Ok::<_, PretrainError>(CsvSource::open(c)?)
            };
            let train = mk(path)?;
            let eval = match (with_eval, &cfg.csv.val) {
                (false, _) => Vec::new(),
                (true, Some(v)) => vec![mk(v)?.eval_set(cfg.eval_size, "csv-val")],
                (true, None) => vec![train.eval_set(cfg.eval_size, "csv-val")],
            };
            DataBundle { train: TrainData::Indexed(Arc::new(train)), eval, probe: None }
        }
        DataSpec::Wds(pattern) => {
            let caption = cfg.wds.caption.parse().map_err(PretrainError)?;
            let train = WdsSource::open(WdsConfig {
                pattern: pattern.clone(),
                image_size,
                caption,
                shuffle_buffer: cfg.wds.shuffle_buffer,
                train_num_samples: cfg.wds.train_num_samples,
            })?;
            let eval = match (with_eval, &cfg.csv.val) {
                (false, _) => Vec::new(),
                (true, Some(v)) => {
                    let mut c = CsvConfig::new(v, image_size);
                    c.img_key.clone_from(&cfg.csv.img_key);
                    c.caption_key.clone_from(&cfg.csv.caption_key);
                    c.separator = cfg.csv.separator as u8;
                    vec![CsvSource::open(c)?.eval_set(cfg.eval_size, "csv-val")]
                }
                (true, None) => vec![train.eval_set(cfg.eval_size, "wds-first-samples")],
            };
            DataBundle { train: TrainData::Streamed(Arc::new(train)), eval, probe: None }
        }
    })
}

/// Make the run folder this run's: delete an earlier run (`--overwrite`), remove what interrupted saves
/// left, start or truncate the metrics, write the config.
fn prepare_run_dir(cfg: &RunConfig, opts: &RunOptions, resumed_at: Option<u64>, say: &dyn Fn(String)) -> Result<()> {
    let run_dir = cfg.logs.join(&cfg.name);
    let (ckpt_dir, metrics) = (run_dir.join("checkpoints"), run_dir.join("metrics.jsonl"));
    if opts.overwrite && run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .map_err(|e| err(format!("--overwrite: deleting {}", run_dir.display()), e))?;
        say(format!("--overwrite: deleted the earlier run in {}", run_dir.display()));
    }
    std::fs::create_dir_all(&ckpt_dir).map_err(|e| err(ckpt_dir.display(), e))?;
    for removed in checkpoint::remove_incomplete(&ckpt_dir)? {
        say(format!("removed {} (left by an interrupted save)", removed.display()));
    }
    match resumed_at {
        Some(step) => truncate_metrics(&metrics, step)?,
        None => std::fs::write(&metrics, "").map_err(|e| err(metrics.display(), e))?,
    }
    write_atomic(&run_dir.join("config.json"), serde_json::to_string_pretty(cfg).expect("plain data").as_bytes())
}

/// Keep the JSONL lines of steps before `step` (a resumed run rewrites what came after its checkpoint).
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(f) = std::fs::File::open(path) else { return Ok(()) };
    let kept: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s < step || (s == step && l.contains("\"eval\"")))
        })
        .collect();
    write_atomic(path, (kept.join("\n") + if kept.is_empty() { "" } else { "\n" }).as_bytes())
}

/// What already occupies a run folder: its newest checkpoint and the steps logged in its metrics.
fn existing_run(run_dir: &Path) -> Option<String> {
    let ckpt = checkpoint::latest(&run_dir.join("checkpoints"));
    let logged = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .map(|t| t.lines().filter(|l| l.contains("\"loss\"")).count())
        .unwrap_or(0);
    let mut what = Vec::new();
    if let Some(c) = ckpt {
        what.push(format!("checkpoint {}", c.file_name().and_then(|n| n.to_str()).unwrap_or("?")));
    }
    if logged > 0 {
        what.push(format!("metrics of {logged} steps"));
    }
    (!what.is_empty()).then(|| what.join(", "))
}

/// Train as `cfg` says, in this process. Everything is checked before anything is written: the
/// settings, the data (at least one batch of usable pairs, evaluation sets of at least two images), the
/// run folder (a fresh run does not write into another run's folder unless `overwrite`) and the
/// checkpoint to resume from.
pub fn train(cfg: &RunConfig, opts: &RunOptions) -> Result<RunSummary> {
    train_with(cfg, opts, &SingleProcess)
}

/// [`train`] as one rank of a data-parallel run over `comm` (see [`crate::dist`]): `--batch-size` is the
/// global batch, each rank encodes its `1 / R` of every batch; every rank reads the data and the
/// checkpoint to resume from (a shared file system), rank 0 alone writes logs, evaluations, plots and
/// checkpoints. Ranks must run the same settings and program: checked at start-up.
pub fn train_with(cfg: &RunConfig, opts: &RunOptions, comm: &dyn Collective) -> Result<RunSummary> {
    let cfg = &cfg.with_absolute_paths()?;
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
    if !cfg.batch_size.is_multiple_of(ranks) || !(cfg.batch_size / ranks).is_multiple_of(cfg.accum_freq) {
        return Err(PretrainError(format!(
            "--batch-size {} must split into {ranks} equal shards (one per process) of whole --accum-freq {} \
             micro-batches",
            cfg.batch_size, cfg.accum_freq
        )));
    }
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
    let data = open_data(cfg, model_cfg.vision.image_size, lead && !opts.no_eval)?;
    let total = cfg.total_steps(data.train.epoch_len())?;
    let say = |m: String| {
        if opts.verbose && lead {
            eprintln!("{m}")
        }
    };
    if let Some(n) = data.train.pairs_at_most().filter(|&n| n < cfg.batch_size) {
        return Err(PretrainError(format!(
            "the training data has {n} usable pair(s), fewer than one batch of {0} (--batch-size {0}): {1} ({2})",
            cfg.batch_size,
            data.train.describe(),
            data.train.issues().summary()
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
    if lead && opts.resume.is_none() && !opts.overwrite {
        if let Some(what) = existing_run(&run_dir) {
            return Err(PretrainError(format!(
                "{} already holds a run ({what}): resume it with --resume latest, choose another --name, or pass \
                 --overwrite to delete it first",
                run_dir.display()
            )));
        }
    }

    let (mut trainer, resumed_at, cursor) = match &opts.resume {
        Some(spec) => {
            let path = if spec == "latest" {
                checkpoint::latest(&ckpt_dir)
                    .ok_or_else(|| PretrainError(format!("--resume latest: no checkpoint in {}", ckpt_dir.display())))?
            } else {
                PathBuf::from(spec)
            };
            let (t, state) = checkpoint::resume(backend, &path, cfg, total)?;
            say(format!("resumed from {} at step {} (epoch {})", path.display(), state.step, state.epoch));
            let cursor = match (&data.train, state.data_cursors.len()) {
                (TrainData::Indexed(_), _) => None,
                (TrainData::Streamed(_), n) if n == ranks => Some(state.data_cursors[rank]),
                (TrainData::Streamed(_), n) => {
                    return Err(PretrainError(format!(
                        "{}: the checkpoint holds the shard positions of {n} process(es), this run has {ranks}: \
                         resume a WebDataset run on as many processes as it was written by",
                        path.display()
                    )))
                }
            };
            (t, Some(state.step), cursor)
        }
        None => {
            let model = match &cfg.init_from {
                Some(ckpt) => {
                    let m = checkpoint::init_from(backend, ckpt, &model_cfg)?;
                    say(format!("model weights from {} (fresh optimiser and schedule)", ckpt.display()));
                    m
                }
                None => model_cfg.init(backend, &mut rng_for(&[cfg.seed, 0x1417]))?,
            };
            (Trainer::new(model, cfg.train_config(total))?, None, None)
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
    let loader_cfg = LoaderConfig {
        batch: cfg.batch_size,
        seed: cfg.seed,
        workers,
        prefetch: opts.prefetch.unwrap_or(2),
        rank,
        ranks,
    };
    let mut loader = Loader::new(data.train.clone(), loader_cfg, trainer.step, cursor)?;
    let mut cursor = cursor.unwrap_or_default();
    let no_batch = |loader: &Loader| {
        PretrainError(format!(
            "the data source yielded no complete batch of {} pairs: {} ({})",
            cfg.batch_size,
            loader.why_ended().unwrap_or_else(|| "it ended".into()),
            data.train.issues().summary()
        ))
    };
    let mut pending = if trainer.step < stop { Some(loader.next().ok_or_else(|| no_batch(&loader))?) } else { None };

    // Checked: from here on the run folder is this run's (rank 0's to write).
    if lead {
        prepare_run_dir(cfg, opts, resumed_at, &say)?;
    }
    let shards =
        if ranks > 1 { format!(" ({} per process on {ranks})", cfg.batch_size / ranks) } else { String::new() };
    say(format!(
        "data: {}\nrun: {} steps of {} pairs{shards}, {:?} loss, logs in {}",
        data.train.describe(),
        total,
        cfg.batch_size,
        cfg.loss,
        run_dir.display()
    ));

    let mut log = match lead {
        true => Some(
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&metrics)
                .map_err(|e| err(metrics.display(), e))?,
        ),
        false => None,
    };
    let mut write_line = |v: serde_json::Value| -> Result<()> {
        match &mut log {
            Some(log) => writeln!(log, "{v}").map_err(|e| err(metrics.display(), e)),
            None => Ok(()),
        }
    };
    let bar = if opts.progress && lead {
        ProgressBar::new(total)
    } else {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]")
            .expect("a valid template"),
    );
    bar.set_position(trainer.step);

    let (mut losses, mut last_ckpt, mut final_eval) = (Vec::new(), None, None);
    let mut train_decoded = 0u64;
    let started = Instant::now();
    let mut rate = None::<f64>;
    while trainer.step < stop {
        let t0 = Instant::now();
        let mut batch = match pending.take() {
            Some(b) => b,
            None => loader.next().ok_or_else(|| no_batch(&loader))?,
        };
        if opts.fail_at == Some((rank, trainer.step)) {
            return Err(PretrainError(format!("rank {rank}: failing before step {} as asked (a test)", trainer.step)));
        }
        // The loader made this rank's shard of the global batch only.
        let n = batch.captions.len();
        let pixels = std::mem::replace(&mut batch.pixels, Pixels::Rgb8(Vec::new())).into_normalized(batch.size);
        let images = backend.from_vec(pixels, &[n, 3, batch.size, batch.size]);
        let tokens = tokenizer.tokenize(&batch.captions);
        let stats = trainer.step_with(backend, &images, &tokens, comm)?;
        let n = cfg.batch_size;
        let epoch = batch.epoch;
        train_decoded += batch.decoded;
        if let Some(c) = batch.cursor {
            cursor = c;
        }
        let sps = n as f64 / t0.elapsed().as_secs_f64();
        let r = *rate.get_or_insert(sps);
        rate = Some(0.9 * r + 0.1 * sps);
        losses.push((stats.step, stats.loss));
        write_line(
            json!({"step": stats.step, "epoch": epoch, "loss": stats.loss, "lr": stats.lr, "inv_tau": stats.inv_tau,
                          "grad_norm": stats.grad_norm, "samples_per_s": sps, "comm_s": stats.comm_seconds}),
        )?;
        bar.set_message(format!(
            "loss {:.4} lr {:.2e} τ⁻¹ {:.1} {:.0} samples/s",
            stats.loss,
            stats.lr,
            stats.inv_tau,
            rate.unwrap_or(sps)
        ));
        bar.set_position(trainer.step);
        let done = trainer.step;
        let is_end = done == total;
        // Save before evaluating: an evaluation that fails loses no training.
        let mut saved_now = None;
        let cursors = match &data.train {
            TrainData::Streamed(_) => gather_cursors(comm, cursor)?,
            TrainData::Indexed(_) => Vec::new(),
        };
        if lead && (done == stop || (cfg.save_every > 0 && done % cfg.save_every == 0)) {
            let path = checkpoint::save(backend, &ckpt_dir, &trainer, cfg, epoch, total, &cursors)?;
            last_ckpt = Some(path.clone());
            saved_now = Some(path);
        }
        if lead && !opts.no_eval && (is_end || (cfg.eval_every > 0 && done % cfg.eval_every == 0)) {
            let report = match evaluate(backend, &trainer.model, &data, is_end) {
                Ok(r) => r,
                Err(e) => {
                    let path = match saved_now {
                        Some(p) => p,
                        None => checkpoint::save(backend, &ckpt_dir, &trainer, cfg, epoch, total, &cursors)?,
                    };
                    return Err(PretrainError(format!(
                        "evaluation at step {done} failed: {e}; the training so far is saved in {} (resume with \
                         --resume latest, or evaluate it with cloob-eval)",
                        path.display()
                    )));
                }
            };
            if let Some(h) = report.headline() {
                bar.println(format!("step {done}: mean zero-shot top-1 {h:.3}"));
            }
            write_line(json!({"step": done, "eval": report}))?;
            if is_end {
                final_eval = Some(report);
            }
        }
    }
    bar.finish();
    drop(loader);
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
