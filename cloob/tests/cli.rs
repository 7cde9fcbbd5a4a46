//! The binaries as a user runs them, on generated CSV data: each test reproduces one of the failures found
//! by trying `cloob-pretrain` / `cloob-eval` with broken input, broken files and unusual flags (issue 18).

mod common;

use common::*;
use std::process::{Command, Stdio};

/// Item 1: `cloob-eval --data csv:TEST` scores TEST, not the validation file the checkpoint was trained
/// with; item 9: the stored paths are absolute, so cloob-eval runs from any folder.
#[test]
fn eval_scores_the_given_file_from_any_folder() {
    let d = scratch("which-file");
    csv(&d.join("train.csv"), &captioned(&images(&d, "t", 8)));
    csv(&d.join("val.csv"), &captioned(&images(&d, "v", 3)));
    csv(&d.join("test.csv"), &captioned(&images(&d, "s", 5)));
    ok(pretrain(&d, &["--name", "r", "--data", "csv:train.csv", "--val-data", "val.csv"]));
    let ckpt = d.join("logs/r/checkpoints/step_0000002.json");
    let stored = std::fs::read_to_string(&ckpt).unwrap();
    assert!(stored.contains(&d.join("train.csv").display().to_string()), "{stored}");
    assert!(stored.contains(&d.join("val.csv").display().to_string()), "{stored}");

    let elsewhere = std::env::temp_dir();
    let test_csv = format!("csv:{}", d.join("test.csv").display());
    let out = ok(eval(&elsewhere, &[ckpt.to_str().unwrap(), "--data", &test_csv, "--no-probe"]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("logs/r/checkpoints/eval-csv-test.json")).unwrap())
            .unwrap();
    assert_eq!(report["sets"][0]["n"], 5, "{}", text(&out));
    // Without --data: the checkpoint's own validation file, found although the run used relative paths.
    ok(eval(&elsewhere, &[ckpt.to_str().unwrap(), "--no-probe", "--out", d.join("own.json").to_str().unwrap()]));
    let own: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("own.json")).unwrap()).unwrap();
    assert_eq!(own["sets"][0]["n"], 3);
    std::fs::remove_dir_all(&d).ok();
}

/// Item 2: a fresh run refuses a folder holding another run (its metrics and checkpoints stay), a run
/// rejected for its data writes nothing, and `--overwrite` starts over.
#[test]
fn a_run_folder_belongs_to_one_run() {
    let d = scratch("owner");
    csv(&d.join("train.csv"), &captioned(&images(&d, "t", 6)));
    csv(&d.join("tiny.csv"), &captioned(&images(&d, "x", 3)));
    ok(pretrain(&d, &["--name", "victim", "--data", "csv:train.csv"]));
    let metrics = d.join("logs/victim/metrics.jsonl");
    let before = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(before.lines().filter(|l| l.contains("\"loss\"")).count(), 2);

    let err =
        failed(pretrain(&d, &["--name", "victim", "--data", "csv:train.csv", "--seed", "5"]), "already holds a run");
    assert!(err.contains("--overwrite") && err.contains("step_0000002.json"), "{err}");
    failed(pretrain(&d, &["--name", "victim", "--data", "csv:tiny.csv", "--overwrite"]), "fewer than one batch");
    failed(pretrain(&d, &["--name", "victim", "--lr=-1"]), "--lr");
    assert_eq!(std::fs::read_to_string(&metrics).unwrap(), before, "a rejected run leaves the old run alone");
    assert!(d.join("logs/victim/checkpoints/step_0000002.json").exists());

    ok(pretrain(&d, &["--name", "victim", "--data", "csv:train.csv", "--steps", "1", "--overwrite"]));
    assert!(!d.join("logs/victim/checkpoints/step_0000002.json").exists(), "the old run is gone");
    assert!(d.join("logs/victim/checkpoints/step_0000001.json").exists());
    std::fs::remove_dir_all(&d).ok();
}

