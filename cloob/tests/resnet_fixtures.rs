//! Every golden case of tests/fixtures/resnet (open_clip's `ModifiedResNet` in PyTorch, float64, written by
//! scripts/fixtures/resnet_cases.py): the tower loads the case's state dict by open_clip's names (strictly:
//! no key left over on either side), and its output, every parameter gradient, the image gradient and, in
//! training, the updated running statistics match to relative 1e-9 in f64 and 1e-4 in f32 (the CPU and
//! the Cube backend). Every `*.json` there is a case; one that is unreadable, incomplete or off fails with
//! its file named.
//!
//! The f32 margin depends on the cases' conditioning, which the generator's configuration sets. In
//! training, a batch norm whose output reaches the loss only through a later training-mode batch norm
//! (after a ReLU and a convolution: the stem's first two, each bottleneck's first two) leaves the loss
//! unchanged when its (γ, β) are scaled together, so `Σ γ·dγ + β·dβ = 0` over its channels. At width 2
//! the stem's norms have one channel, and there `dγ = −β·dβ/γ`: with a small β, dγ is the cancelled sum
//! of terms the size of dβ and carries their absolute rounding error. The training case has 64×64 images
//! in a batch of 2 (2048 values per stem channel, 8 per channel in the last stage, five tokens into the
//! attention pool), and there the stem's `bn1.weight` is the worst entry in f64 (1e-13, the rest ≤ 4e-14)
//! and on lavapipe (3.6e-5; the CPU's f32 pass: ≤ 2.7e-5 for every entry). The former 32×32 batch of 4
//! (four values per channel in the last stage, a pool whose mean token is its one pixel's) lay 2.6e-4
//! off on lavapipe in the stem's `bn2.weight`.

// The shared helpers name the layers crate by its library name; here it is the dependency `hopfield`.
extern crate hopfield as hopfield_layers;

#[path = "../../hopfield/tests/common/mod.rs"]
mod common;

use cloob::resnet::ResNetConfig;
use common::fixtures::{check_each, scratch_copy, Case};
use common::{assert_close, get, host, upload};
use hopfield::io::{load_state_dict, TensorMap};
use hopfield::layers::{Layer, Mode};
use hopfield::{Backend, Cpu, Parameters};
use rand::SeedableRng;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet")
}

fn check_dir<B: Backend>(backend: &B, dir: &Path, tol: f64) -> Result<usize, String> {
    check_each(dir, validate, |case| run_case(backend, case, tol))
}

/// The tower a case describes.
fn config(case: &Case) -> Result<ResNetConfig, String> {
    let at = case.path.display();
    let number = |key: &str| {
        case.json[key].as_u64().map(|v| v as usize).ok_or_else(|| format!("{at}: json field `{key}` missing"))
    };
    let layers: Vec<usize> =
        serde_json::from_value(case.json["layers"].clone()).map_err(|e| format!("{at}: layers: {e}"))?;
    let layers: [usize; 4] = layers.try_into().map_err(|l| format!("{at}: layers {l:?} are not four stages"))?;
    let c = ResNetConfig {
        image_size: number("image_size")?,
        layers,
        width: number("width")?,
        heads: number("heads")?,
        output_dim: number("output_dim")?,
        ..ResNetConfig::tiny()
    };
    c.validate().map_err(|e| format!("{at}: {e}"))?;
    Ok(c)
}

fn validate(case: &Case) -> Result<(), String> {
    let c = config(case)?;
    let mode = case.str_field("mode")?;
    if mode != "train" && mode != "eval" {
        return Err(format!("{}: unknown mode `{mode}`", case.path.display()));
    }
    let b = case.tensor("input.images")?.shape[0];
    case.expect_shape("input.images", &[b, 3, c.image_size, c.image_size])?;
    case.expect_shape("grad_input.images", &[b, 3, c.image_size, c.image_size])?;
    case.expect_shape("output", &[b, c.output_dim])?;
    case.expect_shape("grad_output", &[b, c.output_dim])
}

