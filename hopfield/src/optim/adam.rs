//! Adam (Kingma & Ba) with PyTorch's L2 `weight_decay`, and AdamW (Loshchilov & Hutter) with decoupled
//! decay, both as `torch.optim` computes them (`foreach=False`, `amsgrad=False`, `maximize=False`).

use super::{gradients_by_name, DecayFilter, Optimizer, OptimizerState, StateTensor};
use crate::backend::{AdamStep, Backend};
use crate::error::{HopfieldError, Result};
use crate::params::Parameters;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Hyper-parameters shared by [`Adam`] and [`AdamW`]. The learning rate is given to each step.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AdamConfig {
    /// First-moment decay β₁, in `[0, 1)`.
    pub beta1: f64,
    /// Second-moment decay β₂, in `[0, 1)`.
    pub beta2: f64,
    /// Denominator offset ε ≥ 0.
    pub eps: f64,
    /// Weight decay ≥ 0: added to the gradient as `wd·p` by [`Adam`], applied as `p ← p·(1 − lr·wd)` by
    /// [`AdamW`].
    pub weight_decay: f64,
    /// Which tensors are decayed; the default is open_clip's rule, [`DecayFilter::All`] is PyTorch's
    /// single parameter group.
    pub decay_filter: DecayFilter,
}

impl Default for AdamConfig {
    /// `torch.optim.Adam`'s defaults: β = (0.9, 0.999), ε = 1e-8, no weight decay, open_clip's filter.
    fn default() -> Self {
        AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decay_filter: DecayFilter::OpenClip }
    }
}

impl AdamConfig {
    /// `torch.optim.AdamW`'s defaults: as [`AdamConfig::default`] with weight decay 1e-2.
    pub fn torch_adamw() -> Self {
        AdamConfig { weight_decay: 1e-2, ..Self::default() }
    }
    /// With β₁ and β₂.
    pub fn betas(self, beta1: f64, beta2: f64) -> Self {
        AdamConfig { beta1, beta2, ..self }
    }
    /// With ε.
    pub fn eps(self, eps: f64) -> Self {
        AdamConfig { eps, ..self }
    }
    /// With weight decay `weight_decay` on the tensors `filter` selects.
    pub fn weight_decay(self, weight_decay: f64, filter: DecayFilter) -> Self {
        AdamConfig { weight_decay, decay_filter: filter, ..self }
    }

    /// PyTorch's checks: β in `[0, 1)`, ε and weight decay finite and ≥ 0.
    pub fn validate(&self) -> Result<()> {
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(HopfieldError::config(field, format!("must lie in [0, 1), got {b}")));
            }
        }
        for (field, v) in [("eps", self.eps), ("weight_decay", self.weight_decay)] {
            if !v.is_finite() || v < 0.0 {
                return Err(HopfieldError::config(field, format!("must be finite and ≥ 0, got {v}")));
            }
        }
        Ok(())
    }
}

/// Moments and step count of one parameter.
#[derive(Clone, Debug)]
struct Moments<B: Backend> {
    exp_avg: B::Tensor,
    exp_avg_sq: B::Tensor,
    step: u64,
}

/// The state and update rule behind both [`Adam`] and [`AdamW`].
#[derive(Clone, Debug)]
struct AdamCore<B: Backend> {
    config: AdamConfig,
    decoupled: bool,
    state: BTreeMap<String, Moments<B>>,
}

impl<B: Backend> AdamCore<B> {
    fn new(config: AdamConfig, decoupled: bool) -> Result<Self> {
        config.validate()?;
        Ok(AdamCore { config, decoupled, state: BTreeMap::new() })
    }

