//! open_clip's tower-locking flags (LiT fine-tuning): which parts of the model stay frozen.

use super::{PretrainError, Result};
use crate::image_tower::ImageTowerConfig;
use crate::lock::{LockConfig, RESNET_LOCK_GROUPS};
use crate::model::ClipConfig;
use serde::{Deserialize, Serialize};

/// `--lock-image*` and `--lock-text*`, open_clip's flags and semantics (see [`crate::lock`]). Part of the
/// run's config: a resumed run must lock the same groups (the checkpoint's optimiser state has moments
/// for the trainable tensors only, and an uninterrupted run would not have changed them); to unlock more
/// after a locked phase, start a new run with `--init-from` the locked run's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct LockOptions {
    /// Freeze the image tower (LiT): its weights stay bit-identical; it runs forward only.
    #[arg(long = "lock-image")]
    pub lock_image: bool,
    /// With --lock-image: leave the last N layer groups of the image tower trainable (a ViT's groups:
    /// conv1 with the class and positional embeddings and ln_pre; each block but the last; the last block with
    /// ln_post; proj).
    #[arg(long = "lock-image-unlocked-groups", value_name = "N", default_value_t = 0)]
    pub lock_image_unlocked_groups: usize,
    /// With --lock-image: keep batch-norm statistics of the frozen groups fixed (ResNet towers; a ViT has none).
    #[arg(long = "lock-image-freeze-bn-stats")]
    pub lock_image_freeze_bn_stats: bool,
    /// Freeze the text tower; it runs forward only.
    #[arg(long = "lock-text")]
    pub lock_text: bool,
    /// With --lock-text: leave the last N layer groups of the text tower trainable (the token and
    /// positional embeddings; each block but the last; the last block with ln_final; text_projection).
    #[arg(long = "lock-text-unlocked-layers", value_name = "N", default_value_t = 0)]
    pub lock_text_unlocked_layers: usize,
    /// With --lock-text: freeze the layer norms of the locked layers too. Required, as in open_clip 3.3,
    /// whose built-in text tower treats its layer norms like the other weights.
    #[arg(long = "lock-text-freeze-layer-norm")]
    pub lock_text_freeze_layer_norm: bool,
}

impl LockOptions {
    /// The training step's lock.
    pub fn lock_config(&self) -> LockConfig {
        LockConfig {
            image_unlocked_groups: self.lock_image.then_some(self.lock_image_unlocked_groups),
            freeze_bn_stats: self.lock_image && self.lock_image_freeze_bn_stats,
            text_unlocked_groups: self.lock_text.then_some(self.lock_text_unlocked_layers),
        }
    }

    /// Check the flags against each other and against the towers of `model`: a modifier needs its lock,
    /// and no tower has fewer groups than asked to stay unlocked.
    pub fn validate(&self, model: &ClipConfig) -> Result<()> {
        let needs = |given: bool, flag: &str, lock: &str| match given {
            true => Err(PretrainError(format!("--{flag} has no effect without --{lock}: add --{lock}"))),
            false => Ok(()),
        };
        let (image, text) = (self.lock_image, self.lock_text);
        needs(!image && self.lock_image_unlocked_groups > 0, "lock-image-unlocked-groups", "lock-image")?;
        needs(!image && self.lock_image_freeze_bn_stats, "lock-image-freeze-bn-stats", "lock-image")?;
        needs(!text && self.lock_text_unlocked_layers > 0, "lock-text-unlocked-layers", "lock-text")?;
        needs(!text && self.lock_text_freeze_layer_norm, "lock-text-freeze-layer-norm", "lock-text")?;
        if text && !self.lock_text_freeze_layer_norm {
            return Err(PretrainError(
                "--lock-text needs --lock-text-freeze-layer-norm: the text tower's layer norms are locked with its \
                 other weights (open_clip 3.3's built-in text tower refuses unfrozen layer norms the same way)"
                    .into(),
            ));
        }
        // A transformer tower has open_clip's `layers + 2` groups, a ResNet its stem, four stages and pool.
        let image_groups = match &model.vision {
            ImageTowerConfig::Vit(c) => (c.layers + 2, format!("{} blocks + the stem and the projection", c.layers)),
            ImageTowerConfig::ResNet(_) => (RESNET_LOCK_GROUPS, "the stem, 4 stages and the attention pool".into()),
        };
        let text_groups =
            (model.text.layers + 2, format!("{} blocks + the stem and the projection", model.text.layers));
        let towers = [
            ("lock-image-unlocked-groups", self.lock_image_unlocked_groups, image_groups),
            ("lock-text-unlocked-layers", self.lock_text_unlocked_layers, text_groups),
        ];
        for (flag, n, (groups, what)) in towers {
            if n > groups {
                return Err(PretrainError(format!(
                    "--{flag} {n}: the tower has {groups} layer groups ({what}); use at most {groups}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modifiers_need_their_lock_and_groups_are_bounded_by_the_tower() {
        let tiny = ClipConfig::tiny();
        LockOptions::default().validate(&tiny).unwrap();
        assert_eq!(LockOptions::default().lock_config(), LockConfig::default());
        let image = LockOptions { lock_image: true, lock_image_unlocked_groups: 4, ..Default::default() };
        image.validate(&tiny).unwrap();
        assert_eq!(image.lock_config().image_unlocked_groups, Some(4));
        let text = LockOptions { lock_text: true, lock_text_freeze_layer_norm: true, ..Default::default() };
        text.validate(&tiny).unwrap();
        assert_eq!(text.lock_config().text_unlocked_groups, Some(0));
        let cases = [
            (LockOptions { lock_image_unlocked_groups: 1, ..Default::default() }, "without --lock-image"),
            (LockOptions { lock_image_freeze_bn_stats: true, ..Default::default() }, "without --lock-image"),
            (LockOptions { lock_text_unlocked_layers: 2, ..Default::default() }, "without --lock-text"),
            (LockOptions { lock_text: true, ..Default::default() }, "needs --lock-text-freeze-layer-norm"),
            (LockOptions { lock_image_unlocked_groups: 5, ..image.clone() }, "has 4 layer groups"),
            (LockOptions { lock_text_unlocked_layers: 9, ..text.clone() }, "--lock-text-unlocked-layers 9"),
        ];
        for (opts, needle) in cases {
            let e = opts.validate(&tiny).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        // Old configs (without the flags) read as unlocked.
        let old: LockOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(old, LockOptions::default());
    }
}
