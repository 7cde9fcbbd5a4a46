//! Which tensors get weight decay: PyTorch's two parameter groups (`weight_decay: 0` and the rest), decided
//! per tensor from its name and shape.

use serde::{Deserialize, Serialize};

/// Decides, from a tensor's `state_dict` name and shape, whether it gets weight decay.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DecayFilter {
    /// Every trainable tensor is decayed (a single PyTorch parameter group).
    All,
    /// open_clip's rule (`exclude = p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in
    /// n`), extended for the names of this workspace. No decay for:
    ///
    /// - tensors with fewer than two axes: biases, norm gains, scalars such as CLOOB's `logit_inv_tau`
    ///   (the CLOOB reference, whose rule looks at names only, does decay `logit_inv_tau`; we follow
    ///   open_clip, as decaying a temperature has no regularising meaning);
    /// - names containing `bn`, `ln`, `bias`, `norm`, `logit_scale` or `inv_tau` (substrings, as open_clip);
    /// - the learned patterns of Hopfield pooling and lookup layers, `pooling_weights`, `lookup_weights`
    ///   and `target_weights`: they are state or stored patterns, and shrinking them lowers the effective
    ///   inverse temperature β‖ξ‖ of the retrieval rather than regularising a map.
    ///
    /// Embedding matrices (`token_embedding.weight`, `positional_embedding`) are decayed, as in open_clip.
    #[default]
    OpenClip,
    /// [`DecayFilter::OpenClip`], and embedding tables (any name containing `embedding`: token, positional,
    /// class) are not decayed either — the minGPT/nanoGPT convention, and the groups CLOOB's pretraining in
    /// this workspace uses by default (an embedding row is a lookup, not a map; decaying it shrinks rare
    /// tokens towards zero).
    OpenClipNoEmbeddings,
    /// A caller's rule: `true` means the tensor is decayed. Not serialisable.
    #[serde(skip)]
    Custom(fn(&str, &[usize]) -> bool),
}

/// Name fragments that [`DecayFilter::OpenClip`] exempts from decay.
const NO_DECAY_NAMES: &[&str] =
    &["bn", "ln", "bias", "norm", "logit_scale", "inv_tau", "pooling_weights", "lookup_weights", "target_weights"];

impl DecayFilter {
    /// Whether the tensor `name` of `shape` is decayed.
    pub fn decays(&self, name: &str, shape: &[usize]) -> bool {
        match self {
            DecayFilter::All => true,
            DecayFilter::OpenClip => shape.len() >= 2 && !NO_DECAY_NAMES.iter().any(|n| name.contains(n)),
            DecayFilter::OpenClipNoEmbeddings => {
                DecayFilter::OpenClip.decays(name, shape) && !name.contains("embedding")
            }
            DecayFilter::Custom(f) => f(name, shape),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_rule_splits_clip_and_hopfield_names() {
        let f = DecayFilter::OpenClip;
        let decayed = [
            ("visual.transformer.resblocks.0.attn.in_proj_weight", &[2304usize, 768][..]),
            ("token_embedding.weight", &[49408, 512]),
            ("positional_embedding", &[77, 512]),
            ("association_core.in_proj_weight", &[96, 32]),
            ("visual.proj", &[768, 512]),
        ];
        for (name, shape) in decayed {
            assert!(f.decays(name, shape), "{name} should be decayed");
        }
        let exempt = [
            ("visual.class_embedding", &[768usize][..]),
            ("transformer.resblocks.0.ln_1.weight", &[512]),
            ("transformer.resblocks.0.mlp.c_fc.bias", &[2048]),
            ("logit_scale", &[]),
            ("logit_inv_tau", &[]),
            ("visual.layer1.0.bn1.weight", &[64]),
            ("norm_stored_pattern.weight", &[32]),
            ("pooling_weights", &[1, 4, 32]),
            ("lookup_weights", &[1, 8, 32]),
            ("target_weights", &[1, 8, 32]),
        ];
        for (name, shape) in exempt {
            assert!(!f.decays(name, shape), "{name} should not be decayed");
        }
        let g = DecayFilter::OpenClipNoEmbeddings;
        for (name, shape) in exempt
            .iter()
            .chain(&[("token_embedding.weight", &[49408usize, 512][..]), ("positional_embedding", &[77, 512])])
        {
            assert!(!g.decays(name, shape), "{name} should not be decayed without embeddings");
        }
        assert!(g.decays("visual.proj", &[768, 512]) && g.decays("association_core.in_proj_weight", &[96, 32]));
        assert!(DecayFilter::All.decays("bias", &[3]));
        assert!(!DecayFilter::Custom(|n, _| n == "w").decays("v", &[2, 2]));
    }

    #[test]
    fn serialises_by_name() {
        let s = serde_json::to_string(&DecayFilter::OpenClip).unwrap();
        assert_eq!(s, "\"open_clip\"");
        assert_eq!(serde_json::to_string(&DecayFilter::OpenClipNoEmbeddings).unwrap(), "\"open_clip_no_embeddings\"");
        assert!(matches!(serde_json::from_str::<DecayFilter>("\"all\"").unwrap(), DecayFilter::All));
    }
}
