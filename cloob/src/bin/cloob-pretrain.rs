//! Pretrain a CLOOB (or CLIP) model: `cargo run --release --bin cloob-pretrain` trains the tiny preset on
//! the embedded captioned-scene set in a few minutes on two CPU cores; `--data fashion-mnist` or
//! `--data csv:PATH` train on other data. Flags follow open_clip's and cloob's names.

use clap::Parser;
use cloob::pretrain::{print_or_quit, train, RunConfig, RunOptions};

// The run's settings are `RunConfig`'s flags (their defaults live there); the rest steer this process.
#[derive(Parser, Debug)]
#[command(name = "cloob-pretrain", about = "Contrastive image–text pretraining with CLOOB or CLIP on CPU")]
struct Cli {
    #[command(flatten)]
    run: RunConfig,
    /// Run name (default: <loss>-<model>-<data>-s<seed>).
    #[arg(long)]
    name: Option<String>,
    /// Resume from a checkpoint's JSON, or `latest` for this run's newest.
    #[arg(long)]
    resume: Option<String>,
    /// Stop after this many steps (with a checkpoint), as if interrupted.
    #[arg(long)]
    stop_after: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Delete an earlier run of the same name first (a fresh run refuses a folder holding another run).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
}

impl Cli {
    /// The run's settings, named.
    fn config(&self) -> RunConfig {
        let name = self.name.clone().unwrap_or_else(|| self.run.default_name());
        RunConfig { name, ..self.run.clone() }
    }

    fn options(&self) -> RunOptions {
        let (resume, stop_after) = (self.resume.clone(), self.stop_after);
        RunOptions {
            progress: !self.quiet,
            resume,
            stop_after,
            no_eval: false,
            verbose: true,
            overwrite: self.overwrite,
        }
    }
}

fn main() {
    // Training allocates and frees large tensors every step: keep freed memory in the process.
    hopfield::backend::cpu::tune_allocator();
    let cli = Cli::parse();
    let (cfg, opts) = (cli.config(), cli.options());
    match train(&cfg, &opts) {
        Ok(s) => {
            let mut out = String::new();
            if let Some(r) = &s.final_eval {
                out += &format!("\n{}\n", r.table());
            }
            out += &format!("{} steps in {:.1} s (this process)\n", s.steps, s.wall_s);
            out += &format!("data: {}\n", s.data_issues);
            out += &format!("logs:       {}\n", s.run_dir.display());
            out += &format!("metrics:    {}\n", s.metrics.display());
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
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn cli(flags: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cloob-pretrain").chain(flags.iter().copied()))
    }

    fn parse(flags: &[&str]) -> RunConfig {
        cli(flags).unwrap().config()
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
        ]);
        assert_eq!(cfg.hopfield_beta, 2.5);
        assert_eq!(cfg.scheduler, cloob::pretrain::Scheduler::CosineRestarts);
        assert_eq!(cfg.loss, cloob::loss::LossKind::ClipHopfield);
        assert_eq!(cfg.grad_clip_norm, None);
        assert_eq!(cfg.csv.separator, ',');
        assert_eq!(cfg.name, "infonce-hopfield-tiny-pairs-s3");
        assert_eq!(parse(&["--name", "x", "--csv-separator", "tab"]).name, "x");
        assert_eq!(parse(&["--csv-separator", "tab"]).csv.separator, '\t');
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
        ];
        for (flags, needle) in cases {
            let e = cli(flags).unwrap_err();
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            assert!(first.starts_with("error: invalid value") && first.contains(needle), "{flags:?}: {e}");
        }
    }
}
