//! `nn.BatchNorm2d` on channels-last tensors: batch statistics in training, running statistics in
//! evaluation (or always, when frozen, as open_clip's `lock(freeze_bn_stats=True)`).
//!
//! The forward pass never changes the module: in training it returns the batch's statistics in its cache,
//! and [`BatchNorm2d::update_running_stats`] folds them into the running ones as PyTorch does
//! (momentum 0.1, unbiased variance, `num_batches_tracked += 1`).

use hopfield::{Backend, Element, HopfieldError, Parameters, Result};

/// A batch norm's tensors (a zeroed copy holds the gradients; the running statistics get none).
///
/// # Shapes
/// Every tensor `[C]`, `num_batches_tracked` a scalar `[]` (an integer count, held as an element).
#[derive(Clone, Debug, Parameters)]
pub struct BatchNorm2d<B: Backend> {
    /// `weight` γ, `[C]`.
    pub weight: B::Tensor,
    /// `bias` β, `[C]`.
    pub bias: B::Tensor,
    /// `running_mean`, `[C]`; not trained.
    #[param(trainable = false)]
    pub running_mean: B::Tensor,
    /// `running_var`, `[C]`; not trained.
    #[param(trainable = false)]
    pub running_var: B::Tensor,
    /// `num_batches_tracked`, `[]`; not trained.
    #[param(trainable = false)]
    pub num_batches_tracked: B::Tensor,
}

/// Which statistics a batch norm normalises with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormMode {
    /// Batch statistics (training) instead of the running ones.
    pub batch_stats: bool,
    /// ε added to the variance.
    pub eps: f64,
}

/// What [`BatchNorm2d::backward`] needs, and in training the batch statistics.
#[derive(Clone, Debug)]
pub struct BatchNormCache<B: Backend> {
    /// The normalised input `(x − μ)/σ`, `[N, C]`.
    xhat: B::Tensor,
    /// `1/σ`, `[C]`.
    inv_std: B::Tensor,
    /// The input's shape.
    shape: Vec<usize>,
    /// In training: the batch mean and biased variance `[C]` (σ² of the forward pass).
    batch: Option<(B::Tensor, B::Tensor)>,
}

fn e<B: Backend>(v: f64) -> B::Elem {
    B::Elem::of(v)
}

/// `[C]` → `[n, C]`, the same row `n` times.
fn rows<B: Backend>(backend: &B, v: &B::Tensor, n: usize) -> B::Tensor {
    let c = backend.shape(v)[0];
    backend.expand(&backend.reshape(v, &[1, c]), 0, n)
}

impl<B: Backend> BatchNorm2d<B> {
    /// PyTorch's initial state: γ = 1, β = 0, running mean 0, running variance 1, no batch tracked.
    pub fn new(backend: &B, channels: usize) -> Self {
        BatchNorm2d {
            weight: backend.full(&[channels], e::<B>(1.0)),
            bias: backend.zeros(&[channels]),
            running_mean: backend.zeros(&[channels]),
            running_var: backend.full(&[channels], e::<B>(1.0)),
            num_batches_tracked: backend.zeros(&[]),
        }
    }

