//! Gradient checking: a backward pass against central finite differences of the loss, in f64; and
//! [`counting::Counting`], a backend wrapper counting host transfers.
//!
//! Every backward pass of the crate (and of crates built on it) is checked this way: the analytic gradient
//! of a scalar loss is compared, entry by entry, with `(loss(x + h) − loss(x − h)) / 2h`.
//!
//! For tests (the layers' own, and yours of a module written on these layers). Not part of the layers' API:
//! the checker's options and report may change in any release.
//!
//! ```
//! use hopfield_layers::layers::{Layer, Linear, Mode};
//! use hopfield_layers::testing::{check_gradients, GradCheck};
//! use hopfield_layers::{Backend, Cpu};
//!
//! let cpu = Cpu::<f64>::new();
//! let linear = Linear::new(&cpu, 3, 2, true, &mut rand::thread_rng())?;
//! let x = cpu.from_vec(vec![0.5, -1.0, 2.0, 0.1, 0.2, 0.3], &[2, 3]);
//! // loss = Σ y²: its upstream gradient is 2y.
//! let loss = |p: &hopfield_layers::layers::LinearParams<Cpu<f64>>| {
//!     cpu.sum_squares(&linear.forward(&cpu, p, &x, Mode::Eval).unwrap().0)
//! };
//! let (y, cache) = linear.forward(&cpu, linear.params(), &x, Mode::Eval)?;
//! let mut grads = linear.zero_grads(&cpu);
//! linear.backward(&cpu, linear.params(), &cache, &cpu.scale(&y, 2.0), &mut grads)?;
//! let checked = check_gradients(&cpu, linear.params(), &grads, &GradCheck::default(), loss).unwrap();
//! assert_eq!(checked, 2 * 3 + 2);
//! # Ok::<(), hopfield_layers::HopfieldError>(())
//! ```

pub mod counting;

use crate::backend::Backend;
use crate::params::Parameters;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt;

/// How a gradient check probes: step, tolerance and which entries.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheck {
    /// The finite-difference step `h`.
    pub step: f64,
    /// A difference passes when `|fd − analytic| ≤ tolerance · (1 + |fd|)`.
    pub tolerance: f64,
    /// Entries checked per tensor, drawn at random; `None` checks every entry.
    pub entries: Option<usize>,
    /// Seed of the random entries.
    pub seed: u64,
    /// Tensors whose name ends with the string draw their entries only from these rows (first axis): an
    /// embedding table's rows that the batch uses, whose gradient is otherwise zero.
    pub rows: Vec<(String, Vec<usize>)>,
}

impl Default for GradCheck {
    /// `h = 1e-6`, tolerance `1e-6`, every entry.
    fn default() -> Self {
        GradCheck { step: 1e-6, tolerance: 1e-6, entries: None, seed: 0, rows: Vec::new() }
    }
}

impl GradCheck {
    /// Check `n` random entries per tensor (drawn from `seed`) instead of all.
    pub fn entries(mut self, n: usize, seed: u64) -> Self {
        self.entries = Some(n);
        self.seed = seed;
        self
    }
    /// Set the tolerance.
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }
    /// Draw the entries of tensors named `…suffix` from `rows` only.
    pub fn rows(mut self, suffix: &str, rows: Vec<usize>) -> Self {
        self.rows.push((suffix.to_string(), rows));
        self
    }
}

/// A gradient entry that disagrees with its finite difference.
#[derive(Clone, Debug, PartialEq)]
pub struct GradMismatch {
    /// What was checked (a tensor's name or the caller's label).
    pub name: String,
    /// Flat index of the entry.
    pub index: usize,
    /// The central difference.
    pub finite_difference: f64,
    /// The backward pass's value.
    pub analytic: f64,
}

impl fmt::Display for GradMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: finite difference {:.9} vs backward {:.9}",
            self.name, self.index, self.finite_difference, self.analytic
        )
    }
}

impl std::error::Error for GradMismatch {}

/// The flat indices to probe in a tensor of `shape`.
fn indices(opts: &GradCheck, name: &str, shape: &[usize], rng: &mut StdRng) -> Vec<usize> {
    let len: usize = shape.iter().product();
    let width = if shape.is_empty() { 1 } else { len / shape[0].max(1) };
    let rows = opts.rows.iter().find(|(suffix, rows)| name.ends_with(suffix.as_str()) && !rows.is_empty());
    match (opts.entries, rows) {
        (None, None) => (0..len).collect(),
        (None, Some((_, rows))) => rows.iter().flat_map(|r| r * width..(r + 1) * width).filter(|&i| i < len).collect(),
        (Some(n), None) => (0..n.min(len)).map(|_| rng.gen_range(0..len)).collect(),
        (Some(n), Some((_, rows))) => {
            (0..n.min(len)).map(|_| rows[rng.gen_range(0..rows.len())] * width + rng.gen_range(0..width)).collect()
        }
    }
}

