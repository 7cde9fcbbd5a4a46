//! The run folder `<logs>/<name>/`: what may name it, who may write it, what `--overwrite` may delete.
//!
//! - A run name is one path component ([`check_run_name`]): never empty, `.`, `..`, absolute or with a
//!   separator, so the folder is always a child of `--logs` and `--overwrite` cannot reach outside it.
//! - The process that trains holds an advisory lock ([`RunLock`], `flock` through `fs4`) on
//!   `<run>/run.lock` for its whole life; a second process gets an error naming the holder's pid and
//!   host. The kernel drops the lock when its holder dies, so a lock file left by a killed run is taken
//!   over with a note. Under MPI, rank 0 holds it.
//! - `--overwrite` deletes only a folder that holds a run of ours (its `config.json` reads as one), while
//!   holding that folder's lock, and keeps the lock file.

use super::{checkpoint, err, PretrainError, Result, RunConfig};
use fs4::fs_std::FileExt;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the run folder.
pub const LOCK_FILE: &str = "run.lock";

/// Why `name` cannot name a run folder, if it cannot: it must be one path component (no separator, not
/// empty, not `.` or `..`, no NUL), at most 200 bytes.
pub fn check_run_name(name: &str) -> std::result::Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name == "." || name == ".." {
        "is not a folder name"
    } else if name.contains('/') || name.contains('\\') {
        "contains a path separator"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else if name.len() > 200 {
        "is longer than 200 bytes"
    } else {
        return Ok(());
    };
    Err(format!(
        "{name:?} {why}: a run name is one folder name under --logs, e.g. \
         --name cloob-tiny-s0"
    ))
}

/// An exclusive advisory lock on a run folder, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    file: std::fs::File,
    path: PathBuf,
}

impl RunLock {
    /// Lock `run_dir` (created if missing) for this process, or fail naming the process that holds it.
    /// `say` receives a note when the lock file of a process that is gone is taken over.
    pub fn acquire(run_dir: &Path, say: &dyn Fn(String)) -> Result<RunLock> {
        std::fs::create_dir_all(run_dir).map_err(|e| err(run_dir.display(), e))?;
        let path = run_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| err(format!("lock file {}", path.display()), e))?;
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim().to_string();
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                return Err(PretrainError(format!(
                    "{} is in use by another run ({}): wait for it to end, or use another --name",
                    run_dir.display(),
                    if holder.is_empty() { "holder unknown".to_string() } else { holder }
                )))
            }
            Err(e) => return Err(err(format!("locking {}", path.display()), e)),
        }
        if !holder.is_empty() {
            say(format!("taking over the lock of {} (a run that ended without releasing it)", path.display()));
        }
        let me = format!("pid {} on host {}", std::process::id(), host_name());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| err(format!("lock file {}", path.display()), e))?;
        Ok(RunLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Empty the holder line first: a lock file with a holder but no lock means a run died.
        let _ = self.file.set_len(0);
        let _ = FileExt::unlock(&self.file);
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `HOSTNAME`, else `unknown host`).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
}

/// Whether `run_dir` holds a run of ours: its `config.json` reads as a [`RunConfig`].
fn holds_our_run(run_dir: &Path) -> bool {
    std::fs::read_to_string(run_dir.join("config.json"))
        .ok()
        .is_some_and(|t| serde_json::from_str::<RunConfig>(&t).is_ok())
}

