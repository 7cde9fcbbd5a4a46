//! Locked towers for fine-tuning (LiT, Zhai et al. 2022), with open_clip's semantics: `--lock-image`
//! freezes the image tower, `--lock-image-unlocked-groups N` leaves its last `N` layer groups trainable;
//! `--lock-text` and `--lock-text-unlocked-layers N` do the same for the text tower.
//!
//! A tower names its groups, input side first, through [`LockableTower`]. A transformer tower has
//! open_clip's groups (`VisionTransformer.lock`, `lock_text_tower`): the stem (`conv1`, `class_embedding`,
//! `positional_embedding`, `ln_pre`; or `token_embedding`, `positional_embedding`), one group per block
//! but the last, the last block with the final norm (`ln_post`, `ln_final`), and the projection alone:
//! `layers + 2` groups. A ResNet tower's are `[stem]`, `layer1` … `layer4`, `[attnpool]`.
//!
//! Frozen tensors cost nothing but their forward:
//! - [`LockableTower::forward_locked`] keeps the backward cache of the trainable groups only, and the
//!   backward from that cache stops at the first trainable group; a fully locked tower keeps no cache and
//!   its backward is not run ([`crate::model::ClipModel::forward_locked`]);
//! - [`ModelLock::zero_grads`] gives frozen tensors empty gradients (shape `[0]`), so no gradient memory,
//!   nothing to all-reduce between ranks, nothing in the gradient norm;
//! - [`Masked`] reports frozen tensors as not trainable, so the optimiser neither updates nor decays them
//!   and keeps no moments for them (a checkpoint's optimiser state holds none).

use crate::image_tower::{ImageTower, ImageTowerCache};
use crate::model::ClipModel;
use hopfield::layers::{Layer, Mode};
use hopfield::{Backend, HopfieldError, Parameters, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Which groups of one tower train.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TowerLock {
    /// Groups `first_trainable..` train, the ones before are frozen (0: the whole tower trains; the
    /// tower's group count: none does).
    pub first_trainable: usize,
    /// Keep the batch-norm statistics of frozen groups fixed (open_clip's `freeze_bn_stats`); towers
    /// without batch norm ignore it.
    pub freeze_bn_stats: bool,
}

impl TowerLock {
    /// Every group trains.
    pub const OPEN: TowerLock = TowerLock { first_trainable: 0, freeze_bn_stats: false };
}

/// A tower that can be locked group by group.
pub trait LockableTower<B: Backend>: Layer<B> {
    /// Its lock groups (open_clip's order, input side first).
    fn lock_groups(&self) -> usize;
    /// The group of a tensor, by its name within the tower (`conv1.weight`, `transformer.resblocks.3.…`);
    /// `None` for a name not of this tower.
    fn lock_group_of(&self, name: &str) -> Option<usize>;
    /// [`Layer::forward`] keeping only what the backward of groups `lock.first_trainable..` needs; the
    /// backward from the returned cache accumulates into those groups' gradients only and stops there.
    fn forward_locked(
        &self,
        backend: &B,
        p: &Self::Params,
        input: &Self::Input,
        mode: Mode,
        lock: TowerLock,
    ) -> Result<(Self::Output, Self::Cache)>;
}

/// The group of `name` in a transformer tower of `layers` blocks with open_clip's groups: `stem` names
/// (exact, or a module prefix) → 0, block `i` → `min(i + 1, layers)`, the `final_norm` module → `layers`,
/// the `proj` tensor → `layers + 1`.
pub(crate) fn transformer_group(
    name: &str,
    layers: usize,
    stem: &[&str],
    final_norm: &str,
    proj: &str,
) -> Option<usize> {
    let under = |module: &str| name == module || name.strip_prefix(module).is_some_and(|r| r.starts_with('.'));
    if let Some(rest) = name.strip_prefix("transformer.resblocks.") {
        let i: usize = rest.split('.').next()?.parse().ok()?;
        return (i < layers).then(|| (i + 1).min(layers));
    }
    if name == proj {
        Some(layers + 1)
    } else if under(final_norm) {
        Some(layers)
    } else {
        stem.iter().any(|s| under(s)).then_some(0)
    }
}

/// The first block of `layers` whose cache a transformer tower keeps when groups `first_trainable..`
/// train (`layers`: none).
pub(crate) fn first_kept_block(first_trainable: usize, layers: usize) -> usize {
    if first_trainable > layers {
        layers
    } else {
        first_trainable.saturating_sub(1)
    }
}

/// The lock settings of a run, plain data (what `cloob-pretrain`'s `--lock-*` flags give).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockConfig {
    /// `Some(n)`: the image tower is frozen but for its last `n` groups; `None`: it trains whole.
    pub image_unlocked_groups: Option<usize>,
    /// Keep the image tower's batch-norm statistics of frozen groups fixed.
    pub freeze_bn_stats: bool,
    /// `Some(n)`: the text tower is frozen but for its last `n` groups; `None`: it trains whole.
    pub text_unlocked_groups: Option<usize>,
}

