//! `--device wgpu` (lavapipe in CI) trains and evaluates like `--device cpu`: 5 steps of the tiny preset
//! give the CPU run's loss per step and final weights within 1e-4 relative, `cloob-eval` gives the same
//! report on either device, and a checkpoint written on wgpu resumes on the CPU and continues the CPU
//! run's curve. Checkpoints hold host data, so they do not depend on the device that wrote them.
#![cfg(feature = "wgpu")]

use cloob::pretrain::checkpoint::load_model;
use hopfield::{Cpu, Parameters};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cloob-device-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(o: Output) -> Output {
    let text = || format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "status {:?}\n{}", o.status.code(), text());
    o
}

/// 5 steps of the tiny preset at batch 32 (the flags `extra` add), in `cwd/logs/<name>`.
fn pretrain(cwd: &Path, name: &str, device: &str, extra: &[&str]) -> Output {
    let flags = ["--steps", "5", "--batch-size", "32", "--eval-size", "40", "--zeroshot-frequency", "0"];
    let more = ["--save-frequency", "0", "--quiet", "--logs", "logs", "--name", name];
    let out = Command::new(env!("CARGO_BIN_EXE_cloob-pretrain"))
        .current_dir(cwd)
        .args(flags)
        .args(more)
        .args(["--device", device])
        .args(extra)
        .output()
        .unwrap();
    ok(out)
}

/// `(step, loss)` of a run's metrics.
fn losses(cwd: &Path, name: &str) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(cwd.join(format!("logs/{name}/metrics.jsonl"))).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-6)
}

fn assert_losses_match(what: &str, got: &[(u64, f64)], want: &[(u64, f64)]) {
    let want: HashMap<u64, f64> = want.iter().copied().collect();
    assert!(!got.is_empty());
    for &(step, loss) in got {
        assert!(close(loss, want[&step], 1e-4), "{what}: step {step} loss {loss} vs the CPU run's {}", want[&step]);
    }
}

/// Every number in two JSON values agrees within `tol` relative (the structure is the same).
fn assert_json_close(path: &str, a: &serde_json::Value, b: &serde_json::Value, tol: f64) {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(close(x, y, tol), "{path}: {x} on wgpu, {y} on the CPU");
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            x.iter().zip(y).enumerate().for_each(|(i, (x, y))| assert_json_close(&format!("{path}[{i}]"), x, y, tol));
        }
        (Object(x), Object(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            x.iter().for_each(|(k, v)| assert_json_close(&format!("{path}.{k}"), v, &y[k], tol));
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn wgpu_trains_and_evaluates_as_the_cpu_and_its_checkpoint_resumes_on_the_cpu() {
    let d = scratch("equal");
    pretrain(&d, "cpu", "cpu", &[]);
    pretrain(&d, "gpu", "wgpu", &["--stop-after", "3"]);
    pretrain(&d, "gpu", "wgpu", &["--resume", "latest"]);
    let cpu = losses(&d, "cpu");
    assert_eq!(cpu.len(), 5);
    assert_losses_match("wgpu run", &losses(&d, "gpu"), &cpu);

    // The final weights, both checkpoints read on the CPU.
    let ckpt = |run: &str| d.join(format!("logs/{run}/checkpoints/step_0000005.json"));
    let host = Cpu::<f32>::new();
    let (m_cpu, _) = load_model(&host, &ckpt("cpu")).unwrap();
    let (m_gpu, _) = load_model(&host, &ckpt("gpu")).unwrap();
    let mut want = HashMap::new();
    m_cpu.visit(&mut |n, t, _| {
        want.insert(n.to_string(), t.clone());
    });
    let mut compared = 0;
    m_gpu.visit(&mut |n, t, _| {
        // Relative in the tensor's L2 norm: Adam's first steps move a weight by about lr whatever its
        // gradient, so an entry whose gradient is near zero may differ by more than its own size.
        let w = &want[n];
        let norm = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
        let diff = w.iter().zip(t.iter()).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
        assert!(diff <= 1e-4 * norm, "{n}: the wgpu run's weights differ by {diff:e} (norm {norm:e})");
        compared += 1;
    });
    assert_eq!(compared, want.len());

    // A wgpu checkpoint continues on the CPU along the CPU run's curve.
    let at3 = d.join("logs/gpu/checkpoints/step_0000003.json");
    pretrain(&d, "mixed", "cpu", &["--resume", at3.to_str().unwrap()]);
    let mixed = losses(&d, "mixed");
    assert_eq!(mixed.iter().map(|l| l.0).collect::<Vec<_>>(), [3, 4], "the resumed run's steps");
    assert_losses_match("wgpu checkpoint resumed on the CPU", &mixed, &cpu);

    // cloob-eval of the wgpu checkpoint on either device.
    let report = |device: &str| {
        let out = d.join(format!("eval-{device}.json"));
        ok(Command::new(env!("CARGO_BIN_EXE_cloob-eval"))
            .args([ckpt("gpu").to_str().unwrap(), "--eval-size", "40", "--device", device])
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap());
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(out).unwrap()).unwrap()
    };
    assert_json_close("report", &report("wgpu"), &report("cpu"), 1e-4);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_device_that_is_missing_is_one_line_and_status_1() {
    let d = scratch("missing");
    // No Vulkan driver and no EGL vendor (wgpu's GL fallback): wgpu finds no adapter.
    let out = Command::new(env!("CARGO_BIN_EXE_cloob-pretrain"))
        .current_dir(&d)
        .args(["--steps", "1", "--quiet", "--logs", "logs", "--device", "wgpu"])
        .env("VK_ICD_FILENAMES", "/nonexistent.json")
        .env("VK_DRIVER_FILES", "/nonexistent.json")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent.json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: wgpu device: ") && err.contains("mesa-vulkan-drivers"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    if !cfg!(feature = "cuda") {
        let out = Command::new(env!("CARGO_BIN_EXE_cloob-eval"))
            .args(["whatever.json", "--device", "cuda:1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cuda device") && err.contains("--features cuda"), "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cloob-pretrain")).args(["--device", "tpu"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cpu, wgpu, cuda or cuda:N"));
    std::fs::remove_dir_all(&d).ok();
}
