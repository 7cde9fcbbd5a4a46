//! open_clip weights in and out: a [`ClipModel`] from open_clip's `open_clip_model.safetensors` or from a
//! PyTorch `.pt`/`.bin` checkpoint as open_clip and ml-jku/cloob write them, and a model written back as
//! an open_clip safetensors file ([`export_open_clip`]).
//!
//! Our parameter names are open_clip's `CLIP` state-dict keys, so a file's tensors load by name. A
//! training checkpoint's `{"state_dict": …, "epoch": …}` is read through its `state_dict`, DDP's `module.`
//! prefix is dropped, and cloob's `logit_inv_tau` is `logit_scale`. Names and shapes are checked against
//! the model before any tensor is read: missing, unexpected and misshaped keys are one error naming them
//! (or, with `partial`, left at their fresh values and listed in the [`LoadReport`]).
//!
//! Loading reads one tensor at a time from the file (safetensors: the header, then each tensor's byte
//! range in 1 MiB pieces; `.pt`: each storage's window of the zip), converting F64/F32/F16/BF16 to the
//! backend's element. The fresh model's values are dropped before the file's are read, so the peak memory
//! is about the loaded model's size, not the file plus the model (`examples/pretrained_memory.rs`
//! measures it). A `.pt` pickle is read by `pytorch-reader`, which executes nothing; before that,
//! [`pickle_scan`] refuses a pickle that names any Python global besides the tensor rebuilders and
//! `OrderedDict`.

mod file;
pub mod pickle_scan;

use crate::model::{ClipConfig, ClipModel};
use crate::pretrain::{err, PretrainError, Result};
pub use file::{Dtype, FileTensor, WeightsFile};
use hopfield::io::encode_safetensors;
use hopfield::params::named_tensors;
use hopfield::{Backend, Element, Parameters};
use rand::SeedableRng;
use std::path::Path;

/// Keys of open_clip files that are not weights (non-persistent buffers older versions saved, and the
/// sizes OpenAI's JIT checkpoints carry); they are skipped, not reported.
pub const NOT_WEIGHTS: [&str; 4] = ["attn_mask", "input_resolution", "context_length", "vocab_size"];

/// What a load took from a file and what it left.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Tensors set from the file.
    pub loaded: usize,
    /// Model parameters the file lacks (left at their fresh values with `partial`).
    pub missing: Vec<String>,
    /// File tensors no parameter takes.
    pub unexpected: Vec<String>,
    /// Present in both with other shapes: name, the file's shape, the model's.
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
}

/// At most the first `n` of `items`, then "… (+k more)".
fn first_few(items: &[String], n: usize) -> String {
    let mut s = items.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > n {
        s += &format!(", … (+{} more)", items.len() - n);
    }
    s
}

impl LoadReport {
    /// Whether every parameter came from the file and every tensor found a parameter.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.misshaped.is_empty()
    }

    /// One line per kind of mismatch, each naming the first few keys and the count.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.missing.is_empty() {
            lines.push(format!("{} missing: {}", self.missing.len(), first_few(&self.missing, 4)));
        }
        if !self.unexpected.is_empty() {
            lines.push(format!("{} unexpected: {}", self.unexpected.len(), first_few(&self.unexpected, 4)));
        }
        if !self.misshaped.is_empty() {
            let m: Vec<String> =
                self.misshaped.iter().map(|(n, file, model)| format!("{n} (file {file:?}, model {model:?})")).collect();
            lines.push(format!("{} with another shape: {}", m.len(), first_few(&m, 4)));
        }
        lines
    }
}