impl LockConfig {
    /// Whether anything is frozen.
    pub fn any(&self) -> bool {
        self.image_unlocked_groups.is_some() || self.text_unlocked_groups.is_some()
    }

    /// The frozen groups and tensor names of `model`; errors when a tower has fewer groups than asked to
    /// stay unlocked.
    pub fn plan<B: Backend>(&self, model: &ClipModel<B>) -> Result<ModelLock> {
        let tower = |unlocked: Option<usize>, groups: usize, what: &'static str| match unlocked {
            None => Ok(TowerLock::OPEN),
            Some(n) if n > groups => Err(HopfieldError::config(
                what,
                format!("{n} unlocked groups asked, the tower has {groups} (open_clip's lock groups)"),
            )),
            Some(n) => Ok(TowerLock { first_trainable: groups - n, freeze_bn_stats: false }),
        };
        let mut image = tower(self.image_unlocked_groups, model.visual.lock_groups(), "lock_image_unlocked_groups")?;
        image.freeze_bn_stats = self.freeze_bn_stats && self.image_unlocked_groups.is_some();
        let text = tower(self.text_unlocked_groups, model.text.lock_groups(), "lock_text_unlocked_layers")?;
        let mut frozen = BTreeSet::new();
        model.visit(&mut |name, _, _| {
            let is_frozen = match name.strip_prefix("visual.") {
                Some(rest) => model.visual.lock_group_of(rest).is_some_and(|g| g < image.first_trainable),
                None => model.text.lock_group_of(name).is_some_and(|g| g < text.first_trainable),
            };
            if is_frozen {
                frozen.insert(name.to_string());
            }
        });
        Ok(ModelLock { image, text, frozen })
    }
}

/// What a lock freezes in one model: per tower, and by tensor name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelLock {
    /// The image tower's trainable groups.
    pub image: TowerLock,
    /// The text tower's trainable groups.
    pub text: TowerLock,
    /// Names of the frozen tensors.
    pub frozen: BTreeSet<String>,
}

impl ModelLock {
    /// Nothing frozen.
    pub fn open() -> Self {
        ModelLock::default()
    }

    /// Whether the tensor `name` is frozen.
    pub fn is_frozen(&self, name: &str) -> bool {
        self.frozen.contains(name)
    }

    /// A gradient struct for `model`: zeros for the trainable tensors, an empty tensor (shape `[0]`) for
    /// each frozen one (the model's own tensors are shared, not copied, by the clone).
    pub fn zero_grads<B: Backend>(&self, backend: &B, model: &ClipModel<B>) -> ClipModel<B> {
        let mut g = model.clone();
        g.visit_mut(&mut |name, t, _| {
            *t = if self.is_frozen(name) { backend.zeros(&[0]) } else { backend.zeros_like(t) };
        });
        g
    }

    /// `p` with its frozen tensors reported as not trainable.
    pub fn mask<'a, P>(&'a self, p: &'a mut P) -> Masked<'a, P> {
        Masked { inner: p, frozen: &self.frozen }
    }
}

/// Parameters whose frozen tensors visit as not trainable (see [`ModelLock::mask`]): optimisers,
/// clipping and norms skip them.
#[derive(Debug)]
pub struct Masked<'a, P> {
    inner: &'a mut P,
    frozen: &'a BTreeSet<String>,
}

impl<B: Backend, P: Parameters<B>> Parameters<B> for Masked<'_, P> {
    fn visit<'b>(&'b self, f: &mut dyn FnMut(&str, &'b B::Tensor, bool)) {
        let frozen = self.frozen;
        self.inner.visit(&mut |n, t, tr| f(n, t, tr && !frozen.contains(n)));
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, &mut B::Tensor, bool)) {
        let frozen = self.frozen;
        self.inner.visit_mut(&mut |n, t, tr| f(n, t, tr && !frozen.contains(n)));
    }
}

/// A ResNet tower's lock groups (open_clip's `ModifiedResNet.lock`): the stem, `layer1` … `layer4`, the
/// attention pool.
pub const RESNET_LOCK_GROUPS: usize = 6;

/// The group of a ResNet tensor by its name within the tower.
fn resnet_group(name: &str) -> Option<usize> {
    let module = name.split('.').next()?;
    match module {
        "conv1" | "bn1" | "conv2" | "bn2" | "conv3" | "bn3" => Some(0),
        "layer1" => Some(1),
        "layer2" => Some(2),
        "layer3" => Some(3),
        "layer4" => Some(4),
        "attnpool" => Some(5),
        _ => None,
    }
}

