//! What `--batch-size` means, and how a config written when it meant something else is read.
//!
//! Since config version 2 the flags mean what open_clip's do: `--batch-size` is the pairs of one
//! micro-batch of one process, `--accum-freq N` accumulates N of them per optimiser step, and a run on R
//! processes steps on global batches of `batch_size × accum_freq × R` pairs (the loss sees all of them).
//! Before (version 1, configs without a `config_version`), `batch_size` was that global total, split
//! over the processes and then into `--accum-freq` micro-batches. A checkpoint stores its config with its
//! version; [`RunConfig::global_batch_of_saved`] reads either, so an old run resumes with the same
//! global batch.

use super::{PretrainError, Result, RunConfig};

/// The config version this build writes: 2, `--batch-size` per process (open_clip's meaning).
pub const CONFIG_VERSION: u32 = 2;

/// The version of a config that names none: 1, `--batch-size` the global total.
pub(crate) fn legacy_version() -> u32 {
    1
}

/// One process, the world size of a config that names none.
pub(crate) fn one() -> usize {
    1
}

impl RunConfig {
    /// Pairs of one optimiser step over all processes: `batch_size × accum_freq × world_size`.
    pub fn global_batch(&self) -> usize {
        self.batch_size.saturating_mul(self.accum_freq).saturating_mul(self.world_size)
    }

    /// Pairs one process encodes per optimiser step: `batch_size × accum_freq`.
    pub fn process_batch(&self) -> usize {
        self.batch_size.saturating_mul(self.accum_freq)
    }

    /// The global batch of a config read from a checkpoint, whatever its version: version 1 stored the
    /// global total in `batch_size`, version 2 stores the per-process micro-batch.
    pub fn global_batch_of_saved(&self) -> usize {
        match self.config_version {
            v if v < 2 => self.batch_size,
            _ => self.global_batch(),
        }
    }

    /// An error unless this run steps on the global batch `saved` (a checkpoint's config, any version)
    /// stepped on; the message gives the `--batch-size` that would.
    pub fn check_same_global_batch(&self, saved: &RunConfig) -> Result<()> {
        // Both read by their own version (this run's is the current one, unless it was read from a file).
        let (was, now) = (saved.global_batch_of_saved(), self.global_batch_of_saved());
        if was == now {
            return Ok(());
        }
        let meant = match saved.config_version {
            v if v < 2 => format!(
                "its --batch-size {was} was the global total (before config version {CONFIG_VERSION}, which made \
                 --batch-size per process as in open_clip)"
            ),
            _ => format!(
                "--batch-size {} × --accum-freq {} × {} process(es)",
                saved.batch_size, saved.accum_freq, saved.world_size
            ),
        };
        // Saturating and zero-checked: a config read from a file may hold anything until it is validated.
        let per = self.accum_freq.saturating_mul(self.world_size);
        let fix = match was.checked_rem(per) {
            None => format!("--accum-freq {} × {} process(es) is no batch", self.accum_freq, self.world_size),
            Some(0) => format!(
                "pass --batch-size {} to resume it with --accum-freq {} on {} process(es)",
                was / per,
                self.accum_freq,
                self.world_size
            ),
            _ => {
                format!("{was} does not split into --accum-freq {} × {} process(es)", self.accum_freq, self.world_size)
            }
        };
        Err(PretrainError(format!(
            "checkpoint mismatch: it was trained on global batches of {was} pairs ({meant}); this run's are {now} \
             (--batch-size {} × --accum-freq {} × {} process(es)): {fix}",
            self.batch_size, self.accum_freq, self.world_size
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_global_batch_multiplies_batch_accumulation_and_processes() {
        let cfg = RunConfig { batch_size: 16, accum_freq: 4, world_size: 2, ..RunConfig::default() };
        assert_eq!((cfg.global_batch(), cfg.process_batch()), (128, 64));
        assert_eq!(RunConfig::default().config_version, CONFIG_VERSION);
        assert_eq!(RunConfig::default().global_batch(), 64);
    }

    /// A version-1 config (no `config_version`, `batch_size` global) resumes with the per-process
    /// batch that gives the same global batch, and only with that one.
    #[test]
    fn an_old_config_resumes_with_the_same_global_batch() {
        let mut json = serde_json::to_value(RunConfig { accum_freq: 4, ..RunConfig::default() }).unwrap();
        let obj = json.as_object_mut().unwrap();
        obj.remove("config_version");
        obj.remove("world_size");
        obj.insert("batch_size".into(), 64.into());
        let old: RunConfig = serde_json::from_value(json).unwrap();
        assert_eq!((old.config_version, old.world_size, old.global_batch_of_saved()), (1, 1, 64));
        let now = RunConfig { batch_size: 16, accum_freq: 4, ..RunConfig::default() };
        now.check_same_global_batch(&old).unwrap();
        now.check_resumable(&old).unwrap();
        // On two processes: 8 pairs each, 4 micro-batches.
        RunConfig { batch_size: 8, world_size: 2, ..now.clone() }.check_resumable(&old).unwrap();
        // The old command line copied as is would train 4 × larger batches: refused, with the fix.
        let copied = RunConfig { batch_size: 64, ..now.clone() };
        let e = copied.check_resumable(&old).unwrap_err().to_string();
        assert!(e.contains("global batches of 64") && e.contains("pass --batch-size 16"), "{e}");
        let e = RunConfig { batch_size: 5, accum_freq: 3, ..now }.check_same_global_batch(&old).unwrap_err();
        assert!(e.to_string().contains("does not split"), "{e}");
    }
}
