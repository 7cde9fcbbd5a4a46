//! Model architectures as data: open_clip's model-config JSON (`embed_dim`, `vision_cfg`, `text_cfg`,
//! `quick_gelu`, …, the files of open_clip's `model_configs/`), read by name or from a user's file, and
//! turned into a [`ClipConfig`].
//!
//! The named configs ship with the crate (`cloob/model_configs/*.json`): open_clip's ViT-B-32, ViT-B-16,
//! ViT-L-14, RN50 and RN101 with their `-quickgelu` variants (OpenAI's weights were trained with QuickGELU),
//! and this crate's own presets `tiny`, `small` and `vit-b32` written the same way.
//!
//! Every key open_clip knows is either used, or accepted because it does not change the weights or the
//! forward pass (`output_tokens`, `cast_dtype`, …), or must hold open_clip's default: a value that would
//! change the architecture (layer scale, attentional pooling, a timm or Hugging Face tower, …) is an error
//! naming the key, and so is a key open_clip does not know. Nothing is silently ignored.
//!
//! ResNet image towers (`vision_cfg.layers` a list, as RN50) become open_clip's ModifiedResNet
//! ([`resnet_vision`]).

use crate::image_tower::ImageTowerConfig;
use crate::model::ClipConfig;
use crate::resnet::ResNetConfig;
use crate::text::TextConfig;
use crate::vit::VisionConfig;
use hopfield::{HopfieldError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The configs that ship with the crate, by name (file `cloob/model_configs/<name>.json`).
pub const BUILTIN: [(&str, &str); 14] = [
    ("tiny", include_str!("../model_configs/tiny.json")),
    ("small", include_str!("../model_configs/small.json")),
    ("vit-b32", include_str!("../model_configs/vit-b32.json")),
    ("ViT-B-32", include_str!("../model_configs/ViT-B-32.json")),
    ("ViT-B-32-quickgelu", include_str!("../model_configs/ViT-B-32-quickgelu.json")),
    ("ViT-B-16", include_str!("../model_configs/ViT-B-16.json")),
    ("ViT-B-16-quickgelu", include_str!("../model_configs/ViT-B-16-quickgelu.json")),
    ("ViT-L-14", include_str!("../model_configs/ViT-L-14.json")),
    ("ViT-L-14-quickgelu", include_str!("../model_configs/ViT-L-14-quickgelu.json")),
    ("rn-tiny", include_str!("../model_configs/rn-tiny.json")),
    ("RN50", include_str!("../model_configs/RN50.json")),
    ("RN50-quickgelu", include_str!("../model_configs/RN50-quickgelu.json")),
    ("RN101", include_str!("../model_configs/RN101.json")),
    ("RN101-quickgelu", include_str!("../model_configs/RN101-quickgelu.json")),
];

/// `vision_cfg.layers`: a block count (a ViT) or four stage depths (a ModifiedResNet, e.g. `[3, 4, 6, 3]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VisionLayers {
    /// Transformer blocks.
    Blocks(usize),
    /// Bottleneck blocks per ResNet stage.
    Stages(Vec<usize>),
}

/// `vision_cfg.image_size`: one side or `[height, width]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSize {
    /// A square side.
    Square(usize),
    /// `[height, width]`.
    Rect([usize; 2]),
}

/// open_clip's `CLIPVisionCfg` as JSON: the keys this crate builds from, and the rest kept for checking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenClipVisionCfg {
    /// Blocks (ViT) or stage depths (ResNet); open_clip's default 12.
    #[serde(default = "d_layers")]
    pub layers: VisionLayers,
    /// Transformer width (ResNet: the stem width); default 768.
    #[serde(default = "d_768")]
    pub width: usize,
    /// Width of one attention head (heads = width / head_width); default 64.
    #[serde(default = "d_64")]
    pub head_width: usize,
    /// MLP hidden size / width; default 4.
    #[serde(default = "d_mlp")]
    pub mlp_ratio: f64,
    /// Patch side (null for a ResNet); default 16.
    #[serde(default = "d_patch")]
    pub patch_size: Option<usize>,
    /// Input side; default 224.
    #[serde(default = "d_image")]
    pub image_size: ImageSize,
    /// Every other key, checked by [`OpenClipConfig::to_clip_config`].
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// open_clip's `CLIPTextCfg` as JSON: the keys this crate builds from, and the rest kept for checking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenClipTextCfg {
    /// Longest token sequence; default 77.
    #[serde(default = "d_77")]
    pub context_length: usize,
    /// Token embedding rows; default 49408.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Transformer width; default 512.
    #[serde(default = "d_512")]
    pub width: usize,
    /// Attention heads; default 8.
    #[serde(default = "d_8")]
    pub heads: usize,
    /// Blocks; default 12.
    #[serde(default = "d_12")]
    pub layers: usize,
    /// MLP hidden size / width; default 4.
    #[serde(default = "d_mlp")]
    pub mlp_ratio: f64,
    /// Every other key, checked by [`OpenClipConfig::to_clip_config`].
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// An open_clip model-config JSON (the shape of open_clip's `model_configs/*.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenClipConfig {
    /// Size of the shared embedding space.
    pub embed_dim: usize,
    /// The image tower.
    pub vision_cfg: OpenClipVisionCfg,
    /// The text tower.
    pub text_cfg: OpenClipTextCfg,
    /// QuickGELU (x·σ(1.702x), OpenAI's) instead of GELU in both towers' MLPs.
    #[serde(default)]
    pub quick_gelu: bool,
    /// Every other key, checked by [`OpenClipConfig::to_clip_config`].
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

