//! Optimiser state on the host: named tensors and step counts, and their safetensors encoding.
//!
//! Tensor names are `<slot>.<parameter name>` with PyTorch's slot names (`exp_avg`, `exp_avg_sq`,
//! `momentum_buffer`); step counts are stored as `U64` scalars named `step.<parameter name>`, and the
//! optimiser's kind in the safetensors metadata under `optimizer`.

use crate::element::Element;
use crate::error::{HopfieldError, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;

/// One named state tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct StateTensor<E> {
    /// `<slot>.<parameter name>`, e.g. `exp_avg.association_core.in_proj_weight`.
    pub name: String,
    /// Row-major values.
    pub data: Vec<E>,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
}

/// Everything an optimiser needs to continue exactly where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<E> {
    /// `sgd`, `adam` or `adamw`; importing into another kind is an error.
    pub kind: String,
    /// State tensors, sorted by name.
    pub tensors: Vec<StateTensor<E>>,
    /// Per-parameter step counts (Adam's bias corrections), sorted by parameter name.
    pub steps: Vec<(String, u64)>,
}

const OP: &str = "optimizer_state";

impl<E: Element> OptimizerState<E> {
    /// Error unless this state was exported by an optimiser of kind `kind`.
    pub(crate) fn expect_kind(&self, kind: &str) -> Result<()> {
        if self.kind != kind {
            return Err(HopfieldError::Format {
                op: OP,
                reason: format!("state of `{}` given to `{kind}`", self.kind),
            });
        }
        Ok(())
    }

    /// The tensor named `<slot>.<param>`, checked to hold as many values as its shape says.
    pub(crate) fn tensor(&self, slot: &str, param: &str) -> Result<&StateTensor<E>> {
        let name = format!("{slot}.{param}");
        let t = self.tensors.iter().find(|t| t.name == name).ok_or(HopfieldError::Missing { op: OP, name })?;
        if t.data.len() != t.shape.iter().product::<usize>() {
            return Err(HopfieldError::shape(OP, format!("{} values in `{}`", t.data.len(), t.name), &t.shape));
        }
        Ok(t)
    }

    /// Parameter names that have a `<slot>.` tensor.
    pub(crate) fn params_with(&self, slot: &str) -> Vec<String> {
        let prefix = format!("{slot}.");
        self.tensors.iter().filter_map(|t| t.name.strip_prefix(&prefix).map(str::to_string)).collect()
    }

    /// Encode as a safetensors file: tensors in `E`'s dtype, step counts as `U64` scalars.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let dtype = element_dtype::<E>()?;
        let mut bytes: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
        for t in &self.tensors {
            let data = t.data.iter().flat_map(|&v| element_bytes(v)).collect();
            bytes.push((t.name.clone(), t.shape.clone(), dtype, data));
        }
        for (name, step) in &self.steps {
            bytes.push((format!("step.{name}"), vec![], Dtype::U64, step.to_le_bytes().to_vec()));
        }
        let mut views = Vec::with_capacity(bytes.len());
        for (name, shape, dtype, data) in &bytes {
            let view = TensorView::new(*dtype, shape.clone(), data).map_err(format_error)?;
            views.push((name.as_str(), view));
        }
        let meta = HashMap::from([("optimizer".to_string(), self.kind.clone())]);
        safetensors::serialize(views, &Some(meta)).map_err(format_error)
    }

    /// Decode what [`OptimizerState::to_safetensors`] wrote; the tensors must have `E`'s dtype.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(format_error)?;
        let kind =
            meta.metadata().as_ref().and_then(|m| m.get("optimizer").cloned()).ok_or_else(|| {
                HopfieldError::Format { op: OP, reason: "no `optimizer` entry in the metadata".into() }
            })?;
        let file = SafeTensors::deserialize(bytes).map_err(format_error)?;
        let (mut tensors, mut steps) = (Vec::new(), Vec::new());
        for (name, view) in file.tensors() {
            match (name.strip_prefix("step."), view.dtype()) {
                (Some(param), Dtype::U64) => {
                    let raw: [u8; 8] = view
                        .data()
                        .try_into()
                        .map_err(|_| HopfieldError::Format { op: OP, reason: format!("`{name}` is not a scalar") })?;
                    steps.push((param.to_string(), u64::from_le_bytes(raw)));
                }
                (_, dtype) if dtype == element_dtype::<E>()? => {
                    let data = view.data().chunks_exact(dtype.size()).map(element_from_bytes::<E>).collect();
                    tensors.push(StateTensor { name, data, shape: view.shape().to_vec() });
                }
                (_, dtype) => {
                    let reason = format!("`{name}` has dtype {dtype:?}, expected {}", E::DTYPE);
                    return Err(HopfieldError::Format { op: OP, reason });
                }
            }
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        steps.sort();
        Ok(OptimizerState { kind, tensors, steps })
    }
}

fn format_error(e: safetensors::SafeTensorError) -> HopfieldError {
    HopfieldError::Format { op: OP, reason: e.to_string() }
}

fn element_dtype<E: Element>() -> Result<Dtype> {
    match E::DTYPE {
        "F32" => Ok(Dtype::F32),
        "F64" => Ok(Dtype::F64),
        other => Err(HopfieldError::Format { op: OP, reason: format!("no safetensors dtype for {other}") }),
    }
}

/// Little-endian bytes of `v` in its own width (the `f64` detour is exact for `f32`).
fn element_bytes<E: Element>(v: E) -> Vec<u8> {
    match E::DTYPE {
        "F32" => (v.f64() as f32).to_le_bytes().to_vec(),
        _ => v.f64().to_le_bytes().to_vec(),
    }
}

fn element_from_bytes<E: Element>(b: &[u8]) -> E {
    match b.len() {
        4 => E::of(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        _ => E::of(f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
    }
}
