//! Reading and writing named tensors with safetensors, and hflayers state_dict import/export.
//!
//! Parameter names are hflayers' PyTorch `state_dict` keys, so `torch.save`d weights converted with
//! `safetensors.torch.save_file(model.state_dict(), path)` load with [`load_params`] unchanged, and files
//! written with [`save_params`] load into hflayers with `model.load_state_dict(load_file(path))`.
//!
//! [`idx`] reads MNIST-format (IDX) files, plain or gzipped, for MNIST-format data sets
//! (hopfield-mil's MNIST bags, cloob's Fashion-MNIST).
//!
//! A save/load round trip of any [`Parameters`] (a layer, or your model with `#[derive(Parameters)]`):
//!
//! ```
//! use hopfield_layers::io::{load_params, read_safetensors, save_params};
//! use hopfield_layers::layers::HopfieldPoolingConfig;
//! use hopfield_layers::{seeded_rng, Backend, Cpu};
//!
//! let cpu = Cpu::<f32>::new();
//! let config = HopfieldPoolingConfig::new(8).quantity(2);
//! let trained = config.init(&cpu, &mut seeded_rng(1))?;
//! let path = std::env::temp_dir().join(format!("hopfield-io-doctest-{}.safetensors", std::process::id()));
//! save_params(&cpu, &trained, &path)?;
//! assert!(read_safetensors(&path)?.contains_key("pooling_weights")); // hflayers' state_dict names
//! let mut restored = config.init(&cpu, &mut seeded_rng(2))?;
//! load_params(&cpu, &mut restored, &path)?;
//! std::fs::remove_file(&path).ok();
//! assert_eq!(cpu.to_vec(&restored.params.pooling_weights), cpu.to_vec(&trained.params.pooling_weights));
//! # Ok::<(), hopfield_layers::HopfieldError>(())
//! ```

use crate::backend::Backend;
use crate::element::Element;
use crate::error::{HopfieldError, Result};
use crate::params::Parameters;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

pub mod idx;

/// A tensor on the host, in `f64`, with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Row-major values.
    pub values: Vec<f64>,
    /// Shape.
    pub shape: Vec<usize>,
}

/// Named host tensors (ordered by name).
pub type TensorMap = BTreeMap<String, HostTensor>;

/// Decode safetensors bytes; F64, F32, F16/BF16, integer and bool tensors are converted to `f64`.
pub fn decode_safetensors(bytes: &[u8], op: &'static str) -> Result<TensorMap> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| HopfieldError::Format { op, reason: e.to_string() })?;
    let mut out = TensorMap::new();
    for (name, view) in st.tensors() {
        let values = to_f64(&view).ok_or_else(|| HopfieldError::Format {
            op,
            reason: format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()),
        })?;
        out.insert(name, HostTensor { values, shape: view.shape().to_vec() });
    }
    Ok(out)
}

fn to_f64(view: &TensorView<'_>) -> Option<Vec<f64>> {
    let d = view.data();
    let chunks = |n: usize| d.chunks_exact(n);
    Some(match view.dtype() {
        Dtype::F64 => chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::F32 => chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        Dtype::F16 => chunks(2).map(|c| f16_to_f64(u16::from_le_bytes([c[0], c[1]]))).collect(),
        Dtype::BF16 => {
            chunks(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64).collect()
        }
        Dtype::I64 => chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        Dtype::I32 => chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        Dtype::U8 | Dtype::BOOL => d.iter().map(|&b| b as f64).collect(),
        Dtype::I8 => d.iter().map(|&b| b as i8 as f64).collect(),
        _ => return None,
    })
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Read a safetensors file into host tensors.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<TensorMap> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| HopfieldError::Io {
        op: "read_safetensors",
        path: path.display().to_string(),
        source,
    })?;
    decode_safetensors(&bytes, "read_safetensors")
}

