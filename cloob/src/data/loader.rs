//! Batches from a [`TrainData`] source: a loader thread plans each batch, a pool of `workers` threads
//! decodes its examples in parallel, and finished batches wait in a bounded channel `prefetch` deep, so
//! decoding overlaps the training step and at most `prefetch + 1` batches of pixels are in memory
//! (`u8` for decoded files until the step normalises them, `f32` for generated data) whatever the size
//! of the data.
//!
//! What a batch holds does not depend on the number of workers: results are put back in order.
//!
//! - Indexed sources: epochs are concatenated into one stream of positions, each epoch in its own
//!   permutation, and global batch `k` is positions `k·B .. (k+1)·B`. With `R` ranks, rank `r` produces
//!   only positions `k·B + r·B/R .. k·B + (r+1)·B/R`: the union in rank order is the one-process batch.
//!   Starting at step `k` computes where to be; nothing before it is decoded.
//! - Streamed sources: rank `r` reads its own shards and fills its `B/R` rows with the next examples that
//!   decode (one that does not is counted and skipped, never replaced by a repeat). Each batch carries the
//!   stream's cursor after it, which a checkpoint stores to resume exactly there.

use super::{rng, DataError};
use super::{Example, IndexedSource, Pixels, StreamCursor, StreamedSource, TrainData};
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A batch of this rank's `len` pairs.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Index of the optimiser step it feeds.
    pub step: u64,
    /// Epoch of the global batch's last pair.
    pub epoch: u64,
    /// `[len, 3, size, size]` row-major.
    pub pixels: Pixels,
    /// One caption per image.
    pub captions: Vec<String>,
    /// Where each pair came from ([`Example::id`]).
    pub ids: Vec<String>,
    /// Image side.
    pub size: usize,
    /// A streamed source's position after this batch (this rank's stream).
    pub cursor: Option<StreamCursor>,
    /// Images this process decoded to make the batch (stand-ins and failures included).
    pub decoded: u64,
}

/// How to cut a source into batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Pairs per optimiser step over all ranks.
    pub batch: usize,
    /// The run's seed.
    pub seed: u64,
    /// Decoding threads (at least 1).
    pub workers: usize,
    /// Finished batches kept ready ahead of the step (at least 1).
    pub prefetch: usize,
    /// This process's rank.
    pub rank: usize,
    /// Number of ranks; `batch` must be a multiple of it.
    pub ranks: usize,
}

impl LoaderConfig {
    /// One process, `workers` decoding threads, 2 batches ahead.
    pub fn new(batch: usize, seed: u64, workers: usize) -> Self {
        LoaderConfig { batch, seed, workers, prefetch: 2, rank: 0, ranks: 1 }
    }
}

/// The decoding threads a run uses by default: the cores the training step leaves free. A CPU step
/// uses rayon's threads (`RAYON_NUM_THREADS`, else every core), so on a CPU run the loader gets the cores
/// beyond those, and at least one; a GPU step keeps one core busy, so the loader gets the others.
pub fn default_workers(step_on_cpu: bool) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let step = if step_on_cpu { rayon::current_num_threads().min(cores) } else { 1 };
    cores.saturating_sub(step).max(1)
}

/// The prefetching loader; iterate it for batches. It ends only when the source cannot fill a batch (an
/// epoch smaller than one batch, nothing readable left): [`Loader::why_ended`] then says why.
#[derive(Debug)]
pub struct Loader {
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
    ended: Arc<Mutex<Option<String>>>,
}

/// Consecutive unreadable samples of a stream after which the loader gives up on it.
const GIVE_UP_AFTER: usize = 10_000;

impl Loader {
    /// Start loading at step `start_step` (indexed sources), or at `cursor` (streamed sources; `None`: the
    /// start of epoch 0). Errors when the configuration cannot work (no worker, a batch that does not split
    /// over the ranks, a streamed source that cannot serve this rank).
    pub fn new(
        data: TrainData,
        cfg: LoaderConfig,
        start_step: u64,
        cursor: Option<StreamCursor>,
    ) -> Result<Self, DataError> {
        if cfg.workers == 0 || cfg.ranks == 0 || cfg.rank >= cfg.ranks || cfg.batch == 0 {
            return Err(DataError(format!("loader: bad configuration {cfg:?}")));
        }
        if !cfg.batch.is_multiple_of(cfg.ranks) {
            return Err(DataError(format!("loader: a batch of {} does not split over {} ranks", cfg.batch, cfg.ranks)));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.workers)
            .thread_name(|i| format!("cloob-decode-{i}"))
            .build()
            .map_err(|e| DataError(format!("loader: cannot start {} decoding threads: {e}", cfg.workers)))?;
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let ended = Arc::new(Mutex::new(None));
        let why = ended.clone();
        let size = data.image_size();
        let job: Box<dyn FnOnce() -> Option<String> + Send> = match data {
            TrainData::Indexed(source) => {
                Box::new(move || run_indexed(source.as_ref(), &cfg, &pool, start_step, size, &tx))
            }
            TrainData::Streamed(source) => {
                let stream = source.candidates(cfg.seed, cfg.rank, cfg.ranks, cursor.unwrap_or_default())?;
                Box::new(move || run_streamed(source.as_ref(), stream, &cfg, &pool, start_step, size, &tx))
            }
        };
        let handle = std::thread::Builder::new()
            .name("cloob-loader".into())
            .spawn(move || {
                if let Some(reason) = job() {
                    *why.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                }
            })
            .map_err(|e| DataError(format!("loader: cannot start its thread: {e}")))?;
        Ok(Loader { rx, handle: Some(handle), ended })
    }

