//! Pretrain a CLOOB (or CLIP) model: `cargo run --release --bin cloob-pretrain` trains the tiny preset on
//! the embedded captioned-scene set in a few minutes on two CPU cores; `--data fashion-mnist` or
//! `--data csv:PATH` or `--data wds:'shards/{00000..00099}.tar'` train on other data. Flags follow
//! open_clip's and cloob's names.
//!
//! Data-parallel over processes (built with `--features mpi`): `mpiexec -n R cloob-pretrain …`;
//! `--batch-size` is per rank, as in open_clip, and the loss sees the whole global batch of
//! `--batch-size × --accum-freq × R` pairs (see `cloob::dist`).

use clap::{CommandFactory, FromArgMatches, Parser};
use cloob::dist::Collective;
use cloob::pretrain::evaluate::DIAGNOSTICS;
use cloob::pretrain::interrupt;
use cloob::pretrain::run::train_with;
use cloob::pretrain::{print_or_quit, ReportOptions, RunConfig, RunOptions};
use hopfield::backend::Device;

// The run's settings are `RunConfig`'s flags (their defaults live there); the rest steer this process.
#[derive(Parser, Debug)]
#[command(
    name = "cloob-pretrain",
    about = "Contrastive image–text pretraining with CLOOB or CLIP, on the CPU or a GPU (--device)",
    after_help = "Data-parallel on R processes (a build with `--features mpi`, OpenMPI or MPICH):\n  \
                  mpiexec -n R cloob-pretrain --batch-size B …   (under Slurm: srun)\n\
                  Every rank encodes B × --accum-freq pairs of each step, the loss sees all of them \
                  (B × --accum-freq × R, as open_clip); rank 0 writes the logs."
)]
struct Cli {
    #[command(flatten)]
    run: RunConfig,
    /// Run name: one folder name under --logs (default: `<loss>-<model>-<data>-s<seed>`).
    #[arg(long, value_parser = run_name)]
    name: Option<String>,
    /// Resume from a checkpoint's JSON, or `latest` for this run's newest.
    #[arg(long)]
    resume: Option<String>,
    /// Stop after this many steps (with a checkpoint), as if interrupted.
    #[arg(long)]
    stop_after: Option<u64>,
    /// No progress bar (nor progress lines, nor evaluation lines).
    #[arg(long)]
    quiet: bool,
    /// TensorBoard and progress lines.
    #[command(flatten)]
    report: ReportOptions,
    /// Delete an earlier run of the same name first (a fresh run refuses a folder holding another run).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Where to train: cpu (default, any machine), wgpu (a Vulkan, Metal or DX12 GPU; on Linux without
    /// one, Mesa's lavapipe: apt install mesa-vulkan-drivers), cuda or cuda:N (NVIDIA GPU N with its
    /// driver; a build with --features cuda). Checkpoints resume on any device.
    #[arg(long, default_value = "cpu", value_parser = Device::parse_flag)]
    device: Device,
    /// Decoding threads of the data loader (default: the cores the training step leaves free, at least
    /// 1; see docs/data.md). Batches are the same for any number.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    workers: Option<u64>,
    /// Batches the loader keeps ready ahead of the step (each batch of decoded files holds
    /// B·3·S·S bytes until the step).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    prefetch: u64,
    /// Testing aid: rank RANK fails before step STEP (`RANK:STEP`).
    #[arg(long, hide = true, value_parser = rank_step)]
    fail_at: Option<(usize, u64)>,
    /// Testing aid: the pixels of batch N of the data stream are made NaN (for --on-nan).
    #[arg(long, hide = true)]
    nan_batch: Option<u64>,
    /// Testing aid: this diagnostic of every evaluation fails (image-eigenvalues, linear-probe, …).
    #[arg(long, hide = true, value_parser = clap::builder::PossibleValuesParser::new(DIAGNOSTICS))]
    fail_diagnostic: Option<String>,
}

fn run_name(s: &str) -> Result<String, String> {
    cloob::pretrain::run_dir::check_run_name(s).map(|_| s.to_string())
}