/// Encode named tensors of a backend as safetensors bytes in the backend's element type.
pub fn encode_safetensors<B: Backend>(backend: &B, tensors: &[(String, &B::Tensor)]) -> Result<Vec<u8>> {
    let dtype = if B::Elem::DTYPE == "F64" { Dtype::F64 } else { Dtype::F32 };
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let bytes = backend
                .to_vec(t)
                .iter()
                .flat_map(|v| {
                    if dtype == Dtype::F64 {
                        v.f64().to_le_bytes().to_vec()
                    } else {
                        (v.f64() as f32).to_le_bytes().to_vec()
                    }
                })
                .collect();
            (n.clone(), backend.shape(t), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, s, b)| TensorView::new(dtype, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| HopfieldError::Format { op: "encode_safetensors", reason: e.to_string() })?;
    safetensors::serialize(views, &None)
        .map_err(|e| HopfieldError::Format { op: "encode_safetensors", reason: e.to_string() })
}

/// Write a module's parameters to a safetensors file under their state_dict names.
pub fn save_params<B: Backend, P: Parameters<B>>(backend: &B, params: &P, path: impl AsRef<Path>) -> Result<()> {
    let named = crate::params::named_tensors(params);
    let bytes = encode_safetensors(backend, &named)?;
    let path = path.as_ref();
    std::fs::write(path, bytes).map_err(|source| HopfieldError::Io {
        op: "save_params",
        path: path.display().to_string(),
        source,
    })
}

/// Load parameters from a safetensors file (strict: every parameter present with its shape, no extra keys).
pub fn load_params<B: Backend, P: Parameters<B>>(backend: &B, params: &mut P, path: impl AsRef<Path>) -> Result<()> {
    let map = read_safetensors(path)?;
    load_state_dict(backend, params, &map, "", true)
}

/// Set `params` from host tensors named `prefix + state_dict name`. Every parameter must be present with
/// its shape; with `strict`, keys under `prefix` that name no parameter are an error too. Nothing is
/// changed when an error is returned.
///
/// Pooling/lookup weights stored sequence-first by hflayers (`[Q, 1, d]`) are accepted for `[1, Q, d]`.
pub fn load_state_dict<B: Backend, P: Parameters<B>>(
    backend: &B,
    params: &mut P,
    map: &TensorMap,
    prefix: &str,
    strict: bool,
) -> Result<()> {
    let mut staged = Vec::new();
    let mut error = None;
    params.visit(&mut |name, t, _| {
        if error.is_some() {
            return;
        }
        let key = format!("{prefix}{name}");
        let want = backend.shape(t);
        match map.get(&key) {
            None => error = Some(HopfieldError::Missing { op: "load_state_dict", name: key }),
            Some(h) => {
                let same_size = h.values.len() == want.iter().product::<usize>();
                let transposed_pool =
                    h.shape.len() == 3 && want.len() == 3 && h.shape == [want[1], want[0], want[2]] && want[0] == 1;
                if h.shape != want && !(same_size && transposed_pool) {
                    error =
                        Some(HopfieldError::shape("load_state_dict", format!("{key} with shape {want:?}"), &h.shape));
                } else {
                    staged.push(h.values.iter().map(|&v| B::Elem::of(v)).collect::<Vec<_>>());
                }
            }
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if strict {
        let names = params.names();
        if let Some(extra) =
            map.keys().filter(|k| k.starts_with(prefix)).find(|k| !names.iter().any(|n| format!("{prefix}{n}") == **k))
        {
            return Err(HopfieldError::Format {
                op: "load_state_dict",
                reason: format!("unexpected tensor `{extra}`"),
            });
        }
    }
    let mut staged = staged.into_iter();
    params.visit_mut(&mut |_, t, _| {
        let shape = backend.shape(t);
        *t = backend.from_vec(staged.next().expect("one staged tensor per parameter"), &shape);
    });
    Ok(())
}

/// Export parameters as host tensors under `prefix + state_dict name`.
pub fn state_dict<B: Backend, P: Parameters<B>>(backend: &B, params: &P, prefix: &str) -> TensorMap {
    let mut out = TensorMap::new();
    params.visit(&mut |name, t, _| {
        out.insert(
            format!("{prefix}{name}"),
            HostTensor { values: backend.to_vec(t).iter().map(|v| v.f64()).collect(), shape: backend.shape(t) },
        );
    });
    out
}
