//! How a run can be watched while it trains: open_clip's `--report-to` and `--log-every-n-steps`. Not part
//! of the run's settings (a checkpoint does not store them; a resumed run may change them).

use super::parse::at_least_one;
use super::{PretrainError, Result};

/// A place `--report-to` sends the run's metrics to, besides `metrics.jsonl` and the plots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportTarget {
    /// TensorBoard event files in `<logs>/<name>/tensorboard/` (see [`crate::pretrain::tensorboard`]).
    Tensorboard,
    /// Nowhere else (also open_clip's default, the empty value).
    None,
}

/// `--report-to`'s values: `tensorboard`, `none` or the empty string (open_clip's default); open_clip's
/// `wandb` is refused with a word on why.
pub(crate) fn report_target(s: &str) -> std::result::Result<ReportTarget, String> {
    match s.trim() {
        "tensorboard" => Ok(ReportTarget::Tensorboard),
        "none" | "" => Ok(ReportTarget::None),
        "wandb" => Err("wandb is not built in (it needs its Python client): use tensorboard, or none".into()),
        other => Err(format!("unknown target {other:?}: use tensorboard or none (a comma list, as open_clip's)")),
    }
}

/// `--report-to` and `--log-every-n-steps`, open_clip's flags.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ReportOptions {
    /// Where the metrics go besides metrics.jsonl and the plots: tensorboard (event files in
    /// `<logs>/<name>/tensorboard/`: loss, lr, τ⁻¹, grad norm every step, every evaluation figure) or none; a
    /// comma list, as open_clip's.
    #[arg(long = "report-to", value_name = "REPORT_TO", value_delimiter = ',', value_parser = report_target)]
    #[arg(default_value = "none")]
    pub report_to: Vec<ReportTarget>,
    /// When stderr is not a terminal (nohup, Slurm, a pipe): print a progress line every N steps (step,
    /// epoch, loss, lr, τ⁻¹, samples/s); a terminal shows the progress bar instead.
    #[arg(long = "log-every-n-steps", value_name = "N", default_value_t = 100, value_parser = at_least_one::<u64>)]
    pub log_every_n_steps: u64,
}

impl Default for ReportOptions {
    /// The flags' defaults.
    fn default() -> Self {
        super::flag_defaults()
    }
}

impl ReportOptions {
    /// Whether event files are written.
    pub fn tensorboard(&self) -> bool {
        self.report_to.contains(&ReportTarget::Tensorboard)
    }

    /// Check the values against each other: `none` goes alone; `log_every_n_steps` is at least 1.
    pub fn validate(&self) -> Result<()> {
        if self.report_to.len() > 1 && self.report_to.contains(&ReportTarget::None) {
            return Err(PretrainError(format!(
                "--report-to: none cannot be combined with other targets (got {:?})",
                self.report_to
            )));
        }
        if self.log_every_n_steps == 0 {
            return Err(PretrainError("--log-every-n-steps must be at least 1, got 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};

    fn parse(flags: &[&str]) -> std::result::Result<ReportOptions, clap::Error> {
        let cmd = ReportOptions::augment_args(clap::Command::new("t"));
        let m = cmd.try_get_matches_from(std::iter::once("t").chain(flags.iter().copied()))?;
        ReportOptions::from_arg_matches(&m)
    }

    #[test]
    fn report_to_takes_open_clips_comma_list_and_names_what_it_refuses() {
        let d = parse(&[]).unwrap();
        assert_eq!((d.tensorboard(), d.log_every_n_steps), (false, 100));
        assert_eq!(d, ReportOptions::default());
        assert!(parse(&["--report-to", "tensorboard"]).unwrap().tensorboard());
        assert!(parse(&["--report-to", "none,tensorboard"]).unwrap().validate().is_err());
        assert!(!parse(&["--report-to", ""]).unwrap().tensorboard());
        let e = parse(&["--report-to", "tensorboard,wandb"]).unwrap_err().to_string();
        assert!(e.contains("--report-to") && e.contains("wandb is not built in"), "{e}");
        let e = parse(&["--report-to", "mlflow"]).unwrap_err().to_string();
        assert!(e.contains("unknown target \"mlflow\""), "{e}");
        assert_eq!(parse(&["--log-every-n-steps", "7"]).unwrap().log_every_n_steps, 7);
        assert!(parse(&["--log-every-n-steps", "0"]).is_err());
    }
}
