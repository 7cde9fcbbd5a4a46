//! Long runs on shared machines, through the binary as an operator runs it (issue 30): run names that
//! cannot reach outside `--logs`, one process per run folder, SIGTERM → a checkpoint and an exact resume,
//! bounded disk, checkpoint sidecars confined to their folder, decoding limits, recovery from a NaN, size
//! flags bounded before allocation, and a soak of repeated kills.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tiny preset on the embedded set, small enough for a test: batch 8, 50 evaluation images.
const SMALL: [&str; 8] = ["--batch-size", "8", "--eval-size", "50", "--zeroshot-frequency", "0", "--quiet", "--logs"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    SMALL.iter().copied().chain(["logs"]).chain(extra.iter().copied()).collect()
}

fn start(cwd: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cloob-pretrain"))
        .current_dir(cwd)
        .args(args(extra))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run_small(cwd: &Path, extra: &[&str]) -> std::process::Output {
    start(cwd, extra).wait_with_output().unwrap()
}

/// `(step, loss)` of each training line of a run's metrics.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// Wait until the run's metrics hold `n` training lines (or the process ended).
fn wait_for_steps(child: &mut Child, run: &Path, n: usize) {
    let t0 = Instant::now();
    while losses(run).len() < n && child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress in {}", run.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(st.success());
}

/// Regular checkpoints (`step_NNNNNNN.json`) of a run, sorted.
fn checkpoints(run: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    v.retain(|n| n.starts_with("step_") && n.ends_with(".json") && !n.contains('-'));
    v.sort();
    v
}

fn final_weights(run: &Path) -> Vec<u8> {
    let last = checkpoints(run).pop().expect("a checkpoint");
    std::fs::read(run.join("checkpoints").join(last.replace(".json", ".safetensors"))).unwrap()
}

/// Item 1: `--name ""`, `..`, an absolute path and `a/b` are refused at parse time and delete nothing;
/// `--overwrite` of a folder that holds no run of ours deletes nothing either.
#[test]
fn run_names_stay_under_logs_and_overwrite_deletes_only_our_runs() {
    let d = scratch("names");
    std::fs::create_dir_all(d.join("logs/other-run")).unwrap();
    std::fs::write(d.join("logs/other-run/precious.txt"), "keep").unwrap();
    std::fs::write(d.join("precious.txt"), "keep").unwrap();
    let abs = d.join("precious-dir");
    std::fs::create_dir_all(&abs).unwrap();
    for name in ["", "..", abs.to_str().unwrap(), "a/b", "."] {
        let out = run(env!("CARGO_BIN_EXE_cloob-pretrain"), &d, &["--steps", "1", "--name", name, "--overwrite"]);
        let err = failed(out, "--name");
        assert!(err.lines().next().unwrap().starts_with("error: invalid value"), "{err}");
    }
    assert!(d.join("logs/other-run/precious.txt").exists() && d.join("precious.txt").exists() && abs.exists());
    let err = failed(run_small(&d, &["--steps", "1", "--name", "other-run", "--overwrite"]), "no cloob-pretrain run");
    assert!(err.contains("nothing was deleted"), "{err}");
    assert!(d.join("logs/other-run/precious.txt").exists());
    std::fs::remove_dir_all(&d).ok();
}

/// Item 2: while a run trains, a second fresh run, a `--resume latest` and an `--overwrite` of the same
/// folder are refused naming the holder; the first run's metrics are whole and every checkpoint loads.
#[test]
fn a_second_process_is_refused_while_a_run_holds_its_folder() {
    let d = scratch("lock");
    let run_dir = d.join("logs/shared");
    let mut first = start(&d, &["--steps", "120", "--name", "shared", "--save-frequency", "10"]);
    wait_for_steps(&mut first, &run_dir, 5);
    let pid = format!("pid {}", first.id());
    for extra in [&[][..], &["--resume", "latest"], &["--overwrite"]] {
        let mut a = vec!["--steps", "120", "--name", "shared"];
        a.extend_from_slice(extra);
        let err = failed(run_small(&d, &a), "in use by another run");
        assert!(err.contains(&pid), "{err}");
    }
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let steps: Vec<u64> = losses(&run_dir).iter().map(|&(s, _)| s).collect();
    assert_eq!(steps, (0..120).collect::<Vec<_>>(), "each step logged once");
    let cpu = hopfield::Cpu::<f32>::new();
    for c in checkpoints(&run_dir) {
        cloob::pretrain::checkpoint::load_model(&cpu, &run_dir.join("checkpoints").join(&c))
            .unwrap_or_else(|e| panic!("{c}: {e}"));
    }
    std::fs::remove_dir_all(&d).ok();
}

/// Items 3 and 4: SIGTERM at a random step saves that step's checkpoint and exits 75; the resumed run's
/// losses equal the uninterrupted run's bit for bit; `--keep-checkpoints` keeps exactly N (plus the
/// `--keep-every` milestones).
#[test]
fn sigterm_saves_the_step_and_the_resume_is_exact() {
    let d = scratch("sigterm");
    let common = ["--steps", "60", "--save-frequency", "5", "--keep-checkpoints", "2", "--keep-every", "20"];
    let whole = [&common[..], &["--name", "whole"]].concat();
    ok(run_small(&d, &whole));
    let reference = losses(&d.join("logs/whole"));
    assert_eq!(reference.len(), 60);
    assert_eq!(
        checkpoints(&d.join("logs/whole")),
        ["step_0000020.json", "step_0000040.json", "step_0000055.json", "step_0000060.json"]
    );

    let cut = {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        7 + (t as usize % 40)
    };
    let run_dir = d.join("logs/cut");
    let part = [&common[..], &["--name", "cut"]].concat();
    let mut child = start(&d, &part);
    wait_for_steps(&mut child, &run_dir, cut);
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let done = losses(&run_dir).len() as u64;
    assert!(done >= cut as u64, "{done} < {cut}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SIGTERM") && err.contains("--resume latest"), "{err}");
    if done < 60 {
        let newest = checkpoints(&run_dir).pop().unwrap();
        assert_eq!(newest, format!("step_{done:07}.json"), "the checkpoint of the step the signal ended");
    }
    ok(run_small(&d, &[&part[..], &["--resume", "latest"]].concat()));
    let resumed = losses(&run_dir);
    assert_eq!(resumed.len(), 60);
    for (a, b) in resumed.iter().zip(&reference) {
        assert_eq!(a.1.to_bits(), b.1.to_bits(), "step {}: {} vs {}", a.0, a.1, b.1);
    }
    assert_eq!(final_weights(&run_dir), final_weights(&d.join("logs/whole")));
    std::fs::remove_dir_all(&d).ok();
}

