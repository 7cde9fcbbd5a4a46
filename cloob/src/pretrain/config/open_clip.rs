//! Where a run's settings differ from what open_clip's `open_clip_train.main` does with the same flags
//! left at their defaults: the one-line note `cloob-pretrain` prints at start-up.
//!
//! open_clip's defaults (open_clip_train/params.py, 3.3): `--lr 5e-4`, `--beta1 0.9`, `--beta2 0.98` and
//! `--eps 1e-6` for ViTs (0.999 and 1e-8 otherwise), `--wd 0.2`, `--warmup 10000`, no `--grad-clip-norm`,
//! a learnable logit scale initialised at 1/0.07, weight decay on every ≥ 2-d tensor (embeddings
//! included), the InfoNCE (CLIP) loss, and `--save-frequency`/`--zeroshot-frequency` counted in epochs.

use super::RunConfig;
use crate::image_tower::ImageTowerConfig;
use crate::loss::LossKind;

/// open_clip's initial inverse temperature, 1/0.07.
pub const OPEN_CLIP_INV_TAU: f64 = 1.0 / 0.07;

impl RunConfig {
    /// Each setting of this run that differs from open_clip's default, with the flags that give open_clip's
    /// behaviour (empty when none differs). Settings that have no open_clip counterpart (the Hopfield β,
    /// the model presets) are not listed.
    pub fn open_clip_differences(&self) -> Vec<String> {
        let vit = self.clip_config().map(|c| matches!(c.vision, ImageTowerConfig::Vit(_))).unwrap_or(true);
        let (beta2, eps) = if vit { (0.98, 1e-6) } else { (0.999, 1e-8) };
        let mut out = Vec::new();
        let mut differs = |yes: bool, text: String| {
            if yes {
                out.push(text);
            }
        };
        differs(
            self.loss != LossKind::Clip,
            format!("loss {} (open_clip: InfoNCE, --loss clip)", loss_name(self.loss)),
        );
        differs(
            !self.learnable_inv_tau || (self.init_inv_tau - OPEN_CLIP_INV_TAU).abs() > 1e-3,
            format!(
                "τ⁻¹ {} at {} (open_clip learns it from 1/0.07: --learnable-inv-tau --init-inv-tau 14.2857)",
                if self.learnable_inv_tau { "learnt" } else { "fixed" },
                self.init_inv_tau
            ),
        );
        differs(
            self.grad_clip_norm.is_some(),
            format!(
                "gradient norm clipped at {} (open_clip does not clip: --grad-clip-norm 0)",
                self.grad_clip_norm.unwrap_or(0.0)
            ),
        );
        differs(self.lr != 5e-4, format!("--lr {} (open_clip: 5e-4)", self.lr));
        differs(self.wd != 0.2, format!("--wd {} (open_clip: 0.2)", self.wd));
        differs(
            self.warmup_fraction.is_some() || self.warmup != 10_000,
            format!("--warmup {} steps (open_clip: 10000)", self.warmup),
        );
        differs(self.beta2 != beta2, format!("--beta2 {} (open_clip for this model: {beta2})", self.beta2));
        differs(self.eps != eps, format!("--eps {:e} (open_clip for this model: {eps:e})", self.eps));
        differs(
            !self.decay_embeddings,
            "embeddings not weight-decayed (open_clip decays them: --decay-embeddings)".into(),
        );
        differs(true, "--save-frequency and --zeroshot-frequency count steps (open_clip: epochs)".into());
        out
    }

    /// The start-up note: `note: differs from open_clip's defaults: …; …` (one line), or `None`.
    pub fn open_clip_note(&self) -> Option<String> {
        let d = self.open_clip_differences();
        (!d.is_empty()).then(|| format!("note: differs from open_clip's defaults: {}", d.join("; ")))
    }
}

fn loss_name(loss: LossKind) -> String {
    use clap::ValueEnum;
    loss.to_possible_value().map_or_else(|| format!("{loss:?}"), |v| v.get_name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_each_default_that_differs_and_none_once_set_to_open_clips() {
        let d = RunConfig::default().open_clip_differences();
        for needle in ["loss cloob", "τ⁻¹ fixed at 30", "clipped at 1", "--lr 0.002", "--wd 0.1", "--warmup 30"] {
            assert!(d.iter().any(|l| l.contains(needle)), "{needle}: {d:?}");
        }
        let like = RunConfig {
            loss: LossKind::Clip,
            learnable_inv_tau: true,
            init_inv_tau: 14.2857,
            grad_clip_norm: None,
            lr: 5e-4,
            wd: 0.2,
            warmup: 10_000,
            decay_embeddings: true,
            ..RunConfig::default()
        };
        // Only the unit of the frequencies is left (steps here, epochs there).
        assert_eq!(like.open_clip_differences().len(), 1, "{:?}", like.open_clip_differences());
        assert!(!like.open_clip_note().unwrap().contains('\n'));
        // A ResNet's AdamW defaults are open_clip's β₂ 0.999 and ε 1e-8.
        let rn = RunConfig { model_preset: "rn-tiny".into(), ..like };
        let d = rn.open_clip_differences();
        assert!(d.iter().any(|l| l.contains("0.999")) && d.iter().any(|l| l.contains("1e-8")), "{d:?}");
    }
}