fn rank_step(s: &str) -> Result<(usize, u64), String> {
    let (r, k) = s.split_once(':').ok_or("expected RANK:STEP")?;
    Ok((r.parse().map_err(|e| format!("{e}"))?, k.parse().map_err(|e| format!("{e}"))?))
}

impl Cli {
    /// The run's settings, named, with `--recipe` applied to the flags `matches` did not get explicitly.
    fn config(&self, matches: &clap::ArgMatches) -> RunConfig {
        let mut run = self.run.clone();
        run.apply_recipe(&|id| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine));
        let given = |id| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        if let Some(stem) = run.source.config_stem().filter(|_| !given("model_preset")) {
            // --model-config without --model: the run is named after the file.
            run.model_preset = stem;
        }
        let name = self.name.clone().unwrap_or_else(|| run.default_name());
        RunConfig { name, ..run }
    }

    fn options(&self) -> RunOptions {
        let (resume, stop_after) = (self.resume.clone(), self.stop_after);
        RunOptions {
            progress: !self.quiet,
            report: self.report.clone(),
            fail_diagnostic: self.fail_diagnostic.clone(),
            resume,
            stop_after,
            no_eval: false,
            verbose: true,
            overwrite: self.overwrite,
            fail_at: self.fail_at,
            device: self.device,
            workers: self.workers.map(|w| w as usize),
            prefetch: Some(self.prefetch as usize),
            interrupt: None,
            nan_batch: self.nan_batch,
        }
    }
}