fn d_layers() -> VisionLayers {
    VisionLayers::Blocks(12)
}
fn d_768() -> usize {
    768
}
fn d_64() -> usize {
    64
}
fn d_mlp() -> f64 {
    4.0
}
fn d_patch() -> Option<usize> {
    Some(16)
}
fn d_image() -> ImageSize {
    ImageSize::Square(224)
}
fn d_77() -> usize {
    77
}
fn d_vocab() -> usize {
    49408
}
fn d_512() -> usize {
    512
}
fn d_8() -> usize {
    8
}
fn d_12() -> usize {
    12
}

/// What a key this crate does not build from may hold.
enum Rule {
    /// Anything: it changes neither the weights nor the forward pass here.
    Any,
    /// open_clip's default (or one of these equivalent values); anything else changes the architecture.
    Default(&'static [&'static str]),
}

use Rule::{Any, Default as Only};

/// Top-level keys besides the parsed ones. `init_logit_scale` is an initial value: a run's τ⁻¹ comes from
/// its `--init-inv-tau`, pretrained weights bring their own `logit_scale`.
const TOP_KEYS: &[(&str, Rule)] = &[
    ("cast_dtype", Any),
    ("init_logit_scale", Any),
    ("init_logit_bias", Only(&["null"])),
    ("custom_text", Only(&["false"])),
    ("nonscalar_logit_scale", Only(&["false"])),
    ("multimodal_cfg", Only(&["null"])),
];

/// The attention-block options both towers share.
const BLOCK_KEYS: &[(&str, Rule)] = &[
    ("ls_init_value", Only(&["null"])),
    ("output_tokens", Any),
    ("act_kwargs", Only(&["null", "{}"])),
    ("block_type", Only(&["null", "\"default\""])),
    ("qk_norm", Only(&["false"])),
    ("scaled_cosine_attn", Only(&["false"])),
    ("scale_heads", Only(&["false"])),
    ("scale_attn_inner", Only(&["false"])),
    ("scale_attn", Only(&["false"])),
    ("scale_fc", Only(&["false"])),
    ("final_ln_after_pool", Only(&["false"])),
];

const VISION_KEYS: &[(&str, Rule)] = &[
    ("patch_dropout", Only(&["0", "0.0"])),
    ("attentional_pool", Only(&["false"])),
    ("attn_pooler_queries", Any),
    ("attn_pooler_heads", Any),
    ("no_ln_pre", Only(&["false"])),
    ("pos_embed_type", Only(&["\"learnable\""])),
    ("pool_type", Only(&["\"tok\""])),
    ("timm_model_name", Only(&["null"])),
    // Only read with a timm tower, which timm_model_name = null rules out.
    ("timm_model_pretrained", Any),
    ("timm_pool", Any),
    ("timm_proj", Any),
    ("timm_proj_bias", Any),
    ("timm_drop", Any),
    ("timm_drop_path", Any),
];

const TEXT_KEYS: &[(&str, Rule)] = &[
    ("hf_tokenizer_name", Only(&["null"])),
    ("tokenizer_mode", Only(&["null"])),
    ("tokenizer_kwargs", Only(&["null", "{}"])),
    ("embed_cls", Only(&["false"])),
    // Only read with embed_cls or pool_type "eos"/"last", which the rules above rule out.
    ("pad_id", Any),
    ("eos_id", Any),
    ("no_causal_mask", Only(&["false"])),
    ("pool_type", Only(&["\"argmax\""])),
    ("proj_bias", Only(&["false"])),
    ("proj_type", Only(&["\"linear\""])),
    ("hf_model_name", Only(&["null"])),
    // Only read with a Hugging Face tower, which hf_model_name = null rules out.
    ("hf_model_pretrained", Any),
    ("hf_proj_type", Any),
    ("hf_pooler_type", Any),
];

