//! The notebooks' training procedure: AdamW on BCE-with-logits, gradient-norm clipping, shuffled
//! mini-batches, a train and an eval pass per epoch.

use super::data::{BagDataset, Split};
use super::harness::{gather, shuffled_batches, Meter};
use super::model::DemoNet;
use hopfield::layers::{Layer, Mode};
use hopfield::loss::bce_with_logits;
use hopfield::optim::{clip_grad_norm, AdamConfig, AdamW, DecayFilter, Optimizer};
use hopfield::{Backend, HopfieldError, Result};
use rand::rngs::StdRng;
use rand::Rng;
use std::time::Instant;

/// Optimisation settings. [`TrainConfig::notebook`] is what the notebooks use.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// AdamW's decoupled decay, on every trainable tensor (a single PyTorch parameter group).
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
}

impl TrainConfig {
    /// `AdamW(lr=1e-3)` with torch's default decay 0.01, `clip_grad_norm_(max_norm=1.0)`, batches of 32.
    pub fn notebook(epochs: usize) -> Self {
        TrainConfig { epochs, batch_size: 32, lr: 1e-3, weight_decay: 1e-2, max_grad_norm: 1.0 }
    }
}

/// Loss and accuracy of one epoch.
#[derive(Clone, Copy, Debug)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub eval_loss: f64,
    pub eval_accuracy: f64,
    /// Seconds since training began.
    pub elapsed_s: f64,
}

/// Loss and accuracy of `net` in evaluation mode on `indices`, in order, in batches of `batch_size`.
pub fn evaluate<B: Backend, D: BagDataset + ?Sized>(
    backend: &B,
    net: &DemoNet<B>,
    data: &D,
    indices: &[usize],
    batch_size: usize,
) -> Result<Meter> {
    let mut meter = Meter::default();
    for batch in indices.chunks(batch_size) {
        let (x, y) = gather(backend, data, batch);
        let (logits, _) = net.forward(backend, net.params(), &x, Mode::Eval)?;
        let (loss, _) = bce_with_logits(backend, &logits, &y, None)?;
        meter.add(loss, &backend.to_vec(&logits), &backend.to_vec(&y));
    }
    Ok(meter)
}

/// Train `net` on `split.train` and evaluate on `split.eval` after each epoch, calling `on_epoch` with each
/// epoch's numbers. `rng` shuffles the batches and seeds the dropout masks (continue the stream that
/// initialised the net, as torch's global generator does). Fails on a non-finite loss.
pub fn fit<B: Backend, D: BagDataset + ?Sized>(
    backend: &B,
    net: &mut DemoNet<B>,
    data: &D,
    split: &Split,
    config: &TrainConfig,
    rng: &mut StdRng,
    mut on_epoch: impl FnMut(&EpochStats) -> Result<()>,
) -> Result<Vec<EpochStats>> {
    let mut optimiser = AdamW::new(AdamConfig::torch_adamw().weight_decay(config.weight_decay, DecayFilter::All))?;
    let start = Instant::now();
    let mut history = Vec::with_capacity(config.epochs);
    for epoch in 1..=config.epochs {
        let mut train = Meter::default();
        for batch in shuffled_batches(&split.train, config.batch_size, rng) {
            let (x, y) = gather(backend, data, &batch);
            let (logits, cache) = net.forward(backend, net.params(), &x, Mode::Train { seed: rng.gen() })?;
            let (loss, d_logits) = bce_with_logits(backend, &logits, &y, None)?;
            if !loss.is_finite() {
                return Err(HopfieldError::NonFinite {
                    op: "demo fit",
                    detail: format!("loss {loss} in epoch {epoch}"),
                });
            }
            let mut grads = net.zero_grads(backend);
            net.backward(backend, net.params(), &cache, &d_logits, &mut grads)?;
            let norm = clip_grad_norm(backend, &mut grads, config.max_grad_norm)?;
            if !norm.is_finite() {
                return Err(HopfieldError::NonFinite {
                    op: "demo fit",
                    detail: format!("gradient norm {norm} in epoch {epoch}"),
                });
            }
            optimiser.step(backend, net, &grads, config.lr)?;
            train.add(loss, &backend.to_vec(&logits), &backend.to_vec(&y));
        }
        let eval = evaluate(backend, net, data, &split.eval, config.batch_size)?;
        let stats = EpochStats {
            epoch,
            train_loss: train.loss(),
            train_accuracy: train.accuracy(),
            eval_loss: eval.loss(),
            eval_accuracy: eval.accuracy(),
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        on_epoch(&stats)?;
        history.push(stats);
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demos::data::LatchSequenceSet;
    use crate::demos::model::Variant;
    use hopfield::Cpu;
    use rand::SeedableRng;

    #[test]
    fn fit_learns_a_small_latch_task_and_reports_every_epoch() {
        let cpu = Cpu::<f32>::new();
        let data = LatchSequenceSet::new(512, 8, 5, 3);
        let split = Split::edges(512, 32);
        let mut rng = StdRng::seed_from_u64(42);
        let mut net = DemoNet::new(&cpu, Variant::Hopfield, data.bag_shape(), &[], &mut rng).unwrap();
        let before = evaluate(&cpu, &net, &data, &split.eval, 32).unwrap();
        let mut seen = Vec::new();
        let history = fit(&cpu, &mut net, &data, &split, &TrainConfig::notebook(6), &mut rng, |s| {
            seen.push(s.epoch);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [1, 2, 3, 4, 5, 6]);
        let last = history.last().unwrap();
        assert!(last.eval_accuracy >= 0.95, "{history:#?}");
        assert!(last.eval_loss < before.loss(), "{} → {}", before.loss(), last.eval_loss);
        let again = evaluate(&cpu, &net, &data, &split.eval, 32).unwrap();
        assert_eq!(again.accuracy(), last.eval_accuracy);
    }

    #[test]
    fn fit_stops_on_a_callback_error() {
        let cpu = Cpu::<f32>::new();
        let data = LatchSequenceSet::new(64, 4, 4, 1);
        let mut rng = StdRng::seed_from_u64(0);
        let mut net = DemoNet::new(&cpu, Variant::Pooling, data.bag_shape(), &[], &mut rng).unwrap();
        let mut calls = 0;
        let result = fit(&cpu, &mut net, &data, &Split::edges(64, 8), &TrainConfig::notebook(3), &mut rng, |_| {
            calls += 1;
            Err(HopfieldError::config("test", "stop"))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
