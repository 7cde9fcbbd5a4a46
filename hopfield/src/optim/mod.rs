//! Optimisers, gradient clipping and learning-rate schedules, matching `torch.optim` step for step.

mod schedule;

pub use schedule::LrSchedule;
