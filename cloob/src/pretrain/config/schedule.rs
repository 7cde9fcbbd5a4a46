//! The learning-rate schedule of a run (`--lr-scheduler`, `--warmup`, `--restart-cycles`). open_clip's
//! `const-cooldown` (a constant rate ending in a polynomial cool-down) has no counterpart here.

use super::RunConfig;
use hopfield::optim::LrSchedule;
use serde::{Deserialize, Serialize};

/// Learning-rate schedule after the warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scheduler {
    /// open_clip's `cosine`: linear warmup, then cosine to zero.
    Cosine,
    /// open_clip's `const`: linear warmup, then the peak --lr to the end.
    Const,
    /// cloob's warmup + cosine with hard restarts (`cycles` cycles).
    CosineRestarts,
}

impl RunConfig {
    /// The warmup of a run of `total` steps: `--warmup`, shortened to `total − 1` when it is not shorter
    /// than the run (so the last steps still decay).
    pub fn effective_warmup(&self, total: u64) -> u64 {
        let warmup = match self.warmup_fraction {
            Some(f) => (f * total as f64).round() as u64,
            None => self.warmup,
        };
        warmup.min(total.saturating_sub(1))
    }

    /// The learning rate as a function of the step, for `total` steps.
    pub fn schedule(&self, total: u64) -> LrSchedule {
        let warmup = self.effective_warmup(total);
        match self.scheduler {
            Scheduler::Cosine => LrSchedule::WarmupCosine { base: self.lr, warmup, total, floor: 0.0 },
            // open_clip's const_lr is its cosine_lr with the floor at the peak: `base·(step+1)/warmup`, then `base`.
            Scheduler::Const => LrSchedule::WarmupCosine { base: self.lr, warmup, total, floor: self.lr },
            Scheduler::CosineRestarts => {
                LrSchedule::CosineRestarts { base: self.lr, warmup, total, cycles: self.cycles }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `const` is open_clip's const_lr: `lr·(step+1)/warmup` during the warmup, then `lr` to the end.
    #[test]
    fn const_warms_up_then_holds_the_peak() {
        let cfg = RunConfig { scheduler: Scheduler::Const, lr: 1e-3, warmup: 10, ..RunConfig::default() };
        let s = cfg.schedule(100);
        s.validate().unwrap();
        assert!((s.lr_at(0) - 1e-4).abs() < 1e-18 && (s.lr_at(4) - 5e-4).abs() < 1e-18);
        for step in [10, 50, 99, 100, 500] {
            assert_eq!(s.lr_at(step), 1e-3, "step {step}");
        }
        let cosine = RunConfig { scheduler: Scheduler::Cosine, ..cfg }.schedule(100);
        assert!(cosine.lr_at(99) < 1e-5);
    }
}