/// Item 5: fewer usable pairs than a batch is an error before training, whether the rows are bad or their
/// images are missing; nothing is written.
#[test]
fn too_little_data_for_one_batch_stops_before_training() {
    let d = scratch("small");
    let mut rows = captioned(&images(&d, "t", 3));
    csv(&d.join("three.csv"), &rows);
    let err = failed(pretrain(&d, &["--name", "a", "--data", "csv:three.csv"]), "3 usable pair(s)");
    assert!(err.contains("--batch-size 4"), "{err}");
    rows.push(("img/missing-1.png".into(), "gone".into()));
    rows.push(("img/missing-2.png".into(), "gone too".into()));
    csv(&d.join("holes.csv"), &rows);
    let err = failed(pretrain(&d, &["--name", "b", "--data", "csv:holes.csv"]), "fewer than one batch of 4");
    assert!(err.contains("2 missing images"), "{err}");
    assert!(!d.join("logs/a").exists() && !d.join("logs/b").exists(), "nothing is written");
    std::fs::remove_dir_all(&d).ok();
}

/// Items 4 and 8: a warmup longer than the run is shortened with a note; the final checkpoint is written
/// before the final evaluation, whose failure (here: a model diverged to NaN) keeps it.
#[test]
fn warmup_is_clamped_and_a_failed_final_evaluation_keeps_the_checkpoint() {
    let d = scratch("final");
    csv(&d.join("train.csv"), &captioned(&images(&d, "t", 6)));
    let o = ok(pretrain(&d, &["--name", "w", "--data", "csv:train.csv", "--warmup", "30"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("note: --warmup 30 is not shorter than the run's 2 steps"));
    // One step with an absurd learning rate: its forward pass still sees the initial weights, the update
    // overflows them, and the final evaluation meets NaN embeddings.
    let args = ["--name", "nan", "--data", "csv:train.csv", "--lr", "1e30", "--warmup", "0", "--steps", "1"];
    let err = failed(pretrain(&d, &args), "evaluation at step 1 failed");
    assert!(err.contains("step_0000001.json"), "{err}");
    assert!(d.join("logs/nan/checkpoints/step_0000001.json").exists(), "the last checkpoint is saved first");
    std::fs::remove_dir_all(&d).ok();
}

/// Item 6: zero-shot classification on the user's classes, with the skipped images counted.
#[test]
fn eval_classifies_the_users_own_classes() {
    let d = scratch("classes");
    let paths = images(&d, "t", 8);
    csv(&d.join("train.csv"), &captioned(&paths));
    ok(pretrain(&d, &["--name", "c", "--data", "csv:train.csv"]));
    let labelled: Vec<(String, String)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), ["red thing", "Blue thing", "1", "unknown"][i % 4].to_string()))
        .chain([("img/absent.png".to_string(), "red thing".to_string())])
        .collect();
    csv(&d.join("labelled.csv"), &labelled);
    std::fs::write(d.join("classes.txt"), "red thing\nblue thing\n").unwrap();
    std::fs::write(d.join("templates.txt"), "a photo of a {}.\n{} in a picture\n").unwrap();
    let ckpt = "logs/c/checkpoints/step_0000002.json";
    let o =
        ok(eval(&d, &[ckpt, "--data", "csv:labelled.csv", "--classes", "classes.txt", "--templates", "templates.txt"]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("classes: 6 images scored, 2 with a caption naming no class left out"), "{out}");
    assert!(out.contains("red thing") && out.contains("blue thing") && out.contains("top-5"), "{out}");
    assert!(out.contains("skipped while reading: 0 bad rows, 1 missing images"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("logs/c/checkpoints/eval-csv-labelled.json")).unwrap())
            .unwrap();
    let set = &report["sets"][0];
    assert_eq!(set["zero_shot"]["classes"]["n"], 6);
    assert_eq!(set["per_class"]["classes"][1]["n"], 4, "captions `Blue thing` and `1`");
    assert_eq!(set["skipped"]["missing_images"], 1);
    // Default templates (open_clip's ImageNet set), and the CSV flags of cloob-pretrain.
    std::fs::write(d.join("semi.csv"), "cls;path\nred thing;img/t0.png\n0;img/t1.png\nblue thing;img/t2.png\n")
        .unwrap();
    let o = ok(eval(
        &d,
        &[
            ckpt,
            "--data",
            "csv:semi.csv",
            "--classes",
            "classes.txt",
            "--csv-separator",
            ";",
            "--csv-img-key",
            "path",
            "--csv-caption-key",
            "cls",
            "--no-probe",
        ],
    ));
    assert!(String::from_utf8_lossy(&o.stdout).contains("classes: 3 images scored"), "{}", text(&o));
    failed(eval(&d, &[ckpt, "--data", "csv:train.csv", "--classes", "classes.txt"]), "names a class");
    std::fs::remove_dir_all(&d).ok();
}

