//! Learning-rate schedules: pure functions of the 0-based optimiser step.

use crate::error::{HopfieldError, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A learning rate as a function of the step. Serialises as `{"kind": "warmup_cosine", ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LrSchedule {
    /// `lr` at every step.
    Constant {
        /// The learning rate.
        lr: f64,
    },
    /// open_clip's `cosine_lr` with a floor: `base·(step+1)/warmup` for `step < warmup`, then
    /// `floor + ½(1 + cos(π·e/es))·(base − floor)` with `e = step − warmup`, `es = total − warmup`. With
    /// `floor = 0` this is open_clip's formula; from `step = total` on it stays at `floor` (open_clip's
    /// cosine would rise again).
    WarmupCosine {
        /// Peak learning rate.
        base: f64,
        /// Warmup steps.
        warmup: u64,
        /// Total steps, `> warmup`.
        total: u64,
        /// Final learning rate, in `[0, base]`.
        floor: f64,
    },
    /// CLOOB's `get_cosine_with_hard_restarts_schedule_with_warmup` (from Hugging Face): `base·step/warmup`
    /// for `step < warmup`, then with `p = (step − warmup)/(total − warmup)`: `½(1 + cos(π·((cycles·p) mod
    /// 1)))·base` while `p < 1`, and 0 after. `cycles = 1` is CLOOB's plain `cosine` schedule up to `total`.
    CosineRestarts {
        /// Peak learning rate.
        base: f64,
        /// Warmup steps.
        warmup: u64,
        /// Total steps.
        total: u64,
        /// Number of cosine cycles after the warmup, ≥ 1.
        cycles: u64,
    },
    /// `base·γ^⌊step/every⌋`: PyTorch's `ExponentialLR` stepped every `every` optimiser steps (once an
    /// epoch with `every` = batches per epoch).
    Exponential {
        /// Learning rate of the first period.
        base: f64,
        /// Decay factor per period, in `(0, 1]` usually.
        gamma: f64,
        /// Steps per period, ≥ 1.
        every: u64,
    },
}

impl LrSchedule {
    /// The learning rate of the 0-based step `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::WarmupCosine { base, warmup, total, floor } => {
                if step < warmup {
                    return base * (step + 1) as f64 / warmup as f64;
                }
                let es = total.saturating_sub(warmup).max(1);
                let e = (step - warmup).min(es);
                floor + 0.5 * (1.0 + (PI * e as f64 / es as f64).cos()) * (base - floor)
            }
            LrSchedule::CosineRestarts { base, warmup, total, cycles } => {
                if step < warmup {
                    return base * step as f64 / warmup as f64;
                }
                let p = (step - warmup) as f64 / total.saturating_sub(warmup).max(1) as f64;
                if p >= 1.0 {
                    return 0.0;
                }
                0.5 * (1.0 + (PI * (cycles as f64 * p).fract()).cos()) * base
            }
            LrSchedule::Exponential { base, gamma, every } => {
                let periods = step / every.max(1);
                base * gamma.powf(periods as f64)
            }
        }
    }

    /// Check the fields: learning rates finite and ≥ 0, `total > warmup`, `floor ≤ base`, `cycles ≥ 1`,
    /// `every ≥ 1`, `gamma > 0`.
    pub fn validate(&self) -> Result<()> {
        let rate = |field: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(HopfieldError::config(field, format!("must be finite and ≥ 0, got {v}")))
            }
        };
        match *self {
            LrSchedule::Constant { lr } => rate("lr", lr),
            LrSchedule::WarmupCosine { base, warmup, total, floor } => {
                rate("base", base)?;
                rate("floor", floor)?;
                if floor > base {
                    return Err(HopfieldError::config("floor", format!("{floor} exceeds base {base}")));
                }
                check_total(warmup, total)
            }
            LrSchedule::CosineRestarts { base, warmup, total, cycles } => {
                rate("base", base)?;
                if cycles == 0 {
                    return Err(HopfieldError::config("cycles", "must be ≥ 1"));
                }
                check_total(warmup, total)
            }
            LrSchedule::Exponential { base, gamma, every } => {
                rate("base", base)?;
                if !gamma.is_finite() || gamma <= 0.0 {
                    return Err(HopfieldError::config("gamma", format!("must be finite and > 0, got {gamma}")));
                }
                if every == 0 {
                    return Err(HopfieldError::config("every", "must be ≥ 1"));
                }
                Ok(())
            }
        }
    }
}