/// Item 5: a checkpoint's JSON naming its weights `/dev/zero` or `../x` is refused before reading.
#[test]
fn checkpoint_sidecars_must_be_files_in_their_folder() {
    let d = scratch("sidecar");
    ok(run_small(&d, &["--steps", "2", "--name", "s"]));
    let json = d.join("logs/s/checkpoints/step_0000002.json");
    let good = std::fs::read_to_string(&json).unwrap();
    std::fs::write(d.join("logs/s/x"), "outside").unwrap();
    for bad in ["/dev/zero", "../x", "..", ""] {
        let text = good.replacen("\"step_0000002.safetensors\"", &format!("{bad:?}"), 1);
        assert_ne!(text, good);
        std::fs::write(&json, text).unwrap();
        let err = failed(run_small(&d, &["--steps", "2", "--name", "s", "--resume", "latest"]), "not a file name");
        assert!(!err.contains("bytes"), "nothing about the file is revealed: {err}");
    }
    std::fs::remove_dir_all(&d).ok();
}

/// A PNG of `w`×`h` black greyscale pixels, written without holding its pixels: 20000×20000 is 389 KB
/// on disk and 400 MB decoded (1.2 GB as RGB).
fn greyscale_bomb(path: &Path, w: u32, h: u32) {
    use flate2::write::ZlibEncoder;
    use std::io::Write;
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; w as usize + 1];
    for _ in 0..h {
        z.write_all(&row).unwrap();
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = [w.to_be_bytes(), h.to_be_bytes()].concat();
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &z.finish().unwrap());
    chunk(&mut png, b"IEND", &[]);
    std::fs::write(path, png).unwrap();
}

