use super::*;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
    Args::try_parse_from(["mil", "--data", "x.csv"].iter().chain(flags))
}

/// A fresh folder under the system's temporary one.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mil-example-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `bags` bags of two 2-feature instances, alternating labels, in the `mil` CSV layout.
fn write_data(path: &Path, bags: usize) {
    let lines: String = (0..bags)
        .flat_map(|b| (0..2).map(move |i| format!("{},bag{b},{}.5,{}\n", b % 2, b + i, (b % 2) * 3)))
        .collect();
    std::fs::write(path, lines).unwrap();
}

#[test]
fn defaults_are_milconfigs() {
    let args = parse(&[]).unwrap();
    let d = MilConfig::default();
    assert_eq!((args.lr, args.lr_decay, args.weight_decay, args.beta), (d.lr, d.lr_decay, d.weight_decay, d.beta));
    assert_eq!((args.layers, args.width, args.heads, args.head_dim), (2, d.width, d.heads, d.head_dim));
    assert_eq!((args.epochs, args.batch_size, args.folds, args.repeats), (d.epochs, d.batch_size, 10, 5));
}

#[test]
fn numeric_flags_out_of_range_are_refused_naming_the_flag() {
    let bad = [
        ("--epochs", "0"),
        ("--epochs", "x"),
        ("--folds", "1"),
        ("--repeats", "0"),
        ("--grid-samples", "0"),
        ("--val-fraction", "0"),
        ("--val-fraction", "1"),
        ("--val-fraction", "NaN"),
        ("--inner-folds", "1"),
        ("--threads", "0"),
        ("--lr", "0"),
        ("--lr", "-1e-3"),
        ("--lr", "inf"),
        ("--lr-decay", "0"),
        ("--lr-decay", "1.5"),
        ("--weight-decay", "-1"),
        ("--weight-decay", "NaN"),
        ("--layers", "0"),
        ("--layers", "9"),
        ("--width", "0"),
        ("--heads", "0"),
        ("--head-dim", "0"),
        ("--beta", "0"),
        ("--beta", "nan"),
        ("--bag-dropout", "1"),
        ("--bag-dropout", "-0.1"),
        ("--batch-size", "0"),
        ("--folds", "1001"),
        ("--repeats", "1000000000000"),
        ("--threads", "100000"),
        ("--width", "1000000000"),
        ("--heads", "257"),
        ("--head-dim", "1025"),
        ("--epochs", "100001"),
        ("--inner-folds", "1001"),
    ];
    for (flag, value) in bad {
        // `--flag=value`: clap would read a separate `-1e-3` as a flag.
        let err = parse(&[&format!("{flag}={value}")]).expect_err(&format!("{flag} {value} accepted")).to_string();
        assert!(err.contains(flag) && err.contains(&format!("'{value}'")), "{flag} {value}: {err}");
    }
    let edges = [
        ("--folds", "2"),
        ("--inner-folds", "0"),
        ("--inner-folds", "2"),
        ("--bag-dropout", "0"),
        ("--lr-decay", "1"),
        ("--weight-decay", "0"),
        ("--layers", "8"),
        ("--val-fraction", "0.5"),
    ];
    for (flag, value) in edges {
        parse(&[flag, value]).unwrap_or_else(|e| panic!("{flag} {value}: {e}"));
    }
}

/// `mil --data DATA --jsonl JSONL`, parsed.
fn data_and_output(data: &Path, jsonl: &Path) -> Args {
    let argv = ["mil".as_ref(), "--data".as_ref(), data.as_os_str(), "--jsonl".as_ref(), jsonl.as_os_str()];
    Args::try_parse_from(argv).unwrap()
}

