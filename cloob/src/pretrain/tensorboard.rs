//! TensorBoard event files (`--report-to tensorboard`): scalars in the format a stock TensorBoard reads,
//! written directly. An event file is a sequence of TFRecords — `u64` length, masked CRC-32C of the
//! length, the bytes, masked CRC-32C of the bytes, all little-endian — each holding one protobuf `Event`
//! (`wall_time = 1` double, `step = 2` int64, `file_version = 3` string, `summary = 5`
//! `Summary { value = 1 repeated Value { tag = 1 string, simple_value = 2 float } }`, `session_log = 7`
//! `SessionLog { status = 1 }`). The first event of a file is `file_version: "brain.Event:2"`.
//!
//! Each process writes its own file (`events.out.tfevents.<secs>.<host>`, named to sort after the run's
//! earlier files, as TensorBoard reads them in name order). A resumed run first cuts the earlier files
//! after the checkpoint's step, then starts its file with a `SessionLog START` at the next step, which tells
//! a TensorBoard that already read the cut events to drop them: no step is lost or shown twice.

use super::{err, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The prefix of event file names (TensorBoard finds files by `tfevents` in their name).
pub const FILE_PREFIX: &str = "events.out.tfevents.";

/// Appends scalar events to one event file, each written through to the file at once (a live TensorBoard
/// sees it).
#[derive(Debug)]
pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
    written: u64,
}

impl EventWriter {
    /// A new event file in `dir` (created if missing), named to sort after the event files already there,
    /// starting with the `file_version` event. `resumed_at`: the run goes on after this step: the earlier
    /// files are cut to the events up to it ([`cut_after`]) and the new file says `SessionLog START` at the
    /// next step.
    pub fn create(dir: &Path, host: &str, resumed_at: Option<u64>) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| err(dir.display(), e))?;
        let mut secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| err("the system clock", e))?
            .as_secs();
        for f in event_files(dir)? {
            if let Some(step) = resumed_at {
                cut_after(&f, step)?;
            }
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let theirs = name.strip_prefix(FILE_PREFIX).and_then(|r| r.split('.').next()?.parse::<u64>().ok());
            secs = secs.max(theirs.map_or(0, |t| t + 1));
        }
        let host: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let path = dir.join(format!("{FILE_PREFIX}{secs}.{host}"));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| err(path.display(), e))?;
        let mut w = EventWriter { file, path, written: 0 };
        w.write_event(0, 3, b"brain.Event:2")?;
        if let Some(step) = resumed_at {
            w.restart_at(step + 1)?;
        }
        Ok(w)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written to the file so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// One event at `step` holding the scalars `(tag, value)` (stored as f32, TensorBoard's
    /// `simple_value`).
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, v) in values {
            let mut value = Vec::with_capacity(tag.len() + 8);
            bytes_field(&mut value, 1, tag.as_bytes());
            value.push((2 << 3) | 5);
            value.extend_from_slice(&(*v as f32).to_le_bytes());
            bytes_field(&mut summary, 1, &value);
        }
        self.write_event(step, 5, &summary)
    }

    /// The run went back to `step` (an in-process rollback): cut this run's files after it and say
    /// `SessionLog START` at the next step.
    pub fn rewind_to(&mut self, step: u64) -> Result<()> {
        let dir = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        for f in event_files(&dir)? {
            cut_after(&f, step)?;
        }
        self.restart_at(step + 1)
    }

    fn restart_at(&mut self, step: u64) -> Result<()> {
        // SessionLog { status: START (1) }
        self.write_event(step, 7, &[1 << 3, 1])
    }

    /// An event with `wall_time` now, `step`, and the length-delimited field `field` holding `payload`.
    fn write_event(&mut self, step: u64, field: u32, payload: &[u8]) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut event = Vec::with_capacity(payload.len() + 24);
        event.push((1 << 3) | 1);
        event.extend_from_slice(&now.to_le_bytes());
        if step > 0 {
            event.push(2 << 3);
            varint(&mut event, step);
        }
        bytes_field(&mut event, field, payload);
        let record = frame(&event);
        self.file.write_all(&record).map_err(|e| err(self.path.display(), e))?;
        self.written += record.len() as u64;
        Ok(())
    }
}

/// The event files in `dir`, in name order (TensorBoard's reading order).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(FILE_PREFIX)))
        .collect();
    files.sort();
    Ok(files)
}

/// Cut the event file `path` before its first record of a step after `step`, or its first damaged or
/// incomplete record (a write cut short by a crash).
pub fn cut_after(path: &Path, step: u64) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| err(path.display(), e))?;
    let mut at = 0;
    while let Some((event, next)) = record_at(&bytes, at) {
        if event_step(event).is_none_or(|s| s > step) {
            break;
        }
        at = next;
    }
    if at < bytes.len() {
        let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| err(path.display(), e))?;
        f.set_len(at as u64).map_err(|e| err(path.display(), e))?;
    }
    Ok(())
}

