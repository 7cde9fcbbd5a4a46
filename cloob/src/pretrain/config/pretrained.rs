//! Where a run's model comes from besides `--model`: a model-config JSON, open_clip weights to start from,
//! and the architecture resolved when the run started (what its checkpoints are loaded into).

use super::{PretrainError, Result};
use crate::model::ClipConfig;
use crate::model_config::{named_clip_config, OpenClipConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `cloob-pretrain`'s flags for the model's source, and the architecture a checkpoint was trained with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct ModelSource {
    /// An open_clip model-config JSON (open_clip's `model_configs/` shape) for the model instead of
    /// --model's; --model then only names the run (default: the file's stem).
    #[arg(long = "model-config", value_name = "FILE.json")]
    #[serde(default)]
    pub model_config: Option<PathBuf>,
    /// Start from open_clip weights (open_clip_model.safetensors, or a PyTorch .pt/.bin checkpoint as
    /// open_clip or ml-jku/cloob save it) for the model of --model: a fine-tuning start with a fresh
    /// optimiser and schedule; τ⁻¹ from --init-inv-tau.
    #[arg(long, value_name = "FILE", conflicts_with = "init_from")]
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// With --pretrained: load the tensors that fit the model, leave the rest at their fresh values and
    /// print what was left out (default: any missing, unexpected or misshaped tensor is an error).
    #[arg(long, requires = "pretrained")]
    #[serde(default)]
    pub pretrained_partial: bool,
    /// The architecture when the run started, τ⁻¹ aside (filled in by the run, not a flag): checkpoints
    /// are loaded into this, whatever the named config or the JSON file says later.
    #[arg(skip)]
    #[serde(default)]
    pub architecture: Option<ClipConfig>,
}

impl ModelSource {
    /// The architecture: the stored one, else `--model-config`'s file, else the named config `preset`
    /// (τ⁻¹ at [`ClipConfig`]'s default).
    pub fn resolve(&self, preset: &str) -> Result<ClipConfig> {
        if let Some(a) = &self.architecture {
            return Ok(a.clone());
        }
        match &self.model_config {
            Some(path) => OpenClipConfig::from_file(path)
                .and_then(|c| c.to_clip_config())
                .map_err(|e| PretrainError(format!("--model-config {}: {e}", path.display()))),
            None => named_clip_config(preset).map_err(|e| PretrainError(format!("--model {preset}: {e}"))),
        }
    }

    /// With the architecture fixed to [`ModelSource::resolve`]'s.
    pub fn resolved(&self, preset: &str) -> Result<ModelSource> {
        Ok(ModelSource { architecture: Some(self.resolve(preset)?), ..self.clone() })
    }

    /// With the file paths made absolute against the current directory.
    pub fn with_absolute_paths(&self) -> Result<ModelSource> {
        let abs = |p: &Option<PathBuf>| -> Result<Option<PathBuf>> {
            p.as_deref()
                .map(|p| {
                    std::path::absolute(p)
                        .map_err(|e| PretrainError(format!("cannot resolve the path {}: {e}", p.display())))
                })
                .transpose()
        };
        Ok(ModelSource { model_config: abs(&self.model_config)?, pretrained: abs(&self.pretrained)?, ..self.clone() })
    }

    /// The run-name stem of a `--model-config` file.
    pub fn config_stem(&self) -> Option<String> {
        self.model_config.as_deref().and_then(Path::file_stem).and_then(|s| s.to_str()).map(String::from)
    }
}

/// The architecture of a checkpoint saved before architectures were stored: its preset by the names of
/// that time (where `ViT-B-32` meant this crate's QuickGELU `vit-b32`). `None` for any other name.
pub fn legacy_architecture(preset: &str) -> Option<(ClipConfig, &'static str)> {
    match preset {
        "tiny" => Some((ClipConfig::tiny(), "tiny")),
        "small" => Some((ClipConfig::small(), "small")),
        "vit-b32" | "ViT-B-32" => Some((ClipConfig::vit_b32(), "vit-b32")),
        _ => None,
    }
}
