//! Every golden case computed with hflayers 1.0.2 (tests/fixtures/hflayers): output, association matrix
//! and every gradient, in f64 (relative 1e-9) and f32 (1e-4). Every `*.json` there is a case; a case that
//! is unreadable, incomplete or off fails with its file named.
//!
//! The same suite runs tests/fixtures/sparse: hflayers with its softmax replaced by the PyPI `entmax`
//! package's sparsemax / entmax and our softmax₁ (`scripts/fixtures/sparse_cases.py`), the `retrieval`
//! option in each case's kwargs.

mod common;

use common::fixtures::{check_each, scratch_copy, Case};
use common::{assert_close, assert_close_floor, get, host, upload};
use hopfield_layers::io::TensorMap;
use hopfield_layers::layers::{
    HopfieldConfig, HopfieldInput, HopfieldLayerConfig, HopfieldPoolingConfig, Mask, PoolingInput,
};
use hopfield_layers::layers::{Layer, LookupInput, Mode};
use hopfield_layers::params::Parameters;
use hopfield_layers::{Backend, Cpu};
use rand::{rngs::StdRng, SeedableRng};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `tests/fixtures/hflayers`, or `$HOPFIELD_FIXTURES` (test binaries shipped to another machine).
fn fixture_dir() -> PathBuf {
    std::env::var_os("HOPFIELD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hflayers"))
}

/// `tests/fixtures/sparse`, or `$HOPFIELD_SPARSE_FIXTURES`.
fn sparse_fixture_dir() -> PathBuf {
    std::env::var_os("HOPFIELD_SPARSE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sparse"))
}

/// Every case in `dir` (each `*.json`), compared on `backend`; the number of cases, or every failure
/// with its case file.
fn check_dir<B: Backend>(backend: &B, dir: &Path, tol: f64) -> Result<usize, String> {
    check_each(dir, validate, |case| run_case(backend, case, tol))
}

/// What `run_case` reads, checked first so that an incomplete case fails with its file named.
fn validate(case: &Case) -> Result<(), String> {
    let at = case.path.display();
    let (module, call) = (case.str_field("module")?, case.str_field("call")?);
    let inputs: &[&str] = match (module, call) {
        ("Hopfield" | "HopfieldPooling" | "HopfieldLayer", "single") => &["x"],
        ("Hopfield", "tuple") => &["stored", "state", "projection"],
        _ => return Err(format!("{at}: unknown module/call `{module}`/`{call}`")),
    };
    if !case.json["kwargs"].is_object() {
        return Err(format!("{at}: `kwargs` missing or not an object"));
    }
    for input in inputs {
        let shape = &case.tensor(&format!("input.{input}"))?.shape;
        case.expect_shape(&format!("grad.input.{input}"), shape)?;
    }
    case.expect_shape("grad_output", &case.tensor("output")?.shape)?;
    if case.tensor("association")?.shape.len() != 4 {
        return Err(format!("{at}: `association` must be (B, H, L, S)"));
    }
    let masks = case.json["masks"].as_array().ok_or_else(|| format!("{at}: `masks` missing or not a list"))?;
    for m in masks {
        match (module, m.as_str()) {
            ("Hopfield", Some(m @ ("stored_pattern_padding_mask" | "association_mask"))) => {
                case.tensor(&format!("mask.{m}"))?;
            }
            _ => return Err(format!("{at}: mask {m} is not one this suite applies to {module}")),
        }
    }
    for (key, t) in &case.tensors {
        if let Some(p) = key.strip_prefix("param.") {
            case.expect_shape(&format!("grad.param.{p}"), &t.shape)?;
        }
    }
    Ok(())
}

/// The `param.*` tensors, prefix stripped.
fn params(case: &Case) -> TensorMap {
    case.tensors.iter().filter_map(|(k, v)| k.strip_prefix("param.").map(|n| (n.to_string(), v.clone()))).collect()
}

fn grads_of(case: &Case) -> TensorMap {
    case.tensors.iter().filter_map(|(k, v)| k.strip_prefix("grad.param.").map(|n| (n.to_string(), v.clone()))).collect()
}

