//! Batches from a [`TrainSource`] on a background thread, `prefetch` batches ahead through a bounded
//! channel: decoding and generation overlap the training step, and at most `prefetch + 1` batches are
//! in memory whatever the size of the data.
//!
//! Epochs are concatenated into one stream cut into batches of `batch` pairs, so batch `k` holds the
//! pairs `k·batch .. (k+1)·batch` of that stream: a run resumed at step `k` sees exactly the batches an
//! uninterrupted run sees.

use super::{Example, TrainSource};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A batch of `len` pairs.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Index of the optimiser step it feeds.
    pub step: u64,
    /// Epoch of its last pair.
    pub epoch: u64,
    /// `[len, 3, size, size]` row-major, CLIP-normalised.
    pub pixels: Vec<f32>,
    /// One caption per image.
    pub captions: Vec<String>,
    /// Image side.
    pub size: usize,
}

/// The prefetching loader; iterate it for batches. It ends only when an epoch of the source holds fewer
/// pairs than one batch (a batch would repeat pairs): [`Loader::why_ended`] then says so.
#[derive(Debug)]
pub struct Loader {
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
    ended: Arc<Mutex<Option<String>>>,
}

impl Loader {
    /// Start the thread: batches of `batch` pairs from step `start_step` on, `prefetch` ahead.
    pub fn new(source: Arc<dyn TrainSource>, batch: usize, seed: u64, start_step: u64, prefetch: usize) -> Self {
        let (tx, rx) = sync_channel(prefetch.max(1));
        let ended = Arc::new(Mutex::new(None));
        let why = ended.clone();
        let handle = std::thread::Builder::new()
            .name("cloob-loader".into())
            .spawn(move || {
                let size = source.image_size();
                let mut skip = start_step as usize * batch;
                let mut epoch = 0u64;
                if let Some(len) = source.epoch_len().filter(|&l| l > 0) {
                    epoch = (skip / len) as u64;
                    skip %= len;
                }
                let mut step = start_step;
                let mut current = Vec::<Example>::with_capacity(batch);
                loop {
                    let mut yielded = 0usize;
                    for ex in source.epoch(seed, epoch, skip) {
                        yielded += 1;
                        current.push(ex);
                        if current.len() == batch {
                            let taken = std::mem::replace(&mut current, Vec::with_capacity(batch));
                            let mut pixels = Vec::with_capacity(batch * 3 * size * size);
                            let mut captions = Vec::with_capacity(batch);
                            for e in taken {
                                pixels.extend_from_slice(&e.pixels);
                                captions.push(e.caption);
                            }
                            if tx.send(Batch { step, epoch, pixels, captions, size }).is_err() {
                                return; // the trainer is gone
                            }
                            step += 1;
                        }
                    }
                    if skip == 0 && yielded < batch {
                        // Batches would hold the same pairs twice (from consecutive epochs), with no
                        // negatives between them: stop rather than train on that.
                        *why.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                            "epoch {epoch} of the data source holds {yielded} usable pair(s), fewer than one batch of \
                             {batch}"
                        ));
                        return;
                    }
                    skip = 0;
                    epoch += 1;
                }
            })
            .expect("spawn the loader thread");
        Loader { rx, handle: Some(handle), ended }
    }

    /// Why the stream ended, once [`Iterator::next`] has returned `None`.
    pub fn why_ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
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

    #[test]
    fn resumed_loader_yields_the_same_batches() {
        let src: Arc<dyn TrainSource> = Arc::new(SceneSource { len: 10 });
        let full: Vec<Batch> = Loader::new(src.clone(), 4, 3, 0, 2).take(6).collect();
        let resumed: Vec<Batch> = Loader::new(src, 4, 3, 4, 2).take(2).collect();
        for (a, b) in full[4..].iter().zip(&resumed) {
            assert_eq!((a.step, a.epoch, &a.captions), (b.step, b.epoch, &b.captions));
            assert_eq!(a.pixels, b.pixels);
        }
        assert_eq!(full[2].epoch, 1, "batches run across epoch ends");
    }

    #[test]
    fn an_epoch_smaller_than_a_batch_ends_the_stream_with_the_reason() {
        let src: Arc<dyn TrainSource> = Arc::new(SceneSource { len: 3 });
        let mut loader = Loader::new(src.clone(), 4, 0, 0, 2);
        assert!(loader.next().is_none(), "no batch repeats a pair");
        let why = loader.why_ended().unwrap();
        assert!(why.contains("3 usable pair(s), fewer than one batch of 4"), "{why}");
        // Exactly one batch per epoch is fine.
        assert_eq!(Loader::new(src, 3, 0, 0, 2).take(3).count(), 3);
    }
}
