//! Watching a run (issue 31, items 4 and 5): TensorBoard event files read back by an independent reader
//! (its own CRC-32C and protobuf decoding), progress and evaluation lines when stderr is not a terminal, plots
//! redrawn at each evaluation, and diagnostics whose failure is reported while the run goes on.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), bit by bit: independent of the writer's crate.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

fn masked(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One decoded `Event`.
#[derive(Debug, Default)]
struct Event {
    step: i64,
    wall_time: f64,
    file_version: Option<String>,
    scalars: Vec<(String, f32)>,
    session_start: bool,
}

fn varint(b: &mut &[u8]) -> u64 {
    let mut v = 0;
    for shift in (0..64).step_by(7) {
        let byte = b[0];
        *b = &b[1..];
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
    }
    v
}

/// `(field, wire type, varint or fixed value, length-delimited bytes)` of each field of a message.
fn fields(mut b: &[u8]) -> Vec<(u64, u64, u64, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((field, wire, varint(&mut b), &b[..0])),
            1 => {
                out.push((field, wire, u64::from_le_bytes(b[..8].try_into().unwrap()), &b[..0]));
                b = &b[8..];
            }
            5 => {
                out.push((field, wire, u64::from(u32::from_le_bytes(b[..4].try_into().unwrap())), &b[..0]));
                b = &b[4..];
            }
            2 => {
                let n = varint(&mut b) as usize;
                out.push((field, wire, 0, &b[..n]));
                b = &b[n..];
            }
            w => panic!("wire type {w} in an event"),
        }
    }
    out
}

/// Every record of an event file, checksums checked, decoded.
fn read_events(path: &Path) -> Vec<Event> {
    let bytes = std::fs::read(path).unwrap();
    let (mut at, mut events) = (0, Vec::new());
    while at < bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        assert_eq!(u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()), masked(&bytes[at..at + 8]));
        let data = &bytes[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(crc, masked(data), "record at byte {at} of {}", path.display());
        at += 16 + len;
        let mut e = Event::default();
        for (field, _, v, sub) in fields(data) {
            match field {
                1 => e.wall_time = f64::from_bits(v),
                2 => e.step = v as i64,
                3 => e.file_version = Some(String::from_utf8(sub.to_vec()).unwrap()),
                5 => {
                    for (_, _, _, value) in fields(sub).into_iter().filter(|f| f.0 == 1) {
                        let (mut tag, mut x) = (String::new(), f32::NAN);
                        for (f, _, v, s) in fields(value) {
                            match f {
                                1 => tag = String::from_utf8(s.to_vec()).unwrap(),
                                2 => x = f32::from_bits(v as u32),
                                _ => {}
                            }
                        }
                        e.scalars.push((tag, x));
                    }
                }
                7 => e.session_start = fields(sub).iter().any(|f| f.0 == 1 && f.2 == 1),
                _ => {}
            }
        }
        events.push(e);
    }
    events
}

/// Every event file of the run, in name order (TensorBoard's).
fn event_files(run: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(run.join("tensorboard"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."))
        .collect();
    files.sort();
    files
}

/// tag → steps (in file order) over all files.
fn steps_by_tag(files: &[std::path::PathBuf]) -> BTreeMap<String, Vec<i64>> {
    let mut tags = BTreeMap::<String, Vec<i64>>::new();
    for f in files {
        let events = read_events(f);
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"), "{}", f.display());
        assert!(events.iter().all(|e| e.wall_time > 1.6e9), "wall times are seconds since 1970");
        for e in &events {
            for (tag, v) in &e.scalars {
                assert!(v.is_finite(), "{tag} at {}: {v}", e.step);
                tags.entry(tag.clone()).or_default().push(e.step);
            }
        }
    }
    tags
}

const TRAIN_TAGS: [&str; 7] = [
    "train/loss",
    "train/lr",
    "train/inv_tau",
    "train/grad_norm",
    "train/samples_per_second",
    "train/epoch",
    "train/comm_seconds",
];

fn run_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--name",
        name,
        "--data",
        "embedded",
        "--embedded-len",
        "64",
        "--batch-size",
        "4",
        "--eval-size",
        "8",
        "--zeroshot-frequency",
        "50",
        "--save-frequency",
        "50",
        "--logs",
        "logs",
        "--report-to",
        "tensorboard",
        "--log-every-n-steps",
        "25",
    ];
    a.extend_from_slice(extra);
    a
}

