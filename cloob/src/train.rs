//! One optimisation step of the two-tower model: forward both towers, the contrastive loss, backward,
//! gradient-norm clipping, AdamW with open_clip's decay groups at the scheduled learning rate, then
//! `logit_scale` clamped to `[0, ln 100]`.
//!
//! Gradient accumulation (`accum_freq > 1`) computes the loss over the whole accumulated batch, as
//! open_clip does: a first pass embeds every micro-batch without keeping caches, the loss and its
//! gradient w.r.t. all embeddings are computed once, then each micro-batch is embedded again with its
//! cache and backpropagated from its rows of that gradient. The tower gradients equal open_clip's; the
//! `logit_scale` gradient is counted once (open_clip backpropagates the full loss once per micro-batch,
//! which multiplies the temperature's gradient by `accum_freq`).

use crate::dist::{all_gather_rows, all_reduce_grads, Collective, CommElement, SingleProcess};
use crate::image_tower::TowerStats;
use crate::lock::{LockConfig, ModelLock};
use crate::loss::{contrastive_loss_normalized, LossConfig, LossOutput};
use crate::model::{ClipInput, ClipModel, ClipOutputGrads};
use crate::tokenizer::TokenBatch;
use hopfield::layers::{Layer, Mode};
use hopfield::optim::{clip_grad_norm, AdamConfig, AdamW, DecayFilter, LrSchedule, Optimizer};
use hopfield::params::global_norm;
use hopfield::{Backend, HopfieldError, Parameters, Result};
use serde::{Deserialize, Serialize};

/// How to train. Plain data with serde.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The contrastive loss (CLOOB's by default).
    pub loss: LossConfig,
    /// Learning rate per step: `warmup_cosine` (open_clip) or `cosine_restarts` (cloob).
    pub schedule: LrSchedule,
    /// AdamW's β, ε, weight decay and decay groups.
    pub adam: AdamConfig,
    /// Micro-batches per optimiser step; divides the batch given to [`Trainer::step`].
    pub accum_freq: usize,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub grad_clip_norm: Option<f64>,
    /// Frozen parts of the towers (none by default; see [`crate::lock`]).
    #[serde(default)]
    pub lock: LockConfig,
}

impl TrainConfig {
    /// `loss` with open_clip's ViT defaults around `schedule`: β = (0.9, 0.98), ε = 1e-6, weight decay
    /// 0.2 on open_clip's groups without the embedding tables ([`DecayFilter::OpenClipNoEmbeddings`]), no
    /// accumulation, no clipping.
    pub fn new(loss: LossConfig, schedule: LrSchedule) -> Self {
        TrainConfig {
            loss,
            schedule,
            adam: AdamConfig::default().betas(0.9, 0.98).eps(1e-6).weight_decay(0.2, DecayFilter::OpenClipNoEmbeddings),
            accum_freq: 1,
            grad_clip_norm: None,
            lock: LockConfig::default(),
        }
    }
    /// With `n` micro-batches per step.
    pub fn accum_freq(self, n: usize) -> Self {
        TrainConfig { accum_freq: n, ..self }
    }
    /// With the towers locked as `lock` says.
    pub fn lock(self, lock: LockConfig) -> Self {
        TrainConfig { lock, ..self }
    }
    /// With gradient-norm clipping.
    pub fn grad_clip_norm(self, max_norm: f64) -> Self {
        TrainConfig { grad_clip_norm: Some(max_norm), ..self }
    }