fn run_case<B: Backend>(backend: &B, case: &Case, tol: f64) {
    let name = &case.name;
    let t = &case.tensors;
    let config = config(case).unwrap();
    let mut net = config.init(backend, &mut rand::rngs::StdRng::seed_from_u64(0)).unwrap();
    load_state_dict(backend, &mut net, t, "param.", true).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mode = if case.json["mode"] == "train" { Mode::Train { seed: 0 } } else { Mode::Eval };
    let images = upload(backend, get(t, "input.images"));
    let (out, cache) = net.forward(backend, &net, &images, mode).unwrap();
    assert_close(&format!("{name}: output"), &host(backend, &out), get(t, "output"), tol);
    let mut grads = net.zero_grads(backend);
    let d_images = net.backward(backend, &net, &cache, &upload(backend, get(t, "grad_output")), &mut grads).unwrap();
    assert_close(&format!("{name}: grad_input.images"), &host(backend, &d_images), get(t, "grad_input.images"), tol);
    let mut checked = 0;
    grads.visit(&mut |n, g, trainable| {
        if trainable {
            assert_close(&format!("{name}: grad.{n}"), &host(backend, g), get(t, &format!("grad.{n}")), tol);
            checked += 1;
        }
    });
    assert_eq!(
        checked,
        t.keys().filter(|k| k.starts_with("grad.")).count(),
        "{name}: gradients stored but not checked"
    );
    let running: Vec<&String> = t.keys().filter(|k| k.starts_with("running.")).collect();
    assert_eq!(running.is_empty(), mode == Mode::Eval, "{name}: running statistics go with training");
    net.update_running_stats(backend, &cache);
    for key in running {
        let n = &key["running.".len()..];
        let mut value = None;
        net.visit(&mut |m, v, _| {
            if m == n {
                value = Some(host(backend, v));
            }
        });
        let value = value.unwrap_or_else(|| panic!("{name}: no tensor {n}"));
        assert_close(&format!("{name}: {key}"), &value, get(t, key), tol);
    }
}

#[test]
fn every_fixture_matches_in_f64() {
    let n = check_dir(&Cpu::<f64>::new(), &fixture_dir(), 1e-9).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 2, "only {n} resnet cases found");
    eprintln!("{n} resnet cases match in f64");
}

#[test]
fn every_fixture_matches_in_f32() {
    let n = check_dir(&Cpu::<f32>::new(), &fixture_dir(), 1e-4).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{n} resnet cases match in f32");
}

/// The same cases on the CubeCL backend (CUDA device 0 when built, else wgpu: lavapipe in CI), NaN-poisoned
/// outputs, at the CPU's f32 tolerance (lavapipe: 3.6e-5 in training, 8e-7 in evaluation).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[test]
fn every_fixture_matches_on_the_cube_backend() {
    #[cfg(not(feature = "cuda"))]
    let backend = hopfield::backend::cube::Wgpu::wgpu().unwrap_or_else(|e| panic!("{e}")).poisoned();
    #[cfg(feature = "cuda")]
    let backend = hopfield::backend::cube::Cuda::cuda(0).unwrap_or_else(|e| panic!("{e}")).poisoned();
    check_dir(&backend, &fixture_dir(), 1e-4).unwrap_or_else(|e| panic!("{e}"));
}

/// A copy with one gradient value changed, a running statistic changed, or a parameter renamed fails
/// naming its file.
#[test]
fn a_changed_case_fails_naming_its_file() {
    let cpu = Cpu::<f64>::new();
    let src = fixture_dir().join("rn_w2_l2111_s64_b2_train.json");
    let copy =
        |tag: &str, edit: fn(&mut Value, &mut TensorMap)| scratch_copy(&format!("resnet-{tag}"), &src, "renamed", edit);
    let fails = |dir: PathBuf, why: &str| {
        let err = check_dir(&cpu, &dir, 1e-9).expect_err(why);
        assert!(err.contains("renamed.json") && err.contains(why), "expected `{why}` naming renamed.json: {err}");
        std::fs::remove_dir_all(dir).unwrap();
    };
    fn bump(t: &mut TensorMap, key: &str) {
        t.get_mut(key).unwrap().values[3] += 1e-6;
    }
    fails(copy("grad", |_, t| bump(t, "grad.layer1.1.conv2.weight")), "grad.layer1.1.conv2.weight: relative error");
    fails(copy("running", |_, t| bump(t, "running.layer4.0.downsample.1.running_var")), "running_var: relative error");
    let rename = |_: &mut Value, t: &mut TensorMap| {
        let v = t.remove("param.attnpool.q_proj.bias").unwrap();
        t.insert("param.attnpool.query.bias".into(), v);
    };
    fails(copy("name", rename), "attnpool.q_proj.bias");
}
