//! Helpers shared by the integration tests.
#![allow(dead_code)]

use hopfield::io::{HostTensor, TensorMap};
use hopfield::{Backend, Element};

pub mod fixtures;

/// `max |a − b| / max(max |b|, 1e-2)`: relative to the tensor's scale. The floor keeps tensors that are
/// zero in exact arithmetic (e.g. the stored-pattern norm's bias gradient: softmax is invariant to a
/// shift shared by all keys) from comparing rounding noise with rounding noise.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    // f64::max drops NaN: a NaN where the reference has none (e.g. an unwritten, poisoned output) must fail.
    if a.iter().zip(b).any(|(x, y)| x.is_nan() != y.is_nan()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(1e-2f64, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// Host copy of a backend tensor in f64.
pub fn host<B: Backend>(backend: &B, t: &B::Tensor) -> Vec<f64> {
    backend.to_vec(t).iter().map(|v| v.f64()).collect()
}

/// Upload a host tensor.
pub fn upload<B: Backend>(backend: &B, h: &HostTensor) -> B::Tensor {
    backend.from_vec(h.values.iter().map(|&v| B::Elem::of(v)).collect(), &h.shape)
}

/// Fetch a tensor from a fixture map, panicking with the name when absent.
pub fn get<'a>(map: &'a TensorMap, name: &str) -> &'a HostTensor {
    map.get(name).unwrap_or_else(|| panic!("fixture tensor `{name}` missing"))
}

/// Assert that `actual` matches `expected` to relative `tol`, naming the quantity.
pub fn assert_close(what: &str, actual: &[f64], expected: &HostTensor, tol: f64) {
    let e = rel_err(actual, &expected.values);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}

/// Uniform(−1, 1) f64 tensor of `shape`.
pub fn rand_tensor(rng: &mut rand::rngs::StdRng, shape: &[usize]) -> hopfield::backend::CpuTensor<f64> {
    use rand::Rng;
    let n = shape.iter().product();
    hopfield::Cpu::<f64>::new().from_vec((0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(), shape)
}

/// Move every parameter away from its initialisation so no gradient is trivially zero.
pub fn randomise<P: hopfield::Parameters<hopfield::Cpu<f64>>>(p: &mut P, rng: &mut rand::rngs::StdRng) {
    use rand::Rng;
    p.visit_mut(&mut |_, t, _| t.mapv_inplace(|v| v + rng.gen_range(-0.5..0.5)));
}
