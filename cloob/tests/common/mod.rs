//! What the integration tests that run the binaries share: scratch folders, generated images and CSVs,
//! running a binary and reading its outcome.
#![allow(dead_code)] // each test binary uses its own part

use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An empty scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cloob-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(d.join("img")).unwrap();
    d
}

/// `n` distinct small images `img/<prefix><i>.png`; returns their relative paths.
pub fn images(dir: &Path, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let rel = format!("img/{prefix}{i}.png");
            let c = [(i * 37 % 256) as u8, (i * 91 % 256) as u8, (i * 53 % 256) as u8];
            RgbImage::from_fn(12, 10, |x, y| Rgb([c[0] ^ (x * 9) as u8, c[1] ^ (y * 7) as u8, c[2]]))
                .save(dir.join(&rel))
                .unwrap();
            rel
        })
        .collect()
}

/// A tab-separated CSV with open_clip's default columns.
pub fn csv(path: &Path, rows: &[(String, String)]) {
    let body: String = rows.iter().map(|(i, c)| format!("{i}\t{c}\n")).collect();
    std::fs::write(path, format!("filepath\ttitle\n{body}")).unwrap();
}

pub fn captioned(paths: &[String]) -> Vec<(String, String)> {
    paths.iter().enumerate().map(|(i, p)| (p.clone(), format!("picture number {i} of a thing"))).collect()
}

/// Run a binary in `cwd`.
pub fn run(bin: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin).current_dir(cwd).args(args).output().unwrap()
}

pub fn pretrain(cwd: &Path, args: &[&str]) -> Output {
    let micro = [("--steps", "2"), ("--batch-size", "4"), ("--eval-size", "2"), ("--save-frequency", "0")];
    let all: Vec<&str> = micro
        .iter()
        .filter(|(flag, _)| !args.contains(flag))
        .flat_map(|&(flag, value)| [flag, value])
        .chain(["--quiet", "--zeroshot-frequency", "0", "--logs", "logs"])
        .chain(args.iter().copied())
        .collect();
    run(env!("CARGO_BIN_EXE_cloob-pretrain"), cwd, &all)
}

pub fn eval(cwd: &Path, args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_cloob-eval"), cwd, args)
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

/// A clear failure: exit status 1 (2 for a flag clap rejects), never a panic's 101, and `needle` on stderr.
pub fn failed(o: Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(matches!(o.status.code(), Some(1 | 2)), "{}", text(&o));
    assert!(err.contains(needle), "expected {needle:?} in:\n{}", text(&o));
    err
}
