//! Data parallelism on MPI: `mpiexec -n 2 cloob-pretrain --batch-size 16` (per process, open_clip's
//! meaning: a global batch of 32) takes the steps one process takes at `--batch-size 32` (losses and final
//! parameters within 1e-5 relative in f32), for CLOOB's and CLIP's losses and with gradient accumulation
//! (`--accum-freq 2`: 8 pairs per rank and micro-batch); a failing rank stops the job.
//!
//! Needs an MPI (`mpiexec` on the PATH; Debian: openmpi-bin, libopenmpi-dev) and runs only with
//! `--features mpi`; `.ci/run` installs both and runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cloob-dist-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `cloob-pretrain` with `ranks` processes (1: without mpiexec), one thread each, 5 steps of 32 pairs in
/// all: `--batch-size` 32 / (ranks × `--accum-freq`) unless `extra` gives it.
fn command(ranks: usize, logs: &Path, name: &str, extra: &[&str]) -> Command {
    let accum = extra.iter().position(|&f| f == "--accum-freq").map_or(1, |i| extra[i + 1].parse::<usize>().unwrap());
    let batch = (32 / (ranks * accum)).to_string();
    let bin = env!("CARGO_BIN_EXE_cloob-pretrain");
    let mut c = if ranks == 1 {
        Command::new(bin)
    } else {
        let mut c = Command::new("mpiexec");
        c.args(["-n", &ranks.to_string(), bin]);
        c
    };
    let defaults = [("--steps", "5"), ("--batch-size", batch.as_str()), ("--warmup", "1"), ("--eval-size", "2")];
    c.args(defaults.iter().filter(|(flag, _)| !extra.contains(flag)).flat_map(|&(f, v)| [f, v]))
        .args(["--embedded-len", "200", "--zeroshot-frequency", "0", "--save-frequency", "0", "--quiet"])
        .args(["--name", name])
        .arg("--logs")
        .arg(logs)
        .args(extra)
        // One thread per rank; OpenMPI refuses root without these (CI containers run as root) and may
        // count fewer slots than ranks.
        .envs([("RAYON_NUM_THREADS", "1")])
        .envs([("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")])
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    c
}

fn text(o: &Output) -> String {
    format!("status {:?}\n{}\n{}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn losses(logs: &Path, name: &str) -> Vec<f64> {
    std::fs::read_to_string(logs.join(name).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64())
        .collect()
}

fn weights(logs: &Path, name: &str) -> hopfield::io::TensorMap {
    let bytes = std::fs::read(logs.join(name).join("checkpoints/step_0000005.safetensors")).unwrap();
    hopfield::io::decode_safetensors(&bytes, "test").unwrap()
}

/// One process and two ranks give the same run; returns both runs' output.
fn same_run(case: &str, extra: &[&str]) -> [Output; 2] {
    let logs = scratch(case);
    let outputs = [(1, "one"), (2, "two")].map(|(ranks, name)| {
        let o = command(ranks, &logs, name, extra).output().unwrap();
        assert!(o.status.success(), "{ranks} rank(s): {}", text(&o));
        o
    });
    let (a, b) = (losses(&logs, "one"), losses(&logs, "two"));
    assert_eq!(a.len(), 5);
    assert_eq!(b.len(), 5, "rank 0 alone logs each step once");
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "{case}: step {step}: loss {x} (one process) vs {y} (two ranks)");
    }
    // Parameters: each tensor's difference (L2) within 1e-5 of the norm of all parameters. A per-entry
    // bound relative to each tensor would compare noise with noise: a key bias has a zero gradient in exact
    // arithmetic (softmax ignores it), so AdamW moves it by rounding noise, differently for any change in
    // the order of sums; a real error moves whole tensors by about the learning rate and fails here by
    // orders of magnitude.
    let (wa, wb) = (weights(&logs, "one"), weights(&logs, "two"));
    assert_eq!(wa.len(), wb.len());
    let norm = wa.values().flat_map(|t| &t.values).map(|v| v * v).sum::<f64>().sqrt();
    let mut worst = (0.0f64, String::new());
    for (name, ta) in &wa {
        let tb = &wb[name];
        assert_eq!(ta.shape, tb.shape, "{name}");
        let diff = ta.values.iter().zip(&tb.values).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt() / norm;
        if diff > worst.0 {
            worst = (diff, name.clone());
        }
    }
    eprintln!("{case}: largest parameter difference {:e} of the parameters' norm, in {}", worst.0, worst.1);
    assert!(worst.0 <= 1e-5, "{case}: parameter {} differs by {:e} of the parameters' norm", worst.1, worst.0);
    std::fs::remove_dir_all(&logs).ok();
    outputs
}

#[test]
fn two_ranks_equal_one_process_cloob() {
    same_run("cloob", &["--loss", "cloob"]);
}

#[test]
fn two_ranks_equal_one_process_clip() {
    same_run("clip", &["--loss", "clip", "--learnable-inv-tau"]);
}

#[test]
fn two_ranks_equal_one_process_with_accumulation() {
    same_run("accum", &["--loss", "cloob", "--accum-freq", "2"]);
}

