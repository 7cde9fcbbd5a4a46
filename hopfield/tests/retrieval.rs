//! Properties of the retrieval variants (`HopfieldConfig::retrieval`), on the CPU backend in f64 and, with
//! the `wgpu`/`cuda` feature, on the CubeCL backend (lavapipe in CI):
//! - the update `ξ ← X p(β Xᵀ ξ)` never raises the variant's energy (`hopfield_layers::energy::energy_of`);
//! - sparsemax retrieves a stored pattern exactly when its score leads by at least 1 (softmax does not);
//! - masked entries get zero weight, fully masked rows zero weights, in every variant;
//! - softmax₁ lets a query retrieve (almost) nothing;
//! - `fused_association` falls back to the materialised path for every variant but softmax.

mod common;

use common::{host, rel_err};
use hopfield_layers::energy::energy_of;
use hopfield_layers::layers::{HopfieldConfig, HopfieldInput, Layer, Mask, Mode, Retrieval};
use hopfield_layers::{Backend, Cpu, Element};
use rand::{rngs::StdRng, Rng, SeedableRng};

const ALL: [Retrieval; 5] = [
    Retrieval::Softmax,
    Retrieval::Sparsemax,
    Retrieval::Entmax { alpha: 1.5, learnable: false },
    Retrieval::Entmax { alpha: 1.25, learnable: false },
    Retrieval::Softmax1,
];

/// Random rows of length `d`, each scaled to norm `norm`.
fn rows(rng: &mut StdRng, n: usize, d: usize, norm: f64) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    for r in v.chunks_mut(d) {
        let s = r.iter().map(|x| x * x).sum::<f64>().sqrt();
        r.iter_mut().for_each(|x| *x *= norm / s);
    }
    v
}

fn up<B: Backend>(be: &B, v: &[f64], shape: &[usize]) -> B::Tensor {
    be.from_vec(v.iter().map(|&x| B::Elem::of(x)).collect(), shape)
}

/// One static retrieval step `ξ ← X p(β Xᵀ ξ)` through the `Hopfield` layer.
fn retrieve<B: Backend>(be: &B, r: Retrieval, beta: f64, x: &B::Tensor, xi: &B::Tensor) -> B::Tensor {
    let d = be.shape(x)[2];
    let layer = HopfieldConfig::static_retrieval(d, beta).retrieval(r).init(be, &mut StdRng::seed_from_u64(0)).unwrap();
    let input = HopfieldInput::new(x.clone(), xi.clone(), x.clone());
    layer.forward(be, layer.params(), &input, Mode::Eval).unwrap().0.output
}

fn energy_never_rises<B: Backend>(be: &B, tol: f64) {
    let mut rng = StdRng::seed_from_u64(5);
    for r in ALL {
        for &(n, d, beta) in &[(6, 4, 0.5), (12, 8, 2.0), (20, 16, 8.0), (9, 3, 30.0)] {
            let (b, l) = (2, 3);
            let norm = 1.0 + rng.gen_range(0.0..2.0);
            let x = up(be, &rows(&mut rng, b * n, d, norm), &[b, n, d]);
            let mut xi = up(be, &rows(&mut rng, b * l, d, 1.5), &[b, l, d]);
            let mut e = energy_of(be, &x, &xi, beta, r).unwrap();
            for step in 0..6 {
                xi = retrieve(be, r, beta, &x, &xi);
                let e_next = energy_of(be, &x, &xi, beta, r).unwrap();
                for (i, (a, b)) in e_next.iter().zip(&e).enumerate() {
                    assert!(
                        *a <= b + tol * (1.0 + b.abs()),
                        "{r}: energy rose at step {step}, state {i}: {b} → {a} (N {n}, d {d}, β {beta})"
                    );
                }
                e = e_next;
            }
        }
    }
}