fn mask(case: &Case, name: &str) -> Option<Mask> {
    case.tensors.get(&format!("mask.{name}")).map(|m| {
        let bytes: Vec<u8> = m.values.iter().map(|&v| v as u8).collect();
        Mask::from_u8(&bytes, &m.shape)
    })
}

fn check_param_grads<B: Backend, P: Parameters<B>>(backend: &B, case: &Case, grads: &P, tol: f64) {
    let expected = grads_of(case);
    let names = grads.names();
    for name in expected.keys() {
        assert!(names.contains(name), "{}: no gradient for `{name}`", case.name);
    }
    // A gradient that vanishes in exact arithmetic (the stored-pattern norm's bias: softmax ignores a shift
    // shared by all keys) holds rounding noise of the size of the module's other gradients' rounding: errors
    // are relative to at least 1e-2 of the module's largest gradient.
    let largest = expected.values().flat_map(|t| t.values.iter()).fold(1.0f64, |m, v| m.max(v.abs()));
    grads.visit(&mut |name, t, _| {
        let exp = expected.get(name).unwrap_or_else(|| panic!("{}: fixture lacks grad of `{name}`", case.name));
        assert_close_floor(&format!("{}: grad {name}", case.name), &host(backend, t), exp, tol, 1e-2 * largest);
    });
}

fn run_case<B: Backend>(backend: &B, case: &Case, tol: f64) {
    let module = case.json["module"].as_str().unwrap();
    let kwargs = case.json["kwargs"].clone();
    let call = case.json["call"].as_str().unwrap();
    let t = &case.tensors;
    let mut rng = StdRng::seed_from_u64(0);
    let out_exp = get(t, "output");
    let dy = upload(backend, get(t, "grad_output"));
    let assoc_exp = get(t, "association");
    let name = &case.name;
    match module {
        "Hopfield" => {
            let cfg: HopfieldConfig = serde_json::from_value(kwargs).unwrap();
            let mut layer = cfg.init(backend, &mut rng).unwrap();
            hopfield_layers::io::load_state_dict(backend, &mut layer.params, &params(case), "", true).unwrap();
            let mut input = match call {
                "single" => HopfieldInput::single(upload(backend, get(t, "input.x"))),
                _ => HopfieldInput::new(
                    upload(backend, get(t, "input.stored")),
                    upload(backend, get(t, "input.state")),
                    upload(backend, get(t, "input.projection")),
                ),
            };
            input.stored_pattern_padding_mask = mask(case, "stored_pattern_padding_mask");
            input.association_mask = mask(case, "association_mask");
            let (out, cache) = layer.forward(backend, layer.params(), &input.with_association(), Mode::Eval).unwrap();
            assert_close(&format!("{name}: output"), &host(backend, &out.output), out_exp, tol);
            assert_close(
                &format!("{name}: association"),
                &host(backend, out.association.as_ref().unwrap()),
                assoc_exp,
                tol,
            );
            let mut grads = layer.zero_grads(backend);
            let g = layer.backward(backend, layer.params(), &cache, &dy, &mut grads).unwrap();
            if call == "single" {
                assert_close(
                    &format!("{name}: grad x"),
                    &host(backend, &g.single(backend)),
                    get(t, "grad.input.x"),
                    tol,
                );
            } else {
                assert_close(
                    &format!("{name}: grad stored"),
                    &host(backend, &g.stored),
                    get(t, "grad.input.stored"),
                    tol,
                );
                assert_close(&format!("{name}: grad state"), &host(backend, &g.state), get(t, "grad.input.state"), tol);
                assert_close(
                    &format!("{name}: grad projection"),
                    &host(backend, &g.projection),
                    get(t, "grad.input.projection"),
                    tol,
                );
            }
            check_param_grads(backend, case, &grads, tol);
        }
        "HopfieldPooling" => {
            let cfg: HopfieldPoolingConfig = serde_json::from_value(kwargs).unwrap();
            let mut layer = cfg.init(backend, &mut rng).unwrap();
            hopfield_layers::io::load_state_dict(backend, &mut layer.params, &params(case), "", true).unwrap();
            assert_eq!(call, "single");
            let input = PoolingInput::single(upload(backend, get(t, "input.x")));
            let (out, cache) = layer.forward(backend, layer.params(), &input, Mode::Eval).unwrap();
            assert_close(&format!("{name}: output"), &host(backend, &out), out_exp, tol);
            assert_close(
                &format!("{name}: association"),
                &host(backend, cache.hopfield.association().unwrap()),
                assoc_exp,
                tol,
            );
            let mut grads = layer.zero_grads(backend);
            let g = layer.backward(backend, layer.params(), &cache, &dy, &mut grads).unwrap();
            assert_close(&format!("{name}: grad x"), &host(backend, &g.single(backend)), get(t, "grad.input.x"), tol);
            check_param_grads(backend, case, &grads, tol);
        }
        "HopfieldLayer" => {
            let cfg: HopfieldLayerConfig = serde_json::from_value(kwargs).unwrap();
            let mut layer = cfg.init(backend, &mut rng).unwrap();
            hopfield_layers::io::load_state_dict(backend, &mut layer.params, &params(case), "", true).unwrap();
            let x = upload(backend, get(t, "input.x"));
            let (out, cache) = layer.forward(backend, layer.params(), &LookupInput::new(x), Mode::Eval).unwrap();
            assert_close(&format!("{name}: output"), &host(backend, &out), out_exp, tol);
            assert_close(
                &format!("{name}: association"),
                &host(backend, cache.hopfield.association().unwrap()),
                assoc_exp,
                tol,
            );
            let mut grads = layer.zero_grads(backend);
            let dx = layer.backward(backend, layer.params(), &cache, &dy, &mut grads).unwrap();
            assert_close(&format!("{name}: grad x"), &host(backend, &dx), get(t, "grad.input.x"), tol);
            check_param_grads(backend, case, &grads, tol);
        }
        other => panic!("{name}: unknown module {other}"),
    }
}