    /// `γ (x − μ)/√(σ² + ε) + β` per channel (the last axis), with the batch's or the running statistics.
    ///
    /// # Shapes
    /// `x: [.., C]` → the same shape. Batch statistics need more than one value per channel.
    pub fn forward(&self, backend: &B, x: &B::Tensor, mode: BatchNormMode) -> Result<(B::Tensor, BatchNormCache<B>)> {
        let shape = backend.shape(x);
        let c = backend.shape(&self.weight)[0];
        let n: usize = shape[..shape.len().saturating_sub(1)].iter().product();
        if shape.last() != Some(&c) || n == 0 || (mode.batch_stats && n < 2) {
            let want = if mode.batch_stats { "more than one value per channel" } else { "a non-empty batch" };
            return Err(HopfieldError::shape("batch_norm.forward", format!("[.., {c}], {want}"), &shape));
        }
        let x2 = backend.reshape(x, &[n, c]);
        let (xc, var, batch_mean) = if mode.batch_stats {
            let mean = backend.scale(&backend.sum_rows(&x2), e::<B>(1.0 / n as f64));
            let xc = backend.add_bias(&x2, &backend.scale(&mean, e::<B>(-1.0)));
            let var = backend.scale(&backend.sum_rows(&backend.mul(&xc, &xc)), e::<B>(1.0 / n as f64));
            (xc, var, Some(mean))
        } else {
            let xc = backend.add_bias(&x2, &backend.scale(&self.running_mean, e::<B>(-1.0)));
            (xc, self.running_var.clone(), None)
        };
        let inv_std =
            backend.unary(&backend.add(&var, &backend.full(&[c], e::<B>(mode.eps))), hopfield::backend::Unary::Rsqrt);
        let xhat = backend.mul(&xc, &rows(backend, &inv_std, n));
        let y = backend.add_bias(&backend.mul(&xhat, &rows(backend, &self.weight, n)), &self.bias);
        let batch = batch_mean.map(|m| (m, var));
        Ok((backend.reshape(&y, &shape), BatchNormCache { xhat, inv_std, shape, batch }))
    }

    /// Backward of [`BatchNorm2d::forward`]: `dγ += Σ dy ⊙ x̂`, `dβ += Σ dy`; returns `dx`. With batch
    /// statistics `dx = γ/σ (dy − mean(dy) − x̂ ⊙ mean(dy ⊙ x̂))`, with running ones `dx = γ/σ · dy`.
    ///
    /// # Shapes
    /// `dy` like the forward input.
    pub fn backward(
        &self,
        backend: &B,
        cache: &BatchNormCache<B>,
        dy: &B::Tensor,
        grads: &mut BatchNorm2d<B>,
    ) -> Result<B::Tensor> {
        let got = backend.shape(dy);
        if got != cache.shape {
            return Err(HopfieldError::shape("batch_norm.backward(dy)", format!("{:?}", cache.shape), &got));
        }
        let [n, c] = backend.shape(&cache.xhat)[..] else { unreachable!("x̂ is [N, C]") };
        let dy2 = backend.reshape(dy, &[n, c]);
        let d_bias = backend.sum_rows(&dy2);
        let d_weight = backend.sum_rows(&backend.mul(&dy2, &cache.xhat));
        let gain = rows(backend, &backend.mul(&self.weight, &cache.inv_std), n);
        let dx = if cache.batch.is_some() {
            let mean_dy = backend.scale(&d_bias, e::<B>(-1.0 / n as f64));
            let mean_dy_xhat = rows(backend, &backend.scale(&d_weight, e::<B>(1.0 / n as f64)), n);
            let centred = backend.sub(&backend.add_bias(&dy2, &mean_dy), &backend.mul(&cache.xhat, &mean_dy_xhat));
            backend.mul(&gain, &centred)
        } else {
            backend.mul(&gain, &dy2)
        };
        backend.axpy(&mut grads.bias, e::<B>(1.0), &d_bias);
        backend.axpy(&mut grads.weight, e::<B>(1.0), &d_weight);
        Ok(backend.reshape(&dx, &cache.shape))
    }

    /// Fold a training pass's batch statistics into the running ones, as PyTorch's `BatchNorm2d` in
    /// training: `running = (1 − momentum)·running + momentum·batch` with the unbiased batch variance,
    /// `num_batches_tracked += 1`. A cache of running statistics changes nothing.
    pub fn update_running_stats(&mut self, backend: &B, cache: &BatchNormCache<B>, momentum: f64) {
        if let Some(stats) = cache.batch_stats(backend) {
            self.fold_batch_stats(backend, &stats, momentum);
        }
    }