/// `--overwrite`: delete the earlier run in `run_dir` (locked by this process), keeping the lock file.
/// A folder with files that are not a run of ours is refused, and nothing is deleted.
fn delete_earlier_run(run_dir: &Path, say: &dyn Fn(String)) -> Result<()> {
    let entries: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .map_err(|e| err(run_dir.display(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n != LOCK_FILE))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    if !holds_our_run(run_dir) {
        return Err(PretrainError(format!(
            "--overwrite: {} holds files but no cloob-pretrain run (no readable config.json); nothing was deleted: \
             choose another --name or --logs",
            run_dir.display()
        )));
    }
    for p in entries {
        let gone = if p.is_dir() && !p.is_symlink() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        gone.map_err(|e| err(format!("--overwrite: deleting {}", p.display()), e))?;
    }
    say(format!("--overwrite: deleted the earlier run in {}", run_dir.display()));
    Ok(())
}

/// Make the run folder this run's (its lock held): delete an earlier run (`overwrite`), remove what
/// interrupted saves left, start or truncate the metrics (`resumed_at`: keep the steps before it), write
/// the config.
pub fn prepare(cfg: &RunConfig, overwrite: bool, resumed_at: Option<u64>, say: &dyn Fn(String)) -> Result<()> {
    let run_dir = cfg.logs.join(&cfg.name);
    let (ckpt_dir, metrics) = (run_dir.join("checkpoints"), run_dir.join("metrics.jsonl"));
    if overwrite {
        delete_earlier_run(&run_dir, say)?;
    }
    std::fs::create_dir_all(&ckpt_dir).map_err(|e| err(ckpt_dir.display(), e))?;
    for removed in checkpoint::remove_incomplete(&ckpt_dir)? {
        say(format!("removed {} (left by an interrupted save)", removed.display()));
    }
    match resumed_at {
        Some(step) => truncate_metrics(&metrics, step)?,
        None => std::fs::write(&metrics, "").map_err(|e| err(metrics.display(), e))?,
    }
    checkpoint::write_atomic(
        &run_dir.join("config.json"),
        serde_json::to_string_pretty(cfg).expect("plain data").as_bytes(),
    )
}

/// The run's JSONL metrics, appended line by line (rank 0's; the other ranks hold none).
#[derive(Debug)]
pub struct MetricsLog {
    file: Option<(std::fs::File, PathBuf)>,
}

impl MetricsLog {
    /// Append to `path` (`None`: a log that writes nothing).
    pub fn open(path: Option<PathBuf>) -> Result<MetricsLog> {
        let file = match path {
            Some(p) => Some((open_append(&p)?, p)),
            None => None,
        };
        Ok(MetricsLog { file })
    }

    /// Append one line.
    pub fn write(&mut self, v: serde_json::Value) -> Result<()> {
        match &mut self.file {
            Some((f, p)) => writeln!(f, "{v}").map_err(|e| err(p.display(), e)),
            None => Ok(()),
        }
    }

    /// Drop the lines of steps from `step` on (a rollback replays them).
    pub fn truncate_to(&mut self, step: u64) -> Result<()> {
        if let Some((f, p)) = &mut self.file {
            truncate_metrics(p, step)?;
            // The truncation replaced the file: append to the new one.
            *f = open_append(p)?;
        }
        Ok(())
    }

    /// Flush the lines to the disk.
    pub fn flush(&mut self) -> Result<()> {
        match &mut self.file {
            Some((f, p)) => f.sync_data().map_err(|e| err(p.display(), e)),
            None => Ok(()),
        }
    }
}

fn open_append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new().append(true).create(true).open(path).map_err(|e| err(path.display(), e))
}

/// Keep the JSONL lines of steps before `step` (a resumed or rolled-back run rewrites what came after its
/// checkpoint).
pub fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(f) = std::fs::File::open(path) else { return Ok(()) };
    let kept: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s < step || (s == step && l.contains("\"eval\"")))
        })
        .collect();
    checkpoint::write_atomic(path, (kept.join("\n") + if kept.is_empty() { "" } else { "\n" }).as_bytes())
}

/// What already occupies a run folder: its newest checkpoint and the steps logged in its metrics.
pub fn existing_run(run_dir: &Path) -> Option<String> {
    let ckpt = checkpoint::latest(&run_dir.join("checkpoints"));
    let logged = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .map(|t| t.lines().filter(|l| l.contains("\"loss\"")).count())
        .unwrap_or(0);
    let mut what = Vec::new();
    if let Some(c) = ckpt {
        what.push(format!("checkpoint {}", c.file_name().and_then(|n| n.to_str()).unwrap_or("?")));
    }
    if logged > 0 {
        what.push(format!("metrics of {logged} steps"));
    }
    (!what.is_empty()).then(|| what.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_name_is_one_folder_name() {
        for bad in ["", ".", "..", "/abs", "a/b", "a\\b", "../x", "x\0y"] {
            assert!(check_run_name(bad).is_err(), "{bad:?}");
        }
        for good in ["cloob-tiny-embedded-s0", "run.2", "..x", "ünïcode"] {
            check_run_name(good).unwrap();
        }
    }

    #[test]
    fn a_second_lock_names_the_holder_and_a_dropped_one_is_taken_over() {
        let dir = std::env::temp_dir().join(format!("cloob-lock-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = RunLock::acquire(&dir, &|_| {}).unwrap();
        // flock locks belong to the open file description: a second open in this process conflicts too.
        let e = RunLock::acquire(&dir, &|_| {}).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())) && e.contains("in use"), "{e}");
        drop(first);
        let notes = std::cell::RefCell::new(Vec::new());
        let _again = RunLock::acquire(&dir, &|m| notes.borrow_mut().push(m)).unwrap();
        assert!(notes.borrow().is_empty(), "a released lock is not stale: {:?}", notes.borrow());
        // A holder line without a lock: a run that died.
        drop(_again);
        std::fs::write(dir.join(LOCK_FILE), "pid 1 on host gone").unwrap();
        let _taken = RunLock::acquire(&dir, &|m| notes.borrow_mut().push(m)).unwrap();
        assert!(notes.borrow().iter().any(|n| n.contains("taking over")), "{:?}", notes.borrow());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