/// A 100-step run with `--report-to tensorboard` under a pipe: every training scalar at every step 1..=100
/// (the loss equal to metrics.jsonl's), every evaluation figure at steps 50 and 100; progress lines every
/// 25 steps and both evaluations on stderr; the plots drawn by the first evaluation already.
#[test]
fn a_100_step_run_writes_every_scalar_and_logs_lines_under_a_pipe() {
    assert_eq!(crc32c(b"123456789"), 0xe306_9283, "RFC 3720's check value");
    let d = scratch("tb100");
    let o = ok(run(env!("CARGO_BIN_EXE_cloob-pretrain"), &d, &run_args("tb", &["--steps", "100"])));
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let run_dir = d.join("logs/tb");
    let files = event_files(&run_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(out.contains(&format!("tensorboard: logs/tb/tensorboard/{name}")), "{out}");
    let tags = steps_by_tag(&files);
    for tag in TRAIN_TAGS {
        assert_eq!(tags.get(tag), Some(&(1..=100).collect::<Vec<_>>()), "{tag}");
    }
    let evals: Vec<&String> = tags.keys().filter(|t| t.starts_with("eval/")).collect();
    for tag in &evals {
        assert_eq!(tags[*tag], [50, 100], "{tag}");
    }
    for needle in ["zero_shot_mean_top1", "/top1", "/top5", "retrieval/image_to_text_R@1", "text_to_image_R@10"] {
        assert!(evals.iter().any(|t| t.contains(needle)), "{needle} in {evals:?}");
    }
    for needle in ["image_to_text_median_rank", "image_eigen_99", "text_ajne", "image_uniformity", "alignment"] {
        assert!(evals.iter().any(|t| t.contains(needle)), "{needle} in {evals:?}");
    }
    // The loss in the events is the JSONL's (as f32, TensorBoard's simple_value).
    let jsonl = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let losses: Vec<f32> = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
        .map(|l| l as f32)
        .collect();
    let events = read_events(&files[0]);
    let logged: Vec<f32> =
        events.iter().flat_map(|e| e.scalars.iter().filter(|(t, _)| t == "train/loss").map(|&(_, v)| v)).collect();
    assert_eq!(logged, losses);
    // Under a pipe: progress lines at steps 1, 25, 50, 75, 100 and both evaluations as they happen.
    let steps: Vec<&str> = err.lines().filter(|l| l.starts_with("step ") && l.contains(" loss ")).collect();
    assert_eq!(steps.len(), 5, "{err}");
    for (line, n) in steps.iter().zip(["1/100", "25/100", "50/100", "75/100", "100/100"]) {
        assert!(
            line.starts_with(&format!("step {n} ")) && line.contains("samples/s") && line.contains("τ⁻¹"),
            "{line}"
        );
    }
    let first_eval = err.find("evaluation at step 50: mean zero-shot top-1").expect("the first evaluation is logged");
    assert!(err[first_eval..].contains("retrieval i→t R@1/5/10"), "{err}");
    assert!(err.find("step 75/100").unwrap() > first_eval, "the evaluation is printed when it happens:\n{err}");
    let last = err.find("evaluation at step 100: mean zero-shot top-1").expect("the last evaluation is logged");
    assert!(!err[last..].contains("retrieval"), "its table is the summary's, on stdout, not twice:\n{err}");
    assert!(out.contains("retrieval i→t R@1/5/10"), "{out}");
    assert!(run_dir.join("plots/zero_shot.png").exists() && run_dir.join("plots/loss.png").exists());
    std::fs::remove_dir_all(&d).ok();
}

/// A run that died after its checkpoint at step 50 (at step 70) and was resumed: the earlier event file is
/// cut after step 50, the new one sorts after it and starts at 51 with a SessionLog START; every step of the
/// run appears exactly once over the two files.
#[test]
fn a_resumed_run_appends_a_new_event_file_without_duplicating_or_losing_steps() {
    let d = scratch("tbresume");
    let args = run_args("r", &["--steps", "100", "--fail-at", "0:70", "--quiet"]);
    failed(run(env!("CARGO_BIN_EXE_cloob-pretrain"), &d, &args), "failing before step 70");
    let run_dir = d.join("logs/r");
    let before = steps_by_tag(&event_files(&run_dir));
    assert_eq!(before["train/loss"], (1..=70).collect::<Vec<_>>(), "the dead run wrote up to its last step");
    let args = run_args("r", &["--steps", "100", "--resume", "latest", "--quiet"]);
    ok(run(env!("CARGO_BIN_EXE_cloob-pretrain"), &d, &args));
    let files = event_files(&run_dir);
    assert_eq!(files.len(), 2, "{files:?}");
    let tags = steps_by_tag(&files);
    for tag in TRAIN_TAGS {
        assert_eq!(tags[tag], (1..=100).collect::<Vec<_>>(), "{tag}");
    }
    assert_eq!(tags["eval/zero_shot_mean_top1"], [50, 100]);
    let second = read_events(&files[1]);
    assert!(second[1].session_start && second[1].step == 51, "{:?}", second[1]);
    std::fs::remove_dir_all(&d).ok();
}

/// Item 5: a diagnostic that fails (here made to, the test aid `--fail-diagnostic`) is reported as failed
/// with its error in the metrics' evaluation and in cloob-eval's report, said in one line, and the run and
/// the evaluation go on: zero-shot, retrieval and the other diagnostics still come.
#[test]
fn a_failing_diagnostic_is_reported_and_the_run_goes_on() {
    let d = scratch("diag");
    let args = [
        "--name",
        "g",
        "--data",
        "embedded",
        "--embedded-len",
        "32",
        "--batch-size",
        "4",
        "--eval-size",
        "8",
        "--steps",
        "4",
        "--zeroshot-frequency",
        "2",
        "--logs",
        "logs",
        "--quiet",
        "--fail-diagnostic",
        "image-eigenvalues",
    ];
    let o = ok(run(env!("CARGO_BIN_EXE_cloob-pretrain"), &d, &args));
    let err = String::from_utf8_lossy(&o.stderr);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("diagnostic image-eigenvalues")).collect();
    assert_eq!(said.len(), 2, "one line per evaluation:\n{err}");
    assert!(said[0].starts_with("step 2: ") && said[0].contains("failing as asked") && said[0].contains("goes on"));
    let jsonl = std::fs::read_to_string(d.join("logs/g/metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("eval").is_some())
        .collect();
    assert_eq!(evals.len(), 2);
    for e in &evals {
        let set = &e["eval"]["sets"][0];
        assert_eq!(set["failed"][0]["diagnostic"], "image-eigenvalues", "{set}");
        assert!(set["failed"][0]["error"].as_str().unwrap().contains("failing as asked"));
        assert!(set["embedding"]["image_eigen_99"].is_null());
        assert!(set["embedding"]["text_eigen_99"].as_u64().is_some_and(|n| n >= 1), "{set}");
        assert!(set["embedding"]["alignment"].as_f64().is_some());
        assert!(set["retrieval"]["image_to_text"][0].as_f64().is_some());
        assert!(!set["zero_shot"].as_object().unwrap().is_empty());
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains("failed: image-eigenvalues"));

    let ckpt = d.join("logs/g/checkpoints/step_0000004.json");
    let report = d.join("report.json");
    let args = [ckpt.to_str().unwrap(), "--eval-size", "8", "--out", report.to_str().unwrap()];
    let o = ok(eval(&d, &[&args[..], &["--fail-diagnostic", "text-ajne"]].concat()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("diagnostic text-ajne on"), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let set = &r["sets"][0];
    assert_eq!(set["failed"][0]["diagnostic"], "text-ajne");
    assert!(set["embedding"]["text_ajne"].is_null() && set["embedding"]["image_ajne"].as_f64().is_some());
    // Without the test aid nothing fails, and the report has no `failed` list.
    ok(eval(&d, &args));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(r["sets"][0].get("failed").is_none() && r["sets"][0]["embedding"]["text_ajne"].as_f64().is_some());
    std::fs::remove_dir_all(&d).ok();
}