fn check_total(warmup: u64, total: u64) -> Result<()> {
    if total <= warmup {
        return Err(HopfieldError::config("total", format!("must exceed warmup {warmup}, got {total}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn warmup_cosine_matches_open_clip_at_key_steps() {
        let s = LrSchedule::WarmupCosine { base: 1e-3, warmup: 10, total: 110, floor: 0.0 };
        s.validate().unwrap();
        close(s.lr_at(0), 1e-4); // (0+1)/10
        close(s.lr_at(9), 1e-3); // warmup ends at the peak
        close(s.lr_at(10), 1e-3); // cos(0) = 1
        close(s.lr_at(60), 0.5e-3); // halfway: cos(π/2) = 0
        close(s.lr_at(35), 0.5 * (1.0 + (PI / 4.0).cos()) * 1e-3);
        close(s.lr_at(110), 0.0);
        close(s.lr_at(500), 0.0); // clamped, does not rise again
        let f = LrSchedule::WarmupCosine { base: 1.0, warmup: 0, total: 100, floor: 0.1 };
        close(f.lr_at(0), 1.0);
        close(f.lr_at(50), 0.55);
        close(f.lr_at(100), 0.1);
    }

    #[test]
    fn cosine_restarts_matches_cloob_at_key_steps() {
        let s = LrSchedule::CosineRestarts { base: 2.0, warmup: 4, total: 104, cycles: 2 };
        s.validate().unwrap();
        close(s.lr_at(0), 0.0); // CLOOB's warmup starts at 0, not base/warmup
        close(s.lr_at(2), 1.0);
        close(s.lr_at(4), 2.0);
        close(s.lr_at(29), 1.0); // quarter of the run = half of the first cycle
        close(s.lr_at(54), 2.0); // hard restart
        close(s.lr_at(79), 1.0);
        close(s.lr_at(104), 0.0);
        close(s.lr_at(1000), 0.0);
    }

    #[test]
    fn exponential_and_constant() {
        let s = LrSchedule::Exponential { base: 0.1, gamma: 0.5, every: 3 };
        s.validate().unwrap();
        let lrs: Vec<f64> = (0..7).map(|t| s.lr_at(t)).collect();
        assert_eq!(lrs, vec![0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]);
        close(LrSchedule::Constant { lr: 3e-4 }.lr_at(123), 3e-4);
    }

    #[test]
    fn invalid_schedules_are_errors_and_json_round_trips() {
        assert!(LrSchedule::WarmupCosine { base: 1.0, warmup: 5, total: 5, floor: 0.0 }.validate().is_err());
        assert!(LrSchedule::WarmupCosine { base: 1.0, warmup: 0, total: 5, floor: 2.0 }.validate().is_err());
        assert!(LrSchedule::CosineRestarts { base: 1.0, warmup: 0, total: 5, cycles: 0 }.validate().is_err());
        assert!(LrSchedule::Exponential { base: 1.0, gamma: 0.9, every: 0 }.validate().is_err());
        assert!(LrSchedule::Constant { lr: f64::NAN }.validate().is_err());
        let s = LrSchedule::CosineRestarts { base: 1e-3, warmup: 10, total: 100, cycles: 3 };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"kind\":\"cosine_restarts\""), "{json}");
        assert_eq!(serde_json::from_str::<LrSchedule>(&json).unwrap(), s);
    }
}
