//! Every golden case computed with hflayers 1.0.2 (hopfield/tests/fixtures/hflayers), through the burn
//! modules: output, association matrix, the inputs' and every parameter's gradient from burn's autodiff,
//! relative 1e-4 in f32, on burn's NdArray backend and on Wgpu (lavapipe on a machine without a GPU).
//! The sparse-retrieval cases (hopfield/tests/fixtures/sparse) run too, except the learnable-α ones (an
//! error in hopfield-burn). A changed case fails naming its file.

// The shared helpers name the layers crate by its library name; here it is the dependency `hopfield`.
extern crate hopfield as hopfield_layers;

#[path = "../../tests/common/fixtures.rs"]
mod fixtures;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Gradients, Tensor, TensorData};
use fixtures::{check_each, scratch_copy, Case};
use hopfield::io::{HostTensor, TensorMap};
use hopfield::layers::{HopfieldConfig, HopfieldLayerConfig, HopfieldPoolingConfig};
use hopfield_burn::{AssociationMask, HopfieldInput, HostParams};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(kind)
}

/// `max |a − b| / max(max |b|, floor)`; NaN where the reference has none is infinitely wrong.
fn rel_err(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    if a.iter().zip(b).any(|(x, y)| x.is_nan() != y.is_nan()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(floor, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

fn close(what: &str, actual: Vec<f64>, expected: &HostTensor, tol: f64, floor: f64) {
    let e = rel_err(&actual, &expected.values, floor);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}

fn upload<const D: usize>(h: &HostTensor, device: &Device) -> Tensor<D> {
    let v: Vec<f32> = h.values.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, h.shape.clone()), device)
}

fn bool_mask<const D: usize>(h: &HostTensor, device: &Device) -> Tensor<D, Bool> {
    let v: Vec<bool> = h.values.iter().map(|&x| x != 0.0).collect();
    Tensor::from_data(TensorData::new(v, h.shape.clone()), device)
}

/// Every float parameter's gradient by its dotted module path (hflayers' state_dict names).
struct NamedGrads<'a> {
    grads: &'a Gradients,
    path: Vec<String>,
    out: BTreeMap<String, Vec<f64>>,
}

impl ModuleVisitor for NamedGrads<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let g = param.val().grad(self.grads);
        let n = param.val().shape().num_elements();
        self.out.insert(self.path.join("."), g.map_or(vec![0.0; n], values));
    }
}

fn check_param_grads<M: Module>(module: &M, grads: &Gradients, case: &Case, tol: f64) {
    let mut v = NamedGrads { grads, path: Vec::new(), out: BTreeMap::new() };
    module.visit(&mut v);
    let expected: TensorMap = case
        .tensors
        .iter()
        .filter_map(|(k, t)| k.strip_prefix("grad.param.").map(|n| (n.to_string(), t.clone())))
        .collect();
    // As hopfield's suite: gradients zero in exact arithmetic compare at 1e-2 of the largest gradient.
    let largest = expected.values().flat_map(|t| t.values.iter()).fold(1.0f64, |m, x| m.max(x.abs()));
    for (name, exp) in &expected {
        let got = v.out.remove(name).unwrap_or_else(|| panic!("{}: no burn parameter `{name}`", case.name));
        close(&format!("{}: grad {name}", case.name), got, exp, tol, 1e-2 * largest);
    }
    assert!(v.out.is_empty(), "{}: burn parameters the fixture lacks: {:?}", case.name, v.out.keys());
}

fn validate(case: &Case) -> Result<(), String> {
    let (module, call) = (case.str_field("module")?, case.str_field("call")?);
    let inputs: &[&str] = match (module, call) {
        ("Hopfield" | "HopfieldPooling" | "HopfieldLayer", "single") => &["x"],
        ("Hopfield", "tuple") => &["stored", "state", "projection"],
        _ => return Err(format!("{}: unknown module/call `{module}`/`{call}`", case.path.display())),
    };
    for input in inputs {
        let shape = &case.tensor(&format!("input.{input}"))?.shape;
        case.expect_shape(&format!("grad.input.{input}"), shape)?;
    }
    case.expect_shape("grad_output", &case.tensor("output")?.shape)?;
    Ok(())
}

fn params(case: &Case) -> TensorMap {
    case.tensors.iter().filter_map(|(k, v)| k.strip_prefix("param.").map(|n| (n.to_string(), v.clone()))).collect()
}

