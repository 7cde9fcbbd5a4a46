//! Reading one shard: its tar members, streamed from a byte offset, grouped into samples by key as
//! webdataset does, with every problem reported as an issue (never an error of the caller).

use super::CaptionField;
use crate::data::decode::MAX_FILE_BYTES;
use crate::data::IssueKind;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

/// Image extensions, in the order of preference when a sample has several.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// Bytes read from a shard at a time.
const READ_BUFFER: usize = 1 << 16;

/// Size of a tar block.
const BLOCK: u64 = 512;

/// The members of one sample that matter (consecutive members with the same key).
#[derive(Debug)]
pub struct Group {
    /// The member path up to the first `.` of its basename (the directory part kept).
    pub key: String,
    /// The preferred image (rank in [`IMAGE_EXTENSIONS`], bytes).
    image: Option<(usize, Vec<u8>)>,
    /// The caption member's bytes (`txt` or `json`, as configured).
    caption: Option<Vec<u8>>,
    /// Whether it has an image or caption member at all (groups of other members only are ignored).
    relevant: bool,
    /// Whether one of its members was too large to read (already counted as undecodable).
    oversized: bool,
}

/// What reading a shard reports, in stream order.
pub enum Event {
    /// A problem: an unreadable shard, an oversized member.
    Issue(IssueKind, String),
    /// A complete group. `next` is the byte offset (in the shard file) of the first header of the member
    /// that follows it, `None` when the shard ended cleanly after it; `members` counts the members read
    /// by this scan up to there.
    Group { group: Group, next: Option<u64>, members: u64 },
}

/// How a member is used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An image, with its rank in [`IMAGE_EXTENSIONS`].
    Image(usize),
    /// The caption member.
    Caption,
    /// Anything else (`.json` when captions come from `.txt`, `.cls`, …): not read.
    Other,
}

impl CaptionField {
    /// The extension of the member holding the caption.
    pub fn extension(&self) -> &'static str {
        match self {
            CaptionField::Txt => "txt",
            CaptionField::Json(_) => "json",
        }
    }
}

fn role(extension: &str, caption: &CaptionField) -> Role {
    match IMAGE_EXTENSIONS.iter().position(|e| *e == extension) {
        Some(rank) => Role::Image(rank),
        None if extension == caption.extension() => Role::Caption,
        None => Role::Other,
    }
}

/// webdataset's split of a member path: `(key, lower-cased extension)`, the key being the path up to the
/// first `.` of the basename. `None` for names whose basename starts with `.` or has no `.`.
pub fn split_name(path: &str) -> Option<(&str, String)> {
    let base_at = path.rfind('/').map_or(0, |i| i + 1);
    let base = &path[base_at..];
    if base.starts_with('.') {
        return None;
    }
    let dot = base.find('.')?;
    Some((&path[..base_at + dot], base[dot + 1..].to_ascii_lowercase()))
}

impl Group {
    fn new(key: &str) -> Self {
        Group { key: key.to_owned(), image: None, caption: None, relevant: false, oversized: false }
    }

    /// The `(caption, encoded image)` pair of a complete group, or why it is none: `Err(Some(reason))` for
    /// an unpaired group, `Err(None)` for one to pass over silently (no image or caption member at all,
    /// or an oversized member already counted).
    pub fn into_pair(self, caption: &CaptionField) -> Result<(String, Vec<u8>), Option<String>> {
        if self.oversized || !self.relevant {
            return Err(None);
        }
        let Some((_, image)) = self.image else { return Err(Some("no image".into())) };
        let extension = caption.extension();
        let Some(raw) = self.caption else { return Err(Some(format!("no caption (.{extension})"))) };
        let text = match caption {
            CaptionField::Txt => String::from_utf8(raw).map_err(|_| Some("caption (.txt) is not UTF-8".to_owned()))?,
            CaptionField::Json(field) => {
                let value: serde_json::Value = serde_json::from_slice(&raw)
                    .map_err(|e| Some(format!("caption (.json) is not valid JSON: {e}")))?;
                match value.get(field) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    _ => return Err(Some(format!("no caption (.json has no string field {field:?})"))),
                }
            }
        };
        match text.trim() {
            "" => Err(Some(format!("empty caption (.{extension})"))),
            t if t.len() == text.len() => Ok((text, image)),
            t => Ok((t.to_owned(), image)),
        }
    }
}