impl<B: Backend> LockableTower<B> for ImageTower<B> {
    fn lock_groups(&self) -> usize {
        match self {
            ImageTower::Vit(t) => t.lock_groups(),
            ImageTower::ResNet(_) => RESNET_LOCK_GROUPS,
        }
    }
    fn lock_group_of(&self, name: &str) -> Option<usize> {
        match self {
            ImageTower::Vit(t) => t.lock_group_of(name),
            ImageTower::ResNet(_) => resnet_group(name),
        }
    }
    /// A vision transformer keeps only its trainable groups' caches. A ResNet runs its whole forward (a
    /// partly locked one backpropagates through every group, see [`ImageTower`]'s backward, and keeps the
    /// trainable groups' gradients only); fully locked with `freeze_bn_stats` it normalises with its running
    /// statistics (open_clip's `FrozenBatchNorm2d`). Freezing the statistics of only some groups is refused.
    fn forward_locked(
        &self,
        backend: &B,
        p: &Self,
        images: &B::Tensor,
        mode: Mode,
        lock: TowerLock,
    ) -> Result<(B::Tensor, ImageTowerCache<B>)> {
        match (self, p) {
            (ImageTower::Vit(t), ImageTower::Vit(p)) => {
                t.forward_locked(backend, p, images, mode, lock).map(|(y, c)| (y, ImageTowerCache::Vit(c)))
            }
            (ImageTower::ResNet(_), ImageTower::ResNet(_)) => {
                let locked = lock.first_trainable >= RESNET_LOCK_GROUPS;
                if lock.freeze_bn_stats && lock.first_trainable > 0 && !locked {
                    return Err(HopfieldError::config(
                        "lock_image_freeze_bn_stats",
                        "a ResNet tower freezes its batch-norm statistics only when it is locked whole \
                         (--lock-image without --lock-image-unlocked-groups)",
                    ));
                }
                let mode = if locked && lock.freeze_bn_stats { Mode::Eval } else { mode };
                self.forward(backend, p, images, mode)
            }
            _ => self.forward(backend, p, images, mode),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClipConfig;
    use hopfield::Cpu;
    use rand::SeedableRng;

    #[test]
    fn groups_follow_open_clip_and_a_lock_freezes_all_but_the_last() {
        let cpu = Cpu::<f32>::new();
        let model = ClipConfig::tiny().init(&cpu, &mut rand::rngs::StdRng::seed_from_u64(0)).unwrap();
        // tiny: 2 blocks per tower, so 4 groups: stem, [block 0], [block 1, final norm], [projection].
        assert_eq!((model.visual.lock_groups(), model.text.lock_groups()), (4, 4));
        let v = |n: &str| model.visual.lock_group_of(n);
        assert_eq!([v("conv1.weight"), v("class_embedding"), v("ln_pre.bias")], [Some(0); 3]);
        assert_eq!(v("transformer.resblocks.0.attn.in_proj_weight"), Some(1));
        assert_eq!([v("transformer.resblocks.1.ln_1.weight"), v("ln_post.weight")], [Some(2); 2]);
        assert_eq!([v("proj"), v("transformer.resblocks.2.ln_1.weight"), v("ln_pre")], [Some(3), None, Some(0)]);
        let t = |n: &str| model.text.lock_group_of(n);
        assert_eq!(
            [t("token_embedding.weight"), t("positional_embedding"), t("ln_final.bias")],
            [Some(0), Some(0), Some(2)]
        );
        assert_eq!([t("text_projection"), t("logit_scale"), t("ln_finalx")], [Some(3), None, None]);
        let names = model.names();
        for n in &names {
            let grouped = match n.strip_prefix("visual.") {
                Some(rest) => v(rest),
                None => t(n),
            };
            assert_eq!(grouped.is_some(), n != "logit_scale", "{n}");
        }

        let whole = LockConfig { image_unlocked_groups: Some(0), ..LockConfig::default() }.plan(&model).unwrap();
        let visual = names.iter().filter(|n| n.starts_with("visual.")).count();
        assert_eq!(whole.frozen.len(), visual);
        assert!(whole.frozen.iter().all(|n| n.starts_with("visual.")));
        let last = LockConfig { image_unlocked_groups: Some(1), text_unlocked_groups: Some(2), ..Default::default() }
            .plan(&model)
            .unwrap();
        assert!(!last.is_frozen("visual.proj") && last.is_frozen("visual.ln_post.weight"));
        assert!(last.is_frozen("transformer.resblocks.0.ln_1.weight"));
        assert!(!last.is_frozen("transformer.resblocks.1.ln_1.weight") && !last.is_frozen("ln_final.weight"));
        assert!(!last.is_frozen("logit_scale") && !last.is_frozen("text_projection"));
        assert_eq!((last.image.first_trainable, last.text.first_trainable), (3, 2));
        let err = LockConfig { text_unlocked_groups: Some(5), ..Default::default() }.plan(&model).unwrap_err();
        assert!(err.to_string().contains("5 unlocked groups asked, the tower has 4"), "{err}");

        // Frozen tensors get empty gradients and visit as not trainable.
        let mut g = last.zero_grads(&cpu, &model);
        let mut seen = 0;
        last.mask(&mut g).visit(&mut |n, t, tr| {
            assert_eq!(t.is_empty(), last.is_frozen(n), "{n}");
            assert_eq!(tr, !last.is_frozen(n) && n != "logit_scale", "{n}");
            seen += 1;
        });
        assert_eq!(seen, names.len());
    }
}