fn bad(reason: String) -> HopfieldError {
    HopfieldError::config("model_config", reason)
}

/// Whether `v` is one of `allowed` (JSON texts; numbers compare by value).
fn allowed(v: &Value, allowed: &[&str]) -> bool {
    allowed.iter().any(|a| {
        let a: Value = serde_json::from_str(a).expect("a JSON literal");
        match (v.as_f64(), a.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => *v == a,
        }
    })
}

/// Check `other`'s keys under `at` against `tables`: every key known, every value supported.
fn check_keys(at: &str, other: &BTreeMap<String, Value>, tables: &[&[(&str, Rule)]], skip: &[&str]) -> Result<()> {
    for (key, value) in other.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        let rule = tables.iter().flat_map(|t| t.iter()).find(|(k, _)| k == key).map(|(_, r)| r);
        match rule {
            None => {
                return Err(bad(format!(
                    "unknown key {at}{key} (not an open_clip CLIP option this crate knows); remove it or check its \
                     spelling"
                )))
            }
            Some(Only(ok)) if !allowed(value, ok) => {
                return Err(bad(format!(
                    "{at}{key} = {value} changes the architecture and is not supported (supported: {})",
                    ok.join(" or ")
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The layer-norm ε of a tower's `norm_kwargs` (`{"eps": ε}`; absent: PyTorch's 1e-5).
fn norm_eps(at: &str, other: &BTreeMap<String, Value>) -> Result<f64> {
    let Some(v) = other.get("norm_kwargs").filter(|v| !v.is_null()) else { return Ok(1e-5) };
    let map = v.as_object().ok_or_else(|| bad(format!("{at}norm_kwargs must be an object, got {v}")))?;
    if let Some(k) = map.keys().find(|k| *k != "eps") {
        return Err(bad(format!("{at}norm_kwargs.{k} is not supported (only eps)")));
    }
    match map.get("eps") {
        None => Ok(1e-5),
        Some(e) => e.as_f64().ok_or_else(|| bad(format!("{at}norm_kwargs.eps must be a number, got {e}"))),
    }
}

impl OpenClipConfig {
    /// Parse a model-config JSON; `what` names it in errors.
    pub fn from_json(text: &str, what: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| bad(format!("{what} is not an open_clip model config: {e}")))
    }

    /// A config that ships with the crate, by name ([`BUILTIN`]).
    pub fn named(name: &str) -> Result<Self> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            bad(format!("unknown model {name:?}: use one of {} or --model-config FILE.json", names.join(", ")))
        })?;
        Self::from_json(text, name)
    }

    /// Read a model-config JSON file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| HopfieldError::Io {
            op: "model config",
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// The model this config describes, τ⁻¹ at [`ClipConfig`]'s default; an error names the first key
    /// whose value this crate cannot build.
    pub fn to_clip_config(&self) -> Result<ClipConfig> {
        check_keys("", &self.other, &[TOP_KEYS], &[])?;
        let (v, t) = (&self.vision_cfg, &self.text_cfg);
        check_keys("vision_cfg.", &v.other, &[BLOCK_KEYS, VISION_KEYS], &["norm_kwargs"])?;
        check_keys("text_cfg.", &t.other, &[BLOCK_KEYS, TEXT_KEYS], &["norm_kwargs"])?;
        let activation = if self.quick_gelu { "quick_gelu" } else { "gelu" };
        let vision = match &v.layers {
            VisionLayers::Blocks(layers) => self.vit_vision(*layers, activation)?.into(),
            VisionLayers::Stages(stages) => resnet_vision(self, stages)?,
        };
        let text = TextConfig {
            context_length: t.context_length,
            vocab_size: t.vocab_size,
            width: t.width,
            heads: t.heads,
            layers: t.layers,
            mlp_ratio: t.mlp_ratio,
            activation: activation.into(),
            output_dim: self.embed_dim,
            layer_norm_eps: norm_eps("text_cfg.", &t.other)?,
        };
        let cfg = ClipConfig { embed_dim: self.embed_dim, vision, text, ..ClipConfig::tiny() };
        cfg.validate()?;
        Ok(cfg)
    }

    fn vit_vision(&self, layers: usize, activation: &str) -> Result<VisionConfig> {
        let v = &self.vision_cfg;
        let image_size = square_side(&v.image_size)?;
        let patch_size = v.patch_size.ok_or_else(|| bad("vision_cfg.patch_size is null for a ViT".into()))?;
        if v.head_width == 0 || !v.width.is_multiple_of(v.head_width) {
            return Err(bad(format!("vision_cfg.head_width {} must divide width {}", v.head_width, v.width)));
        }
        Ok(VisionConfig {
            image_size,
            patch_size,
            channels: 3,
            width: v.width,
            layers,
            heads: v.width / v.head_width,
            mlp_ratio: v.mlp_ratio,
            activation: activation.into(),
            output_dim: self.embed_dim,
            layer_norm_eps: norm_eps("vision_cfg.", &v.other)?,
        })
    }
}

impl OpenClipConfig {
    /// The open_clip config of `cfg` (what `open_clip.add_model_config` reads), when open_clip can build it:
    /// both towers share one activation, GELU or QuickGELU.
    pub fn from_clip_config(cfg: &ClipConfig) -> Result<Self> {
        let t = &cfg.text;
        let vision_activation = match &cfg.vision {
            ImageTowerConfig::Vit(v) => v.activation.as_str(),
            // A ResNet tower has no activation of its own choosing: the text tower's decides.
            ImageTowerConfig::ResNet(_) => t.activation.as_str(),
        };
        let quick_gelu = match (vision_activation, t.activation.as_str()) {
            ("gelu", "gelu") => false,
            ("quick_gelu" | "quickgelu", "quick_gelu" | "quickgelu") => true,
            (a, b) => {
                return Err(bad(format!(
                    "activations {a} (vision) and {b} (text): open_clip has gelu or quick_gelu in both"
                )))
            }
        };
        let norm = |eps: f64| {
            let mut m = BTreeMap::new();
            if eps != 1e-5 {
                m.insert("norm_kwargs".to_string(), serde_json::json!({ "eps": eps }));
            }
            m
        };
        Ok(OpenClipConfig {
            embed_dim: cfg.embed_dim,
            quick_gelu,
            vision_cfg: match &cfg.vision {
                ImageTowerConfig::Vit(v) => OpenClipVisionCfg {
                    layers: VisionLayers::Blocks(v.layers),
                    width: v.width,
                    head_width: v.width / v.heads.max(1),
                    mlp_ratio: v.mlp_ratio,
                    patch_size: Some(v.patch_size),
                    image_size: ImageSize::Square(v.image_size),
                    other: norm(v.layer_norm_eps),
                },
                ImageTowerConfig::ResNet(r) => OpenClipVisionCfg {
                    layers: VisionLayers::Stages(r.layers.to_vec()),
                    width: r.width,
                    head_width: r.width * 32 / r.heads.max(1),
                    mlp_ratio: 4.0,
                    patch_size: None,
                    image_size: ImageSize::Square(r.image_size),
                    other: BTreeMap::new(),
                },
            },
            text_cfg: OpenClipTextCfg {
                context_length: t.context_length,
                vocab_size: t.vocab_size,
                width: t.width,
                heads: t.heads,
                layers: t.layers,
                mlp_ratio: t.mlp_ratio,
                other: norm(t.layer_norm_eps),
            },
            other: BTreeMap::new(),
        })
    }
}

/// The image tower of a ResNet config (`vision_cfg.layers` = stage depths, as RN50's `[3, 4, 6, 3]`):
/// open_clip's `ModifiedResNet` with `heads = width · 32 / head_width` and `output_dim = embed_dim`.
pub fn resnet_vision(cfg: &OpenClipConfig, stages: &[usize]) -> Result<ImageTowerConfig> {
    let v = &cfg.vision_cfg;
    let layers: [usize; 4] =
        stages.try_into().map_err(|_| bad(format!("vision_cfg.layers {stages:?}: a ResNet has 4 stages")))?;
    let image_size = square_side(&v.image_size)?;
    if v.head_width == 0 || !(v.width * 32).is_multiple_of(v.head_width) {
        return Err(bad(format!("vision_cfg.head_width {} must divide width·32 = {}", v.head_width, v.width * 32)));
    }
    if v.patch_size.is_some() {
        return Err(bad("vision_cfg.patch_size must be null for a ResNet (layers is a list)".into()));
    }
    Ok(ImageTowerConfig::ResNet(ResNetConfig {
        image_size,
        layers,
        width: v.width,
        heads: v.width * 32 / v.head_width,
        output_dim: cfg.embed_dim,
        ..ResNetConfig::tiny()
    }))
}

/// The side of a square `vision_cfg.image_size` (a number, or `[h, w]` with `h == w`).
fn square_side(size: &ImageSize) -> Result<usize> {
    match *size {
        ImageSize::Square(s) => Ok(s),
        ImageSize::Rect([h, w]) if h == w => Ok(h),
        ImageSize::Rect([h, w]) => Err(bad(format!("vision_cfg.image_size [{h}, {w}]: only square images"))),
    }
}

/// The model named `name` ([`BUILTIN`]), as a [`ClipConfig`].
pub fn named_clip_config(name: &str) -> Result<ClipConfig> {
    OpenClipConfig::named(name)?.to_clip_config()
}

#[cfg(test)]
mod tests;
