//! Every golden case of tests/fixtures/cloob (cloob's methods.py and CLIP's loss in PyTorch, float64):
//! loss, gradients w.r.t. the un-normalised embeddings and, for CLOOB, the four retrieved sets, to
//! relative 1e-9 in f64 (1e-4 in f32). A missing or unreadable fixture fails.

#[path = "../../hopfield/tests/common/mod.rs"]
mod common;

use cloob::loss::{contrastive_loss, LossConfig, LossKind};
use common::{assert_close, get, host, upload};
use hopfield::io::{read_safetensors, HostTensor, TensorMap};
use hopfield::{Backend, Cpu};
use std::path::PathBuf;

/// The cases that must be there; any further case in the directory runs too.
const CASES: &[&str] = &["clip_n8_d16", "cloob_n8_d16", "cloob_n32_d64_beta8"];

/// The cases, kept beside this test.
fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cloob")
}

/// Every case in the fixture directory, checked to include [`CASES`].
fn all_cases() -> Vec<String> {
    let dir = fixture_dir();
    let mut found: Vec<String> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_string)).collect();
    found.sort();
    for name in CASES {
        assert!(found.iter().any(|f| f == name), "fixture {name}.json missing from {}", dir.display());
    }
    found
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
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}.json: {e}"));
    let tensors = read_safetensors(dir.join(format!("{name}.safetensors"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    Case { name: name.to_string(), json, tensors }
}

fn run_case<B: Backend>(backend: &B, case: &Case, tol: f64) {
    let name = &case.name;
    let t = &case.tensors;
    let kind = match case.json["loss"].as_str() {
        Some("cloob") => LossKind::Cloob,
        Some("clip") => LossKind::Clip,
        other => panic!("{name}: unknown loss {other:?}"),
    };
    let mut config = LossConfig::new(kind);
    if let Some(beta) = case.json["hopfield_beta"].as_f64() {
        config = config.hopfield_beta(beta);
    }
    let inv_tau = case.json["inv_tau"].as_f64().expect("inv_tau");
    let out = contrastive_loss(backend, &config, &upload(backend, get(t, "input.image")),
                               &upload(backend, get(t, "input.text")), inv_tau).unwrap();
    let expected = get(t, "loss").values[0];
    assert!((expected - case.json["loss_value"].as_f64().unwrap()).abs() <= 1e-12 * expected.abs());
    assert_close(&format!("{name}: loss"), &[out.loss], &HostTensor { values: vec![expected], shape: vec![1] }, tol);
    assert_close(&format!("{name}: grad.image"), &host(backend, &out.d_image), get(t, "grad.image"), tol);
    assert_close(&format!("{name}: grad.text"), &host(backend, &out.d_text), get(t, "grad.text"), tol);
    match (kind, &out.retrieved) {
        (LossKind::Cloob, Some(r)) => {
            for (key, tensor) in [("xx", &r.xx), ("xy", &r.xy), ("yx", &r.yx), ("yy", &r.yy)] {
                assert_close(&format!("{name}: retrieved.{key}"), &host(backend, tensor), get(t, &format!("retrieved.{key}")), tol);
            }
        }
        (LossKind::Cloob, None) => panic!("{name}: no retrieved sets"),
        _ => assert!(out.retrieved.is_none()),
    }
}

#[test]
fn every_fixture_matches_in_f64() {
    for name in all_cases() {
        run_case(&Cpu::<f64>::new(), &load(&name), 1e-9);
    }
}

#[test]
fn every_fixture_matches_in_f32() {
    for name in all_cases() {
        run_case(&Cpu::<f32>::new(), &load(&name), 1e-4);
    }
}