/// Item 9: a closed stdout pipe (`| head -1`) is no panic, and the report is written before printing.
#[test]
fn eval_into_a_closed_pipe_exits_cleanly_with_its_report() {
    let d = scratch("pipe");
    csv(&d.join("train.csv"), &captioned(&images(&d, "t", 6)));
    ok(pretrain(&d, &["--name", "p", "--data", "csv:train.csv"]));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloob-eval"))
        .current_dir(&d)
        .args(["logs/p/checkpoints/step_0000002.json", "--out", "r.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(d.join("r.json").exists());
    std::fs::remove_dir_all(&d).ok();
}

/// Item 9: what a killed save leaves (temporary files, weights without their JSON) is removed when the run
/// resumes, and `--resume latest` ignores it.
#[test]
fn leftovers_of_a_killed_save_are_cleaned_up_on_resume() {
    let d = scratch("leftovers");
    csv(&d.join("train.csv"), &captioned(&images(&d, "t", 6)));
    ok(pretrain(&d, &["--name", "k", "--data", "csv:train.csv", "--steps", "3", "--stop-after", "1"]));
    let ck = d.join("logs/k/checkpoints");
    for junk in ["step_0000002.safetensors", "step_0000002.optim.safetensors.tmp", "step_0000002.json.tmp"] {
        std::fs::write(ck.join(junk), b"partial").unwrap();
    }
    std::fs::write(ck.join("notes.txt"), b"mine").unwrap();
    let o = ok(pretrain(&d, &["--name", "k", "--data", "csv:train.csv", "--steps", "3", "--resume", "latest"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resumed from"), "{}", text(&o));
    let mut left: Vec<String> =
        std::fs::read_dir(&ck).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(
        left,
        [
            "notes.txt",
            "step_0000001.json",
            "step_0000001.optim.safetensors",
            "step_0000001.safetensors",
            "step_0000003.json",
            "step_0000003.optim.safetensors",
            "step_0000003.safetensors"
        ]
    );
    std::fs::remove_dir_all(&d).ok();
}

/// Items 3 and 10: a stray quote in a caption costs one row (the summary counts every line), and the
/// plots of a CSV run list only files that exist (a CSV has no zero-shot task).
#[test]
fn a_stray_quote_costs_one_row_and_plots_are_only_listed_when_drawn() {
    let d = scratch("quote");
    let mut rows = captioned(&images(&d, "t", 12));
    rows[3].1 = "\"5 inch screen, never closed".into();
    csv(&d.join("train.csv"), &rows);
    let o = ok(pretrain(&d, &["--name", "q", "--data", "csv:train.csv"]));
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(err.contains("(12 rows, 11 usable before decoding;"), "{err}");
    assert!(out.contains("1 bad rows") && out.contains("line 5: a quote opened on this line is never closed"), "{out}");
    let plots: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("plot:")).map(str::trim).collect();
    assert!(!plots.is_empty() && plots.iter().all(|p| d.join(p).exists()), "{out}");
    assert!(!plots.iter().any(|p| p.ends_with("zero_shot.png")), "{out}");
    std::fs::remove_dir_all(&d).ok();
}