/// Read the shard at `path` (file name `name`) from byte `offset`, which must be where a member's first
/// header starts (0, or a `next` reported by an earlier scan), and report its groups and problems to
/// `sink` in order until the shard ends or `sink` breaks. `before` is the number of members before
/// `offset` when known, for messages.
///
/// Only the image and caption members are read into memory, each at most [`MAX_FILE_BYTES`]: a larger
/// one is counted undecodable and passed over unread (its group with it). A tar error (truncated shard,
/// garbage) is reported once as a bad shard, drops the group in progress, and ends the scan.
pub fn scan(
    path: &Path,
    name: &str,
    offset: u64,
    before: Option<u64>,
    caption: &CaptionField,
    sink: &mut dyn FnMut(Event) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let bad = |why: String| Event::Issue(IssueKind::BadShard, format!("{}: {why}", path.display()));
    let failed = |members: u64, e: &dyn std::fmt::Display| match before {
        Some(b) => bad(format!("truncated or unreadable after {} members: {e}", b + members)),
        None => bad(format!("truncated or unreadable after {members} members from byte {offset}: {e}")),
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return sink(bad(format!("cannot be opened: {e}"))),
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    if offset > 0 {
        if let Err(e) = reader.seek(SeekFrom::Start(offset)) {
            return sink(failed(0, &e));
        }
    }
    // A new archive on the file positioned at `offset`: its positions are relative to `offset`.
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return sink(failed(0, &e)),
    };
    let mut group: Option<Group> = None;
    let mut members = 0u64;
    // Where the next member's first header starts (before any GNU long-name or PAX header of its own).
    let mut next_start = offset;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => return sink(failed(members, &e)),
        };
        let entry_type = entry.header().entry_type();
        if entry_type.is_gnu_sparse() {
            return sink(failed(members, &"a GNU sparse member (not supported)"));
        }
        let start = next_start;
        let stored = entry.size().div_ceil(BLOCK).saturating_mul(BLOCK);
        next_start = offset.saturating_add(entry.raw_file_position()).saturating_add(stored);
        let path_bytes = entry.path_bytes();
        let member = String::from_utf8_lossy(&path_bytes).into_owned();
        let regular = matches!(entry_type, tar::EntryType::Regular | tar::EntryType::Continuous);
        let Some((key, extension)) = split_name(&member).filter(|_| regular) else {
            members += 1;
            continue;
        };
        if let Some(done) = group.take_if(|g| g.key != key) {
            sink(Event::Group { group: done, next: Some(start), members })?;
        }
        let group = group.get_or_insert_with(|| Group::new(key));
        let role = role(&extension, caption);
        if role != Role::Other {
            group.relevant = true;
            let size = entry.size();
            if size > MAX_FILE_BYTES {
                group.oversized = true;
                let why =
                    format!("{name}/{key}: .{extension} member of {size} bytes, more than the {MAX_FILE_BYTES} read");
                sink(Event::Issue(IssueKind::Undecodable, why))?;
            } else if !group.oversized {
                let mut data = Vec::with_capacity(size as usize);
                if let Err(e) = entry.read_to_end(&mut data) {
                    return sink(failed(members, &e));
                }
                if data.len() as u64 != size {
                    return sink(failed(members, &format!("{member}: the shard ends inside this member")));
                }
                match role {
                    Role::Image(rank) if group.image.as_ref().is_none_or(|(best, _)| rank < *best) => {
                        group.image = Some((rank, data))
                    }
                    Role::Caption if group.caption.is_none() => group.caption = Some(data),
                    _ => {}
                }
            }
        }
        members += 1;
    }
    match group {
        Some(group) => sink(Event::Group { group, next: None, members }),
        None => ControlFlow::Continue(()),
    }
}