    /// Check the schedule, AdamW's hyper-parameters, `accum_freq ≥ 1` and the clipping norm.
    pub fn validate(&self) -> Result<()> {
        self.schedule.validate()?;
        self.adam.validate()?;
        if self.accum_freq == 0 {
            return Err(HopfieldError::config("accum_freq", "must be at least 1"));
        }
        if let Some(m) = self.grad_clip_norm.filter(|m| !(m.is_finite() && *m > 0.0)) {
            return Err(HopfieldError::config("grad_clip_norm", format!("must be positive and finite, got {m}")));
        }
        Ok(())
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// 0-based index of the step.
    pub step: u64,
    /// Loss over the whole (accumulated) batch.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// τ⁻¹ after the step (and the clamp).
    pub inv_tau: f64,
    /// Seconds spent in communication between ranks (gathering embeddings, summing gradients; waiting
    /// for the slowest rank included); 0 in one process.
    pub comm_seconds: f64,
}

/// A model, its optimiser and its step count.
#[derive(Clone, Debug)]
pub struct Trainer<B: Backend> {
    /// The model being trained.
    pub model: ClipModel<B>,
    /// AdamW over the model's named parameters.
    pub optimizer: AdamW<B>,
    /// How to train.
    pub config: TrainConfig,
    /// Steps taken (the schedule's step of the next one).
    pub step: u64,
    /// What `config.lock` freezes in `model`.
    lock: ModelLock,
    /// Gradient accumulator reused across steps (zeroed at the start of each; frozen tensors' are empty).
    grads: Option<ClipModel<B>>,
}

impl<B: Backend> Trainer<B> {
    /// Validate `config` (its lock against `model`'s towers) and set up AdamW.
    pub fn new(model: ClipModel<B>, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        let lock = config.lock.plan(&model)?;
        Ok(Trainer { optimizer: AdamW::new(config.adam)?, model, config, step: 0, lock, grads: None })
    }

    /// What the lock freezes: per tower, and by tensor name.
    pub fn lock(&self) -> &ModelLock {
        &self.lock
    }

    /// One optimiser step on `N` image–text pairs (`N` divisible by `accum_freq`).
    ///
    /// Fails without changing the model when the loss or a gradient is not finite, naming the step (its
    /// 0-based index) and the first non-finite gradient.
    ///
    /// # Shapes
    /// images `[N, C, H, W]`, tokens `[N, L]`.
    pub fn step(&mut self, backend: &B, images: &B::Tensor, tokens: &TokenBatch) -> Result<StepStats>
    where
        B::Elem: CommElement,
    {
        self.step_with(backend, images, tokens, &SingleProcess)
    }

    /// One optimiser step of a data-parallel run: this rank's shard of `N` pairs of a global batch of
    /// `N · comm.size()` (see [`crate::dist`]). Every rank must call it with shards of one size; all
    /// take the same step, with the loss over the global batch. On one rank it is [`Trainer::step`].
    ///
    /// # Shapes
    /// images `[N, C, H, W]`, tokens `[N, L]` (this rank's rows of the global batch).
    pub fn step_with(
        &mut self,
        backend: &B,
        images: &B::Tensor,
        tokens: &TokenBatch,
        comm: &dyn Collective,
    ) -> Result<StepStats>
    where
        B::Elem: CommElement,
    {
        let step = self.step;
        let mut grads = match self.grads.take() {
            Some(mut g) => {
                g.zero(backend);
                g
            }
            None => self.lock.zero_grads(backend, &self.model),
        };
        let comm_time = std::cell::Cell::new(0.0);
        let timed = Timed { inner: comm, seconds: &comm_time };
        let mut stats = Vec::new();
        let loss =
            self.accumulate(backend, images, tokens, &timed, &mut grads, &mut stats).map_err(|e| name_step(step, e))?;
        all_reduce_grads(backend, &timed, &mut grads)?;
        let lr = self.config.schedule.lr_at(step);
        let grad_norm = match self.config.grad_clip_norm {
            Some(max) => clip_grad_norm(backend, &mut self.lock.mask(&mut grads), max)?,
            None => global_norm(backend, &self.lock.mask(&mut grads)),
        };
        if !grad_norm.is_finite() {
            let mut first = None;
            self.lock.mask(&mut grads).visit(&mut |name, t, trainable| {
                if trainable && first.is_none() && !backend.all_finite(t) {
                    first = Some(name.to_string());
                }
            });
            return Err(HopfieldError::NonFinite {
                op: "train.step",
                detail: format!(
                    "step {step}: gradient norm {grad_norm} (first non-finite gradient: {})",
                    first.unwrap_or_else(|| "none, the norm overflowed".into())
                ),
            });
        }
        // Frozen tensors visit as not trainable: no update, no decay, no moments.
        let (model, lock) = (&mut self.model, &self.lock);
        self.optimizer.step(backend, &mut lock.mask(model), &lock.mask(&mut grads), lr)?;
        // A ResNet's running statistics, as PyTorch updates them in each training forward pass.
        for s in &stats {
            self.model.fold_batch_stats(backend, s);
        }
        self.grads = Some(grads);
        let inv_tau = self.model.clamp_logit_scale(backend);
        self.step += 1;
        let comm_seconds = comm_time.get();
        Ok(StepStats { step, loss, lr, grad_norm, inv_tau, comm_seconds })
    }