/// Compare `analytic = d loss / d x` with central differences of `loss` around `x`. Returns the number of
/// entries checked, or the first mismatch.
///
/// # Shapes
/// `analytic` has the shape of `x`.
pub fn check_tensor<B: Backend<Elem = f64>>(
    backend: &B,
    name: &str,
    x: &B::Tensor,
    analytic: &B::Tensor,
    opts: &GradCheck,
    mut loss: impl FnMut(&B::Tensor) -> f64,
) -> Result<usize, GradMismatch> {
    let shape = backend.shape(x);
    assert_eq!(shape, backend.shape(analytic), "{name}: the gradient's shape differs from the tensor's");
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let (values, grad) = (backend.to_vec(x), backend.to_vec(analytic));
    let idx = indices(opts, name, &shape, &mut rng);
    for &i in &idx {
        let mut at = |delta: f64| {
            let mut v = values.clone();
            v[i] += delta;
            loss(&backend.from_vec(v, &shape))
        };
        let fd = (at(opts.step) - at(-opts.step)) / (2.0 * opts.step);
        if !((fd - grad[i]).abs() <= opts.tolerance * (1.0 + fd.abs())) {
            return Err(GradMismatch { name: name.to_string(), index: i, finite_difference: fd, analytic: grad[i] });
        }
    }
    Ok(idx.len())
}

/// Compare `grads` (d loss / d params, as a backward pass accumulated it) with central differences of
/// `loss` for every trainable tensor of `params` (frozen ones get no gradient by design).
/// Returns the number of entries checked, or the first mismatch (named by the tensor's name).
pub fn check_gradients<B: Backend<Elem = f64>, P: Parameters<B> + Clone>(
    backend: &B,
    params: &P,
    grads: &P,
    opts: &GradCheck,
    mut loss: impl FnMut(&P) -> f64,
) -> Result<usize, GradMismatch> {
    let mut analytic = Vec::new();
    grads.visit(&mut |n, t, _| analytic.push((n.to_string(), t.clone())));
    let mut checked = 0;
    let mut tensors = Vec::new();
    params.visit(&mut |n, t, trainable| {
        if trainable {
            tensors.push((n.to_string(), t.clone()))
        }
    });
    for (k, (name, value)) in tensors.into_iter().enumerate() {
        let grad = &analytic.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no gradient for {name}")).1;
        let per_tensor = GradCheck { seed: opts.seed.wrapping_add(k as u64), ..opts.clone() };
        checked += check_tensor(backend, &name, &value, grad, &per_tensor, |x| {
            let mut probe = params.clone();
            probe.visit_mut(&mut |n, t, _| {
                if n == name {
                    *t = x.clone();
                }
            });
            loss(&probe)
        })?;
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;

    #[test]
    fn a_wrong_gradient_is_caught_and_named() {
        let cpu = Cpu::<f64>::new();
        let x = cpu.from_vec(vec![1.0, -2.0, 0.5], &[3]);
        // loss = Σ x³, gradient 3x².
        let loss = |t: &crate::backend::CpuTensor<f64>| t.iter().map(|v| v * v * v).sum::<f64>();
        let right = cpu.from_vec(vec![3.0, 12.0, 0.75], &[3]);
        assert_eq!(check_tensor(&cpu, "x", &x, &right, &GradCheck::default(), loss), Ok(3));
        let wrong = cpu.from_vec(vec![3.0, 12.0, 0.76], &[3]);
        let err = check_tensor(&cpu, "x", &x, &wrong, &GradCheck::default(), loss).unwrap_err();
        assert_eq!((err.name.as_str(), err.index), ("x", 2));
        assert!(err.to_string().starts_with("x[2]: finite difference 0.75"));
    }

    #[test]
    fn rows_restrict_the_entries() {
        let opts = GradCheck::default().rows("embedding", vec![2]);
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(indices(&opts, "token_embedding", &[4, 3], &mut rng), [6, 7, 8]);
        assert_eq!(indices(&opts, "other", &[2, 2], &mut rng), [0, 1, 2, 3]);
        let some = indices(&opts.clone().entries(5, 1), "token_embedding", &[4, 3], &mut rng);
        assert!(some.len() == 5 && some.iter().all(|i| (6..9).contains(i)));
    }
}
