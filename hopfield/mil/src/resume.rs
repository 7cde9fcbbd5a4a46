//! Cross-validation runs that survive preemption: a [`FoldLog`] appends each finished fold's JSON line to
//! `<jsonl>.partial` and syncs it to disk at once, and a rerun with the same data and settings reads those
//! folds back instead of training them again.
//!
//! A line of the `.partial` file is the fold's [`FoldRecord`] line with one field in front, `"run"`: the
//! [`run_key`] of the data set and settings that produced it. Only folds of the rerun's own key are reused,
//! so a rerun with other flags or a changed data file trains afresh (the other lines stay, unused). The final
//! `<jsonl>` is written from the saved lines themselves, byte for byte, in (data set, repeat, fold) order: it
//! equals what an uninterrupted run writes (up to each fold's own `seconds`). A line cut short by a kill is
//! dropped when the log is opened.

use super::cv::CvSettings;
use super::data::MilDataset;
use super::error::{MilError, Result};
use super::report::FoldRecord;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The largest `.partial` file a [`FoldLog`] reads back (a fold's line is about 500 bytes).
pub const MAX_PARTIAL_BYTES: u64 = 256 << 20;

/// 64-bit FNV-1a: a hash that, unlike std's, is the same in every Rust release.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    fn u64(&mut self, x: u64) -> &mut Self {
        self.bytes(&x.to_le_bytes())
    }
}

/// What identifies one data set's cross-validation, as 16 hex digits: a hash of the data (name, every bag's
/// id, label and values), of every setting a fold's result depends on (folds, repeats, seed, hold-out share,
/// inner folds, every grid point) and of `device` (backends round differently). Threads are not in it: a
/// fold's result does not depend on them.
pub fn run_key(data: &MilDataset, settings: &CvSettings, device: &str) -> String {
    let mut h = Fnv::new();
    h.bytes(data.name.as_bytes()).u64(data.n_features as u64).u64(data.bags.len() as u64);
    for bag in &data.bags {
        h.u64(bag.id.len() as u64).bytes(bag.id.as_bytes()).u64(bag.label as u64).u64(bag.len as u64);
        bag.instances.iter().for_each(|x| _ = h.u64(x.to_bits()));
    }
    let settings = serde_json::json!({
        "folds": settings.folds,
        "repeats": settings.repeats,
        "seed": settings.seed,
        "val_fraction": settings.val_fraction,
        "inner_folds": settings.inner_folds,
        "grid": settings.grid,
        "device": device,
    });
    h.bytes(settings.to_string().as_bytes());
    format!("{:016x}", h.0)
}

/// The `.partial` line of `record` under `run`, without its newline.
fn partial_line(run: &str, record: &FoldRecord) -> (String, String) {
    let line = serde_json::to_string(record).expect("a FoldRecord serialises");
    (format!("{{\"run\":\"{run}\",{}", &line[1..]), line)
}

/// The run key and the record line of a `.partial` line, or `None` for a line that is not one.
fn parse_partial_line(text: &str) -> Option<(String, FoldRecord, String)> {
    let rest = text.strip_prefix("{\"run\":\"")?;
    let (run, fields) = rest.split_once("\",")?;
    let line = format!("{{{fields}");
    let record: FoldRecord = serde_json::from_str(&line).ok()?;
    Some((run.to_string(), record, line))
}

/// An I/O error on `path` as a [`MilError::File`].
fn file_error(path: &Path) -> impl Fn(std::io::Error) -> MilError + '_ {
    move |e| MilError::File { path: path.display().to_string(), reason: e.to_string() }
}

/// `<path>.partial`, next to `path`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// The folds of one output file: those saved in its `<jsonl>.partial` by earlier runs, and those this run
/// appends. Folds are keyed by (run key, repeat, fold).
#[derive(Debug)]
pub struct FoldLog {
    path: PathBuf,
    partial: PathBuf,
    file: File,
    folds: HashMap<(String, usize, usize), (FoldRecord, String)>,
    appended: usize,
    unreadable: usize,
}