/// The record starting at byte `at` of `bytes` and where the next one starts, when it is whole and its
/// checksums match.
fn record_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at + 12)?;
    let len = u64::from_le_bytes(header[..8].try_into().ok()?);
    if u32::from_le_bytes(header[8..].try_into().ok()?) != masked_crc(&header[..8]) {
        return None;
    }
    let end = (at + 12).checked_add(usize::try_from(len).ok()?)?;
    let data = bytes.get(at + 12..end)?;
    let crc = u32::from_le_bytes(bytes.get(end..end + 4)?.try_into().ok()?);
    (crc == masked_crc(data)).then_some((data, end + 4))
}

/// The `step` of an encoded `Event` (0 when absent, as protobuf leaves it out); `None` if it does not parse.
fn event_step(mut event: &[u8]) -> Option<u64> {
    let mut step = 0;
    while !event.is_empty() {
        let key = read_varint(&mut event)?;
        match (key >> 3, key & 7) {
            (2, 0) => step = read_varint(&mut event)?,
            (_, 0) => _ = read_varint(&mut event)?,
            (_, 1) => event = event.get(8..)?,
            (_, 5) => event = event.get(4..)?,
            (_, 2) => {
                let n = usize::try_from(read_varint(&mut event)?).ok()?;
                event = event.get(n..)?;
            }
            _ => return None,
        }
    }
    Some(step)
}

fn read_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// TFRecord's masked CRC-32C (Castagnoli).
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `data`.
fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The bytes of events as TensorBoard's own protobuf classes write them (`event_pb2.Event(wall_time=1.5,
    /// step=3, …).SerializeToString()` with tensorboard 2.x), and TFRecord's framing of a known record.
    #[test]
    fn events_encode_as_tensorboards_protobuf_does() {
        let mut summary = Vec::new();
        let mut value = Vec::new();
        bytes_field(&mut value, 1, b"loss");
        value.push((2 << 3) | 5);
        value.extend_from_slice(&0.5f32.to_le_bytes());
        bytes_field(&mut summary, 1, &value);
        let mut event = vec![(1 << 3) | 1];
        event.extend_from_slice(&1.5f64.to_le_bytes());
        event.extend_from_slice(&[2 << 3, 3]);
        bytes_field(&mut event, 5, &summary);
        assert_eq!(hex(&event), "09000000000000f83f10032a0d0a0b0a046c6f7373150000003f");
        assert_eq!(event_step(&event), Some(3));
        // The record framing of the empty string: the CRC-32C of nothing is 0, masked 0xa282ead8; of eight
        // zero bytes 0x8a9136aa (RFC 3720's check values give crc32c("123456789") = 0xe3069283).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let r = frame(b"");
        assert_eq!(r.len(), 16);
        assert_eq!(u32::from_le_bytes(r[12..16].try_into().unwrap()), 0xa282_ead8);
        assert_eq!(record_at(&r, 0), Some((&b""[..], 16)));
        let mut bad = r.clone();
        bad[13] ^= 1;
        assert_eq!(record_at(&bad, 0), None, "a damaged checksum is refused");
    }

    #[test]
    fn a_resumed_writer_cuts_the_earlier_file_after_the_checkpoint_and_sorts_after_it() {
        let dir = std::env::temp_dir().join(format!("cloob-tb-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let mut first = EventWriter::create(&dir, "host.example", None).unwrap();
        for step in 1..=5 {
            first.scalars(step, &[("train/loss".into(), step as f64)]).unwrap();
        }
        let first_path = first.path().to_path_buf();
        assert!(first_path.file_name().unwrap().to_str().unwrap().ends_with(".host_example"));
        let size = first.bytes_written();
        drop(first);
        // Half a record, as a crash mid-write leaves it.
        let mut f = std::fs::OpenOptions::new().append(true).open(&first_path).unwrap();
        f.write_all(&[7, 0, 0]).unwrap();
        drop(f);
        let second = EventWriter::create(&dir, "host.example", Some(3)).unwrap();
        assert!(second.path() > first_path.as_path(), "{:?} sorts after {first_path:?}", second.path());
        let bytes = std::fs::read(&first_path).unwrap();
        let (mut at, mut steps) = (0, Vec::new());
        while let Some((event, next)) = record_at(&bytes, at) {
            steps.push(event_step(event).unwrap());
            at = next;
        }
        assert_eq!(at, bytes.len(), "the cut file holds whole records only");
        assert!((bytes.len() as u64) < size);
        assert_eq!(steps, [0, 1, 2, 3]);
        let new = std::fs::read(second.path()).unwrap();
        let (version, next) = record_at(&new, 0).unwrap();
        assert!(version.ends_with(b"brain.Event:2"));
        let (start, _) = record_at(&new, next).unwrap();
        assert_eq!(event_step(start), Some(4));
        assert!(start.ends_with(&[(7 << 3) | 2, 2, 8, 1]), "SessionLog START: {}", hex(start));
        std::fs::remove_dir_all(&dir).ok();
    }
}