/// A locked image tower but its last group, with accumulation: frozen tensors have empty gradients, which
/// the all-reduce passes over; the trainable ones are summed as without a lock.
#[test]
fn two_ranks_equal_one_process_with_a_locked_image_tower() {
    same_run("lock", &["--loss", "cloob", "--accum-freq", "2", "--lock-image", "--lock-image-unlocked-groups", "2"]);
}

/// On a CSV, each of two ranks decodes its 16 rows of each global batch of 32 (80 for 5 steps) and only
/// rank 0 reads the evaluation set; one process decodes all 160. The run equals the one-process run.
#[test]
fn two_ranks_on_a_csv_decode_their_rows_only_and_equal_one_process() {
    let data = scratch("csv-data");
    std::fs::create_dir_all(data.join("img")).unwrap();
    let mut csv = String::from("filepath\ttitle\n");
    for i in 0..48u32 {
        let img = image::RgbImage::from_fn(40 + i % 9, 34, |x, y| {
            image::Rgb([(x * 5 + i) as u8, (y * 7) as u8, (i * 5) as u8])
        });
        img.save(data.join(format!("img/{i:02}.jpg"))).unwrap();
        csv +=
            &format!("img/{i:02}.jpg\t{} shape number {i}\n", ["a red", "a green", "a blue", "a grey"][i as usize % 4]);
    }
    std::fs::write(data.join("train.csv"), csv).unwrap();
    let spec = format!("csv:{}", data.join("train.csv").display());
    let [one, two] = same_run("csv", &["--loss", "cloob", "--data", &spec, "--workers", "1"]);
    let (out1, out2) = (String::from_utf8_lossy(&one.stdout), String::from_utf8_lossy(&two.stdout));
    assert!(out1.contains("decoded: 160 training images, 2 evaluation images (this process)"), "{}", text(&one));
    assert!(out2.contains("decoded: 80 training images, 2 evaluation images (this process, rank 0)"), "{}", text(&two));
    let err2 = String::from_utf8_lossy(&two.stderr);
    assert!(err2.contains("rank 1: decoded 80 training images, read 0 evaluation images"), "{}", text(&two));
    std::fs::remove_dir_all(&data).ok();
}

#[test]
fn a_failing_rank_stops_the_other_within_30_s() {
    for (who, case) in [("1:2", "fail-1"), ("0:1", "fail-0")] {
        let logs = scratch(case);
        let started = Instant::now();
        let mut child = command(2, &logs, "f", &["--fail-at", who, "--steps", "50"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let waited = started.elapsed();
        eprintln!("rank {who} failing: the job stopped after {waited:?}");
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        assert!(!o.status.success(), "{who}: {}", text(&o));
        assert!(waited < Duration::from_secs(30), "{who}: the job took {waited:?} to stop");
        let rank = &who[..1];
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("rank {rank}: failing before step")), "{who}: {}", text(&o));
        std::fs::remove_dir_all(&logs).ok();
    }
}

/// open_clip's meaning: `--batch-size 3 --accum-freq 2` on 2 ranks steps on 12 pairs (any per-process
/// size works; before, the global batch had to split into ranks × micro-batches of equal size).
#[test]
fn the_global_batch_is_batch_size_times_accum_freq_times_ranks() {
    let logs = scratch("split");
    let o = command(2, &logs, "s", &["--batch-size", "3", "--accum-freq", "2", "--steps", "2"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 steps of 12 pairs (--batch-size 3 × --accum-freq 2 × 2 process(es))"), "{}", text(&o));
    std::fs::remove_dir_all(&logs).ok();
}

#[test]
fn ranks_with_different_settings_stop_at_start_up() {
    let logs = scratch("mismatch");
    let bin = env!("CARGO_BIN_EXE_cloob-pretrain");
    let logs_s = logs.display().to_string();
    let args = ["--steps", "2", "--batch-size", "8", "--quiet", "--name", "m", "--logs", &logs_s];
    // MPMD launch: rank 0 and rank 1 get different seeds.
    let o = Command::new("mpiexec")
        .args(["-n", "1", bin, "--seed", "0"])
        .args(args)
        .args([":", "-n", "1", bin, "--seed", "1"])
        .args(args)
        .envs([("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")])
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rank 1 differs from rank 0") && err.contains("\"seed\":1"), "{}", text(&o));
    assert!(!logs.join("m").exists(), "rank 0 stops before writing anything");
    std::fs::remove_dir_all(&logs).ok();
}

#[test]
fn a_two_rank_run_resumes_bit_for_bit() {
    let logs = scratch("resume");
    let o = command(2, &logs, "full", &[]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = command(2, &logs, "cut", &["--stop-after", "2"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = command(2, &logs, "cut", &["--resume", "latest"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let bits = |name| losses(&logs, name).iter().map(|l| l.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits("cut"), bits("full"));
    assert_eq!(weights(&logs, "cut"), weights(&logs, "full"));
    std::fs::remove_dir_all(&logs).ok();
}