/// A fresh model of `cfg` holding the weights of open_clip file `path` (`.safetensors`, or a PyTorch
/// zip checkpoint `.pt`/`.bin`/`.pth`), τ⁻¹ included. Without `partial`, any missing, unexpected or
/// misshaped key is an error naming them and nothing is read; with it, the tensors that fit are loaded,
/// the rest keep the fresh model's values, and the report lists them.
pub fn load_pretrained<B: Backend>(
    backend: &B,
    path: &Path,
    cfg: &ClipConfig,
    partial: bool,
) -> Result<(ClipModel<B>, LoadReport)> {
    let file = WeightsFile::open(path)?;
    let mut model = cfg.init(backend, &mut rand::rngs::StdRng::seed_from_u64(0))?;
    let report = compare(backend, &model, &file);
    if !partial && !report.is_complete() {
        return Err(PretrainError(format!(
            "{} does not fit the model: {}; --pretrained-partial loads the tensors that fit",
            path.display(),
            report.describe().join("; ")
        )));
    }
    // The fresh values of every tensor the file replaces are dropped before any is read, and the file's
    // tensors are read largest first, each installed as soon as it is read: what is held at any time is
    // the tensors installed so far plus the one being read (and, from a `.pt`, its raw bytes), so the
    // peak is about the model's size, not a fresh model plus a loaded one.
    let mut order = Vec::new();
    model.visit_mut(&mut |name, t, _| {
        if let Some(ft) = file.tensors.get(name).filter(|ft| ft.shape == backend.shape(t)) {
            *t = backend.from_vec(Vec::new(), &[0]);
            order.push((name.to_string(), ft));
        }
    });
    order.sort_by_key(|(_, ft)| std::cmp::Reverse(ft.len()));
    let loaded = order.len();
    for (name, ft) in order {
        let mut values = Some(ft.read_as::<B::Elem>().map_err(|e| err(format!("reading {}", path.display()), e))?);
        model.visit_mut(&mut |n, t, _| {
            if n == name {
                if let Some(v) = values.take() {
                    *t = backend.from_vec(v, &ft.shape);
                }
            }
        });
    }
    Ok((model, LoadReport { loaded, ..report }))
}

/// The report of loading `file` into `model`, before anything is read.
fn compare<B: Backend>(backend: &B, model: &ClipModel<B>, file: &WeightsFile) -> LoadReport {
    let mut report = LoadReport::default();
    let mut wanted = std::collections::BTreeSet::new();
    model.visit(&mut |name, t, _| {
        wanted.insert(name.to_string());
        match file.tensors.get(name) {
            None => report.missing.push(name.to_string()),
            Some(ft) if ft.shape != backend.shape(t) => {
                report.misshaped.push((name.to_string(), ft.shape.clone(), backend.shape(t)))
            }
            Some(_) => {}
        }
    });
    report.unexpected =
        file.tensors.keys().filter(|k| !wanted.contains(*k) && !NOT_WEIGHTS.contains(&k.as_str())).cloned().collect();
    report
}

/// `--pretrained` on `cloob-pretrain`: [`load_pretrained`] with this run's τ⁻¹ (`cfg.init_inv_tau`; a
/// CLOOB run fine-tuned from CLIP weights keeps its own fixed temperature); `say` gets one line per kind
/// of key left out with `partial`.
pub fn init_from_pretrained<B: Backend>(
    backend: &B,
    path: &Path,
    cfg: &ClipConfig,
    partial: bool,
    say: &dyn Fn(String),
) -> Result<ClipModel<B>> {
    let (mut model, report) = load_pretrained(backend, path, cfg, partial)?;
    for line in report.describe() {
        say(format!("--pretrained-partial {}: {line} (left at their fresh values or ignored)", path.display()));
    }
    model.logit_scale = backend.full(&[], B::Elem::of(cfg.init_inv_tau.ln()));
    Ok(model)
}

/// Write `model` as an open_clip safetensors file at `path` (f32, open_clip's keys, through a temporary
/// file and a rename): `open_clip.create_model_and_transforms(NAME, pretrained=path)` loads it. Returns
/// the number of tensors written.
pub fn export_open_clip<B: Backend>(backend: &B, model: &ClipModel<B>, path: &Path) -> Result<usize> {
    let named = named_tensors(model);
    let bytes = if B::Elem::DTYPE == "F32" {
        encode_safetensors(backend, &named)?
    } else {
        let cpu = hopfield::Cpu::<f32>::new();
        let host: Vec<(String, _)> = named
            .iter()
            .map(|(n, t)| {
                let v: Vec<f32> = backend.to_vec(t).iter().map(|x| x.f64() as f32).collect();
                (n.clone(), cpu.from_vec(v, &backend.shape(t)))
            })
            .collect();
        encode_safetensors(&cpu, &host.iter().map(|(n, t)| (n.clone(), t)).collect::<Vec<_>>())?
    };
    crate::pretrain::checkpoint::write_atomic(path, &bytes)?;
    Ok(named.len())
}

#[cfg(test)]
mod tests;