impl FoldLog {
    /// Open the log of the output `path`: read `<path>.partial` if there is one (dropping a last line cut
    /// short), then keep it open for appending; create it and `path`'s missing parent folders if not. A
    /// `path` that is a folder, or a `.partial` that is not a regular file or is over [`MAX_PARTIAL_BYTES`],
    /// is a [`MilError::File`].
    pub fn open(path: &Path) -> Result<Self> {
        let partial = partial_path(path);
        let refuse = |p: &Path, reason: String| MilError::File { path: p.display().to_string(), reason };
        let io = file_error;
        if path.is_dir() {
            return Err(refuse(path, "a folder; the output must be a file".into()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut text = String::new();
        match std::fs::metadata(&partial) {
            Ok(meta) if !meta.is_file() => return Err(refuse(&partial, "exists and is not a regular file".into())),
            Ok(meta) if meta.len() > MAX_PARTIAL_BYTES => {
                return Err(refuse(&partial, format!("{} bytes, more than {MAX_PARTIAL_BYTES}", meta.len())))
            }
            Ok(_) => text = String::from_utf8_lossy(&std::fs::read(&partial).map_err(io(&partial))?).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&partial)(e)),
        }
        let file = OpenOptions::new().create(true).append(true).open(&partial).map_err(io(&partial))?;
        // A kill while a line was written leaves it without its newline: cut it, so the next one starts clean.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            file.set_len(complete as u64).map_err(io(&partial))?;
            text.truncate(complete);
        }
        let (mut folds, mut unreadable) = (HashMap::new(), 0);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match parse_partial_line(line) {
                Some((run, record, line)) => {
                    _ = folds.entry((run, record.repeat, record.fold)).or_insert((record, line))
                }
                None => unreadable += 1,
            }
        }
        Ok(FoldLog { path: path.to_path_buf(), partial, file, folds, appended: 0, unreadable })
    }

    /// The output file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `.partial` file the folds are appended to.
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    /// The saved folds of run `run`, ordered by (repeat, fold).
    pub fn finished(&self, run: &str) -> Vec<FoldRecord> {
        let mut records: Vec<FoldRecord> =
            self.folds.iter().filter(|((r, _, _), _)| r == run).map(|(_, (record, _))| record.clone()).collect();
        records.sort_by_key(|r| (r.repeat, r.fold));
        records
    }

    /// Folds appended by this run so far.
    pub fn appended(&self) -> usize {
        self.appended
    }

    /// Lines of the `.partial` file that are not a saved fold (written by something else).
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }

    /// Append `record` of run `run` to the `.partial` file and sync it to disk before returning.
    pub fn append(&mut self, run: &str, record: &FoldRecord) -> Result<()> {
        let (saved, line) = partial_line(run, record);
        let fail = file_error(&self.partial);
        // One write of the whole line: a kill between two writes cannot leave half a line in the middle.
        self.file.write_all(format!("{saved}\n").as_bytes()).and_then(|()| self.file.sync_data()).map_err(fail)?;
        self.folds.insert((run.to_string(), record.repeat, record.fold), (record.clone(), line));
        self.appended += 1;
        Ok(())
    }

    /// Write the output file: for each `(run, records)` in order, the saved line of each record, which must
    /// all be in the log. The lines go to `<path>.tmp`, synced, then renamed over `path`, so that `path` is
    /// either its earlier content or complete. The `.partial` file stays (see [`FoldLog::remove_partial`]).
    pub fn write_output(&self, runs: &[(&str, &[FoldRecord])]) -> Result<()> {
        let mut text = String::new();
        for (run, records) in runs {
            for r in records.iter() {
                let Some((_, line)) = self.folds.get(&(run.to_string(), r.repeat, r.fold)) else {
                    return Err(MilError::setting(
                        "records",
                        format!(
                            "{} repeat {} fold {} was not saved in {}",
                            r.dataset,
                            r.repeat,
                            r.fold,
                            self.partial.display()
                        ),
                    ));
                };
                text.push_str(line);
                text.push('\n');
            }
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let fail = file_error;
        let mut file = File::create(&tmp).map_err(fail(&tmp))?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(fail(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(fail(&self.path))
    }

    /// Remove the `.partial` file, once every output of the run is written.
    pub fn remove_partial(self) -> Result<()> {
        std::fs::remove_file(&self.partial).map_err(file_error(&self.partial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{planted_cluster, PlantedCluster};
    use crate::train::MilConfig;

    fn record(repeat: usize, fold: usize, auc: f64) -> FoldRecord {
        FoldRecord {
            dataset: "set".into(),
            repeat,
            fold,
            seed: u64::MAX - fold as u64,
            n_train: 8,
            n_test: 2,
            test_auc: auc,
            val_auc: None,
            grid_index: 0,
            config: serde_json::to_value(MilConfig::default()).unwrap(),
            seconds: 0.1 + auc,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mil-resume-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_key_changes_with_the_data_and_every_setting_but_not_otherwise() {
        let data = planted_cluster(&PlantedCluster { bags: 12, ..Default::default() }, 0);
        let settings = CvSettings {
            folds: 3,
            repeats: 2,
            seed: 0,
            val_fraction: 0.2,
            inner_folds: 0,
            grid: vec![MilConfig::default()],
        };
        let key = run_key(&data, &settings, "cpu");
        assert_eq!(key, run_key(&data.clone(), &settings.clone(), "cpu"));
        assert_eq!(key.len(), 16);
        let mut other = data.clone();
        other.bags[3].instances[1] += 1e-9;
        let changed = [
            run_key(&other, &settings, "cpu"),
            run_key(&data, &CvSettings { folds: 4, ..settings.clone() }, "cpu"),
            run_key(&data, &CvSettings { seed: 1, ..settings.clone() }, "cpu"),
            run_key(&data, &CvSettings { inner_folds: 2, ..settings.clone() }, "cpu"),
            run_key(
                &data,
                &CvSettings { grid: vec![MilConfig { beta: 0.5, ..MilConfig::default() }], ..settings.clone() },
                "cpu",
            ),
            run_key(&data, &settings, "wgpu"),
        ];
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(*k, key, "change {i} kept the key");
        }
    }

    #[test]
    fn saved_folds_come_back_byte_for_byte_and_a_cut_line_is_dropped() {
        let dir = scratch("roundtrip");
        let path = dir.join("out").join("folds.jsonl");
        let mut log = FoldLog::open(&path).unwrap();
        // 0.1 + 0.2 and the like print with 17 digits: the output must reuse the saved text, not reprint it.
        let (a, b) = (record(0, 1, 0.1 + 0.2), record(0, 0, 1.0 / 3.0));
        log.append("k1", &a).unwrap();
        log.append("k2", &b).unwrap();
        log.append("k1", &b).unwrap();
        drop(log);
        let mut f = OpenOptions::new().append(true).open(partial_path(&path)).unwrap();
        f.write_all(b"{\"run\":\"k1\",\"dataset\":\"se").unwrap();
        drop(f);
        let mut log = FoldLog::open(&path).unwrap();
        assert_eq!(log.finished("k1"), [b.clone(), a.clone()]);
        assert_eq!(log.finished("k2"), std::slice::from_ref(&b));
        assert_eq!(log.unreadable(), 0);
        let c = record(0, 2, 0.75);
        log.append("k1", &c).unwrap();
        let again = FoldLog::open(&path).unwrap();
        assert_eq!(again.finished("k1").len(), 3, "the cut line was not cut before appending");
        again.write_output(&[("k1", &[b.clone(), a.clone(), c.clone()])]).unwrap();
        let expected: String =
            [&b, &a, &c].iter().map(|r| format!("{}\n", serde_json::to_string(r).unwrap())).collect();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
        let err = again.write_output(&[("k2", std::slice::from_ref(&a))]).unwrap_err().to_string();
        assert!(err.contains("was not saved"), "{err}");
        again.remove_partial().unwrap();
        assert!(!partial_path(&path).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_as_output_or_a_fifo_as_partial_is_refused() {
        let dir = scratch("refused");
        std::fs::create_dir_all(dir.join("runs.jsonl")).unwrap();
        let err = FoldLog::open(&dir.join("runs.jsonl")).unwrap_err().to_string();
        assert!(err.contains("runs.jsonl: a folder"), "{err}");
        // Reading a FIFO would wait for a writer for ever.
        assert!(std::process::Command::new("mkfifo").arg(dir.join("x.jsonl.partial")).status().unwrap().success());
        let err = FoldLog::open(&dir.join("x.jsonl")).unwrap_err().to_string();
        assert!(err.contains("x.jsonl.partial: exists and is not a regular file"), "{err}");
        std::fs::write(dir.join("y.jsonl.partial"), "not a fold\n").unwrap();
        assert_eq!(FoldLog::open(&dir.join("y.jsonl")).unwrap().unreadable(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