/// Peak resident memory of a finished child, in KB (`wait4`), with its output.
fn wait_with_peak_rss(mut child: Child) -> (std::process::ExitStatus, String, i64) {
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let mut status = 0;
    // SAFETY: plain syscalls on our own child, with out-parameters we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    use std::os::unix::process::ExitStatusExt;
    (std::process::ExitStatus::from_raw(status), err, usage.ru_maxrss)
}

/// Item 6: a greyscale decompression bomb and a truncated JPEG are counted as undecodable and skipped
/// (peak memory far below the bomb's 1.2 GB), and a FIFO given as an image is refused at once.
#[test]
fn decoding_limits_hold_for_bombs_fifos_and_truncated_files() {
    let d = scratch("bombs");
    let mut rows = captioned(&images(&d, "ok", 10));
    greyscale_bomb(&d.join("img/bomb.png"), 20_000, 20_000);
    let photo = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, 9]));
    photo.save(d.join("img/whole.jpg")).unwrap();
    let jpeg = std::fs::read(d.join("img/whole.jpg")).unwrap();
    std::fs::write(d.join("img/cut.jpg"), &jpeg[..jpeg.len() * 2 / 3]).unwrap();
    assert!(Command::new("mkfifo").arg(d.join("img/fifo.jpg")).status().unwrap().success());
    for (i, p) in ["img/bomb.png", "img/cut.jpg", "img/fifo.jpg"].iter().enumerate() {
        rows.insert(2 * i + 1, (p.to_string(), format!("a bad file number {i}")));
    }
    csv(&d.join("train.csv"), &rows);
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloob-pretrain"))
        .current_dir(&d)
        .args(["--data", "csv:train.csv", "--steps", "3", "--batch-size", "4", "--eval-size", "8", "--quiet"])
        .args(["--name", "b", "--zeroshot-frequency", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The data is opened (the FIFO refused unopened) before the run prints its plan.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut head = String::new();
    while err.read_line(&mut head).unwrap() > 0 && !head.contains("run: ") {}
    let opened = t0.elapsed();
    assert!(head.contains("run: "), "{head}");
    assert!(opened < Duration::from_secs(3), "start-up took {opened:?}");
    child.stderr = Some(err.into_inner());
    let mut stdout = child.stdout.take().unwrap();
    let (status, rest, peak_kb) = wait_with_peak_rss(child);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    assert!(status.success(), "{head}{rest}{out}");
    eprintln!("bomb, FIFO and truncated JPEG: data opened in {opened:?}, peak RSS {} MB", peak_kb / 1000);
    assert!(peak_kb < 600_000, "peak RSS {peak_kb} KB");
    assert!(out.contains("1 missing images") && out.contains("2 undecodable images"), "{out}");
    std::fs::remove_dir_all(&d).ok();
}

/// Item 7: the default `--on-nan stop` saves the last good state under a name that says so, and it
/// resumes with a lower `--lr` (a note, not a mismatch); `--on-nan rollback` continues past an injected
/// NaN batch from the last checkpoint, leaving that batch out, and the run ends.
#[test]
fn a_nan_batch_is_recovered_from() {
    let d = scratch("nan");
    let base = ["--steps", "20", "--save-frequency", "5", "--nan-batch", "12"];
    let err = failed(run_small(&d, &[&base[..], &["--name", "stop"]].concat()), "non-finite");
    assert!(err.contains("step_0000012-last-good.json") && err.contains("--on-nan"), "{err}");
    let last_good = d.join("logs/stop/checkpoints/step_0000012-last-good.json");
    let resumed =
        run_small(&d, &["--steps", "20", "--name", "stop", "--lr", "2e-4", "--resume", last_good.to_str().unwrap()]);
    let resumed = ok(resumed);
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("note: resuming with lr"), "{}", text(&resumed));
    assert_eq!(losses(&d.join("logs/stop")).len(), 20);

    ok(run_small(&d, &["--steps", "20", "--name", "clean"]));
    let out = ok(run_small(&d, &[&base[..], &["--name", "rb", "--on-nan", "rollback"]].concat()));
    let (clean, rb) = (losses(&d.join("logs/clean")), losses(&d.join("logs/rb")));
    assert_eq!(rb.iter().map(|l| l.0).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>(), "{}", text(&out));
    // Before the NaN batch the runs agree; from it on the rolled-back run is one batch ahead.
    assert_eq!(rb[..12], clean[..12]);
    assert_ne!(rb[12], clean[12]);
    let metrics = std::fs::read_to_string(d.join("logs/rb/metrics.jsonl")).unwrap();
    assert_eq!(metrics.matches("\"nan_batch\":12").count(), 1, "{metrics}");
    std::fs::remove_dir_all(&d).ok();
}