    /// Why the stream ended, once [`Iterator::next`] has returned `None`.
    pub fn why_ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Concatenate examples into a batch.
fn assemble(
    examples: Vec<Example>,
    step: u64,
    epoch: u64,
    size: usize,
    cursor: Option<StreamCursor>,
    decoded: u64,
) -> Batch {
    let mut captions = Vec::with_capacity(examples.len());
    let mut ids = Vec::with_capacity(examples.len());
    let total: usize = examples.iter().map(|e| e.pixels.len()).sum();
    let mut pixels = match examples.iter().all(|e| matches!(e.pixels, Pixels::Rgb8(_))) {
        true => Pixels::Rgb8(Vec::with_capacity(total)),
        false => Pixels::Normalized(Vec::with_capacity(total)),
    };
    for e in examples {
        pixels.extend(e.pixels, size);
        captions.push(e.caption);
        ids.push(e.id);
    }
    Batch { step, epoch, pixels, captions, ids, size, cursor, decoded }
}

/// The indexed loop: returns why it stopped, or `None` when the trainer hung up.
fn run_indexed(
    source: &dyn IndexedSource,
    cfg: &LoaderConfig,
    pool: &rayon::ThreadPool,
    start_step: u64,
    size: usize,
    tx: &SyncSender<Batch>,
) -> Option<String> {
    let (len, batch) = (source.len() as u64, cfg.batch as u64);
    if len < batch {
        // Batches would hold the same pairs twice (from consecutive epochs), with no negatives between
        // them: stop rather than train on that.
        return Some(format!(
            "an epoch of the data source holds {len} usable pair(s), fewer than one batch of {}",
            cfg.batch
        ));
    }
    let local = batch / cfg.ranks as u64;
    // The permutations of the (at most two) epochs the current batch touches.
    let mut orders: Vec<(u64, Arc<Vec<u32>>)> = Vec::new();
    for step in start_step.. {
        let first = step * batch + cfg.rank as u64 * local;
        let mut items = Vec::with_capacity(local as usize);
        for g in first..first + local {
            let epoch = g / len;
            let order = match orders.iter().find(|(e, _)| *e == epoch) {
                Some((_, o)) => o.clone(),
                None => {
                    orders.retain(|(e, _)| *e + 1 >= epoch);
                    let o = Arc::new(rng::permutation_u32(len as usize, cfg.seed, rng::tag::ORDER, epoch));
                    orders.push((epoch, o.clone()));
                    o
                }
            };
            items.push((epoch, order, (g % len) as usize));
        }
        let before = source.decoded();
        let examples: Vec<Option<Example>> =
            pool.install(|| items.par_iter().map(|(e, o, p)| source.example(cfg.seed, *e, o, *p)).collect());
        let decoded = source.decoded() - before;
        let mut got = Vec::with_capacity(items.len());
        for (ex, (epoch, _, position)) in examples.into_iter().zip(&items) {
            match ex {
                Some(ex) => got.push(ex),
                None => {
                    return Some(format!(
                        "no readable pair for position {position} of epoch {epoch}: its image and every stand-in \
                         tried are unreadable"
                    ))
                }
            }
        }
        let epoch = ((step + 1) * batch - 1) / len;
        if tx.send(assemble(got, step, epoch, size, None, decoded)).is_err() {
            return None; // the trainer is gone
        }
    }
    None
}

/// The streamed loop: returns why it stopped, or `None` when the trainer hung up.
fn run_streamed(
    source: &dyn StreamedSource,
    mut stream: Box<dyn Iterator<Item = (super::Candidate, StreamCursor)> + Send>,
    cfg: &LoaderConfig,
    pool: &rayon::ThreadPool,
    start_step: u64,
    size: usize,
    tx: &SyncSender<Batch>,
) -> Option<String> {
    let local = cfg.batch / cfg.ranks;
    let mut failed_in_a_row = 0usize;
    for step in start_step.. {
        let mut got = Vec::with_capacity(local);
        let (mut epoch, mut cursor, before) = (0, None, source.decoded());
        while got.len() < local {
            let candidates: Vec<_> = stream.by_ref().take(local - got.len()).collect();
            if candidates.is_empty() {
                return Some(format!(
                    "the stream of rank {} ended: an epoch of its shards holds no readable pair",
                    cfg.rank
                ));
            }
            let decoded: Vec<Option<Example>> =
                pool.install(|| candidates.par_iter().map(|(c, _)| source.decode(cfg.seed, c)).collect());
            for ((c, after), ex) in candidates.into_iter().zip(decoded) {
                (epoch, cursor) = (c.epoch, Some(after));
                match ex {
                    Some(ex) => {
                        failed_in_a_row = 0;
                        got.push(ex);
                    }
                    None => failed_in_a_row += 1,
                }
            }
            if failed_in_a_row >= GIVE_UP_AFTER {
                return Some(format!("{failed_in_a_row} samples in a row could not be decoded"));
            }
        }
        if tx.send(assemble(got, step, epoch, size, cursor, source.decoded() - before)).is_err() {
            return None;
        }
    }
    None
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.rx.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel makes the thread's next send fail; drain so it is not blocked on one.
        let (_, dead) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::scenes::SceneSource;
    use super::*;

    fn scenes(len: usize) -> TrainData {
        TrainData::Indexed(Arc::new(SceneSource { len }))
    }

    fn load(data: TrainData, cfg: LoaderConfig, start: u64, n: usize) -> Vec<Batch> {
        Loader::new(data, cfg, start, None).unwrap().take(n).collect()
    }

    #[test]
    fn resumed_loader_yields_the_same_batches() {
        let cfg = LoaderConfig::new(4, 3, 1);
        let full = load(scenes(10), cfg, 0, 6);
        let resumed = load(scenes(10), cfg, 4, 2);
        for (a, b) in full[4..].iter().zip(&resumed) {
            assert_eq!((a.step, a.epoch, &a.captions), (b.step, b.epoch, &b.captions));
            assert_eq!(a.pixels, b.pixels);
        }
        assert_eq!(full[2].epoch, 1, "batches run across epoch ends");
    }

    #[test]
    fn batches_do_not_depend_on_the_number_of_workers() {
        let one = load(scenes(50), LoaderConfig::new(8, 5, 1), 0, 9);
        for workers in [2, 3] {
            let many = load(scenes(50), LoaderConfig { prefetch: 1, ..LoaderConfig::new(8, 5, workers) }, 0, 9);
            for (a, b) in one.iter().zip(&many) {
                assert_eq!((a.step, a.epoch, &a.ids, &a.captions), (b.step, b.epoch, &b.ids, &b.captions));
                assert_eq!(a.pixels, b.pixels, "{workers} workers");
            }
        }
    }

    #[test]
    fn ranks_take_their_rows_of_each_global_batch_in_order() {
        let whole = load(scenes(30), LoaderConfig::new(12, 1, 2), 0, 5);
        let parts: Vec<Vec<Batch>> = (0..3)
            .map(|rank| load(scenes(30), LoaderConfig { rank, ranks: 3, ..LoaderConfig::new(12, 1, 1) }, 0, 5))
            .collect();
        for (k, b) in whole.iter().enumerate() {
            let union: Vec<&String> = parts.iter().flat_map(|p| &p[k].ids).collect();
            assert_eq!(union, b.ids.iter().collect::<Vec<_>>(), "step {k}");
            assert!(parts.iter().all(|p| p[k].ids.len() == 4 && p[k].epoch == b.epoch));
        }
    }

    #[test]
    fn an_epoch_smaller_than_a_batch_ends_the_stream_with_the_reason() {
        let mut loader = Loader::new(scenes(3), LoaderConfig::new(4, 0, 1), 0, None).unwrap();
        assert!(loader.next().is_none(), "no batch repeats a pair");
        let why = loader.why_ended().unwrap();
        assert!(why.contains("3 usable pair(s), fewer than one batch of 4"), "{why}");
        // Exactly one batch per epoch is fine.
        assert_eq!(load(scenes(3), LoaderConfig::new(3, 0, 1), 0, 3).len(), 3);
        let e = Loader::new(scenes(9), LoaderConfig { ranks: 2, ..LoaderConfig::new(3, 0, 1) }, 0, None).unwrap_err();
        assert!(e.0.contains("does not split over 2 ranks"), "{e}");
    }
}
