//! What the `cloob-pretrain` and `cloob-eval` binaries run: a training run with evaluation, JSONL
//! metrics, plots and checkpoints that resume bit for bit.
//!
//! - [`config`]: the run's settings (plain data, serde), data source specs.
//! - [`checkpoint`]: safetensors weights + optimiser moments + JSON state, written atomically.
//! - [`evaluate`]: zero-shot per task, retrieval, linear probe and embedding analysis of a model.
//! - [`run`]: the training loop.
//! - [`run_dir`]: the run folder: its name, its lock, its metrics.
//! - [`interrupt`]: SIGTERM/SIGINT/SIGUSR1 → a checkpoint and a clean exit.
//! - [`plots`]: PNG plots of a run's metrics, redrawn after each evaluation.
//! - [`tensorboard`]: TensorBoard event files (`--report-to tensorboard`).

pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod interrupt;
pub mod plots;
pub mod run;
pub mod run_dir;
mod sources;
pub mod tensorboard;
mod watch;

pub use config::{DataSpec, LockOptions, LongRunOptions, OnNan, Recipe, ReportOptions, RunConfig, Scheduler};
pub use run::{train, RunOptions, RunSummary};

/// Errors of a run: each says what failed and where.
#[derive(Debug)]
pub struct PretrainError(pub String);

/// Results of this module.
pub type Result<T> = std::result::Result<T, PretrainError>;

impl std::fmt::Display for PretrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PretrainError {}

impl From<hopfield::HopfieldError> for PretrainError {
    fn from(e: hopfield::HopfieldError) -> Self {
        PretrainError(e.to_string())
    }
}

impl From<crate::data::DataError> for PretrainError {
    fn from(e: crate::data::DataError) -> Self {
        PretrainError(e.0)
    }
}

/// Print `text` on stdout for the binaries. When stdout is a pipe whose reader has gone (`| head -1`),
/// exit quietly with status 0 (the reader has what it wanted) instead of panicking; another write error
/// is one line on stderr and status 1.
pub fn print_or_quit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// `context: error` as a [`PretrainError`].
pub(crate) fn err(context: impl std::fmt::Display, e: impl std::fmt::Display) -> PretrainError {
    PretrainError(format!("{context}: {e}"))
}
