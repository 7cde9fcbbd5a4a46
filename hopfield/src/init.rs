//! Parameter initialisers drawing from a caller-supplied RNG (so a seed reproduces a model).

use crate::backend::Backend;
use crate::element::Element;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// N(0, std²) of `shape`.
pub fn normal<B: Backend>(backend: &B, shape: &[usize], std: f64, rng: &mut impl Rng) -> B::Tensor {
    let n: usize = shape.iter().product();
    let dist = Normal::new(0.0, std).expect("std is finite and non-negative");
    backend.from_vec((0..n).map(|_| B::Elem::of(dist.sample(rng))).collect(), shape)
}

/// U(−bound, bound) of `shape`.
pub fn uniform<B: Backend>(backend: &B, shape: &[usize], bound: f64, rng: &mut impl Rng) -> B::Tensor {
    let n: usize = shape.iter().product();
    backend.from_vec((0..n).map(|_| B::Elem::of(rng.gen_range(-bound..=bound))).collect(), shape)
}
