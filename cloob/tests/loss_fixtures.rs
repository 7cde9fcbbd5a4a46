//! Every golden case of tests/fixtures/cloob (cloob's methods.py and CLIP's loss in PyTorch, float64):
//! loss, gradients w.r.t. the un-normalised embeddings and, for CLOOB, the four retrieved sets, to
//! relative 1e-9 in f64 (1e-4 in f32). Every `*.json` there is a case; a case that is unreadable,
//! incomplete or off fails with its file named.

// The shared helpers name the layers crate by its library name; here it is the dependency `hopfield`.
extern crate hopfield as hopfield_layers;

#[path = "../../hopfield/tests/common/mod.rs"]
mod common;

use cloob::loss::{contrastive_loss, LossConfig, LossKind};
use common::fixtures::{check_each, scratch_copy, Case};
use common::{assert_close, get, host, upload};
use hopfield::io::{HostTensor, TensorMap};
use hopfield::{Backend, Cpu};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The cases, kept beside this test.
fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cloob")
}

/// Every case in `dir` (each `*.json`), compared on `backend`; the number of cases, or every failure
/// with its case file.
fn check_dir<B: Backend>(backend: &B, dir: &Path, tol: f64) -> Result<usize, String> {
    check_each(dir, validate, |case| run_case(backend, case, tol))
}

/// What `run_case` reads, checked first so that an incomplete case fails with its file named.
fn validate(case: &Case) -> Result<(), String> {
    let at = case.path.display();
    let retrieved = match case.str_field("loss")? {
        "cloob" => true,
        "clip" => false,
        other => return Err(format!("{at}: unknown loss `{other}`")),
    };
    let number = |key: &str| case.json[key].as_f64().ok_or_else(|| format!("{at}: json field `{key}` missing"));
    let (n, d) = (number("n")? as usize, number("d")? as usize);
    number("inv_tau")?;
    number("loss_value")?;
    if retrieved {
        number("hopfield_beta")?;
    }
    let mut names = vec!["input.image", "input.text", "grad.image", "grad.text"];
    if retrieved {
        names.extend(["retrieved.xx", "retrieved.xy", "retrieved.yx", "retrieved.yy"]);
    }
    for name in names {
        case.expect_shape(name, &[n, d])?;
    }
    case.expect_shape("loss", &[1])
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
    let out = contrastive_loss(
        backend,
        &config,
        &upload(backend, get(t, "input.image")),
        &upload(backend, get(t, "input.text")),
        inv_tau,
    )
    .unwrap();
    let expected = get(t, "loss").values[0];
    assert!((expected - case.json["loss_value"].as_f64().unwrap()).abs() <= 1e-12 * expected.abs());
    assert_close(&format!("{name}: loss"), &[out.loss], &HostTensor { values: vec![expected], shape: vec![1] }, tol);
    assert_close(&format!("{name}: grad.image"), &host(backend, &out.d_image), get(t, "grad.image"), tol);
    assert_close(&format!("{name}: grad.text"), &host(backend, &out.d_text), get(t, "grad.text"), tol);
    match (kind, &out.retrieved) {
        (LossKind::Cloob, Some(r)) => {
            for (key, tensor) in [("xx", &r.xx), ("xy", &r.xy), ("yx", &r.yx), ("yy", &r.yy)] {
                assert_close(
                    &format!("{name}: retrieved.{key}"),
                    &host(backend, tensor),
                    get(t, &format!("retrieved.{key}")),
                    tol,
                );
            }
        }
        (LossKind::Cloob, None) => panic!("{name}: no retrieved sets"),
        _ => assert!(out.retrieved.is_none()),
    }
}

#[test]
fn every_fixture_matches_in_f64() {
    let n = check_dir(&Cpu::<f64>::new(), &fixture_dir(), 1e-9).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{n} cloob cases match in f64");
}

#[test]
fn every_fixture_matches_in_f32() {
    let n = check_dir(&Cpu::<f32>::new(), &fixture_dir(), 1e-4).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{n} cloob cases match in f32");
}

/// The discovery itself, on copies of one case under a new name in a scratch folder: the unchanged copy
/// passes; one changed retrieved value, a missing tensor, a tensor of the wrong shape and an unknown loss
/// each fail with the copy's file named.
#[test]
fn a_changed_or_incomplete_case_fails_naming_its_file() {
    let cpu = Cpu::<f64>::new();
    let src = fixture_dir().join("cloob_n8_d16.json");
    let copy =
        |tag: &str, edit: fn(&mut Value, &mut TensorMap)| scratch_copy(&format!("cloob-{tag}"), &src, "renamed", edit);
    let fails = |dir: PathBuf, why: &str| {
        let err = check_dir(&cpu, &dir, 1e-9).expect_err(why);
        assert!(err.contains("renamed.json") && err.contains(why), "expected `{why}` naming renamed.json: {err}");
        std::fs::remove_dir_all(dir).unwrap();
    };
    let same = copy("same", |_, _| {});
    assert_eq!(check_dir(&cpu, &same, 1e-9), Ok(1));
    std::fs::remove_dir_all(same).unwrap();
    fails(copy("value", |_, t| t.get_mut("retrieved.xy").unwrap().values[5] += 1e-6), "retrieved.xy: relative error");
    fails(copy("tensor", |_, t| drop(t.remove("grad.text"))), "`grad.text` missing");
    let why = "`input.image` has shape [16, 8]";
    fails(copy("shape", |_, t| t.get_mut("input.image").unwrap().shape = vec![16, 8]), why);
    fails(copy("loss", |j, _| j["loss"] = "siglip".into()), "unknown loss `siglip`");
}