    /// [`BatchNorm2d::update_running_stats`] from statistics kept apart from their cache.
    pub fn fold_batch_stats(&mut self, backend: &B, stats: &BatchStats<B>, momentum: f64) {
        let n = stats.count as f64;
        let keep = e::<B>(1.0 - momentum);
        self.running_mean = backend.scale(&self.running_mean, keep);
        backend.axpy(&mut self.running_mean, e::<B>(momentum), &stats.mean);
        self.running_var = backend.scale(&self.running_var, keep);
        backend.axpy(&mut self.running_var, e::<B>(momentum * n / (n - 1.0)), &stats.var);
        self.num_batches_tracked = backend.add(&self.num_batches_tracked, &backend.full(&[], e::<B>(1.0)));
    }
}

/// One training pass's statistics of a batch norm, without the activations of its cache.
///
/// # Shapes
/// `mean` and the biased `var` `[C]`; `count` values per channel.
#[derive(Clone, Debug)]
pub struct BatchStats<B: Backend> {
    mean: B::Tensor,
    var: B::Tensor,
    count: usize,
}

impl<B: Backend> BatchNormCache<B> {
    /// The batch statistics of a training pass; `None` for a pass on running statistics.
    pub fn batch_stats(&self, backend: &B) -> Option<BatchStats<B>> {
        let count = backend.shape(&self.xhat)[0];
        self.batch.as_ref().map(|(mean, var)| BatchStats { mean: mean.clone(), var: var.clone(), count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopfield::Cpu;

    #[test]
    fn batch_statistics_normalise_and_update_the_running_ones_as_pytorch() {
        let cpu = Cpu::<f64>::new();
        let mut bn = BatchNorm2d::new(&cpu, 2);
        // Channel 0: 1, 3, 5, 7 (mean 4, biased var 5, unbiased 20/3); channel 1: ±2 (mean 0, var 4).
        let x = cpu.from_vec(vec![1.0, 2.0, 3.0, -2.0, 5.0, 2.0, 7.0, -2.0], &[2, 2, 1, 2]);
        let mode = BatchNormMode { batch_stats: true, eps: 0.0 };
        let (y, cache) = bn.forward(&cpu, &x, mode).unwrap();
        let s = 5f64.sqrt();
        let want = [-3.0 / s, 1.0, -1.0 / s, -1.0, 1.0 / s, 1.0, 3.0 / s, -1.0];
        assert!(cpu.to_vec(&y).iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-15), "{y:?}");
        bn.update_running_stats(&cpu, &cache, 0.1);
        bn.update_running_stats(&cpu, &cache, 0.1);
        let mean = 0.1 * 4.0 * 0.9 + 0.1 * 4.0;
        let var = (0.9 * (0.9 + 0.1 * 20.0 / 3.0)) + 0.1 * 20.0 / 3.0;
        assert!((cpu.to_vec(&bn.running_mean)[0] - mean).abs() < 1e-15);
        assert!((cpu.to_vec(&bn.running_var)[0] - var).abs() < 1e-15);
        assert!((cpu.to_vec(&bn.running_var)[1] - (0.9 * (0.9 + 0.1 * 16.0 / 3.0) + 0.1 * 16.0 / 3.0)).abs() < 1e-15);
        assert_eq!(cpu.to_vec(&bn.num_batches_tracked), [2.0]);
        let (_, eval) = bn.forward(&cpu, &x, BatchNormMode { batch_stats: false, eps: 1e-5 }).unwrap();
        let before = bn.clone();
        bn.update_running_stats(&cpu, &eval, 0.1);
        assert_eq!(cpu.to_vec(&bn.running_mean), cpu.to_vec(&before.running_mean));
        assert_eq!(bn.names(), ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]);
        let one_value = bn.forward(&cpu, &cpu.zeros(&[1, 1, 1, 2]), mode).unwrap_err();
        assert!(one_value.to_string().contains("more than one value"), "{one_value}");
    }
}
