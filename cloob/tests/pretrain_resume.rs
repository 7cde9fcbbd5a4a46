//! Checkpoints: a run interrupted after k steps and resumed gives the same losses, bit for bit, as the
//! uninterrupted run; truncated, corrupt or mismatched checkpoints are clear errors that load nothing.
//! A micro model on the embedded set keeps it to seconds.

use cloob::model::ClipConfig;
use cloob::pretrain::checkpoint::{self, latest};
use cloob::pretrain::{train, RunConfig, RunOptions};

/// A run small enough for a test: the tiny preset, batch 16 in two micro-batches, a learnable τ, 6 steps.
fn micro(name: &str, logs: &std::path::Path) -> RunConfig {
    RunConfig {
        model_preset: "tiny".into(),
        batch_size: 16,
        steps: 6,
        warmup: 2,
        embedded_len: 40,
        eval_size: 40,
        eval_every: 0,
        save_every: 0,
        accum_freq: 2,
        learnable_inv_tau: true,
        logs: logs.to_path_buf(),
        name: name.into(),
        ..RunConfig::default()
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cloob-resume-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    d
}

#[test]
fn interrupted_and_resumed_run_matches_the_uninterrupted_one_bit_for_bit() {
    let logs = tmp("exact");
    let quiet = RunOptions { no_eval: true, ..RunOptions::default() };
    let full = train(&micro("full", &logs), &quiet).unwrap();
    assert_eq!(full.losses.len(), 6);
    // The temperature is learnable and gradients accumulate, so τ and every moment must survive.
    let cut = train(&micro("cut", &logs), &RunOptions { stop_after: Some(3), ..quiet.clone() }).unwrap();
    assert_eq!(cut.steps, 3);
    let resumed = train(&micro("cut", &logs), &RunOptions { resume: Some("latest".into()), ..quiet.clone() }).unwrap();
    let stitched: Vec<u64> = cut.losses.iter().chain(&resumed.losses).map(|(_, l)| l.to_bits()).collect();
    let uninterrupted: Vec<u64> = full.losses.iter().map(|(_, l)| l.to_bits()).collect();
    assert_eq!(
        stitched,
        uninterrupted,
        "losses {:?} vs {:?}",
        cut.losses.iter().chain(&resumed.losses).collect::<Vec<_>>(),
        full.losses
    );
    // The metrics file of the resumed run holds each step once.
    let lines = std::fs::read_to_string(resumed.metrics).unwrap();
    assert_eq!(lines.lines().filter(|l| l.contains("\"loss\"")).count(), 6);
    std::fs::remove_dir_all(&logs).ok();
}

#[test]
fn truncated_corrupt_and_mismatched_checkpoints_are_clear_errors() {
    let logs = tmp("corrupt");
    let quiet = RunOptions { no_eval: true, stop_after: Some(2), ..RunOptions::default() };
    let cfg = micro("c", &logs);
    let run = train(&cfg, &quiet).unwrap();
    let json = run.checkpoint.unwrap();
    assert_eq!(latest(&logs.join("c/checkpoints")).as_deref(), Some(json.as_path()));
    let state = checkpoint::read_state(&json).unwrap();
    let weights = json.with_file_name(&state.weights.file);
    let good = std::fs::read(&weights).unwrap();
    let notes = std::cell::RefCell::new(Vec::new());
    let resume = |c: &RunConfig| {
        checkpoint::resume::<hopfield::Cpu<f32>>(&hopfield::Cpu::new(), &json, c, 6, &|n| notes.borrow_mut().push(n))
            .map(|_| ())
    };

    resume(&cfg).unwrap();
    assert!(notes.borrow().is_empty());
    // The optimiser settings documented as safe to change resume with a note.
    resume(&RunConfig { lr: cfg.lr / 2.0, grad_clip_norm: Some(0.5), ..cfg.clone() }).unwrap();
    let said = notes.borrow().join("\n");
    assert!(said.contains("lr") && said.contains("grad_clip_norm"), "{said}");
    std::fs::write(&weights, &good[..good.len() / 2]).unwrap();
    let e = resume(&cfg).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    std::fs::write(&weights, &flipped).unwrap();
    let e = resume(&cfg).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "{e}");
    std::fs::write(&weights, &good).unwrap();
    let e = resume(&RunConfig { loss: cloob::loss::LossKind::Clip, ..cfg.clone() }).unwrap_err().to_string();
    assert!(e.contains("mismatch") && e.contains("loss"), "{e}");
    let e = resume(&RunConfig { batch_size: 8, ..cfg.clone() }).unwrap_err().to_string();
    assert!(e.contains("mismatch") && e.contains("global batches of") && e.contains("--batch-size 8"), "{e}");
    let text = std::fs::read_to_string(&json).unwrap();
    std::fs::write(&json, &text[..text.len() / 2]).unwrap();
    let e = resume(&cfg).unwrap_err().to_string();
    assert!(e.contains("truncated or corrupt JSON"), "{e}");
    // Through the training entry point, a bad checkpoint stops the run before a step is taken.
    let e = train(&cfg, &RunOptions { resume: Some(json.display().to_string()), ..RunOptions::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a cloob-pretrain checkpoint"), "{e}");
    assert!(ClipConfig::tiny().validate().is_ok());
    std::fs::remove_dir_all(&logs).ok();
}

/// `--init-from`: a new run starts from a checkpoint's tower weights with a fresh optimiser — its first loss
/// is the checkpoint's model's loss on that batch, not a fresh initialisation's — and keeps its own τ⁻¹; a
/// checkpoint of another preset is a clear error.
#[test]
fn init_from_takes_the_weights_and_starts_a_fresh_optimiser() {
    let logs = tmp("init-from");
    let quiet = RunOptions { no_eval: true, ..RunOptions::default() };
    let clip = RunConfig { loss: cloob::loss::LossKind::Clip, ..micro("clip", &logs) };
    let first = train(&RunConfig { steps: 3, ..clip.clone() }, &quiet).unwrap();
    let ckpt = latest(&logs.join("clip").join("checkpoints")).expect("a checkpoint at the end");
    // The same seed and data as a continuation of `clip`, but from step 0 with a fresh optimiser.
    let warm = RunConfig { init_from: Some(ckpt.clone()), name: "warm".into(), ..clip.clone() };
    let warm_run = train(&warm, &quiet).unwrap();
    let cold_run = train(&RunConfig { name: "cold".into(), ..clip.clone() }, &quiet).unwrap();
    assert_eq!(first.losses[0].1.to_bits(), cold_run.losses[0].1.to_bits(), "same seed, same start");
    assert_ne!(warm_run.losses[0].1.to_bits(), cold_run.losses[0].1.to_bits(), "the weights came from the checkpoint");
    // The checkpoint's model, evaluated on the first batch, gives the warm run's first loss.
    let (model, _) = checkpoint::load_model(&hopfield::Cpu::<f32>::new(), &ckpt).unwrap();
    let warm_model = checkpoint::init_from(&hopfield::Cpu::<f32>::new(), &ckpt, &warm.clip_config().unwrap()).unwrap();
    let (a, b) = (hopfield::params::named_tensors(&model), hopfield::params::named_tensors(&warm_model));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        if na != "logit_scale" {
            assert_eq!(ta, tb, "{na}");
        }
    }
    // Another preset does not fit.
    let other = RunConfig { model_preset: "small".into(), ..warm.clone() };
    let e = checkpoint::init_from(&hopfield::Cpu::<f32>::new(), &ckpt, &other.clip_config().unwrap()).unwrap_err();
    assert!(e.to_string().contains("--init-from") && e.to_string().contains("preset tiny"), "{e}");
    std::fs::remove_dir_all(&logs).ok();
}

/// `n` small captioned JPEGs in `dir/img` and an open_clip CSV of them.
fn csv_corpus(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut csv = String::from("filepath\ttitle\n");
    for i in 0..n {
        let img = image::RgbImage::from_fn(40 + i as u32, 36, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 7 + i as u32 * 19) as u8, [40, 200, 120][i % 3]])
        });
        img.save(dir.join(format!("img/{i:02}.jpg"))).unwrap();
        csv += &format!("img/{i:02}.jpg\t{} thing number {i}\n", ["a red", "a green", "a blue"][i % 3]);
    }
    std::fs::write(dir.join("train.csv"), csv).unwrap();
    dir.join("train.csv")
}

