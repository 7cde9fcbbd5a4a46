//! Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay, as `torch.optim.SGD`.

use super::{gradients_by_name, DecayFilter, Optimizer, OptimizerState, StateTensor};
use crate::backend::Backend;
use crate::element::Element;
use crate::error::{HopfieldError, Result};
use crate::params::Parameters;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Hyper-parameters of [`Sgd`] (PyTorch's names and defaults). The learning rate is given to each step.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SgdConfig {
    /// Momentum factor μ ≥ 0; 0 keeps no state.
    pub momentum: f64,
    /// Dampening τ of the gradient added to the buffer: `b ← μ b + (1 − τ) d`.
    pub dampening: f64,
    /// Nesterov momentum: the step is `d + μ b` instead of `b` (needs μ > 0 and τ = 0).
    pub nesterov: bool,
    /// L2 penalty ≥ 0 added to the gradient as `wd·p`.
    pub weight_decay: f64,
    /// Which tensors are decayed; the default is open_clip's rule, [`DecayFilter::All`] is PyTorch's
    /// single parameter group.
    pub decay_filter: DecayFilter,
}

impl SgdConfig {
    /// Plain momentum μ.
    pub fn momentum(momentum: f64) -> Self {
        SgdConfig { momentum, ..Self::default() }
    }

    /// PyTorch's checks, plus finiteness.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in
            [("momentum", self.momentum), ("dampening", self.dampening), ("weight_decay", self.weight_decay)]
        {
            if !v.is_finite() || v < 0.0 {
                return Err(HopfieldError::config(field, format!("must be finite and ≥ 0, got {v}")));
            }
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(HopfieldError::config("nesterov", "requires momentum > 0 and zero dampening"));
        }
        Ok(())
    }
}

/// `torch.optim.SGD`. Per tensor: `d = g + wd·p`; with momentum, `b = d` on the first step, else
/// `b ← μ b + (1 − τ) d`, and `d = d + μ b` (Nesterov) or `d = b`; finally `p ← p − lr·d`.
#[derive(Clone, Debug)]
pub struct Sgd<B: Backend> {
    config: SgdConfig,
    momentum_buffer: BTreeMap<String, B::Tensor>,
}

impl<B: Backend> Sgd<B> {
    /// A fresh optimiser; errors on invalid hyper-parameters.
    pub fn new(config: SgdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Sgd { config, momentum_buffer: BTreeMap::new() })
    }
    /// Its hyper-parameters.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }
}

impl<B: Backend> Optimizer<B> for Sgd<B> {
    fn step<P: Parameters<B> + ?Sized>(&mut self, backend: &B, params: &mut P, grads: &P, lr: f64) -> Result<()> {
        let buffers = &mut self.momentum_buffer;
        let grads =
            gradients_by_name(backend, "sgd.step", params, grads, lr, |n| buffers.get(n).map(|b| backend.shape(b)))?;
        let cfg = self.config;
        let mu = B::Elem::of(cfg.momentum);
        params.visit_mut(&mut |name, p, trainable| {
            if !trainable {
                return;
            }
            let mut d = grads[name].clone();
            if cfg.weight_decay != 0.0 && cfg.decay_filter.decays(name, &backend.shape(p)) {
                backend.axpy(&mut d, B::Elem::of(cfg.weight_decay), p);
            }
            if cfg.momentum != 0.0 {
                let buf = match buffers.get_mut(name) {
                    Some(b) => {
                        *b = backend.scale(b, mu);
                        backend.axpy(b, B::Elem::of(1.0 - cfg.dampening), &d);
                        b
                    }
                    None => buffers.entry(name.to_string()).or_insert_with(|| d.clone()),
                };
                if cfg.nesterov {
                    backend.axpy(&mut d, mu, buf);
                } else {
                    d = buf.clone();
                }
            }
            backend.axpy(p, B::Elem::of(-lr), &d);
        });
        Ok(())
    }

    fn export_state(&self, backend: &B) -> OptimizerState<B::Elem> {
        let tensors = self.momentum_buffer.iter().map(|(name, b)| StateTensor {
            name: format!("momentum_buffer.{name}"),
            data: backend.to_vec(b),
            shape: backend.shape(b),
        });
        OptimizerState { kind: "sgd".into(), tensors: tensors.collect(), steps: Vec::new() }
    }

    fn import_state(&mut self, backend: &B, state: &OptimizerState<B::Elem>) -> Result<()> {
        state.expect_kind("sgd")?;
        let mut new = BTreeMap::new();
        for name in state.params_with("momentum_buffer") {
            let t = state.tensor("momentum_buffer", &name)?;
            new.insert(name, backend.from_vec(t.data.clone(), &t.shape));
        }
        self.momentum_buffer = new;
        Ok(())
    }
}
