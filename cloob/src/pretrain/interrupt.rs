//! Graceful preemption: Slurm and Kubernetes send SIGTERM and wait (30–90 s) before SIGKILL; Slurm's
//! `--signal=USR1@90` sends SIGUSR1 ahead of the end of a job's time; Ctrl-C sends SIGINT.
//!
//! [`install`] (the binary calls it; a library user may) makes the first of these signals set a flag:
//! the run finishes the step under way, saves a checkpoint, flushes its metrics and returns with
//! [`super::RunSummary::interrupted`] set, and `cloob-pretrain` exits with [`EXIT_INTERRUPTED`]. A second
//! signal ends the process at once (status 130). Under MPI the ranks agree on the step to stop after.

use super::Result;
use crate::dist::Collective;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Exit status of a run stopped by a signal after saving its checkpoint (BSD's EX_TEMPFAIL: "try again";
/// rerun the same command with `--resume latest`).
pub const EXIT_INTERRUPTED: i32 = 75;

/// The signals handled.
const SIGNALS: [(i32, &str); 3] = [
    (signal_hook::consts::SIGTERM, "SIGTERM"),
    (signal_hook::consts::SIGINT, "SIGINT"),
    (signal_hook::consts::SIGUSR1, "SIGUSR1"),
];

/// Route SIGTERM, SIGINT and SIGUSR1 to the returned flag (the number of the first signal received;
/// 0 until then); a second signal exits at once with status 130.
pub fn install() -> std::io::Result<Arc<AtomicUsize>> {
    let which = Arc::new(AtomicUsize::new(0));
    let once = Arc::new(AtomicBool::new(false));
    for (sig, _) in SIGNALS {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, once.clone())?;
        signal_hook::flag::register(sig, once.clone())?;
        signal_hook::flag::register_usize(sig, which.clone(), sig as usize)?;
    }
    Ok(which)
}

/// The name of a signal number of [`install`].
pub fn signal_name(sig: usize) -> String {
    SIGNALS.iter().find(|(s, _)| *s as usize == sig).map_or_else(|| format!("signal {sig}"), |(_, n)| n.to_string())
}

/// Whether the run should stop after this step: a signal reached this process, or (under MPI) any rank.
/// A collective when there are several ranks: every rank calls it after every step.
pub fn interrupt_requested(flag: Option<&Arc<AtomicUsize>>, comm: &dyn Collective) -> Result<Option<String>> {
    let mine = flag.map_or(0, |f| f.load(Ordering::SeqCst));
    let any = if comm.size() > 1 {
        comm.all_gather_f64(&[mine as f64])?.into_iter().fold(0.0f64, f64::max) as usize
    } else {
        mine
    };
    Ok((any != 0).then(|| signal_name(any)))
}
