//! Helpers shared by the integration tests.
#![allow(dead_code)]

use hopfield_layers::io::{HostTensor, TensorMap};
use hopfield_layers::{Backend, Element};

pub mod fixtures;

/// `max |a − b| / max(max |b|, 1e-2)`: relative to the tensor's scale. The floor keeps tensors that are
/// zero in exact arithmetic (e.g. the stored-pattern norm's bias gradient: softmax is invariant to a
/// shift shared by all keys) from comparing rounding noise with rounding noise.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    rel_err_floor(a, b, 1e-2)
}

/// `max |a − b| / max(max |b|, floor)`.
pub fn rel_err_floor(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    // f64::max drops NaN: a NaN where the reference has none (e.g. an unwritten, poisoned output) must fail.
    if a.iter().zip(b).any(|(x, y)| x.is_nan() != y.is_nan()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(floor, |m, v| m.max(v.abs()));
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

/// [`assert_close`] with the scale floor of [`rel_err_floor`].
pub fn assert_close_floor(what: &str, actual: &[f64], expected: &HostTensor, tol: f64, floor: f64) {
    let e = rel_err_floor(actual, &expected.values, floor);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}

/// Uniform(−1, 1) f64 tensor of `shape`.
pub fn rand_tensor(rng: &mut rand::rngs::StdRng, shape: &[usize]) -> hopfield_layers::backend::CpuTensor<f64> {
    use rand::Rng;
    let n = shape.iter().product();
    hopfield_layers::Cpu::<f64>::new().from_vec((0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(), shape)
}

/// Move every parameter away from its initialisation so no gradient is trivially zero.
pub fn randomise<P: hopfield_layers::Parameters<hopfield_layers::Cpu<f64>>>(p: &mut P, rng: &mut rand::rngs::StdRng) {
    use rand::Rng;
    p.visit_mut(&mut |_, t, _| t.mapv_inplace(|v| v + rng.gen_range(-0.5..0.5)));
}

/// The ranges a randomised `Hopfield` configuration is drawn from ([`random_config`]).
pub struct ConfigRanges {
    /// Heads `1..=heads`.
    pub heads: usize,
    /// Head size `2..=head`.
    pub head: usize,
    /// Probability of each static input and of a connected projection.
    pub p_static: f64,
    /// Pattern (value) size `2..=pattern`.
    pub pattern: usize,
    /// Input, stored and projection sizes `3..=`, output size `2..=`.
    pub input: usize,
    pub stored: usize,
    pub projection: usize,
    pub output: usize,
    /// The convergence threshold of the update steps.
    pub eps: f64,
    /// β drawn around `1/√head` (else around 1).
    pub beta_by_head: bool,
}

/// Small sizes for f64 finite differences: every option, cheap to perturb entry by entry.
pub const SMALL: ConfigRanges = ConfigRanges {
    heads: 4,
    head: 3,
    p_static: 0.3,
    pattern: 3,
    input: 6,
    stored: 5,
    projection: 5,
    output: 4,
    eps: 1e-12,
    beta_by_head: false,
};

/// Wide sizes for backend comparisons in f32: odd sizes across tile boundaries, no early convergence stop
/// (step counts must not depend on rounding), β around `1/√head` (larger ones saturate the softmax over 3
/// update steps, where f32 rounding moves the gradients by more than the tolerance).
pub const WIDE: ConfigRanges = ConfigRanges {
    heads: 8,
    head: 19,
    p_static: 0.2,
    pattern: 9,
    input: 21,
    stored: 17,
    projection: 9,
    output: 11,
    eps: 1e-30,
    beta_by_head: true,
};

/// A random `Hopfield` configuration: every static/connected combination, norms, biases, zero and bias
/// patterns, update steps 0–3 per head, activations, dropout and both layouts. May fail validation.
pub fn random_config(rng: &mut rand::rngs::StdRng, r: &ConfigRanges) -> hopfield_layers::layers::HopfieldConfig {
    use hopfield_layers::layers::hopfield::PerHead;
    use rand::Rng;
    let heads = rng.gen_range(1..=r.heads);
    let hd = rng.gen_range(2..=r.head);
    let (ks, qs, vs) = (rng.gen_bool(r.p_static), rng.gen_bool(r.p_static), rng.gen_bool(r.p_static));
    let connected = !ks && rng.gen_bool(r.p_static);
    let pattern = if connected { hd } else { rng.gen_range(2..=r.pattern) };
    let mut c = hopfield_layers::layers::HopfieldConfig::new(if qs { hd } else { rng.gen_range(3..=r.input) })
        .num_heads(heads)
        .hidden_size(hd)
        .pattern_size(pattern)
        .stored_pattern_as_static(ks)
        .state_pattern_as_static(qs)
        .pattern_projection_as_static(vs)
        .pattern_projection_as_connected(connected)
        .stored_pattern_size(if ks { hd } else { rng.gen_range(3..=r.stored) })
        .batch_first(rng.gen_bool(0.7))
        .input_bias(rng.gen_bool(0.8))
        .concat_bias_pattern(rng.gen_bool(0.3))
        .add_zero_association(rng.gen_bool(0.3))
        .disable_out_projection(rng.gen_bool(0.2))
        .normalize_hopfield_space(rng.gen_bool(0.3));
    c.pattern_projection_size = Some(if vs { pattern } else { rng.gen_range(3..=r.projection) });
    if connected {
        c.pattern_projection_size = c.stored_pattern_size;
    }
    c.normalize_hopfield_space_affine = c.normalize_hopfield_space && rng.gen_bool(0.5);
    c.output_size = Some(rng.gen_range(2..=r.output));
    for (on, affine) in [
        (&mut c.normalize_stored_pattern, &mut c.normalize_stored_pattern_affine),
        (&mut c.normalize_state_pattern, &mut c.normalize_state_pattern_affine),
        (&mut c.normalize_pattern_projection, &mut c.normalize_pattern_projection_affine),
    ] {
        *on = rng.gen_bool(0.6);
        *affine = *on && rng.gen_bool(0.7);
    }
    c.update_steps_max = PerHead::Each((0..heads).map(|_| Some(rng.gen_range(0..=3))).collect());
    c.update_steps_eps = PerHead::All(r.eps);
    let scale = if r.beta_by_head { 1.0 / (hd as f64).sqrt() } else { 1.0 };
    c.scaling = Some(PerHead::Each((0..heads).map(|_| rng.gen_range(0.3..2.0) * scale).collect()));
    if rng.gen_bool(0.3) {
        c.association_activation = Some(["tanh", "gelu", "sigmoid", "silu"][rng.gen_range(0..4)].to_string());
    }
    if rng.gen_bool(0.3) {
        c.dropout = 0.3;
    }
    c
}

/// A random padding mask `[b, s]` (or none) and association mask (`[l, s]` boolean, `[b·h, l, s]` additive,
/// or none).
pub fn random_masks(
    rng: &mut rand::rngs::StdRng,
    b: usize,
    h: usize,
    l: usize,
    s: usize,
) -> (Option<hopfield_layers::layers::Mask>, Option<hopfield_layers::layers::Mask>) {
    use hopfield_layers::layers::Mask;
    use rand::Rng;
    let padding = rng.gen_bool(0.4).then(|| Mask::bool((0..b * s).map(|_| rng.gen_bool(0.3)).collect(), &[b, s]));
    let association = match rng.gen_range(0..4) {
        0 => Some(Mask::bool((0..l * s).map(|_| rng.gen_bool(0.3)).collect(), &[l, s])),
        1 => Some(Mask::additive((0..b * h * l * s).map(|_| rng.gen_range(-1.0..1.0)).collect(), &[b * h, l, s])),
        _ => None,
    };
    (padding, association)
}
