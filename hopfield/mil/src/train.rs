//! Training one MIL model: mini-batches of bags, BCE on logits, AdamW with exponential learning-rate decay
//! per epoch, gradient clipping. Everything random (initialisation, bag order, dropout) comes from one seed.

use super::data::{MilDataset, Standardizer};
use super::error::{MilError, Result};
use super::folds::derive_seed;
use super::metrics::roc_auc;
use super::model::{BagBatch, MilModel, MilModelConfig};
use hopfield::layers::{Layer, Mode, Retrieval};
use hopfield::loss::bce_with_logits;
use hopfield::optim::{clip_grad_norm, AdamConfig, AdamW, DecayFilter, LrSchedule, Optimizer};
use hopfield::{Backend, Element};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// One point of the hyper-parameter grid: the model and how to train it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MilConfig {
    /// Learning rate of the first epoch.
    pub lr: f64,
    /// Learning rate factor per epoch (exponential decay).
    pub lr_decay: f64,
    /// AdamW's decoupled weight decay (on weight matrices; not on biases, norms or the state pattern).
    pub weight_decay: f64,
    /// Embedding layers (linear + ReLU).
    pub embedding_layers: usize,
    /// Embedding width.
    pub width: usize,
    /// Pooling heads.
    pub heads: usize,
    /// Size of each head.
    pub head_dim: usize,
    /// β.
    pub beta: f64,
    /// Dropout on the association (bag dropout).
    pub bag_dropout: f64,
    /// Passes over the training bags.
    pub epochs: usize,
    /// Bags per optimiser step.
    pub batch_size: usize,
    /// Clip the gradient's global norm to this (`None`: no clipping).
    pub grad_clip: Option<f64>,
    /// The pooling's retrieval (softmax, as the paper; sparsemax, entmax, softmax₁).
    #[serde(default)]
    pub retrieval: Retrieval,
}

impl Default for MilConfig {
    fn default() -> Self {
        MilConfig {
            lr: 1e-3,
            lr_decay: 0.98,
            weight_decay: 1e-3,
            embedding_layers: 2,
            width: 64,
            heads: 8,
            head_dim: 16,
            beta: 1.0,
            bag_dropout: 0.0,
            epochs: 30,
            batch_size: 8,
            grad_clip: Some(1.0),
            retrieval: Retrieval::Softmax,
        }
    }
}

impl MilConfig {
    /// The model part, for `input_size` features.
    pub fn model(&self, input_size: usize) -> MilModelConfig {
        MilModelConfig {
            input_size,
            embedding_layers: self.embedding_layers,
            width: self.width,
            heads: self.heads,
            head_dim: self.head_dim,
            beta: self.beta,
            bag_dropout: self.bag_dropout,
            retrieval: self.retrieval,
        }
    }
}

/// Bags ready for a model: standardised instances in the backend's element type, and labels.
#[derive(Clone, Debug)]
pub struct PreparedBags<E> {
    /// Features per instance.
    pub features: usize,
    /// Instances of each bag, `[len, features]` row-major.
    pub instances: Vec<Vec<E>>,
    /// Instances per bag.
    pub lens: Vec<usize>,
    /// Bag labels.
    pub labels: Vec<bool>,
}

impl<E: Element> PreparedBags<E> {
    /// Standardise the bags `indices` of `data` with `scaler`.
    pub fn new(data: &MilDataset, indices: &[usize], scaler: &Standardizer) -> Self {
        let bags = indices.iter().map(|&i| &data.bags[i]);
        PreparedBags {
            features: data.n_features,
            instances: bags.clone().map(|b| scaler.apply(b)).collect(),
            lens: bags.clone().map(|b| b.len).collect(),
            labels: bags.map(|b| b.label).collect(),
        }
    }
    /// Number of bags.
    pub fn len(&self) -> usize {
        self.lens.len()
    }
    /// Whether there are no bags.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
    /// Bag `i`: its instances `[len, features]` row-major, and `len`.
    pub fn bag(&self, i: usize) -> (&[E], usize) {
        (&self.instances[i], self.lens[i])
    }
}

/// Train a model on `bags` for `cfg.epochs` epochs.
pub fn train<B: Backend>(backend: &B, cfg: &MilConfig, bags: &PreparedBags<B::Elem>, seed: u64) -> Result<MilModel<B>> {
    train_with(backend, cfg, bags, seed, &mut |_, _, _| Ok(()))
}

