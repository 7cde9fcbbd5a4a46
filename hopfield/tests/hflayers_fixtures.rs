//! Every golden case computed with hflayers 1.0.2 (tests/fixtures/hflayers): output, association matrix
//! and every gradient, in f64 (relative 1e-9) and f32 (1e-4). A missing or unreadable fixture fails.

mod common;

use common::{assert_close, get, host, upload};
use hopfield::layers::{Layer, LookupInput, Mode};
use hopfield::io::{read_safetensors, TensorMap};
use hopfield::layers::{
    HopfieldConfig, HopfieldInput, HopfieldLayerConfig, HopfieldPoolingConfig, Mask, PoolingInput,
};
use hopfield::params::Parameters;
use hopfield::{Backend, Cpu};
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

const CASES: &[&str] = &[
    "connected", "hopfield_space_norm", "lookup_separated", "masks", "pooling", "self_default",
    "static_retrieval_cloob", "tuple_sizes", "update_steps", "zero_assoc_no_out",
];

/// `tests/fixtures/hflayers`, or `$HOPFIELD_FIXTURES` (test binaries shipped to another machine).
fn fixture_dir() -> PathBuf {
    std::env::var_os("HOPFIELD_FIXTURES").map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hflayers"))
}

struct Case {
    name: String,
    json: serde_json::Value,
    tensors: TensorMap,
}

fn load(name: &str) -> Case {
    let dir = fixture_dir();
    let json_path = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&json_path).unwrap_or_else(|e| panic!("{}: {e}", json_path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}.json: {e}"));
    let tensors = read_safetensors(dir.join(format!("{name}.safetensors"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    Case { name: name.to_string(), json, tensors }
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
    grads.visit(&mut |name, t, _| {
        let exp = expected.get(name).unwrap_or_else(|| panic!("{}: fixture lacks grad of `{name}`", case.name));
        assert_close(&format!("{}: grad {name}", case.name), &host(backend, t), exp, tol);
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
            hopfield::io::load_state_dict(backend, &mut layer.params, &params(case), "", true).unwrap();
            let mut input = match call {
                "single" => HopfieldInput::single(upload(backend, get(t, "input.x"))),
                _ => HopfieldInput::new(upload(backend, get(t, "input.stored")), upload(backend, get(t, "input.state")),
                                        upload(backend, get(t, "input.projection"))),
            };
            input.stored_pattern_padding_mask = mask(case, "stored_pattern_padding_mask");
            input.association_mask = mask(case, "association_mask");
            let (out, cache) = layer.forward(backend, layer.params(), &input.with_association(), Mode::Eval).unwrap();
            assert_close(&format!("{name}: output"), &host(backend, &out.output), out_exp, tol);
            assert_close(&format!("{name}: association"), &host(backend, out.association.as_ref().unwrap()), assoc_exp, tol);
            let mut grads = layer.zero_grads(backend);
            let g = layer.backward(backend, layer.params(), &cache, &dy, &mut grads).unwrap();
            if call == "single" {
                assert_close(&format!("{name}: grad x"), &host(backend, &g.single(backend)), get(t, "grad.input.x"), tol);
            } else {
                assert_close(&format!("{name}: grad stored"), &host(backend, &g.stored), get(t, "grad.input.stored"), tol);
                assert_close(&format!("{name}: grad state"), &host(backend, &g.state), get(t, "grad.input.state"), tol);
                assert_close(&format!("{name}: grad projection"), &host(backend, &g.projection), get(t, "grad.input.projection"), tol);
            }
            check_param_grads(backend, case, &grads, tol);
        }
        "HopfieldPooling" => {
            let cfg: HopfieldPoolingConfig = serde_json::from_value(kwargs).unwrap();
            let mut layer = cfg.init(backend, &mut rng).unwrap();
            hopfield::io::load_state_dict(backend, &mut layer.params, &params(case), "", true).unwrap();
            assert_eq!(call, "single");
            let input = PoolingInput::single(upload(backend, get(t, "input.x")));
            let (out, cache) = layer.forward(backend, layer.params(), &input, Mode::Eval).unwrap();
            assert_close(&format!("{name}: output"), &host(backend, &out), out_exp, tol);
            assert_close(&format!("{name}: association"), &host(backend, cache.hopfield.association().unwrap()), assoc_exp, tol);
            let mut grads = layer.zero_grads(backend);
            let g = layer.backward(backend, layer.params(), &cache, &dy, &mut grads).unwrap();
            assert_close(&format!("{name}: grad x"), &host(backend, &g.single(backend)), get(t, "grad.input.x"), tol);
            check_param_grads(backend, case, &grads, tol);
        }
        "HopfieldLayer" => {
            let cfg: HopfieldLayerConfig = serde_json::from_value(kwargs).unwrap();
            let mut layer = cfg.init(backend, &mut rng).unwrap();
            hopfield::io::load_state_dict(backend, &mut layer.params, &params(case), "", true).unwrap();
            let x = upload(backend, get(t, "input.x"));
            let (out, cache) = layer.forward(backend, layer.params(), &LookupInput::new(x), Mode::Eval).unwrap();
            assert_close(&format!("{name}: output"), &host(backend, &out), out_exp, tol);
            assert_close(&format!("{name}: association"), &host(backend, cache.hopfield.association().unwrap()), assoc_exp, tol);
            let mut grads = layer.zero_grads(backend);
            let dx = layer.backward(backend, layer.params(), &cache, &dy, &mut grads).unwrap();
            assert_close(&format!("{name}: grad x"), &host(backend, &dx), get(t, "grad.input.x"), tol);
            check_param_grads(backend, case, &grads, tol);
        }
        other => panic!("{name}: unknown module {other}"),
    }
}

#[test]
fn every_fixture_is_present_and_listed() {
    let dir = fixture_dir();
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixture directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .collect();
    found.sort();
    assert_eq!(found, CASES, "fixture set changed: every case must be listed here");
    for c in CASES {
        assert!(dir.join(format!("{c}.safetensors")).is_file(), "{c}.safetensors missing");
    }
}

#[test]
fn fixtures_match_in_f64() {
    for name in CASES {
        run_case(&Cpu::<f64>::new(), &load(name), 1e-9);
    }
}

#[test]
fn fixtures_match_in_f32() {
    for name in CASES {
        run_case(&Cpu::<f32>::new(), &load(name), 1e-4);
    }
}

/// The same fixtures on the CubeCL backend (CUDA device 0 when built, else wgpu: lavapipe in CI), NaN-poisoned outputs,
/// f32 tolerance.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[test]
fn fixtures_match_on_the_cube_backend() {
    #[cfg(not(feature = "cuda"))]
    let backend = hopfield::backend::cube::Wgpu::wgpu().unwrap_or_else(|e| panic!("{e}")).poisoned();
    #[cfg(feature = "cuda")]
    let backend = hopfield::backend::cube::Cuda::cuda(0).unwrap_or_else(|e| panic!("{e}")).poisoned();
    for name in CASES {
        run_case(&backend, &load(name), 1e-4);
    }
}
