//! The tensors of a weights file, named and shaped at open, their bytes read one tensor at a time.

use super::pickle_scan;
use crate::pretrain::{err, PretrainError, Result};
use hopfield::Element;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The largest safetensors header accepted (the JSON of names, shapes and offsets).
pub const MAX_HEADER: u64 = 100 * 1024 * 1024;

/// Element types of weights (what open_clip and PyTorch save parameters in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE double.
    F64,
    /// IEEE single.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit signed integer (counters such as batch norm's `num_batches_tracked`).
    I64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    fn decode(self, b: &[u8]) -> f64 {
        match self {
            Dtype::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")),
            Dtype::F32 => f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64,
            Dtype::F16 => f16_to_f64(u16::from_le_bytes([b[0], b[1]])),
            Dtype::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64,
            Dtype::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64,
        }
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let (exp, frac) = (((h >> 10) & 0x1f) as i32, (h & 0x3ff) as f64);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Bytes decoded per read of a safetensors range (a multiple of every element size).
const CHUNK: usize = 1 << 20;

/// Where a tensor's bytes are.
#[derive(Clone)]
enum Source {
    /// Bytes `start..start + len` of a safetensors file (shared with the file's other tensors).
    Range { file: Arc<Mutex<File>>, start: u64, len: usize },
    /// A tensor of a PyTorch checkpoint: `pytorch-reader` reads its storage's window from the zip.
    Torch(pytorch_reader::Tensor),
}

/// One tensor of a weights file; its bytes are read by [`FileTensor::read_as`].
#[derive(Clone)]
pub struct FileTensor {
    /// Its key in the file, as written (before `module.` is dropped).
    pub key: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    source: Source,
}

impl std::fmt::Debug for FileTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {:?}", self.key, self.dtype, self.shape)
    }
}

impl FileTensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Read the tensor from the file and convert it to `E`, row-major. Only the result is held whole: a
    /// safetensors range is read and decoded 1 MiB (`CHUNK`) at a time; a `.pt` storage window comes
    /// whole from `pytorch-reader` and is dropped once decoded.
    pub fn read_as<E: Element>(&self) -> std::result::Result<Vec<E>, String> {
        let (n, size) = (self.len(), self.dtype.size());
        let mismatch = |got: usize| {
            format!(
                "tensor {} holds {got} bytes, its shape {:?} of {:?} needs {}",
                self.key,
                self.shape,
                self.dtype,
                n * size
            )
        };
        let mut out = Vec::with_capacity(n);
        match &self.source {
            Source::Range { file, start, len } => {
                if *len != n * size {
                    return Err(mismatch(*len));
                }
                let mut chunk = vec![0u8; CHUNK.min(*len)];
                let mut done = 0;
                while done < *len {
                    let part = &mut chunk[..CHUNK.min(len - done)];
                    let mut f = file.lock().map_err(|_| format!("tensor {}: file lock poisoned", self.key))?;
                    f.seek(SeekFrom::Start(start + done as u64))
                        .and_then(|_| f.read_exact(part))
                        .map_err(|e| format!("tensor {}: {e}", self.key))?;
                    drop(f);
                    out.extend(part.chunks_exact(size).map(|c| E::of(self.dtype.decode(c))));
                    done += part.len();
                }
            }
            Source::Torch(t) => {
                let bytes = t.read().map_err(|e| format!("tensor {}: {e}", self.key))?;
                if bytes.len() != n * size {
                    return Err(mismatch(bytes.len()));
                }
                out.extend(bytes.chunks_exact(size).map(|c| E::of(self.dtype.decode(c))));
            }
        }
        Ok(out)
    }
}

/// A weights file's tensors under their state-dict names: `module.` dropped, `logit_inv_tau` (cloob's
/// name) read as `logit_scale`.
#[derive(Clone, Debug)]
pub struct WeightsFile {
    /// The file.
    pub path: PathBuf,
    /// `"safetensors"` or `"pytorch"`.
    pub format: &'static str,
    /// By state-dict name.
    pub tensors: BTreeMap<String, FileTensor>,
}

/// Whether a file key is one of [`super::NOT_WEIGHTS`] (skipped whatever its element type).
fn not_weights(key: &str) -> bool {
    super::NOT_WEIGHTS.contains(&state_dict_name(key).as_str())
}

/// The state-dict name of a file key.
fn state_dict_name(key: &str) -> String {
    let k = key.strip_prefix("module.").unwrap_or(key);
    if k == "logit_inv_tau" { "logit_scale" } else { k }.to_string()
}