    /// The loss over `N` pairs and its gradient w.r.t. every parameter (in a zeroed copy of the model;
    /// frozen tensors get empty ones, see [`ModelLock::zero_grads`]), accumulated over `accum_freq`
    /// micro-batches as described in the module docs. The model is not changed.
    pub fn gradients(&self, backend: &B, images: &B::Tensor, tokens: &TokenBatch) -> Result<(f64, ClipModel<B>)>
    where
        B::Elem: CommElement,
    {
        let mut grads = self.lock.zero_grads(backend, &self.model);
        let loss = self.accumulate(backend, images, tokens, &SingleProcess, &mut grads, &mut Vec::new())?;
        Ok((loss, grads))
    }

    /// [`Trainer::gradients`] of this rank's shard into a given (zeroed) accumulator, before the
    /// all-reduce over ranks; returns the loss over the global batch.
    fn accumulate(
        &self,
        backend: &B,
        images: &B::Tensor,
        tokens: &TokenBatch,
        comm: &dyn Collective,
        grads: &mut ClipModel<B>,
        stats: &mut Vec<TowerStats<B>>,
    ) -> Result<f64>
    where
        B::Elem: CommElement,
    {
        let step = self.step;
        // A non-finite loss is `contrastive_loss_normalized`'s error (it checks the value it reads back);
        // `step_with` names the step in it.
        let loss = |x: &B::Tensor, y: &B::Tensor, inv_tau: f64| -> Result<LossOutput<B>> {
            contrastive_loss_normalized(backend, &self.config.loss, x, y, inv_tau)
        };
        let n = backend.shape(images).first().copied().unwrap_or(0);
        let k = self.config.accum_freq;
        if n != tokens.batch || n == 0 || n % k != 0 {
            return Err(HopfieldError::shape(
                "train.step",
                format!("as many texts as images, a positive multiple of accum_freq {k}"),
                &[n, tokens.batch],
            ));
        }
        let model = &self.model;
        // Training mode: dropout (none in CLIP's towers) would draw from the step.
        let mode = Mode::Train { seed: step };
        // The caches hold the trainable groups' activations only, and the backward stops there; each
        // pass's batch statistics (a ResNet's) are kept for the running statistics.
        let mut pass = |images: &B::Tensor, tokens: &TokenBatch| {
            let input = ClipInput { images: images.clone(), tokens: tokens.clone() };
            let (out, cache) = model.forward_locked(backend, model, &input, mode, &self.lock)?;
            stats.push(cache.image_batch_stats(backend));
            Ok::<_, HopfieldError>((out, cache))
        };
        // This rank's rows of the global batch, and the τ⁻¹ gradient counted once over all ranks.
        let (offset, first_rank) = (comm.rank() * n, comm.rank() == 0);
        let gather = |t: &B::Tensor| all_gather_rows(backend, comm, t);
        let value = if k == 1 && comm.size() == 1 {
            let (out, cache) = pass(images, tokens)?;
            let l = loss(&out.image, &out.text, out.inv_tau)?;
            let d = ClipOutputGrads { image: l.d_image, text: l.d_text, inv_tau: l.d_inv_tau };
            model.backward(backend, model, &cache, &d, grads)?;
            l.loss
        } else if k == 1 {
            let (out, cache) = pass(images, tokens)?;
            let l = loss(&gather(&out.image)?, &gather(&out.text)?, out.inv_tau)?;
            let rows = |t: &B::Tensor| backend.slice(t, 0, offset, n);
            let d_inv_tau = if first_rank { l.d_inv_tau } else { 0.0 };
            let d = ClipOutputGrads { image: rows(&l.d_image), text: rows(&l.d_text), inv_tau: d_inv_tau };
            model.backward(backend, model, &cache, &d, grads)?;
            l.loss
        } else {
            let m = n / k;
            let micro = |j: usize| (backend.slice(images, 0, j * m, m), tokens.rows(j * m, m));
            // Pass 1: every micro-batch's embeddings, caches dropped.
            let (mut all_img, mut all_txt) = (None::<B::Tensor>, None::<B::Tensor>);
            let mut inv_tau = 0.0;
            for j in 0..k {
                let (imgs, toks) = micro(j);
                let (out, _) = pass(&imgs, &toks)?;
                inv_tau = out.inv_tau;
                let cat = |acc: Option<B::Tensor>, t: B::Tensor| {
                    Some(match acc {
                        Some(a) => backend.concat(&a, &t, 0),
                        None => t,
                    })
                };
                all_img = cat(all_img, out.image);
                all_txt = cat(all_txt, out.text);
            }
            let l = loss(&gather(&all_img.unwrap())?, &gather(&all_txt.unwrap())?, inv_tau)?;
            // Pass 2: each micro-batch again, backpropagated from its rows of the full-batch gradient.
            for j in 0..k {
                let (imgs, toks) = micro(j);
                let (_, cache) = pass(&imgs, &toks)?;
                let rows = |t: &B::Tensor| backend.slice(t, 0, offset + j * m, m);
                let d_inv_tau = if j == 0 && first_rank { l.d_inv_tau } else { 0.0 };
                let d = ClipOutputGrads { image: rows(&l.d_image), text: rows(&l.d_text), inv_tau: d_inv_tau };
                model.backward(backend, model, &cache, &d, grads)?;
            }
            l.loss
        };
        Ok(value)
    }
}

/// A [`Collective`] that adds the time of its operations to `seconds`.
struct Timed<'a> {
    inner: &'a dyn Collective,
    seconds: &'a std::cell::Cell<f64>,
}

impl Timed<'_> {
    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let t0 = std::time::Instant::now();
        let out = f();
        self.seconds.set(self.seconds.get() + t0.elapsed().as_secs_f64());
        out
    }
}

impl Collective for Timed<'_> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.time(|| self.inner.all_reduce_sum_f32(buf))
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.time(|| self.inner.all_reduce_sum_f64(buf))
    }
    fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<f32>> {
        self.time(|| self.inner.all_gather_f32(local))
    }
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>> {
        self.time(|| self.inner.all_gather_f64(local))
    }
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.time(|| self.inner.broadcast_bytes(root, buf))
    }
    fn barrier(&self) -> Result<()> {
        self.time(|| self.inner.barrier())
    }
}

/// Prefix the step to a non-finite error raised inside the step (the loss, a normalisation).
fn name_step(step: u64, e: HopfieldError) -> HopfieldError {
    match e {
        HopfieldError::NonFinite { op, detail } if !detail.starts_with("step ") => {
            HopfieldError::NonFinite { op, detail: format!("step {step}: {detail}") }
        }
        e => e,
    }
}