/// Called after each epoch (1-based) with the model and the epoch's mean training loss; an error stops training.
pub type EpochHook<'a, B> = dyn FnMut(usize, &MilModel<B>, f64) -> Result<()> + 'a;

/// [`train`], calling `on_epoch(epoch, model, mean training loss)` after each epoch (1-based).
pub fn train_with<B: Backend>(
    backend: &B,
    cfg: &MilConfig,
    bags: &PreparedBags<B::Elem>,
    seed: u64,
    on_epoch: &mut EpochHook<'_, B>,
) -> Result<MilModel<B>> {
    if bags.is_empty() || cfg.batch_size == 0 {
        return Err(MilError::setting("batch_size", format!("{} bags in batches of {}", bags.len(), cfg.batch_size)));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = cfg.model(bags.features).init(backend, &mut rng)?;
    let adam = AdamConfig::default().weight_decay(cfg.weight_decay, DecayFilter::OpenClip);
    let mut opt = AdamW::new(adam)?;
    let steps_per_epoch = bags.len().div_ceil(cfg.batch_size) as u64;
    let schedule = LrSchedule::Exponential { base: cfg.lr, gamma: cfg.lr_decay, every: steps_per_epoch };
    schedule.validate()?;
    let mut order: Vec<usize> = (0..bags.len()).collect();
    let mut step = 0u64;
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let batches = length_bucketed_batches(&order, &bags.lens, cfg.batch_size, &mut rng);
        let mut loss_sum = 0.0;
        for chunk in &batches {
            let batch = BagBatch::pack(chunk.iter().map(|&i| bags.bag(i)));
            let (logits, cache) =
                model.forward(backend, &model, &batch, Mode::Train { seed: derive_seed(seed, step) })?;
            let y: Vec<B::Elem> = chunk.iter().map(|&i| B::Elem::of(bags.labels[i] as u8 as f64)).collect();
            let targets = backend.from_vec(y, &[chunk.len(), 1]);
            let (loss, d_logits) = bce_with_logits(backend, &logits, &targets, None)?;
            if !loss.is_finite() {
                return Err(MilError::Model(hopfield::HopfieldError::NonFinite {
                    op: "mil.train",
                    detail: format!("loss {loss} at step {step}"),
                }));
            }
            let mut grads = model.zero_grads(backend);
            model.backward(backend, &model, &cache, &d_logits, &mut grads)?;
            if let Some(max) = cfg.grad_clip {
                clip_grad_norm(backend, &mut grads, max)?;
            }
            opt.step(backend, &mut model, &grads, schedule.lr_at(step))?;
            step += 1;
            loss_sum += loss * chunk.len() as f64;
        }
        on_epoch(epoch, &model, loss_sum / bags.len() as f64)?;
    }
    Ok(model)
}

/// Cut a shuffled `order` into batches of bags of similar length, so that padding to the longest bag of a
/// batch wastes little (musk2's bags hold 1 to 1044 instances). Windows of 8 batches are sorted by length
/// and cut; the batches are then shuffled, so each epoch still sees bags in a random order and company.
/// Public so that another framework's training loop draws the same batches from the same seed.
pub fn length_bucketed_batches(
    order: &[usize],
    lens: &[usize],
    batch_size: usize,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut batches = Vec::with_capacity(order.len().div_ceil(batch_size));
    for window in order.chunks(batch_size * 8) {
        let mut w = window.to_vec();
        w.sort_by_key(|&i| lens[i]);
        batches.extend(w.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// Logits of every bag of `bags`.
pub fn predict<B: Backend>(backend: &B, model: &MilModel<B>, bags: &PreparedBags<B::Elem>) -> Result<Vec<f64>> {
    let all: Vec<(&[B::Elem], usize)> = (0..bags.len()).map(|i| bags.bag(i)).collect();
    model.predict(backend, &all, 32)
}

/// Train on `train`, return the ROC-AUC on `test` (`None` if `test` lacks a class).
pub fn train_and_score<B: Backend>(
    backend: &B,
    cfg: &MilConfig,
    train_bags: &PreparedBags<B::Elem>,
    test_bags: &PreparedBags<B::Elem>,
    seed: u64,
) -> Result<Option<f64>> {
    let model = train(backend, cfg, train_bags, seed)?;
    Ok(roc_auc(&predict(backend, &model, test_bags)?, &test_bags.labels))
}
