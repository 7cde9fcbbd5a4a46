//! Named parameters: every module's parameter struct (and its gradient struct, which is the same type)
//! implements [`Parameters`], visiting each tensor under its PyTorch `state_dict` name.
//!
//! Implementations are derived: `#[derive(Parameters)]` (from `hopfield-derive`, re-exported here) visits
//! each tensor field under its name and each child under `field.`; see that crate for the attributes.
//!
//! ```
//! use hopfield_layers::layers::{Linear, LinearParams};
//! use hopfield_layers::params::Parameters;
//! use hopfield_layers::{Backend, Cpu};
//!
//! #[derive(Clone, Parameters)]
//! struct Probe<B: Backend> {
//!     #[param(skip)]
//!     classes: usize,
//!     /// Named `proj.weight`, `proj.bias`.
//!     proj: LinearParams<B>,
//!     /// Named `temperature`; frozen.
//!     #[param(trainable = false)]
//!     temperature: B::Tensor,
//! }
//!
//! let cpu = Cpu::<f32>::new();
//! let proj = Linear::new(&cpu, 4, 3, true, &mut rand::thread_rng())?.params;
//! let probe = Probe { classes: 3, proj, temperature: cpu.full(&[], 1.0) };
//! assert_eq!(probe.names(), ["proj.weight", "proj.bias", "temperature"]);
//! assert_eq!(probe.zeros_like(&cpu).num_scalars(&cpu), 4 * 3 + 3 + 1);
//! # Ok::<(), hopfield_layers::HopfieldError>(())
//! ```

use crate::backend::Backend;
use crate::error::{HopfieldError, Result};
pub use hopfield_derive::Parameters;

/// A set of named tensors: a module's parameters or their gradients (the same type mirrors both).
///
/// Names are hflayers' PyTorch `state_dict` keys (`association_core.in_proj_weight`, ...), so files and
/// optimiser state use the names PyTorch users know.
pub trait Parameters<B: Backend> {
    /// Visit each tensor with its name and whether it is trainable.
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&str, &'a B::Tensor, bool));
    /// Visit each tensor mutably with its name and whether it is trainable.
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, &mut B::Tensor, bool));

    /// Names in visiting order.
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.visit(&mut |n, _, _| out.push(n.to_string()));
        out
    }
    /// Total number of scalars.
    fn num_scalars(&self, backend: &B) -> usize {
        let mut n = 0;
        self.visit(&mut |_, t, _| n += backend.shape(t).iter().product::<usize>());
        n
    }
    /// Set every tensor to zero (used on gradient structs before accumulating).
    fn zero(&mut self, backend: &B) {
        self.visit_mut(&mut |_, t, _| *t = backend.zeros_like(t));
    }
    /// A gradient struct for these parameters: the same tensors, all zero.
    fn zeros_like(&self, backend: &B) -> Self
    where
        Self: Clone,
    {
        let mut g = self.clone();
        g.zero(backend);
        g
    }
}

/// Optional parameters (a module without them, e.g. a norm without affine weights) visit nothing.
impl<B: Backend, P: Parameters<B>> Parameters<B> for Option<P> {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&str, &'a B::Tensor, bool)) {
        if let Some(p) = self {
            p.visit(f);
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, &mut B::Tensor, bool)) {
        if let Some(p) = self {
            p.visit_mut(f);
        }
    }
}

/// Visit a child module's tensors under `prefix.` (helper for nested `Parameters` impls).
pub fn visit_child<'a, B: Backend, P: Parameters<B> + ?Sized>(
    child: &'a P,
    prefix: &str,
    f: &mut dyn FnMut(&str, &'a B::Tensor, bool),
) {
    child.visit(&mut |n, t, tr| f(&format!("{prefix}.{n}"), t, tr));
}

/// Mutable counterpart of [`visit_child`].
pub fn visit_child_mut<B: Backend, P: Parameters<B> + ?Sized>(
    child: &mut P,
    prefix: &str,
    f: &mut dyn FnMut(&str, &mut B::Tensor, bool),
) {
    child.visit_mut(&mut |n, t, tr| f(&format!("{prefix}.{n}"), t, tr));
}

/// Collect `(name, tensor)` pairs, in visiting order.
pub fn named_tensors<B: Backend, P: Parameters<B> + ?Sized>(p: &P) -> Vec<(String, &B::Tensor)> {
    let mut out = Vec::new();
    p.visit(&mut |n, t, _| out.push((n.to_string(), t)));
    out
}

/// `dst += alpha · src` for every tensor of the same name (e.g. summing gradients of two passes).
pub fn axpy_params<B: Backend, P: Parameters<B>>(backend: &B, dst: &mut P, alpha: B::Elem, src: &P) -> Result<()> {
    let src = named_tensors(src);
    let mut missing = None;
    dst.visit_mut(&mut |n, t, _| match src.iter().find(|(sn, _)| sn == n) {
        Some((_, s)) => backend.axpy(t, alpha, s),
        None => missing = Some(n.to_string()),
    });
    match missing {
        Some(name) => Err(HopfieldError::Missing { op: "axpy_params", name }),
        None => Ok(()),
    }
}

/// The global L2 norm of all trainable tensors (for gradient clipping and logging).
///
/// One device-to-host transfer ([`Backend::sum_squares_all`]).
pub fn global_norm<B: Backend, P: Parameters<B> + ?Sized>(backend: &B, p: &P) -> f64 {
    let mut trainable = Vec::new();
    p.visit(&mut |_, t, tr| {
        if tr {
            trainable.push(t.clone())
        }
    });
    backend.sum_squares_all(&trainable.iter().collect::<Vec<_>>()).sqrt()
}
