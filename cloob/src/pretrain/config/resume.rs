//! What a resumed run may change: nothing that changes the loss curve silently.

use super::{PretrainError, Result, RunConfig};

/// Settings that may change silently between a run and its resumption (they do not change the loss curve).
pub const MAY_CHANGE: [&str; 8] =
    ["eval_every", "save_every", "logs", "name", "eval_size", "fashion_dir", "long_run", "zero_shot"];

/// Settings compared through the global batch they give ([`RunConfig::check_same_global_batch`]): a run
/// may resume on another number of processes with the same global batch, and a checkpoint of config
/// version 1 stored the global batch in `batch_size`.
pub const BATCH_KEYS: [&str; 3] = ["batch_size", "world_size", "config_version"];

/// Optimiser settings that may change on resume, with a note (the loss curve then differs from the
/// uninterrupted run's): the way out of a divergence is often a lower `--lr` from the last good checkpoint.
pub const SAFE_ON_RESUME: [&str; 4] = ["lr", "wd", "grad_clip_norm", "eps"];

impl RunConfig {
    /// The notes for the settings documented as safe to change on resume ([`SAFE_ON_RESUME`]) that differ
    /// from `saved`'s, or an error naming the first setting that must not change.
    pub fn check_resumable(&self, saved: &RunConfig) -> Result<Vec<String>> {
        let (a, b) =
            (serde_json::to_value(self).expect("plain data"), serde_json::to_value(saved).expect("plain data"));
        let (a, b) = (a.as_object().expect("a struct"), b.as_object().expect("a struct"));
        self.check_same_global_batch(saved)?;
        let mut notes = Vec::new();
        for (key, value) in a {
            let was = b.get(key).map(|v| v.to_string()).unwrap_or_else(|| "(absent)".into());
            if MAY_CHANGE.contains(&key.as_str()) || BATCH_KEYS.contains(&key.as_str()) || b.get(key) == Some(value) {
                continue;
            }
            if SAFE_ON_RESUME.contains(&key.as_str()) {
                notes.push(format!(
                    "note: resuming with {key} = {value} (the checkpoint's run had {was}); from here the run differs \
                     from an uninterrupted one"
                ));
                continue;
            }
            return Err(PretrainError(format!(
                "checkpoint mismatch: it was trained with {key} = {was}, this run has {key} = {value}; pass the same \
                 setting to resume (only {MAY_CHANGE:?} may change, and {SAFE_ON_RESUME:?} with a note)"
            )));
        }
        Ok(notes)
    }
}
