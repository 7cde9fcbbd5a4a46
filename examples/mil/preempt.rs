//! Preemption: SIGTERM (a scheduler's or a shared machine's notice), SIGINT (Ctrl-C) or SIGUSR1 stops the run
//! at once with status 75 (EX_TEMPFAIL, "preempted, rerun to continue"), after one line saying how many folds
//! are saved and where. Stopping at once loses only the folds in training, which a SIGKILL after a short grace
//! period would lose anyway, while every finished fold is already synced to its `.partial` file; the stop
//! waits only for a fold line being written (the lock of [`Logs`]), so no line is cut. A second signal exits
//! at once even from that wait.

use hopfield_mil::resume::FoldLog;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};

/// The exit status of a stopped run: sysexits' EX_TEMPFAIL, a temporary failure; rerunning continues it.
pub const EX_TEMPFAIL: i32 = 75;

/// The run's fold logs, shared by the folds that append to them, the main thread that writes the outputs
/// and the signal thread that stops the run.
#[derive(Debug, Default)]
pub struct Logs {
    /// One per output file.
    pub files: Vec<FoldLog>,
    /// Folds of this run on disk: reused from an earlier run, or appended by this one.
    pub saved: usize,
    /// Every output is written; a signal no longer stops anything.
    pub done: bool,
}

/// `SIGTERM`, …
fn name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// Watch for SIGTERM, SIGINT and SIGUSR1 on a thread of their own: the first stops the run as the module
/// says, a second exits at once.
pub fn stop_on_signals(logs: Arc<Mutex<Logs>>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGUSR1])?;
    std::thread::spawn(move || {
        let mut signals = signals.forever();
        let Some(first) = signals.next() else { return };
        std::thread::spawn(move || stop(first, &logs));
        if let Some(second) = signals.next() {
            eprintln!(
                "mil: {} again: stopped at once; the finished folds are saved; rerun the same command to continue",
                name(second)
            );
            std::process::exit(EX_TEMPFAIL);
        }
    });
    Ok(())
}

/// Report the saved folds and exit with [`EX_TEMPFAIL`], unless the run is done.
fn stop(signal: i32, logs: &Mutex<Logs>) {
    let logs = logs.lock().unwrap_or_else(PoisonError::into_inner);
    if logs.done {
        return;
    }
    let partials: Vec<String> = logs.files.iter().map(|log| log.partial().display().to_string()).collect();
    let saved = match partials.len() {
        0 => "no fold saved yet".to_string(),
        _ => format!("{} finished fold(s) saved in {}", logs.saved, partials.join(", ")),
    };
    // The progress bar leaves the cursor at the end of its line.
    let newline = if std::io::stderr().is_terminal() { "\n" } else { "" };
    eprintln!("{newline}mil: stopped by {}; {saved}; rerun the same command to continue", name(signal));
    std::process::exit(EX_TEMPFAIL);
}