#[test]
fn an_output_that_cannot_be_created_fails_before_the_cross_validation() {
    let dir = scratch("blocked");
    // Two bags cannot be split into 10 folds: the cross-validation would fail, so an error naming the
    // output shows that the output was created first.
    let data = dir.join("two.csv");
    write_data(&data, 2);
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let jsonl = blocker.join("out.jsonl");
    let args = data_and_output(&data, &jsonl);
    let err = run(args).unwrap_err().to_string();
    assert!(err.contains("--jsonl") && err.contains(&blocker.display().to_string()), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_earlier_output_survives_a_failing_run() {
    let dir = scratch("keep");
    let data = dir.join("two.csv");
    write_data(&data, 2);
    let jsonl = dir.join("out.jsonl");
    std::fs::write(&jsonl, "{\"earlier\": true}\n").unwrap();
    let args = data_and_output(&data, &jsonl);
    assert!(run(args).is_err(), "two bags cannot be split into 10 folds");
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), "{\"earlier\": true}\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_data_set_writes_its_folds_to_the_one_jsonl() {
    let dir = scratch("two-sets");
    let (first, second) = (dir.join("first.csv"), dir.join("second.csv"));
    write_data(&first, 8);
    write_data(&second, 6);
    let jsonl = dir.join("runs").join("folds.jsonl");
    let mut argv: Vec<std::ffi::OsString> = vec!["mil".into(), "--data".into(), first.into(), second.into()];
    argv.extend(["--jsonl".into(), jsonl.clone().into()]);
    let small = "--folds 2 --repeats 1 --grid none --epochs 1 --width 4 --heads 1 --head-dim 2 --layers 1";
    argv.extend(small.split(' ').map(Into::into));
    run(Args::try_parse_from(argv).unwrap()).unwrap();
    let written = std::fs::read_to_string(&jsonl).unwrap();
    let sets: Vec<String> = written
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["dataset"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sets, ["first", "first", "second", "second"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_folder_as_jsonl_is_refused_before_the_cross_validation() {
    let dir = scratch("jsonl-folder");
    // Two bags cannot be split into 10 folds: an error naming `--jsonl` shows it was checked first.
    let data = dir.join("two.csv");
    write_data(&data, 2);
    let err = run(data_and_output(&data, &dir)).unwrap_err().to_string();
    assert_eq!(err, format!("--jsonl {}: a folder; the output must be a file", dir.display()));
    std::fs::remove_dir_all(&dir).unwrap();
}

// Process-level tests: `cli` in a child process, which is this test binary re-run with only `child` selected
// (cargo builds no `mil` binary for `cargo test`), so that exit statuses and signals are the real ones.

/// Not a test: the `mil` command line in a child process, on the arguments in `MIL_CHILD_ARGS` (a JSON
/// array), exiting with `cli`'s status. Fails when run without them.
#[test]
#[ignore = "the child process of the process-level tests, which run it"]
fn child() {
    let argv = std::env::var("MIL_CHILD_ARGS").expect("run by the process-level tests, with MIL_CHILD_ARGS");
    let argv: Vec<String> = serde_json::from_str(&argv).unwrap();
    std::process::exit(cli(std::iter::once("mil".into()).chain(argv.into_iter().map(OsString::from))));
}

/// `mil ARGS` in a child process, its stdout (the test harness's) discarded and stderr piped.
fn spawn(args: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "tests::child", "--nocapture", "--test-threads", "1"])
        .env("MIL_CHILD_ARGS", serde_json::to_string(args).unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for `child` at most `limit`; kill it and fail past that.
fn finish(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (child.wait_with_output().unwrap(), start.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_device_or_a_fifo_as_data_is_refused_at_once_in_one_line() {
    let dir = scratch("not-regular");
    let fifo = dir.join("fifo.csv");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let jsonl = dir.join("out.jsonl");
    for (data, kind) in [(Path::new("/dev/zero"), "a character device"), (&fifo, "a FIFO")] {
        let args = ["--data", data.to_str().unwrap(), "--jsonl", jsonl.to_str().unwrap()].map(String::from);
        let (out, took) = finish(spawn(&args), Duration::from_secs(30));
        let err = stderr(&out);
        // Before any limit, /dev/zero was read until memory ran out (an abort, status 134) and a FIFO blocked.
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("error: --data {}: {kind}, not a regular file", data.display())), "{err}");
        // A second at most when the machine is idle; a loaded CI machine gets more.
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
    assert!(!jsonl.exists() && !dir.join("out.jsonl.partial").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The lines of `path` without each fold's own `seconds`, which differ between any two runs.
fn untimed(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds").expect("a seconds field");
            v
        })
        .collect()
}

#[test]
fn sigterm_keeps_the_finished_folds_and_a_rerun_continues_to_the_same_output() {
    let dir = scratch("preempt");
    let data = dir.join("set.csv");
    write_data(&data, 40);
    let (jsonl, whole) = (dir.join("out.jsonl"), dir.join("whole.jsonl"));
    let partial = dir.join("out.jsonl.partial");
    // 15 folds one after another, each about 130 ms on an idle machine: the signal comes after the third,
    // with some 1.5 s of folds left for it to arrive in on a loaded machine.
    let flags =
        "--folds 5 --repeats 3 --grid none --epochs 200 --width 8 --heads 2 --head-dim 4 --layers 1 --threads 1";
    let args = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> =
            vec!["--data".into(), data.display().to_string(), "--jsonl".into(), out.display().to_string()];
        a.extend(flags.split(' ').map(String::from));
        a
    };
    let (run_args, whole_args) = (args(&jsonl), args(&whole));

    let (out, _) = finish(spawn(&whole_args), Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(untimed(&whole).len(), 15);

    let child = spawn(&run_args);
    let start = Instant::now();
    let lines = |p: &Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    while lines(&partial) < 3 {
        assert!(start.elapsed() < Duration::from_secs(60), "no 3 folds saved in a minute");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on the child's own process id, which has not been waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let (out, _) = finish(child, Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    let saved = std::fs::read_to_string(&partial).unwrap();
    let n = saved.lines().count();
    assert!((3..15).contains(&n), "{n} folds saved:\n{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("stopped by SIGTERM")
            && last.contains(&format!("{n} finished fold(s) saved in {}", partial.display()))
            && last.ends_with("rerun the same command to continue"),
        "{err}"
    );
    assert!(!jsonl.exists());

    let (out, _) = finish(spawn(&run_args), Duration::from_secs(120));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("set: reusing {n} of 15 folds saved in {}", partial.display())), "{err}");
    assert_eq!(err.matches("test AUC").count(), 15 - n, "only the missing folds are trained:\n{err}");
    assert_eq!(untimed(&jsonl), untimed(&whole));
    // The saved folds are reused as they were written, `seconds` included.
    let written = std::fs::read_to_string(&jsonl).unwrap();
    for line in saved.lines() {
        let record = format!("{{{}", line.split_once("\",").unwrap().1);
        assert!(written.lines().any(|l| l == record), "{record} not in the output");
    }
    assert!(!partial.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