impl WeightsFile {
    /// Read the names, element types and shapes of `path`'s tensors (no tensor data): a safetensors
    /// file, or a PyTorch zip checkpoint (a state dict, or a dict holding one under `state_dict`).
    pub fn open(path: &Path) -> Result<WeightsFile> {
        let mut magic = [0u8; 4];
        let mut f = File::open(path).map_err(|e| err(format!("cannot open {}", path.display()), e))?;
        let got = f.read(&mut magic).map_err(|e| err(path.display(), e))?;
        let entries = if got == 4 && magic == *b"PK\x03\x04" {
            ("pytorch", torch_entries(path)?)
        } else {
            ("safetensors", safetensors_entries(path, f)?)
        };
        let mut tensors = BTreeMap::new();
        for t in entries.1 {
            let name = state_dict_name(&t.key);
            if let Some(prev) = tensors.insert(name.clone(), t) {
                return Err(PretrainError(format!(
                    "{}: two tensors are both {name} ({} and another)",
                    path.display(),
                    prev.key
                )));
            }
        }
        Ok(WeightsFile { path: path.to_path_buf(), format: entries.0, tensors })
    }
}

#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// A safetensors file's tensors: the header is parsed and checked against the file's length; each
/// tensor reads its own byte range.
fn safetensors_entries(path: &Path, mut f: File) -> Result<Vec<FileTensor>> {
    let bad =
        |why: String| PretrainError(format!("{} is not a safetensors or PyTorch zip file: {why}", path.display()));
    let len = f.metadata().map_err(|e| err(path.display(), e))?.len();
    let mut n = [0u8; 8];
    f.seek(SeekFrom::Start(0)).and_then(|_| f.read_exact(&mut n)).map_err(|_| bad("shorter than 8 bytes".into()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > len {
        return Err(bad(format!("header of {n} bytes in a file of {len} (truncated?)")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| err(path.display(), e))?;
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    let (data_start, data_len) = (8 + n, len - 8 - n);
    let file = Arc::new(Mutex::new(f));
    let mut out = Vec::new();
    for (key, v) in map.into_iter().filter(|(k, _)| k != "__metadata__") {
        let e: HeaderEntry = serde_json::from_value(v).map_err(|e| bad(format!("tensor {key}: {e}")))?;
        let dtype = match e.dtype.as_str() {
            "F64" => Dtype::F64,
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I64" => Dtype::I64,
            _ if not_weights(&key) => continue,
            other => {
                return Err(bad(format!(
                    "tensor {key} has dtype {other}; weights are F64, F32, F16, BF16 or I64 (counters)"
                )))
            }
        };
        let [a, b] = e.data_offsets;
        let want = e.shape.iter().try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        if b < a || b > data_len || want != Some(b - a) {
            return Err(bad(format!(
                "tensor {key} {:?} {:?} at bytes {a}..{b} of {data_len} (truncated or corrupt)",
                e.dtype, e.shape
            )));
        }
        let source = Source::Range { file: Arc::clone(&file), start: data_start + a, len: (b - a) as usize };
        out.push(FileTensor { key, dtype, shape: e.shape, source });
    }
    Ok(out)
}

/// A PyTorch zip checkpoint's tensors (its `state_dict` entry when it has one), after
/// [`pickle_scan::check_zip`] has checked every global the pickle names.
fn torch_entries(path: &Path) -> Result<Vec<FileTensor>> {
    pickle_scan::check_zip(path)?;
    let open = |key| match key {
        Some(k) => pytorch_reader::PytorchReader::with_top_level_key(path, k),
        None => pytorch_reader::PytorchReader::new(path),
    };
    let reader = match open(Some("state_dict")) {
        Err(pytorch_reader::PytorchError::KeyNotFound(_)) | Err(pytorch_reader::PytorchError::InvalidFormat(_)) => {
            open(None)
        }
        other => other,
    }
    .map_err(|e| err(format!("cannot read the PyTorch checkpoint {}", path.display()), e))?;
    let mut out = Vec::new();
    for (key, t) in reader.into_tensors() {
        use pytorch_reader::DType as D;
        let dtype = match t.dtype() {
            D::F64 => Dtype::F64,
            D::F32 => Dtype::F32,
            D::F16 => Dtype::F16,
            D::BF16 => Dtype::BF16,
            D::I64 => Dtype::I64,
            _ if not_weights(&key) => continue,
            other => {
                return Err(PretrainError(format!(
                    "{}: tensor {key} has dtype {other:?}; weights are F64, F32, F16, BF16 or I64 (counters)",
                    path.display()
                )))
            }
        };
        let shape = t.shape().to_vec();
        out.push(FileTensor { key, dtype, shape, source: Source::Torch(t) });
    }
    Ok(out)
}