/// With stored patterns of norm 1 and a query near pattern μ, sparsemax's support is {μ} as soon as
/// `β(⟨x_μ, ξ⟩ − max_ν ⟨x_ν, ξ⟩) > 1`: the output is x_μ exactly. Softmax's is not, at any finite β.
fn sparsemax_retrieves_exactly<B: Backend>(be: &B, tol: f64) {
    let mut rng = StdRng::seed_from_u64(6);
    let (n, d) = (16, 64);
    let x_host = rows(&mut rng, n, d, 1.0);
    let x = up(be, &x_host, &[1, n, d]);
    for mu in [0, 7, 15] {
        let noise = rows(&mut rng, 1, d, 0.2);
        let q: Vec<f64> = x_host[mu * d..(mu + 1) * d].iter().zip(&noise).map(|(a, b)| a + b).collect();
        let scores: Vec<f64> = x_host.chunks(d).map(|r| r.iter().zip(&q).map(|(a, b)| a * b).sum()).collect();
        let runner_up = scores.iter().enumerate().filter(|(i, _)| *i != mu).map(|(_, s)| *s).fold(f64::MIN, f64::max);
        let margin = scores[mu] - runner_up;
        assert!(margin > 0.2, "the test's query should lead clearly (margin {margin})");
        let beta = 1.05 / margin;
        let target = &x_host[mu * d..(mu + 1) * d];
        let out = host(be, &retrieve(be, Retrieval::Sparsemax, beta, &x, &up(be, &q, &[1, 1, d])));
        let err = out.iter().zip(target).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= tol, "sparsemax at β·margin = 1.05 missed pattern {mu} by {err}");
        let below = host(be, &retrieve(be, Retrieval::Sparsemax, 0.5 * beta, &x, &up(be, &q, &[1, 1, d])));
        let soft = host(be, &retrieve(be, Retrieval::Softmax, 4.0 * beta, &x, &up(be, &q, &[1, 1, d])));
        for (what, y) in [("sparsemax below the margin", below), ("softmax at 4× that β", soft)] {
            let miss = y.iter().zip(target).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(miss > 1e-4, "{what} retrieved pattern {mu} exactly ({miss})");
        }
    }
}

/// Masked entries weigh exactly zero and fully masked rows are all zero, for every variant.
fn masks_give_zero_weight<B: Backend>(be: &B) {
    let mut rng = StdRng::seed_from_u64(8);
    let (b, l, s, d) = (2, 3, 6, 8);
    // Sample 1 is fully padded; in sample 0 columns 1 and 4 are padded; row 2 masks column 0.
    let pad: Vec<bool> = (0..b * s).map(|i| i >= s || i % s == 1 || i % s == 4).collect();
    let assoc: Vec<bool> = (0..l * s).map(|i| i == 2 * s).collect();
    for r in ALL {
        let layer = HopfieldConfig::new(d).num_heads(2).scaling(3.0).retrieval(r).init(be, &mut rng).unwrap();
        let t = |rng: &mut StdRng, n: usize| up(be, &rows(rng, b * n, d, 2.0), &[b, n, d]);
        let (k, q, v) = (t(&mut rng, s), t(&mut rng, l), t(&mut rng, s));
        let input = HopfieldInput::new(k, q, v)
            .padding_mask(Mask::bool(pad.clone(), &[b, s]))
            .association_mask(Mask::bool(assoc.clone(), &[l, s]))
            .with_association();
        let (out, _) = layer.forward(be, layer.params(), &input, Mode::Eval).unwrap();
        let a = host(be, out.association.as_ref().unwrap());
        assert!(a.iter().all(|v| v.is_finite()) && host(be, &out.output).iter().all(|v| v.is_finite()), "{r}: NaN");
        for (i, w) in a.iter().enumerate() {
            let (col, row, bi) = (i % s, (i / s) % l, i / (s * l * 2));
            if bi == 1 || col == 1 || col == 4 || (row == 2 && col == 0) {
                assert_eq!(*w, 0.0, "{r}: masked entry {i} has weight {w}");
            }
        }
    }
}

#[test]
fn energy_never_rises_on_the_cpu() {
    energy_never_rises(&Cpu::<f64>::new(), 1e-12);
}

#[test]
fn sparsemax_retrieves_exactly_on_the_cpu() {
    sparsemax_retrieves_exactly(&Cpu::<f64>::new(), 0.0);
}

