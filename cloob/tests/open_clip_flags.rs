//! open_clip's flags with open_clip's meaning (issue 31, item 6), through the binary: `--batch-size` per
//! process with `--accum-freq` multiplying it, a checkpoint of the old meaning resuming with the same
//! global batch, the start-up note on defaults that differ from open_clip's, `--lr-scheduler const` and
//! `--save-most-recent` with pruning and resume.

mod common;

use common::*;
use std::path::Path;

/// `(step, loss, lr)` of each training line of a run's metrics.
fn steps(run: &Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap(), v["lr"].as_f64().unwrap()))
        .collect()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `--batch-size 4 --accum-freq 2` trains on 8 pairs a step (open_clip's meaning, not 4 split in two): the
/// run says so, and its losses are those of `--batch-size 8` without accumulation (the loss is over the
/// whole accumulated batch in both).
#[test]
fn accum_freq_multiplies_the_batch_size() {
    let d = scratch("oc-accum");
    let flags = ["--steps", "3", "--embedded-len", "64"];
    let a = ok(pretrain(&d, &[&flags[..], &["--batch-size", "4", "--accum-freq", "2", "--name", "a"]].concat()));
    assert!(
        stderr(&a).contains("3 steps of 8 pairs (--batch-size 4 × --accum-freq 2 × 1 process(es))"),
        "{}",
        text(&a)
    );
    ok(pretrain(&d, &[&flags[..], &["--batch-size", "8", "--name", "b"]].concat()));
    let (a, b) = (steps(&d.join("logs/a")), steps(&d.join("logs/b")));
    assert_eq!(a.len(), 3);
    for ((sa, la, _), (sb, lb, _)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert!((la - lb).abs() <= 1e-4 * lb.abs(), "step {sa}: {la} vs {lb}");
    }
}

/// A checkpoint written when `--batch-size` was the global total (config version 1: no `config_version`,
/// `batch_size` 8 with `--accum-freq 2`) resumes with `--batch-size 4 --accum-freq 2`, the same 8 pairs a
/// step, and continues the uninterrupted run's losses; the old command line as is (16 pairs now) is
/// refused with the flag that fits.
#[test]
fn an_old_checkpoint_resumes_with_the_same_global_batch() {
    let d = scratch("oc-legacy");
    let run =
        ["--steps", "4", "--embedded-len", "64", "--batch-size", "4", "--accum-freq", "2", "--save-frequency", "2"];
    ok(pretrain(&d, &[&run[..], &["--name", "whole"]].concat()));
    ok(pretrain(&d, &[&run[..], &["--name", "old", "--stop-after", "2"]].concat()));
    // Rewrite the checkpoint as version 1 wrote it.
    let json = d.join("logs/old/checkpoints/step_0000002.json");
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cfg = state["config"].as_object_mut().unwrap();
    assert_eq!(cfg.remove("config_version"), Some(2.into()));
    cfg.remove("world_size");
    cfg.insert("batch_size".into(), 8.into());
    std::fs::write(&json, serde_json::to_string_pretty(&state).unwrap()).unwrap();

    let copied = ["--steps", "4", "--embedded-len", "64", "--batch-size", "8", "--accum-freq", "2"];
    let e = failed(pretrain(&d, &[&copied[..], &["--name", "old", "--resume", "latest"]].concat()), "mismatch");
    assert!(e.contains("global batches of 8 pairs") && e.contains("pass --batch-size 4"), "{e}");
    ok(pretrain(&d, &[&run[..], &["--name", "old", "--resume", "latest"]].concat()));
    let (whole, old) = (steps(&d.join("logs/whole")), steps(&d.join("logs/old")));
    assert_eq!(whole.len(), 4);
    assert_eq!(whole, old, "the resumed run continues the uninterrupted one");
}

/// A fresh run prints one note naming the defaults that differ from open_clip's; with open_clip's values
/// only the unit of the frequencies is left.
#[test]
fn the_start_up_note_names_the_defaults_that_differ_from_open_clips() {
    let d = scratch("oc-note");
    let o = ok(pretrain(&d, &["--name", "a"]));
    let notes: Vec<String> =
        stderr(&o).lines().filter(|l| l.starts_with("note: differs from open_clip")).map(String::from).collect();
    assert_eq!(notes.len(), 1, "{}", text(&o));
    for needle in ["τ⁻¹ fixed at 30", "--learnable-inv-tau", "clipped at 1", "--grad-clip-norm 0", "--lr 0.002"] {
        assert!(notes[0].contains(needle), "{needle}: {}", notes[0]);
    }
    let like = [
        "--name",
        "b",
        "--loss",
        "clip",
        "--learnable-inv-tau",
        "--init-inv-tau",
        "14.2857",
        "--grad-clip-norm",
        "0",
        "--lr",
        "5e-4",
        "--wd",
        "0.2",
        "--warmup",
        "10000",
        "--decay-embeddings",
    ];
    let o = ok(pretrain(&d, &like));
    let note = stderr(&o).lines().find(|l| l.starts_with("note: differs")).unwrap_or_default().to_string();
    assert!(note.contains("count steps") && !note.contains("τ⁻¹") && !note.contains("--lr"), "{note}");
}

/// `--lr-scheduler const`: a linear warmup, then the peak rate to the last step.
#[test]
fn const_scheduler_holds_the_peak_after_the_warmup() {
    let d = scratch("oc-const");
    ok(pretrain(&d, &["--steps", "6", "--warmup", "2", "--lr", "1e-3", "--lr-scheduler", "const", "--name", "c"]));
    let lrs: Vec<f64> = steps(&d.join("logs/c")).iter().map(|s| s.2).collect();
    assert_eq!(lrs.len(), 6);
    assert!((lrs[0] - 5e-4).abs() < 1e-12, "{lrs:?}");
    assert!(lrs[1..].iter().all(|&lr| (lr - 1e-3).abs() < 1e-12), "{lrs:?}");
}

/// `--save-most-recent`: `checkpoints/latest.json` names the newest checkpoint after every save, survives
/// `--keep-checkpoints 1` pruning (it never names a pruned one), and a run resumes from it.
#[test]
fn save_most_recent_links_the_newest_checkpoint() {
    let d = scratch("oc-recent");
    let run = ["--steps", "6", "--save-frequency", "2", "--keep-checkpoints", "1", "--keep-every", "4"];
    ok(pretrain(&d, &[&run[..], &["--name", "r", "--save-most-recent", "--stop-after", "4"]].concat()));
    let ckpts = d.join("logs/r/checkpoints");
    let link = ckpts.join("latest.json");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("step_0000004.json"));
    assert!(!ckpts.join("step_0000002.json").exists(), "pruned by --keep-checkpoints 1");
    // Resumed through the fixed name; the link follows the new saves.
    let resumed = ["--name", "r", "--save-most-recent", "--resume", "logs/r/checkpoints/latest.json"];
    let o = ok(pretrain(&d, &[&run[..], &resumed[..]].concat()));
    assert!(stderr(&o).contains("resumed from") && stderr(&o).contains("at step 4"), "{}", text(&o));
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("step_0000006.json"));
    // The milestone of --keep-every stays, the link's target is complete and loads in cloob-eval.
    assert!(ckpts.join("step_0000004.json").exists());
    ok(eval(&d, &["logs/r/checkpoints/latest.json", "--eval-size", "8", "--no-probe", "--out", "e.json"]));
    // Without the flag no link is made.
    ok(pretrain(&d, &[&run[..], &["--name", "n"]].concat()));
    assert!(!d.join("logs/n/checkpoints/latest.json").exists());
}