/// A CSV run interrupted in its third epoch and resumed gives the uninterrupted run's losses bit for bit
/// (12 rows, batch 4: three steps an epoch; step 7 reads positions 28–31, in epoch 2).
#[test]
fn a_csv_run_resumed_in_a_later_epoch_matches_the_uninterrupted_one_bit_for_bit() {
    let logs = tmp("csv-epochs");
    let data = cloob::pretrain::DataSpec::Csv(csv_corpus(&logs.join("data"), 12));
    let cfg =
        |name: &str| RunConfig { data: data.clone(), batch_size: 4, accum_freq: 1, steps: 9, ..micro(name, &logs) };
    let quiet = RunOptions { no_eval: true, workers: Some(2), ..RunOptions::default() };
    let full = train(&cfg("full"), &quiet).unwrap();
    let cut = train(&cfg("cut"), &RunOptions { stop_after: Some(7), ..quiet.clone() }).unwrap();
    let state = checkpoint::read_state(&cut.checkpoint.clone().unwrap()).unwrap();
    assert_eq!((state.step, state.epoch), (7, 2));
    let one_worker = RunOptions { resume: Some("latest".into()), workers: Some(1), ..quiet.clone() };
    let resumed = train(&cfg("cut"), &one_worker).unwrap();
    let bits = |l: &[(u64, f64)]| l.iter().map(|(s, v)| (*s, v.to_bits())).collect::<Vec<_>>();
    let stitched: Vec<(u64, f64)> = cut.losses.iter().chain(&resumed.losses).copied().collect();
    assert_eq!(bits(&stitched), bits(&full.losses), "{stitched:?} vs {:?}", full.losses);
    std::fs::remove_dir_all(&logs).ok();
}
