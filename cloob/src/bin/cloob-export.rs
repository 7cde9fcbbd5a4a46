//! Export a `cloob-pretrain` checkpoint's model as an open_clip safetensors file:
//! `cloob-export logs/<run>/checkpoints/step_NNNNNNN.json --format open_clip --out model.safetensors`, then in
//! Python `open_clip.create_model_and_transforms(NAME, pretrained="model.safetensors")` with NAME the
//! stem of the model-config JSON written next to the weights, after `open_clip.add_model_config(that JSON)`.

use clap::Parser;
use cloob::model_config::OpenClipConfig;
use cloob::pretrain::checkpoint::{load_model, write_atomic};
use cloob::pretrain::{print_or_quit, PretrainError};
use cloob::pretrained::export_open_clip;
use hopfield::Cpu;
use std::path::PathBuf;

/// Export formats.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Format {
    /// open_clip's state dict in safetensors (f32): `open_clip_model.safetensors`.
    #[value(name = "open_clip", alias = "open-clip")]
    OpenClip,
}

#[derive(Parser, Debug)]
#[command(name = "cloob-export", about = "Write a checkpoint's model as open_clip weights")]
struct Args {
    /// The checkpoint's JSON (`logs/<run>/checkpoints/step_NNNNNNN.json`).
    checkpoint: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value = "open_clip")]
    format: Format,
    /// The weights file to write (`.safetensors`).
    #[arg(long)]
    out: PathBuf,
}

fn run(a: &Args) -> Result<String, PretrainError> {
    let Format::OpenClip = a.format;
    let cpu = Cpu::<f32>::new();
    let (model, state) = load_model(&cpu, &a.checkpoint)?;
    if a.out.extension().is_some_and(|e| e == "json") {
        return Err(PretrainError(format!("--out {}: the weights go to a .safetensors file", a.out.display())));
    }
    let n = export_open_clip(&cpu, &model, &a.out)?;
    let name = &state.config.model_preset;
    let mut out = format!(
        "wrote {} ({n} tensors, f32, open_clip's keys) from {} (model {name})\n",
        a.out.display(),
        a.checkpoint.display()
    );
    // The model-config JSON, for open_clip.add_model_config (open_clip names the model by the file's stem).
    let config = OpenClipConfig::from_clip_config(&model.config)?;
    let json = a.out.with_extension("json");
    write_atomic(&json, serde_json::to_string_pretty(&config).expect("plain data").as_bytes())?;
    out += &format!(
        "wrote {} (its model config)\nopen_clip: add_model_config({:?}); create_model_and_transforms({:?}, pretrained={:?})\n",
        json.display(),
        json.display().to_string(),
        json.file_stem().and_then(|s| s.to_str()).unwrap_or(name),
        a.out.display().to_string()
    );
    Ok(out)
}

fn main() {
    match run(&Args::parse()) {
        Ok(text) => print_or_quit(&text),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