#[test]
fn fixtures_match_in_f64() {
    let n = check_dir(&Cpu::<f64>::new(), &fixture_dir(), 1e-9).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{n} hflayers cases match in f64");
}

#[test]
fn fixtures_match_in_f32() {
    let n = check_dir(&Cpu::<f32>::new(), &fixture_dir(), 1e-4).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{n} hflayers cases match in f32");
}

/// The same fixtures on the CubeCL backend (CUDA device 0 when built, else wgpu: lavapipe in CI), NaN-poisoned outputs,
/// f32 tolerance.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[test]
fn fixtures_match_on_the_cube_backend() {
    #[cfg(not(feature = "cuda"))]
    let backend = hopfield_layers::backend::cube::Wgpu::wgpu().unwrap_or_else(|e| panic!("{e}")).poisoned();
    #[cfg(feature = "cuda")]
    let backend = hopfield_layers::backend::cube::Cuda::cuda(0).unwrap_or_else(|e| panic!("{e}")).poisoned();
    check_dir(&backend, &fixture_dir(), 1e-4).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn sparse_fixtures_match_in_f64_and_f32() {
    let n = check_dir(&Cpu::<f64>::new(), &sparse_fixture_dir(), 1e-9).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 11, "only {n} sparse cases found");
    check_dir(&Cpu::<f32>::new(), &sparse_fixture_dir(), 1e-4).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{n} sparse retrieval cases match in f64 and f32");
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[test]
fn sparse_fixtures_match_on_the_cube_backend() {
    #[cfg(not(feature = "cuda"))]
    let backend = hopfield_layers::backend::cube::Wgpu::wgpu().unwrap_or_else(|e| panic!("{e}")).poisoned();
    #[cfg(feature = "cuda")]
    let backend = hopfield_layers::backend::cube::Cuda::cuda(0).unwrap_or_else(|e| panic!("{e}")).poisoned();
    check_dir(&backend, &sparse_fixture_dir(), 1e-4).unwrap_or_else(|e| panic!("{e}"));
}

/// A sparse case changed in its association's zero pattern, its learnable α's gradient or its retrieval
/// kwarg fails naming its file.
#[test]
fn a_changed_sparse_case_fails() {
    let cpu = Cpu::<f64>::new();
    let fails = |case: &str, tag: &str, edit: fn(&mut Value, &mut TensorMap), why: &str| {
        let src = sparse_fixture_dir().join(format!("{case}.json"));
        let dir = scratch_copy(&format!("sparse-{tag}"), &src, "renamed", edit);
        let err = check_dir(&cpu, &dir, 1e-9).expect_err(why);
        assert!(err.contains("renamed.json") && err.contains(why), "expected `{why}` naming renamed.json: {err}");
        std::fs::remove_dir_all(dir).unwrap();
    };
    fails(
        "sparsemax_self",
        "zero",
        |_, t| {
            let a = t.get_mut("association").unwrap();
            let i = a.values.iter().position(|v| *v == 0.0).expect("a sparse association has zeros");
            a.values[i] = 1e-3;
        },
        "association: relative error",
    );
    fails(
        "entmax_learnable_self",
        "alpha",
        |_, t| t.get_mut("grad.param.association_core.entmax_pre_alpha").unwrap().values[1] *= 1.001,
        "entmax_pre_alpha",
    );
    fails("entmax15_self", "kwarg", |j, _| j["kwargs"]["retrieval"] = "softmax".into(), "relative error");
}

/// The discovery itself, on copies of one case under a new name in a scratch folder: the unchanged copy
/// passes; one changed output value, a missing safetensors file, a missing tensor, a tensor of the wrong
/// shape, an unknown module and a listed mask that is absent each fail with the copy's file named.
#[test]
fn a_changed_or_incomplete_case_fails_naming_its_file() {
    let cpu = Cpu::<f64>::new();
    let src = fixture_dir().join("self_default.json");
    let copy = |tag: &str, edit: fn(&mut Value, &mut TensorMap)| {
        scratch_copy(&format!("hflayers-{tag}"), &src, "renamed", edit)
    };
    let fails = |dir: PathBuf, why: &str| {
        let err = check_dir(&cpu, &dir, 1e-9).expect_err(why);
        assert!(err.contains("renamed.json") && err.contains(why), "expected `{why}` naming renamed.json: {err}");
        std::fs::remove_dir_all(dir).unwrap();
    };
    let same = copy("same", |_, _| {});
    assert_eq!(check_dir(&cpu, &same, 1e-9), Ok(1));
    std::fs::remove_dir_all(same).unwrap();
    fails(copy("output", |_, t| t.get_mut("output").unwrap().values[3] += 1e-6), "output: relative error");
    let no_st = copy("no-st", |_, _| {});
    std::fs::remove_file(no_st.join("renamed.safetensors")).unwrap();
    fails(no_st, "renamed.safetensors");
    fails(
        copy("tensor", |j, t| {
            t.remove("grad.input.x");
            j["shapes"].as_object_mut().unwrap().remove("grad.input.x");
        }),
        "`grad.input.x` missing",
    );
    fails(copy("shape", |_, t| t.get_mut("input.x").unwrap().shape = vec![5, 2, 8]), "`input.x` has shape [5, 2, 8]");
    fails(copy("module", |j, _| j["module"] = "HopfieldEncoder".into()), "unknown module/call `HopfieldEncoder`");
    fails(copy("mask", |j, _| j["masks"] = serde_json::json!(["association_mask"])), "`mask.association_mask` missing");
    let orphan = copy("orphan", |_, _| {});
    std::fs::remove_file(orphan.join("renamed.json")).unwrap();
    let err = check_dir(&cpu, &orphan, 1e-9).expect_err("a safetensors without json");
    assert!(err.contains("renamed.safetensors: no matching .json"), "{err}");
    std::fs::remove_dir_all(orphan).unwrap();
}