#[test]
fn masks_give_zero_weight_on_the_cpu() {
    masks_give_zero_weight(&Cpu::<f64>::new());
    masks_give_zero_weight(&Cpu::<f32>::new());
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube {
    #[cfg(feature = "cuda")]
    fn gpu() -> hopfield_layers::backend::cube::Cuda {
        hopfield_layers::backend::cube::Cuda::cuda(0).unwrap_or_else(|e| panic!("{e}")).poisoned()
    }
    #[cfg(not(feature = "cuda"))]
    fn gpu() -> hopfield_layers::backend::cube::Wgpu {
        hopfield_layers::backend::cube::Wgpu::wgpu().unwrap_or_else(|e| panic!("{e}")).poisoned()
    }

    #[test]
    fn energy_never_rises_on_the_cube_backend() {
        super::energy_never_rises(&gpu(), 1e-5);
    }

    #[test]
    fn sparsemax_retrieves_exactly_on_the_cube_backend() {
        super::sparsemax_retrieves_exactly(&gpu(), 1e-6);
    }

    #[test]
    fn masks_give_zero_weight_on_the_cube_backend() {
        super::masks_give_zero_weight(&gpu());
    }
}

/// A query far from every pattern: softmax must spend its unit of weight, softmax₁ need not.
#[test]
fn softmax1_can_retrieve_nothing() {
    let be = Cpu::<f64>::new();
    let rng = StdRng::seed_from_u64(9);
    let (n, d) = (8, 16);
    // Patterns e₀ … e₇ and ξ = −Σ eᵢ: every score is −β.
    let x_host: Vec<f64> = (0..n * d).map(|i| if i % d == i / d { 1.0 } else { 0.0 }).collect();
    let x = up(&be, &x_host, &[1, n, d]);
    let q: Vec<f64> = (0..d).map(|j| if j < n { -1.0 } else { 0.0 }).collect();
    let q = up(&be, &q, &[1, 1, d]);
    let layer = |r| HopfieldConfig::static_retrieval(d, 20.0).retrieval(r).init(&be, &mut rng.clone()).unwrap();
    let weight = |r| {
        let l = layer(r);
        let input = HopfieldInput::new(x.clone(), q.clone(), x.clone()).with_association();
        host(&be, l.forward(&be, l.params(), &input, Mode::Eval).unwrap().0.association.as_ref().unwrap())
            .iter()
            .sum::<f64>()
    };
    assert!((weight(Retrieval::Softmax) - 1.0).abs() < 1e-12);
    let w1 = weight(Retrieval::Softmax1);
    assert!(w1 < 1e-6 && w1 > 0.0, "softmax₁ total weight {w1} (8·e⁻²⁰ / (1 + 8·e⁻²⁰) expected)");
}

/// `fused_association` gives the materialised path's results (and keeps the association) for every
/// variant but softmax, which it streams.
#[test]
fn fused_switch_falls_back_for_sparse_variants() {
    let be = Cpu::<f64>::new();
    let mut rng = StdRng::seed_from_u64(10);
    let (b, l, s, d) = (2, 4, 7, 8);
    for r in ALL {
        let cfg = HopfieldConfig::new(d).num_heads(2).scaling(2.0).retrieval(r);
        let mut plain = cfg.clone().init(&be, &mut rng).unwrap();
        common::randomise(&mut plain.params, &mut rng);
        let fused = hopfield_layers::layers::Hopfield {
            spec: cfg.fused_association(true).spec().unwrap(),
            params: plain.params.clone(),
        };
        let t = |rng: &mut StdRng, n: usize| up(&be, &rows(rng, b * n, d, 2.0), &[b, n, d]);
        let input = HopfieldInput::new(t(&mut rng, s), t(&mut rng, l), t(&mut rng, s));
        let (y0, c0) = plain.forward(&be, plain.params(), &input, Mode::Eval).unwrap();
        let (y1, c1) = fused.forward(&be, fused.params(), &input, Mode::Eval).unwrap();
        assert!(rel_err(&host(&be, &y1.output), &host(&be, &y0.output)) < 1e-12, "{r}");
        assert_eq!(c1.association().is_some(), r != Retrieval::Softmax, "{r}: which path ran");
        assert!(c0.association().is_some());
    }
}