fn run_case(device: &Device, case: &Case, tol: f64) {
    let t = &case.tensors;
    let get = |n: &str| t.get(n).unwrap_or_else(|| panic!("{}: `{n}` missing", case.name));
    let kwargs = case.json["kwargs"].clone();
    let name = &case.name;
    let masks = case.json["masks"].as_array().cloned().unwrap_or_default();
    let has = |m: &str| masks.iter().any(|x| x.as_str() == Some(m));
    match case.json["module"].as_str().unwrap() {
        "Hopfield" => {
            let cfg: HopfieldConfig = serde_json::from_value(kwargs).unwrap();
            let layer = cfg.load_host(&params(case), "", true, device).unwrap();
            let tuple = case.json["call"] == "tuple";
            let inputs: Vec<Tensor<3>> = if tuple {
                ["stored", "state", "projection"]
                    .iter()
                    .map(|n| upload(get(&format!("input.{n}")), device).require_grad())
                    .collect()
            } else {
                vec![upload(get("input.x"), device).require_grad()]
            };
            let mut input = if tuple {
                HopfieldInput::new(inputs[0].clone(), inputs[1].clone(), inputs[2].clone())
            } else {
                HopfieldInput::single(inputs[0].clone())
            };
            if has("stored_pattern_padding_mask") {
                input.stored_pattern_padding_mask = Some(bool_mask(get("mask.stored_pattern_padding_mask"), device));
            }
            if has("association_mask") {
                let m = get("mask.association_mask");
                input.association_mask = Some(match m.shape.len() {
                    2 => AssociationMask::Shared(bool_mask(m, device)),
                    _ => AssociationMask::PerHead(bool_mask(m, device)),
                });
            }
            let out = layer.forward(input.with_association()).unwrap();
            close(&format!("{name}: output"), values(out.output.clone()), get("output"), tol, 1e-2);
            close(&format!("{name}: association"), values(out.association.unwrap()), get("association"), tol, 1e-2);
            let dy: Tensor<3> = upload(get("grad_output"), device);
            let grads = (out.output * dy).sum().backward();
            let names: &[&str] = if tuple { &["stored", "state", "projection"] } else { &["x"] };
            for (x, n) in inputs.iter().zip(names) {
                let g = values(x.grad(&grads).expect("input gradient"));
                close(&format!("{name}: grad {n}"), g, get(&format!("grad.input.{n}")), tol, 1e-2);
            }
            check_param_grads(&layer, &grads, case, tol);
        }
        "HopfieldPooling" => {
            let cfg: HopfieldPoolingConfig = serde_json::from_value(kwargs).unwrap();
            let layer = cfg.load_host(&params(case), "", true, device).unwrap();
            let x: Tensor<3> = upload(get("input.x"), device).require_grad();
            let (y, out) = layer.forward_full(x.clone(), x.clone(), None, None, true).unwrap();
            close(&format!("{name}: output"), values(y.clone()), get("output"), tol, 1e-2);
            close(&format!("{name}: association"), values(out.association.unwrap()), get("association"), tol, 1e-2);
            let dy: Tensor<2> = upload(get("grad_output"), device);
            let grads = (y * dy).sum().backward();
            close(&format!("{name}: grad x"), values(x.grad(&grads).unwrap()), get("grad.input.x"), tol, 1e-2);
            check_param_grads(&layer, &grads, case, tol);
        }
        "HopfieldLayer" => {
            let cfg: HopfieldLayerConfig = serde_json::from_value(kwargs).unwrap();
            let layer = cfg.load_host(&params(case), "", true, device).unwrap();
            let x: Tensor<3> = upload(get("input.x"), device).require_grad();
            let out = layer.forward_full(x.clone(), None, None, true).unwrap();
            close(&format!("{name}: output"), values(out.output.clone()), get("output"), tol, 1e-2);
            close(&format!("{name}: association"), values(out.association.unwrap()), get("association"), tol, 1e-2);
            let dy: Tensor<3> = upload(get("grad_output"), device);
            let grads = (out.output * dy).sum().backward();
            close(&format!("{name}: grad x"), values(x.grad(&grads).unwrap()), get("grad.input.x"), tol, 1e-2);
            check_param_grads(&layer, &grads, case, tol);
        }
        other => panic!("{name}: unknown module {other}"),
    }
}

/// Every case of `dir` (learnable-α cases skipped), or every failure naming its file.
fn check_dir(device: &Device, dir: &Path) -> Result<usize, String> {
    check_each(dir, validate, |case| {
        if case.json["kwargs"]["retrieval"]["entmax"]["learnable"] == true {
            return;
        }
        run_case(device, case, 1e-4)
    })
}

#[allow(deprecated)] // burn's NdArray backend: the CPU backend this crate's fused path supports.
fn ndarray() -> Device {
    Device::ndarray().autodiff()
}

#[test]
fn hflayers_fixtures_through_burn_autodiff_on_ndarray() {
    let n = check_dir(&ndarray(), &fixture_dir("hflayers")).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 10, "only {n} cases");
    eprintln!("{n} hflayers cases match through burn's autodiff on NdArray");
}

#[cfg(feature = "wgpu")]
#[test]
fn hflayers_fixtures_through_burn_autodiff_on_wgpu() {
    let device = Device::wgpu(Default::default()).autodiff();
    let n = check_dir(&device, &fixture_dir("hflayers")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{n} hflayers cases match through burn's autodiff on Wgpu");
}

#[test]
fn sparse_fixtures_through_burn_autodiff_on_ndarray() {
    let n = check_dir(&ndarray(), &fixture_dir("sparse")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{n} sparse cases (learnable α skipped) match on NdArray");
}

/// A copy of a case with one output value changed, or one parameter gradient changed, fails naming the copy.
#[test]
fn a_changed_case_fails_naming_its_file() {
    let device = ndarray();
    let src = fixture_dir("hflayers").join("self_default.json");
    let same = scratch_copy("burn-same", &src, "renamed", |_, _| {});
    assert_eq!(check_dir(&device, &same), Ok(1));
    std::fs::remove_dir_all(same).unwrap();
    for (tag, edit, why) in [
        (
            "burn-output",
            (|_: &mut serde_json::Value, t: &mut TensorMap| t.get_mut("output").unwrap().values[3] += 1e-2)
                as fn(&mut serde_json::Value, &mut TensorMap),
            "output: relative error",
        ),
        (
            "burn-grad",
            |_, t| {
                let g = t.get_mut("grad.param.association_core.in_proj_weight").unwrap();
                g.values[5] += 1e-2 * g.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            },
            "grad association_core.in_proj_weight",
        ),
    ] {
        let dir = scratch_copy(tag, &src, "renamed", edit);
        let err = check_dir(&device, &dir).expect_err(why);
        assert!(err.contains("renamed.json") && err.contains(why), "expected `{why}` naming renamed.json: {err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
