//! The training stream of one part: shards in the epoch's order, cut into shuffle windows, each read
//! from its start (also when resuming), shuffled and handed out with the cursor after every candidate.

use super::shard::{self, Event};
use super::WdsSource;
use crate::data::{rng, Candidate, IssueKind, StreamCursor};
use rand::seq::SliceRandom;
use std::ops::ControlFlow;
use std::path::PathBuf;

/// Where a window starts: a shard of the part's order and the byte offset of its first member's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    /// Index in the part's shard order of the epoch.
    shard: usize,
    /// Byte offset in that shard.
    offset: u64,
    /// Members of the shard before `offset`, when known (for messages).
    before: Option<u64>,
}

impl Pos {
    const START: Pos = Pos { shard: 0, offset: 0, before: Some(0) };
}

/// What follows a window.
#[derive(Clone, Copy, Debug)]
enum After {
    /// Another window of the same epoch, starting there.
    At(Pos),
    /// The end of the epoch.
    EpochEnd,
}

/// One window read: its candidates in stream order and what follows it.
struct Window {
    candidates: Vec<Candidate>,
    after: After,
}

/// The file name of a shard, for ids and messages.
pub(super) fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Read the window of epoch `epoch` that starts at `start`: candidates until `w` of them (or the end of
/// the part's shards), then on until the next candidate, to know whether another window follows (the
/// next window starts at the first member after the `w`-th candidate's group, so the members read past it
/// are read again by that window). Problems met before the window is full are recorded when `record`;
/// those met after it only when no candidate follows (no later window will read them).
fn read_window(src: &WdsSource, shards: &[PathBuf], epoch: u64, start: Pos, w: usize, record: bool) -> Window {
    let caption = &src.inner.config.caption;
    let log = &src.inner.issues;
    let mut candidates = Vec::with_capacity(w.min(1 << 12));
    let mut after: Option<Pos> = None;
    let mut pending: Vec<(IssueKind, String)> = Vec::new();
    for (s, path) in shards.iter().enumerate().skip(start.shard) {
        let (offset, before) = if s == start.shard { (start.offset, start.before) } else { (0, Some(0)) };
        let name = file_name(path);
        let mut note = |after: &Option<Pos>, kind: IssueKind, why: String| match after {
            Some(_) => pending.push((kind, why)),
            None if record => log.record_once(kind, why),
            None => {}
        };
        let flow = shard::scan(path, &name, offset, before, caption, &mut |event| {
            match event {
                Event::Issue(kind, why) => note(&after, kind, why),
                Event::Group { mut group, next, members } => {
                    let key = std::mem::take(&mut group.key);
                    match group.into_pair(caption) {
                        Err(None) => {}
                        Err(Some(why)) => note(&after, IssueKind::Unpaired, format!("{name}/{key}: {why}")),
                        Ok(_) if after.is_some() => return ControlFlow::Break(()),
                        Ok((caption, image)) => {
                            candidates.push(Candidate { epoch, id: format!("{name}/{key}"), caption, image });
                            if candidates.len() == w {
                                after = Some(match next {
                                    Some(offset) => Pos { shard: s, offset, before: before.map(|b| b + members) },
                                    None => Pos { shard: s + 1, ..Pos::START },
                                });
                            }
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        });
        if flow.is_break() {
            if let Some(next) = after {
                return Window { candidates, after: After::At(next) };
            }
        }
    }
    if record {
        for (kind, why) in pending {
            log.record_once(kind, why);
        }
    }
    Window { candidates, after: After::EpochEnd }
}

/// The candidates of one part, epoch after epoch, from a cursor on.
pub(super) struct Stream {
    src: WdsSource,
    seed: u64,
    part: usize,
    parts: usize,
    /// Current epoch and the part's shards in its order.
    epoch: u64,
    shards: Vec<PathBuf>,
    /// Current window: number and start.
    window: u64,
    start: Pos,
    /// The current window's candidates not handed out yet, in shuffled order.
    rest: std::vec::IntoIter<Candidate>,
    /// The current window's size and how many of them were handed out (or skipped on resume).
    len: usize,
    taken: usize,
    /// What follows the current window; `None` until it has been read.
    after: Option<After>,
    /// Whether the current epoch had a candidate (an epoch without any ends the stream).
    epoch_had_candidates: bool,
    /// Candidates of the first window read to skip (already handed out before the resume).
    skip: usize,
    /// Whether to record the problems of the next window read (not when re-reading a window that was
    /// already read, and its problems recorded, before the resume).
    record: bool,
}

impl Stream {
    /// The stream that continues exactly where the one that produced `from` stood.
    pub(super) fn new(src: WdsSource, seed: u64, part: usize, parts: usize, from: StreamCursor) -> Self {
        let shards = src.part_shards(seed, part, parts, from.epoch);
        let shard = usize::try_from(from.shard).unwrap_or(usize::MAX);
        let before = (from.offset == 0).then_some(0);
        let skip = usize::try_from(from.taken).unwrap_or(usize::MAX);
        Stream {
            src,
            seed,
            part,
            parts,
            epoch: from.epoch,
            shards,
            window: from.window,
            start: Pos { shard, offset: from.offset, before },
            rest: Vec::new().into_iter(),
            len: 0,
            taken: 0,
            after: None,
            // Only a stream that starts an epoch from its beginning can tell that the epoch is empty.
            epoch_had_candidates: from != StreamCursor { epoch: from.epoch, ..StreamCursor::default() },
            skip,
            record: from.taken == 0,
        }
    }

    /// The cursor just after the candidate handed out last.
    fn cursor(&self) -> StreamCursor {
        if self.taken < self.len {
            let (shard, offset) = (self.start.shard as u64, self.start.offset);
            return StreamCursor { epoch: self.epoch, shard, offset, window: self.window, taken: self.taken as u64 };
        }
        match self.after {
            Some(After::At(p)) => StreamCursor {
                epoch: self.epoch,
                shard: p.shard as u64,
                offset: p.offset,
                window: self.window + 1,
                taken: 0,
            },
            _ => StreamCursor { epoch: self.epoch + 1, ..StreamCursor::default() },
        }
    }

    /// Read and shuffle the current window.
    fn fill(&mut self) {
        let w = self.src.window();
        let window = read_window(&self.src, &self.shards, self.epoch, self.start, w, self.record);
        self.record = true;
        let mut candidates = window.candidates;
        let mut order = rng::rng_for(&[self.seed, rng::tag::ORDER, self.epoch, self.part as u64, self.window]);
        candidates.shuffle(&mut order);
        self.len = candidates.len();
        self.epoch_had_candidates |= self.len > 0;
        self.taken = std::mem::take(&mut self.skip).min(self.len);
        self.rest = candidates.into_iter();
        if self.taken > 0 {
            self.rest.nth(self.taken - 1);
        }
        self.after = Some(window.after);
    }
}

impl Iterator for Stream {
    type Item = (Candidate, StreamCursor);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(candidate) = self.rest.next() {
                self.taken += 1;
                return Some((candidate, self.cursor()));
            }
            match self.after.take() {
                None => {}
                Some(After::At(p)) => {
                    self.window += 1;
                    self.start = p;
                }
                Some(After::EpochEnd) if !self.epoch_had_candidates => return None,
                Some(After::EpochEnd) => {
                    self.epoch += 1;
                    self.shards = self.src.part_shards(self.seed, self.part, self.parts, self.epoch);
                    self.window = 0;
                    self.start = Pos::START;
                    self.epoch_had_candidates = false;
                }
            }
            self.fill();
        }
    }
}
