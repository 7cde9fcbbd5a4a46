//! Golden-case discovery shared by the fixture suites: every `CASE.json` in a folder is a case, read with
//! its `CASE.safetensors`. A case that cannot be read, lacks a tensor, has a tensor of the wrong shape or
//! does not match is an error naming the case file, so a new case is tested by adding its two files and a
//! broken one cannot pass unnoticed.

use hopfield_layers::io::{encode_safetensors, read_safetensors, HostTensor, TensorMap};
use hopfield_layers::{Backend, Cpu};
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// One golden case: `name` is the file stem, `path` the json file.
pub struct Case {
    pub name: String,
    pub path: PathBuf,
    pub json: Value,
    pub tensors: TensorMap,
}

impl Case {
    /// The tensor `name`, or an error naming the case file.
    pub fn tensor(&self, name: &str) -> Result<&HostTensor, String> {
        self.tensors.get(name).ok_or_else(|| format!("{}: tensor `{name}` missing", self.path.display()))
    }

    /// Require tensor `name` with `shape`.
    pub fn expect_shape(&self, name: &str, shape: &[usize]) -> Result<(), String> {
        let t = self.tensor(name)?;
        if t.shape != shape {
            return Err(format!(
                "{}: tensor `{name}` has shape {:?}, expected {shape:?}",
                self.path.display(),
                t.shape
            ));
        }
        Ok(())
    }

    /// The json field `key` as a string, or an error naming the case file.
    pub fn str_field(&self, key: &str) -> Result<&str, String> {
        let at = self.path.display();
        self.json[key].as_str().ok_or_else(|| format!("{at}: json field `{key}` missing or not a string"))
    }
}

/// The `*.json` files of `dir`, sorted. Errors: an unreadable folder, no case at all, or a
/// `.safetensors` without its json (a case that would otherwise be skipped silently).
pub fn case_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("fixture directory {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let has = |p: &Path, ext: &str| p.extension().is_some_and(|e| e == ext);
    for st in files.iter().filter(|p| has(p, "safetensors")) {
        if !st.with_extension("json").is_file() {
            return Err(format!("{}: no matching .json, so the case would not run", st.display()));
        }
    }
    let cases: Vec<PathBuf> = files.into_iter().filter(|p| has(p, "json")).collect();
    if cases.is_empty() {
        return Err(format!("fixture directory {}: no *.json case", dir.display()));
    }
    Ok(cases)
}

/// Read one case. Every entry of the json's optional `shapes` object must be a tensor of that shape.
pub fn load(json_path: &Path) -> Result<Case, String> {
    let at = json_path.display();
    let name = json_path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| format!("{at}: odd file name"))?;
    let text = std::fs::read_to_string(json_path).map_err(|e| format!("{at}: {e}"))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("{at}: {e}"))?;
    let st = json_path.with_extension("safetensors");
    let tensors = read_safetensors(&st).map_err(|e| format!("{at}: {}: {e}", st.display()))?;
    let case = Case { name: name.to_string(), path: json_path.to_path_buf(), json, tensors };
    if let Some(shapes) = case.json.get("shapes") {
        let shapes = shapes.as_object().ok_or_else(|| format!("{at}: `shapes` is not an object"))?;
        for (key, shape) in shapes {
            let shape: Vec<usize> =
                serde_json::from_value(shape.clone()).map_err(|e| format!("{at}: shapes.{key}: {e}"))?;
            case.expect_shape(key, &shape)?;
        }
    }
    Ok(case)
}

/// Run every case of `dir`: `validate` checks what the suite needs before `run` compares, and a panic in
/// `run` (a failed comparison) becomes that case's error. All cases run; the errors are joined, one line
/// each. Returns the number of cases.
pub fn check_each(
    dir: &Path,
    validate: impl Fn(&Case) -> Result<(), String>,
    run: impl Fn(&Case),
) -> Result<usize, String> {
    let files = case_files(dir)?;
    let mut errors = Vec::new();
    for path in &files {
        let outcome = load(path).and_then(|case| {
            validate(&case)?;
            catch_unwind(AssertUnwindSafe(|| run(&case))).map_err(|p| format!("{}: {}", path.display(), message(&*p)))
        });
        if let Err(e) = outcome {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(files.len())
    } else {
        Err(errors.join("\n"))
    }
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "panicked".to_string(),
    }
}

/// A fresh scratch folder `<tmp>/hopfield-fixtures-<tag>-<pid>` holding a copy of case `src` (a json path)
/// under `new_name`, edited by `edit` first. Tensors are written back as F64.
pub fn scratch_copy(tag: &str, src: &Path, new_name: &str, edit: impl FnOnce(&mut Value, &mut TensorMap)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hopfield-fixtures-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let case = load(src).unwrap_or_else(|e| panic!("{e}"));
    let (mut json, mut tensors) = (case.json, case.tensors);
    edit(&mut json, &mut tensors);
    std::fs::write(dir.join(format!("{new_name}.json")), serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let cpu = Cpu::<f64>::new();
    let uploaded: Vec<(String, _)> =
        tensors.iter().map(|(k, t)| (k.clone(), cpu.from_vec(t.values.clone(), &t.shape))).collect();
    let named: Vec<(String, &_)> = uploaded.iter().map(|(k, t)| (k.clone(), t)).collect();
    let bytes = encode_safetensors(&cpu, &named).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join(format!("{new_name}.safetensors")), bytes).unwrap();
    dir
}