/// Item 8: size flags are bounded before anything is allocated, naming the flag (no abort, exit 1 or 2).
#[test]
fn size_flags_are_bounded_before_allocation() {
    let d = scratch("sizes");
    // A batch whose images fit, but not with 64 more batches in the loader's queue (32×32 RGB bytes each).
    let memory_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let queued = (memory_kb * 1024 / (65 * 3 * 32 * 32)).to_string();
    let cases: [(&[&str], &str); 5] = [
        (&["--eval-size", "10000000"], "--eval-size"),
        (&["--batch-size", "100000000"], "--batch-size"),
        (&["--embedded-len", "1000000000000"], "--embedded-len"),
        (&["--shuffle-buffer", "1000000000"], "--shuffle-buffer"),
        (&["--batch-size", &queued, "--prefetch", "64"], "--prefetch"),
    ];
    for (flags, needle) in cases {
        let all = [&["--steps", "1", "--quiet"][..], flags].concat();
        let err = failed(run(env!("CARGO_BIN_EXE_cloob-pretrain"), &d, &all), needle);
        assert_eq!(err.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    }
    assert!(!d.join("logs").exists(), "nothing written");
    std::fs::remove_dir_all(&d).ok();
}

/// The soak: a run killed every ~`every` steps at a random point, SIGTERM and SIGKILL alternating, and
/// resumed each time, ends with the weights of the uninterrupted run; the checkpoints on disk never exceed
/// `--keep-checkpoints` + 1 (one more while a save is under way). `CLOOB_SOAK_STEPS` sets the length
/// (default 150; the soak is 2000).
#[test]
fn a_run_killed_again_and_again_ends_with_the_uninterrupted_weights() {
    let steps: u64 = std::env::var("CLOOB_SOAK_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(150);
    let every = (steps / 20).max(20);
    let d = scratch("soak");
    let steps_flag = steps.to_string();
    let common = ["--steps", &steps_flag, "--save-frequency", "10", "--keep-checkpoints", "3"];
    ok(run_small(&d, &[&common[..], &["--name", "whole"]].concat()));
    let run_dir = d.join("logs/soak");
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let (mut kills, mut most) = (0, 0);
    for round in 0.. {
        let resume = if round == 0 { &[][..] } else { &["--resume", "latest"][..] };
        let mut child = start(&d, &[&common[..], &["--name", "soak"], resume].concat());
        let done = checkpoints(&run_dir).last().map_or(0, |c| c[5..12].parse::<u64>().unwrap());
        let target = (done as usize + (every / 2 + next() % every) as usize).min(steps as usize + 1);
        wait_for_steps(&mut child, &run_dir, target);
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
            break;
        }
        signal(&child, if round % 2 == 0 { "-TERM" } else { "-KILL" });
        let out = child.wait_with_output().unwrap();
        let code = out.status.code();
        assert!(code == Some(75) || code.is_none() || code == Some(0), "{}", text(&out));
        kills += 1;
        most = most.max(checkpoints(&run_dir).len());
        assert!(round < 200, "the run does not end");
    }
    eprintln!("soak: {steps} steps, {kills} interruptions (SIGTERM and SIGKILL alternating), at most {most} checkpoints on disk");
    assert!(kills >= 3, "only {kills} interruptions");
    assert!(most <= 4, "{most} checkpoints on disk with --keep-checkpoints 3");
    assert_eq!(final_weights(&run_dir), final_weights(&d.join("logs/whole")), "after {kills} interruptions");
    std::fs::remove_dir_all(&d).ok();
}
