//! Optimisers, gradient clipping and learning-rate schedules, matching `torch.optim` step for step.
//!
//! An [`Optimizer`] updates any [`Parameters`] from a gradient struct of the same type. Its state (momentum
//! buffers, Adam moments, step counts) is keyed by the parameter's `state_dict` name and created on the
//! first step that sees the name; tensors whose `trainable` flag is false are skipped. Which tensors get
//! weight decay is decided per tensor by a [`DecayFilter`], like PyTorch's parameter groups.
//!
//! The learning rate is an argument of every step, so a schedule is a pure function of the step
//! ([`LrSchedule::lr_at`]) and resuming needs only the optimiser state ([`OptimizerState`]).
//!
//! ```
//! use hopfield_layers::{Backend, Cpu, Parameters};
//! use hopfield_layers::optim::{AdamConfig, AdamW, Optimizer};
//!
//! #[derive(Parameters)]
//! struct W<B: Backend> {
//!     w: B::Tensor,
//! }
//! let cpu = Cpu::<f64>::new();
//! let mut w = W { w: cpu.from_vec(vec![1.0, -2.0], &[2]) };
//! let grad = W { w: cpu.from_vec(vec![0.5, -0.5], &[2]) };
//! let mut opt = AdamW::new(AdamConfig::default())?;
//! opt.step(&cpu, &mut w, &grad, 0.1)?;
//! // Adam's first step moves every entry by lr against the sign of its gradient.
//! assert!((cpu.to_vec(&w.w)[0] - 0.9).abs() < 1e-6);
//! # Ok::<(), hopfield_layers::HopfieldError>(())
//! ```

mod adam;
mod clip;
mod decay;
mod schedule;
mod sgd;
mod state;
#[cfg(test)]
mod tests;

pub use adam::{Adam, AdamConfig, AdamW};
pub use clip::clip_grad_norm;
pub use decay::DecayFilter;
pub use schedule::LrSchedule;
pub use sgd::{Sgd, SgdConfig};
pub use state::{OptimizerState, StateTensor};

use crate::backend::Backend;
use crate::error::{HopfieldError, Result};
use crate::params::{named_tensors, Parameters};
use std::collections::HashMap;

/// A first-order optimiser over named parameters.
pub trait Optimizer<B: Backend> {
    /// Update every trainable tensor of `params` from the tensor of the same name in `grads`, with learning
    /// rate `lr`. Nothing is changed when it fails: a trainable tensor without a gradient, a gradient or
    /// stored state of another shape, or a negative or non-finite `lr`.
    fn step<P: Parameters<B> + ?Sized>(&mut self, backend: &B, params: &mut P, grads: &P, lr: f64) -> Result<()>;

    /// A host copy of the state (moments, buffers, step counts), for checkpoints.
    fn export_state(&self, backend: &B) -> OptimizerState<B::Elem>;

    /// Replace the state with `state`, as exported by an optimiser of the same kind. Continuing from an
    /// imported state gives bit-identical steps to never having stopped.
    fn import_state(&mut self, backend: &B, state: &OptimizerState<B::Elem>) -> Result<()>;
}

/// Check `lr`, and that every trainable tensor of `params` has a gradient and stored state (if any) of its
/// shape; `state_shape` gives the shape of the state kept under a name. Returns the gradients by name.
fn gradients_by_name<'g, B: Backend, P: Parameters<B> + ?Sized>(
    backend: &B,
    op: &'static str,
    params: &P,
    grads: &'g P,
    lr: f64,
    state_shape: impl Fn(&str) -> Option<Vec<usize>>,
) -> Result<HashMap<String, &'g B::Tensor>> {
    if !lr.is_finite() || lr < 0.0 {
        return Err(HopfieldError::config("lr", format!("{op}: must be finite and ≥ 0, got {lr}")));
    }
    let by_name: HashMap<String, &B::Tensor> = named_tensors(grads).into_iter().collect();
    let mut error = None;
    params.visit(&mut |name, p, trainable| {
        if !trainable || error.is_some() {
            return;
        }
        let shape = backend.shape(p);
        let Some(g) = by_name.get(name) else {
            error = Some(HopfieldError::Missing { op, name: format!("gradient of {name}") });
            return;
        };
        let g_shape = backend.shape(g);
        if g_shape != shape {
            error = Some(HopfieldError::shape(op, format!("gradient of `{name}` shaped {shape:?}"), &g_shape));
        } else if let Some(s) = state_shape(name).filter(|s| *s != shape) {
            error = Some(HopfieldError::shape(op, format!("state of `{name}` shaped {shape:?}"), &s));
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(by_name),
    }
}