    fn kind(&self) -> &'static str {
        if self.decoupled {
            "adamw"
        } else {
            "adam"
        }
    }

    fn step<P: Parameters<B> + ?Sized>(&mut self, backend: &B, params: &mut P, grads: &P, lr: f64) -> Result<()> {
        let op = if self.decoupled { "adamw.step" } else { "adam.step" };
        let state = &mut self.state;
        let grads =
            gradients_by_name(backend, op, params, grads, lr, |n| state.get(n).map(|m| backend.shape(&m.exp_avg)))?;
        let (cfg, decoupled) = (self.config, self.decoupled);
        params.visit_mut(&mut |name, p, trainable| {
            if !trainable {
                return;
            }
            let wd = if cfg.decay_filter.decays(name, &backend.shape(p)) { cfg.weight_decay } else { 0.0 };
            let m = state.entry(name.to_string()).or_insert_with(|| Moments {
                exp_avg: backend.zeros_like(p),
                exp_avg_sq: backend.zeros_like(p),
                step: 0,
            });
            m.step += 1;
            let hp = AdamStep {
                lr,
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                eps: cfg.eps,
                l2: if decoupled { 0.0 } else { wd },
                decoupled: if decoupled { wd } else { 0.0 },
                step: m.step,
            };
            backend.adam_step(p, grads[name], &mut m.exp_avg, &mut m.exp_avg_sq, hp);
        });
        Ok(())
    }

    fn export_state(&self, backend: &B) -> OptimizerState<B::Elem> {
        let mut tensors = Vec::new();
        for (slot, pick) in [("exp_avg", true), ("exp_avg_sq", false)] {
            for (name, m) in &self.state {
                let t = if pick { &m.exp_avg } else { &m.exp_avg_sq };
                let (data, shape) = (backend.to_vec(t), backend.shape(t));
                tensors.push(StateTensor { name: format!("{slot}.{name}"), data, shape });
            }
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let steps = self.state.iter().map(|(n, m)| (n.clone(), m.step)).collect();
        OptimizerState { kind: self.kind().to_string(), tensors, steps }
    }

    fn import_state(&mut self, backend: &B, state: &OptimizerState<B::Elem>) -> Result<()> {
        state.expect_kind(self.kind())?;
        let mut new = BTreeMap::new();
        for name in state.params_with("exp_avg") {
            let (m, v) = (state.tensor("exp_avg", &name)?, state.tensor("exp_avg_sq", &name)?);
            if m.shape != v.shape {
                return Err(HopfieldError::shape(
                    "adam.import_state",
                    format!("{:?} as exp_avg.{name}", m.shape),
                    &v.shape,
                ));
            }
            let step = state
                .steps
                .iter()
                .find(|(n, _)| *n == name)
                .map(|s| s.1)
                .ok_or_else(|| HopfieldError::Missing { op: "adam.import_state", name: format!("step.{name}") })?;
            let exp_avg = backend.from_vec(m.data.clone(), &m.shape);
            let exp_avg_sq = backend.from_vec(v.data.clone(), &v.shape);
            new.insert(name, Moments { exp_avg, exp_avg_sq, step });
        }
        self.state = new;
        Ok(())
    }
}

/// `torch.optim.Adam`: weight decay is an L2 penalty added to the gradient before the moments.
#[derive(Clone, Debug)]
pub struct Adam<B: Backend>(AdamCore<B>);

/// `torch.optim.AdamW`: `p ← p·(1 − lr·wd)`, then the Adam step without decay.
#[derive(Clone, Debug)]
pub struct AdamW<B: Backend>(AdamCore<B>);

impl<B: Backend> Adam<B> {
    /// A fresh optimiser; errors on invalid hyper-parameters.
    pub fn new(config: AdamConfig) -> Result<Self> {
        Ok(Adam(AdamCore::new(config, false)?))
    }
    /// Its hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.0.config
    }
}

impl<B: Backend> AdamW<B> {
    /// A fresh optimiser; errors on invalid hyper-parameters.
    pub fn new(config: AdamConfig) -> Result<Self> {
        Ok(AdamW(AdamCore::new(config, true)?))
    }
    /// Its hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.0.config
    }
}

macro_rules! delegate_optimizer {
    ($t:ident) => {
        impl<B: Backend> Optimizer<B> for $t<B> {
            fn step<P: Parameters<B> + ?Sized>(
                &mut self,
                backend: &B,
                params: &mut P,
                grads: &P,
                lr: f64,
            ) -> Result<()> {
                self.0.step(backend, params, grads, lr)
            }
            fn export_state(&self, backend: &B) -> OptimizerState<B::Elem> {
                self.0.export_state(backend)
            }
            fn import_state(&mut self, backend: &B, state: &OptimizerState<B::Elem>) -> Result<()> {
                self.0.import_state(backend, state)
            }
        }
    };
}
delegate_optimizer!(Adam);
delegate_optimizer!(AdamW);