fn main() {
    // Training allocates and frees large tensors every step: keep freed memory in the process.
    hopfield::backend::cpu::tune_allocator();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let (cfg, mut opts) = (cli.config(&matches), cli.options());
    match interrupt::install() {
        Ok(flag) => opts.interrupt = Some(flag),
        Err(e) => eprintln!("note: SIGTERM/SIGINT will end the run without a checkpoint ({e})"),
    }
    #[cfg(feature = "mpi")]
    let mpi = cloob::dist::mpi::Mpi::init().expect("MPI is initialised once");
    #[cfg(feature = "mpi")]
    let comm: &dyn Collective = &mpi;
    #[cfg(not(feature = "mpi"))]
    let comm: &dyn Collective = &cloob::dist::SingleProcess;
    let (rank, ranks) = (comm.rank(), comm.size());
    match train_with(&cfg, &opts, comm) {
        Ok(s) if s.interrupted.is_some() => {
            if rank == 0 {
                let saved = s.checkpoint.as_ref().map_or("no checkpoint".into(), |c| c.display().to_string());
                eprintln!(
                    "{}: stopped after step {}, saved {saved}; continue with the same command and --resume latest",
                    s.interrupted.as_deref().unwrap_or("signal"),
                    s.steps
                );
            }
            std::process::exit(interrupt::EXIT_INTERRUPTED);
        }
        Ok(s) if rank > 0 => {
            eprintln!(
                "rank {rank}: decoded {} training images, read {} evaluation images",
                s.train_decoded, s.eval_images
            )
        }
        Ok(s) => {
            let mut out = String::new();
            if let Some(r) = &s.final_eval {
                out += &format!("\n{}\n", r.table());
            }
            out += &format!("{} steps in {:.1} s (this process)\n", s.steps, s.wall_s);
            out += &format!("data: {}\n", s.data_issues);
            out += &format!(
                "decoded: {} training images, {} evaluation images (this process{})\n",
                s.train_decoded,
                s.eval_images,
                if ranks > 1 { ", rank 0" } else { "" }
            );
            out += &format!("logs:       {}\n", s.run_dir.display());
            out += &format!("metrics:    {}\n", s.metrics.display());
            if let Some(t) = &s.tensorboard {
                out += &format!("tensorboard: {}  (tensorboard --logdir {})\n", t.display(), s.run_dir.display());
            }
            for p in &s.plots {
                out += &format!("plot:       {}\n", p.display());
            }
            if let Some(c) = &s.checkpoint {
                out += &format!(
                    "checkpoint: {}  (resume with --resume {} or --resume latest)\n",
                    c.display(),
                    c.display()
                );
            }
            print_or_quit(&out);
        }
        Err(e) => {
            if ranks > 1 {
                eprintln!("error (rank {rank} of {ranks}; stopping every rank): {e}");
                #[cfg(feature = "mpi")]
                mpi.abort(1);
            }
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(flags: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cloob-pretrain").chain(flags.iter().copied()))
    }

    fn parse(flags: &[&str]) -> RunConfig {
        let matches = Cli::command()
            .try_get_matches_from(std::iter::once("cloob-pretrain").chain(flags.iter().copied()))
            .unwrap();
        Cli::from_arg_matches(&matches).unwrap().config(&matches)
    }

    #[test]
    fn no_flags_give_the_default_run() {
        Cli::command().debug_assert();
        assert_eq!(parse(&[]), RunConfig::default());
        assert_eq!(RunConfig::default().name, "cloob-tiny-embedded-s0");
    }

    #[test]
    fn each_flag_sets_its_field() {
        let cfg = parse(&[
            "--scale-hopfield",
            "2.5",
            "--lr-scheduler",
            "cosine-restarts",
            "--loss",
            "infonce-hopfield",
            "--grad-clip-norm",
            "0",
            "--csv-separator",
            ",",
            "--data",
            "csv:/tmp/pairs.csv",
            "--seed",
            "3",
            "--retrieval",
            "entmax:1.3",
        ]);
        assert_eq!(cfg.retrieval, hopfield::layers::Retrieval::Entmax { alpha: 1.3, learnable: false });
        assert_eq!(cfg.train_config(100).loss.retrieval, cfg.retrieval);
        assert_eq!(cfg.hopfield_beta, 2.5);
        assert_eq!(cfg.scheduler, cloob::pretrain::Scheduler::CosineRestarts);
        assert_eq!(cfg.loss, cloob::loss::LossKind::ClipHopfield);
        assert_eq!(cfg.grad_clip_norm, None);
        assert_eq!(cfg.csv.separator, ',');
        assert_eq!(cfg.name, "infonce-hopfield-tiny-pairs-s3");
        assert_eq!(parse(&["--name", "x", "--csv-separator", "tab"]).name, "x");
        assert_eq!(parse(&["--csv-separator", "tab"]).csv.separator, '\t');
    }

    /// `--recipe cc` yields the paper's Conceptual Captions settings, its warmup scaled to the run, and an
    /// explicitly given flag wins over the recipe.
    #[test]
    fn recipe_cc_sets_the_papers_settings_and_explicit_flags_win() {
        use cloob::pretrain::config::{Recipe, CC_WARMUP_FRACTION};
        use cloob::pretrain::Scheduler;
        let cfg = parse(&["--recipe", "cc", "--steps", "2000"]);
        assert_eq!(cfg.recipe, Some(Recipe::Cc));
        assert_eq!((cfg.hopfield_beta, cfg.init_inv_tau, cfg.lr, cfg.wd), (8.0, 30.0, 1e-3, 0.1));
        assert_eq!((cfg.scheduler, cfg.cycles), (Scheduler::CosineRestarts, 10));
        assert_eq!(cfg.warmup_fraction, Some(CC_WARMUP_FRACTION));
        // 20 000 of 395 117 steps ≈ 5.06 %: 101 of 2000.
        assert_eq!(cfg.effective_warmup(2000), 101);
        let t = cfg.train_config(2000);
        assert_eq!((t.loss.hopfield_beta, t.adam.weight_decay), (8.0, 0.1));
        cfg.validate().unwrap();
        let mine = parse(&["--recipe", "cc", "--lr", "5e-4", "--warmup", "7", "--restart-cycles", "3"]);
        assert_eq!((mine.lr, mine.cycles, mine.warmup_fraction, mine.effective_warmup(1000)), (5e-4, 3, None, 7));
        assert_eq!(mine.hopfield_beta, 8.0);
        // Without the recipe nothing changes.
        assert_eq!(parse(&[]).warmup_fraction, None);
        assert_eq!(parse(&["--lr", "1e-3"]).hopfield_beta, 14.3);
    }

    #[test]
    fn optimiser_and_loss_knobs_reach_the_train_config() {
        let cfg = parse(&["--beta1", "0.8", "--beta2", "0.99", "--eps", "1e-8", "--loob-scale", "mean"]);
        let t = cfg.train_config(100);
        assert_eq!((t.adam.beta1, t.adam.beta2, t.adam.eps), (0.8, 0.99, 1e-8));
        assert_eq!(t.loss.loob_scale, cloob::loss::LoobScale::Mean);
        let d = parse(&[]).train_config(100);
        assert_eq!((d.adam.beta1, d.adam.beta2, d.adam.eps), (0.9, 0.98, 1e-6));
        let p = parse(&["--init-from", "logs/x/checkpoints/step_000300.json"]);
        assert_eq!(p.init_from.as_deref(), Some(std::path::Path::new("logs/x/checkpoints/step_000300.json")));
    }

    #[test]
    fn open_clips_flags_reach_the_config() {
        let cfg = parse(&[
            "--lr-scheduler",
            "const",
            "--save-most-recent",
            "--imagenet-val",
            "/data/imagenet/val",
            "--class-names",
            "names.txt",
            "--batch-size",
            "16",
            "--accum-freq",
            "4",
        ]);
        assert_eq!(cfg.scheduler, cloob::pretrain::Scheduler::Const);
        assert!(cfg.long_run.save_most_recent && !parse(&[]).long_run.save_most_recent);
        assert_eq!(cfg.zero_shot.imagenet_val.as_deref(), Some(std::path::Path::new("/data/imagenet/val")));
        assert_eq!(cfg.zero_shot.class_names.as_deref(), Some(std::path::Path::new("names.txt")));
        // One process: 16 pairs × 4 micro-batches a step.
        assert_eq!((cfg.global_batch(), cfg.world_size, cfg.config_version), (64, 1, 2));
        let e = cli(&["--lr-scheduler", "const-cooldown"]).unwrap_err().to_string();
        assert!(e.contains("--lr-scheduler") && e.contains("const"), "{e}");
    }

    #[test]
    fn overwrite_and_resume_exclude_each_other() {
        assert!(cli(&["--overwrite"]).unwrap().options().overwrite);
        let e = cli(&["--overwrite", "--resume", "latest"]).unwrap_err().to_string();
        assert!(e.contains("--overwrite") && e.contains("--resume"), "{e}");
    }

    #[test]
    fn bad_values_are_one_line_errors_naming_the_flag() {
        let cases = [
            (&["--lr=-1"][..], "--lr"),
            (&["--steps", "0"], "--steps"),
            (&["--batch-size", "0"], "--batch-size"),
            (&["--csv-separator", "ab"], "--csv-separator"),
            (&["--loss", "nce"], "--loss"),
            (&["--epochs", "nan"], "--epochs"),
            (&["--epochs=-3"], "--epochs"),
            (&["--epochs", "inf"], "--epochs"),
            (&["--grad-clip-norm=-1"], "--grad-clip-norm"),
            (&["--batch-size", "1"], "--batch-size"),
            (&["--eval-size", "1"], "--eval-size"),
            (&["--eval-size", "0"], "--eval-size"),
            (&["--init-inv-tau", "0.5"], "--init-inv-tau"),
            (&["--init-inv-tau", "nan"], "--init-inv-tau"),
            (&["--retrieval", "entmax:1.5:learnable"], "--retrieval"),
            (&["--retrieval", "entmax:3"], "--retrieval"),
            (&["--retrieval", "sparse"], "--retrieval"),
            (&["--beta1", "1"], "--beta1"),
            (&["--beta2=-0.1"], "--beta2"),
            (&["--eps", "0"], "--eps"),
            (&["--recipe", "yfcc"], "--recipe"),
            (&["--loob-scale", "sum"], "--loob-scale"),
        ];
        for (flags, needle) in cases {
            let e = cli(flags).unwrap_err();
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            assert!(first.starts_with("error: invalid value") && first.contains(needle), "{flags:?}: {e}");
        }
    }
}
